//! The stand-in as kubectl sees it (`/usr/bin/kubectl`, or `KUBECTL`): apply (client-side
//! and server-side), get/-o yaml/-w, describe, delete, validation errors, printer columns.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TEST_TIMEOUT, WIDGET_CRD};
use kube_standin::StandIn;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn kubectl_binary() -> Option<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"));
    path.exists().then_some(path)
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(standin: &StandIn) -> Option<Self> {
        let Some(bin) = kubectl_binary() else {
            eprintln!("SKIPPED: kubectl not found at /usr/bin/kubectl (set KUBECTL to point at one)");
            return None;
        };
        Some(Self {
            bin,
            kubeconfig: standin.kubeconfig.clone(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        // A private discovery/openapi cache per test: no state leaks between runs.
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"));
        cmd.args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap()
            .unwrap();

        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.ok, "kubectl {args:?} failed:\n{}\n{}", out.stdout, out.stderr);
        out.stdout
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p.to_string_lossy().into_owned()
    }
}

async fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

const WIDGET: &str = "apiVersion: example.dev/v1
kind: Widget
metadata:
  name: w1
spec:
  color: blue
  size: 3cm
";

/// Column headers of a `kubectl get` table.
fn headers(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

#[tokio::test]
async fn kubectl_applies_crd_and_custom_resources() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let Some(k) = Kubectl::new(&s) else { return };
        let crd = k.file("crd.yaml", WIDGET_CRD);
        assert!(
            k.ok(&["apply", "-f", &crd])
                .await
                .contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.dev created")
        );
        k.ok(&[
            "wait",
            "--for",
            "condition=Established",
            "crd/widgets.example.dev",
            "--timeout=10s",
        ])
        .await;

        // Client-side apply: create, then a three-way JSON merge patch.
        let w = k.file("w1.yaml", WIDGET);
        assert!(
            k.ok(&["apply", "-f", &w])
                .await
                .contains("widget.example.dev/w1 created")
        );
        let w = k.file("w1.yaml", &WIDGET.replace("size: 3cm\n", "replicas: 2\n"));
        assert!(
            k.ok(&["apply", "-f", &w])
                .await
                .contains("widget.example.dev/w1 configured")
        );
        let yaml = k.ok(&["get", "widget", "w1", "-o", "yaml"]).await;
        assert!(yaml.contains("replicas: 2") && !yaml.contains("size:"), "{yaml}");
        assert!(yaml.contains("kubectl.kubernetes.io/last-applied-configuration"));
        assert!(
            k.ok(&["apply", "-f", &w])
                .await
                .contains("widget.example.dev/w1 unchanged")
        );

        // Server-side apply.
        let w2 = k.file("w2.yaml", &WIDGET.replace("name: w1", "name: w2"));
        assert!(
            k.ok(&["apply", "--server-side", "-f", &w2])
                .await
                .contains("widget.example.dev/w2 serverside-applied")
        );
        let w2 = k.file(
            "w2.yaml",
            &WIDGET
                .replace("name: w1", "name: w2")
                .replace("color: blue", "color: green"),
        );
        k.ok(&["apply", "--server-side", "-f", &w2]).await;
        let json = k
            .ok(&[
                "get",
                "wd",
                "w2",
                "-o",
                "jsonpath={.spec.color}/{.spec.replicas}/{.metadata.managedFields[0].manager}",
            ])
            .await;
        assert_eq!(json, "green/1/kubectl");

        // Tables from additionalPrinterColumns.
        let table = k.ok(&["get", "widgets"]).await;
        assert_eq!(headers(&table), ["NAME", "COLOR", "REPLICAS", "PHASE", "AGE"]);
        assert_eq!(&row(&table, "w1")[..3], ["w1", "blue", "2"]);
        let wide = k.ok(&["get", "widgets", "-o", "wide"]).await;
        assert_eq!(headers(&wide), ["NAME", "COLOR", "REPLICAS", "PHASE", "AGE", "MESSAGE"]);

        let described = k.ok(&["describe", "widget", "w1"]).await;
        assert!(
            described.contains("Name:") && described.contains("w1") && described.contains("Color:"),
            "{described}"
        );

        // Invalid objects: the field is named.
        let bad = k.file("bad.yaml", &WIDGET.replace("color: blue", "color: purple"));
        let out = k.run(&["apply", "-f", &bad]).await;
        assert!(
            !out.ok && out.stderr.contains("spec.color") && out.stderr.contains("Unsupported value: \"purple\""),
            "{}",
            out.stderr
        );
        let cel = k.file("cel.yaml", &WIDGET.replace("size: 3cm", "replicas: 7"));
        let out = k.run(&["apply", "-f", &cel]).await;
        assert!(
            !out.ok && out.stderr.contains("more than 5 replicas only for red widgets"),
            "{}",
            out.stderr
        );
        let unknown = k.file("unknown.yaml", &format!("{WIDGET}  flavour: lemon\n"));
        let out = k.run(&["apply", "-f", &unknown]).await;
        assert!(
            !out.ok && out.stderr.contains("unknown field \"spec.flavour\""),
            "{}",
            out.stderr
        );

        assert!(
            k.ok(&["delete", "widget", "w1"])
                .await
                .contains("widget.example.dev \"w1\" deleted")
        );
        let out = k.run(&["get", "widget", "w1"]).await;
        assert!(!out.ok && out.stderr.contains("NotFound"), "{}", out.stderr);
        k.ok(&["delete", "-f", &crd]).await;
        let out = k.run(&["get", "widgets"]).await;
        assert!(!out.ok, "the type is gone with its CRD");
    })
    .await;
}

#[tokio::test]
async fn kubectl_get_watch_sees_an_update() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let Some(k) = Kubectl::new(&s) else { return };
        k.ok(&["apply", "-f", &k.file("crd.yaml", WIDGET_CRD)]).await;
        k.ok(&["apply", "-f", &k.file("w1.yaml", WIDGET)]).await;
        let mut child = k
            .command(&["get", "widgets", "-w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let header = lines.next_line().await.unwrap().unwrap();
        assert!(header.starts_with("NAME") && header.contains("REPLICAS"), "{header}");
        let first = lines.next_line().await.unwrap().unwrap();
        assert!(first.starts_with("w1") && first.contains("blue"), "{first}");
        k.ok(&[
            "patch",
            "widget",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ])
        .await;
        let updated = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let cells: Vec<&str> = updated.split_whitespace().collect();
        assert_eq!(&cells[..3], ["w1", "blue", "4"], "{updated}");
        child.kill().await.unwrap();
    })
    .await;
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
        env:
        - {name: A, value: a}
        - {name: B, value: b}
        ports:
        - {containerPort: 8080, name: http}
      - name: sidecar
        image: side:1
";

#[tokio::test]
async fn kubectl_client_side_apply_of_a_deployment_uses_strategic_merge() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let Some(k) = Kubectl::new(&s) else { return };
        k.ok(&["apply", "-f", &k.file("d.yaml", DEPLOYMENT)]).await;
        // Someone else (an autoscaler) changes replicas, which the manifest does not set; the next apply must keep unrelated
        // live changes and apply ours: new image, env B removed, sidecar untouched.
        k.ok(&["scale", "deployment", "api", "--replicas=3"]).await;
        let changed = DEPLOYMENT.replace("image: api:1", "image: api:2").replace("        - {name: B, value: b}\n", "");
        assert!(k.ok(&["apply", "-f", &k.file("d.yaml", &changed)]).await.contains("deployment.apps/api configured"));
        let got = k
            .ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[*].image} {.spec.template.spec.containers[0].env[*].name} {.metadata.generation}"])
            .await;
        assert_eq!(got, "3 api:2 side:1 A 3");
        let table = k.ok(&["get", "deployments"]).await;
        assert_eq!(headers(&table), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
        assert_eq!(&row(&table, "api")[..2], ["api", "0/3"]);
        // Services and ConfigMaps round-trip through apply and delete too.
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports:\n  - {port: 80, targetPort: 8080}\n";
        k.ok(&["apply", "-f", &k.file("svc.yaml", svc)]).await;
        k.ok(&["apply", "-f", &k.file("svc.yaml", &svc.replace("port: 80,", "port: 81,"))]).await;
        let ports = k.ok(&["get", "svc", "api", "-o", "jsonpath={.spec.ports[*].port}"]).await;
        assert_eq!(ports, "81");
        k.ok(&["delete", "deployment/api", "service/api"]).await;
    })
    .await;
}

fn canarypromotion_crd() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/canarypromotion.yaml");
    p.exists().then_some(p)
}

const CANARY: &str = "apiVersion: scholarship.dev/v1alpha1
kind: CanaryPromotion
metadata:
  name: demo
spec:
  stable: {deployment: scholarship-api}
  canary: {deployment: scholarship-api-canary, image: registry.example/scholarship-api:v1.5.0}
  traffic:
    nginx: {canaryIngress: scholarship-api-canary}
  steps: [{weight: 5, bake: 10m}, {weight: 25, bake: 6h}, {weight: 100, bake: 30m}]
  metrics: {prometheus: {address: 'http://prometheus.monitoring:9090'}}
";

#[tokio::test]
async fn kubectl_get_canarypromotions_prints_the_crd_printer_columns() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let Some(k) = Kubectl::new(&s) else { return };
        let Some(crd_path) = canarypromotion_crd() else {
            eprintln!("crds/canarypromotion.yaml not present; the widget CRD test covers printer columns");
            return;
        };
        let crd_text = std::fs::read_to_string(&crd_path).unwrap();
        let crd: serde_json::Value = common::yaml(&crd_text);
        let version = &crd["spec"]["versions"][0];
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let upper = |c: &serde_json::Value| c["name"].as_str().unwrap().to_uppercase();
        let mut expected: Vec<String> = vec!["NAME".into()];
        expected.extend(
            columns
                .iter()
                .filter(|c| c["priority"].as_i64().unwrap_or(0) == 0)
                .map(upper),
        );
        let mut expected_wide: Vec<String> = vec!["NAME".into()];
        expected_wide.extend(columns.iter().map(upper));

        k.ok(&["apply", "-f", crd_path.to_str().unwrap()]).await;
        let out = k.run(&["apply", "-f", &k.file("cp.yaml", CANARY)]).await;
        assert!(
            out.ok,
            "the sample CanaryPromotion no longer matches the CRD: {}",
            out.stderr
        );
        // Status as the operator would write it (merge patch through /status here).
        let status: serde_json::Value = serde_json::json!({"status": {
            "phase": "Progressing", "weight": 25, "stepLabel": "2/3", "gatesSummary": "9/9", "message": "baking"}});
        k.ok(&[
            "patch",
            "canprom",
            "demo",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .await;

        let table = k.ok(&["get", "canarypromotions"]).await;
        let heads = headers(&table);
        // Multi-word headers would split; none of ours have spaces.
        assert_eq!(heads, expected, "{table}");
        let wide = k.ok(&["get", "canarypromotions", "-o", "wide"]).await;
        assert_eq!(headers(&wide), expected_wide, "{wide}");
        let row = row(&table, "demo");
        for cell in ["Progressing", "25"] {
            if table.lines().next().unwrap().contains("PHASE") {
                assert!(row.contains(&cell), "{table}");
            }
        }
    })
    .await;
}
