//! Benchmark (ignored by default; run with `--ignored --nocapture`): the operator binary with
//! a cluster's worth of CanaryPromotions on a real kube-apiserver and etcd.
//!
//! `SCALE_N` promotions (default 10,000) in `SCALE_NAMESPACES` namespaces (100), of which
//! `SCALE_PROGRESSING` (500) are mid-promotion and the rest finished (half Promoted, half
//! RolledBack, as a cluster accumulates them); interval `SCALE_INTERVAL` (30s), steady state
//! measured over `SCALE_STEADY_SECS` (120). It prints the load driver's own rate, the time
//! until every progressing promotion runs, RSS, CPU, how late evaluations ran (the
//! operator's `evaluation_lateness_seconds`), Prometheus queries per interval, and the time
//! from one promotion's breach becoming visible to its canary weight 0.
//!
//! Use a release binary for figures: `CANARY_OPERATOR_BIN=$PWD/target/release/canary-operator`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canary_operator::provider::prometheus::{builtin_query, series};
use canary_operator::provider::{Sli, Track, window_for};
use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// Requests the load driver keeps in flight.
const DRIVER_CONCURRENCY: usize = 64;
/// The operator's `--min-window`; the window is max(2 × interval, this).
const MIN_WINDOW: Duration = Duration::from_secs(2);

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn proc_stat(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf is always safe to call.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kib, ticks as f64 / hz)
}

/// The operator's metrics page (empty while it is not listening yet).
async fn scrape(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

/// Cumulative `(le, count)` buckets of a histogram.
fn buckets(page: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// "p50 ≤ 0.01 s, p90 ≤ ..." from the difference of two snapshots of a histogram.
fn quantiles(before: &[(f64, f64)], after: &[(f64, f64)]) -> String {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| (*le, n - before.iter().find(|(l, _)| l == le).map_or(0.0, |(_, m)| *m)))
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    if total == 0.0 {
        return "no evaluations".into();
    }
    let at = |q: f64| {
        delta
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map_or("?".into(), |(le, _)| format!("≤ {le} s"))
    };
    format!(
        "{total} evaluations: p50 {}, p90 {}, p99 {}, max {}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

/// Runs `make(i)` for `0..n` with `DRIVER_CONCURRENCY` in flight; returns the rate achieved.
async fn drive<F, Fut>(what: &str, n: usize, make: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(DRIVER_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("driver: {n} {what} in {:?} ({rate:.0}/s)", started.elapsed());
    rate
}

fn apply() -> PatchParams {
    PatchParams::apply("scale-driver").force()
}

fn namespace(i: usize) -> String {
    format!("scale-{i:03}")
}

/// A Deployment whose status says it is rolled out and available (nothing runs pods here).
async fn available_deployment(client: &kube::Client, ns: &str, name: &str, image: &str) -> Result<(), kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let labels = json!({"app": "scholarship-api", "deploy": name});
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "api", "image": image}]}}}});
    let applied = api.patch(name, &apply(), &Patch::Apply(d)).await?;
    let generation = applied.metadata.generation.unwrap_or(1);
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// The spec of one promotion: the test spec with long bakes, `interval`, and queries narrowed
/// to its namespace (plus `extra` labels).
fn promotion_spec(
    prom: &str,
    interval: &str,
    ns: &str,
    extra: &[(&str, &str)],
    deployments: (&str, &str),
    ingress: &str,
) -> Value {
    let mut s = spec(json!({"nginx": {"canaryIngress": ingress}}), prom, "6h", "0s");
    s["interval"] = json!(interval);
    s["progressDeadline"] = json!("24h");
    s["stable"] = json!({"deployment": deployments.0});
    s["canary"]["deployment"] = json!(deployments.1);
    let mut labels: BTreeMap<String, String> = BTreeMap::from([("namespace".to_owned(), ns.to_owned())]);
    labels.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    s["metrics"]["prometheus"]["labels"] = json!(labels);
    s
}

fn labels_of(spec: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(spec["metrics"]["prometheus"]["labels"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes of CPU"]
async fn ten_thousand_promotions() {
    let n: usize = setting("SCALE_N", 10_000);
    let namespaces: usize = setting("SCALE_NAMESPACES", 100);
    let progressing: usize = setting("SCALE_PROGRESSING", 500);
    let interval_s: u64 = setting("SCALE_INTERVAL_SECS", 30);
    let steady = Duration::from_secs(setting("SCALE_STEADY_SECS", 120));
    assert!(n.is_multiple_of(namespaces) && progressing.is_multiple_of(namespaces) && progressing <= n);
    let interval = format!("{interval_s}s");
    let window = window_for(Duration::from_secs(interval_s), MIN_WINDOW);
    tokio::time::timeout(Duration::from_secs(3600), async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let client = c.client.clone();
        let (per_ns, running_per_ns) = (n / namespaces, progressing / namespaces);

        // The scene: per namespace the Deployments of a running and of a finished release,
        // one canary Ingress per running promotion, green metrics for the namespace.
        let ns_api: Api<Namespace> = Api::all(client.clone());
        drive("namespaces", namespaces, |i| {
            let ns_api = ns_api.clone();
            async move {
                let name = namespace(i);
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                ns_api.patch(&name, &apply(), &Patch::Apply(ns)).await.map(|_| ())
            }
        })
        .await;
        let scene = [("api", OLD_IMAGE), ("api-canary", NEW_IMAGE), ("done", NEW_IMAGE), ("done-canary", NEW_IMAGE)];
        drive("Deployments (apply + status)", namespaces * scene.len(), |k| {
            let client = client.clone();
            async move {
                let (name, image) = scene[k % scene.len()];
                available_deployment(&client, &namespace(k / scene.len()), name, image).await
            }
        })
        .await;
        drive("canary Ingresses", progressing, |k| {
            let client = client.clone();
            async move {
                let api: Api<Ingress> = Api::namespaced(client, &namespace(k / running_per_ns));
                let name = format!("ing-{}", k % running_per_ns);
                let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": name, "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
                    "spec": {"rules": [{"host": "api.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "api-canary", "port": {"number": 80}}}}]}}]}});
                api.patch(&name, &apply(), &Patch::Apply(ing)).await.map(|_| ())
            }
        })
        .await;

        // The promotions. Slot 0 of namespace 0 is the one that will breach: its queries
        // carry one more label, so only it sees the breach.
        let breaching = ("scale-000".to_owned(), "promo-0".to_owned());
        let spec_of = |k: usize| -> (String, String, Value, bool) {
            let (i, j) = (k / per_ns, k % per_ns);
            let ns = namespace(i);
            if j < running_per_ns {
                let extra: &[(&str, &str)] = if k == 0 { &[("service", "breach")] } else { &[] };
                let s = promotion_spec(&prom.address, &interval, &ns, extra, ("api", "api-canary"), &format!("ing-{j}"));
                (ns, format!("promo-{j}"), s, true)
            } else {
                // Their own label, so any query for them would show in the count.
                let s = promotion_spec(&prom.address, &interval, &ns, &[("release", "finished")], ("done", "done-canary"), "done-canary");
                (ns, format!("done-{j}"), s, false)
            }
        };
        // Green answers for every label set a running promotion queries with (the breaching
        // one's included, until the breach).
        let running_labels: std::collections::BTreeSet<BTreeMap<String, String>> =
            (0..n).map(&spec_of).filter(|(.., running)| *running).map(|(_, _, s, _)| labels_of(&s)).collect();
        for labels in &running_labels {
            prom.green_for(labels, window);
        }
        let create_rate = drive("CanaryPromotions (server-side apply)", n, |k| {
            let client = client.clone();
            let (ns, name, s, _) = spec_of(k);
            async move {
                let api: Api<canary_operator::CanaryPromotion> = Api::namespaced(client, &ns);
                let cp = json!({"apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                    "metadata": {"name": name}, "spec": s});
                api.patch(&name, &apply(), &Patch::Apply(cp)).await.map(|_| ())
            }
        })
        .await;
        let finished = n - progressing;
        drive("finished statuses", finished, |f| {
            let client = client.clone();
            let k = (f / (per_ns - running_per_ns)) * per_ns + running_per_ns + f % (per_ns - running_per_ns);
            let (ns, name, _, _) = spec_of(k);
            let phase = if f % 2 == 0 { "Promoted" } else { "RolledBack" };
            async move {
                let api: Api<canary_operator::CanaryPromotion> = Api::namespaced(client, &ns);
                let status = json!({"apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                    "status": {"phase": phase, "currentStep": 3, "stepLabel": "3/3", "weight": 0,
                        "observedGeneration": 1, "observedCanaryImage": NEW_IMAGE, "message": "finished before the benchmark"}});
                api.patch_status(&name, &apply(), &Patch::Apply(status)).await.map(|_| ())
            }
        })
        .await;

        // The operator, cluster-wide, as the chart installs it.
        let port = testkit::free_port();
        let bin = std::env::var("CANARY_OPERATOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_canary-operator").into());
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .env("KUBECONFIG", &c.operator_kubeconfig)
            .env("CANARY_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("CANARY_OPERATOR_LEADER_ELECTION", "false")
            .env("CANARY_OPERATOR_MIN_WINDOW", format!("{}s", MIN_WINDOW.as_secs()))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = testkit::ManagedChild::spawn(cmd, libc::SIGTERM).unwrap();
        let pid = child.id();
        let started = Instant::now();
        let all: Api<canary_operator::CanaryPromotion> = Api::all(client.clone());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let page = scrape(port).await;
            let running = sample(&page, "canary_operator_promotions{phase=\"Progressing\"}");
            if running as usize >= progressing {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(900), "only {running}/{progressing} progressing");
        }
        let ramp = started.elapsed();
        let (rss_ramp, cpu_ramp) = proc_stat(pid);
        let weights = all.list(&ListParams::default()).await.unwrap();
        let at_step_1 = weights
            .items
            .iter()
            .filter(|cp| cp.status.as_ref().is_some_and(|s| s.current_step == 1))
            .count();
        assert_eq!(at_step_1, progressing, "every running promotion at step 1");

        // Steady state: several intervals.
        let before = scrape(port).await;
        let queries_before = *prom.queries.lock().unwrap();
        let mut peak = rss_ramp;
        let t0 = Instant::now();
        while t0.elapsed() < steady {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(proc_stat(pid).0);
        }
        let after = scrape(port).await;
        let queries = *prom.queries.lock().unwrap() - queries_before;
        let idle_queries = prom.queries_containing(r#"release="finished""#);
        let (rss, cpu) = proc_stat(pid);
        let reconciled = sample(&after, "canary_operator_reconciles_total") - sample(&before, "canary_operator_reconciles_total");
        let cpu_steady = cpu - cpu_ramp;
        let intervals = steady.as_secs_f64() / interval_s as f64;

        // One breach among them all: visible now, criterion `for: 0s`.
        let breach_labels = labels_of(&spec_of(0).2);
        prom.set_query(
            &builtin_query(Sli::ErrorRate5xx, &series(Track::Canary, &breach_labels), window),
            Some(0.2),
        );
        let visible = Instant::now();
        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &breaching.0);
        let ing = "ing-0";
        loop {
            let weight = ingresses
                .get(ing)
                .await
                .unwrap()
                .metadata
                .annotations
                .unwrap_or_default()
                .get("nginx.ingress.kubernetes.io/canary-weight")
                .cloned();
            if weight.as_deref() == Some("0") {
                break;
            }
            assert!(visible.elapsed() < Duration::from_secs(interval_s * 3), "no rollback of {}/{}", breaching.0, breaching.1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rollback = visible.elapsed();
        let others_untouched = all
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|cp| cp.status.as_ref().is_some_and(|s| s.phase == canary_core::Phase::Progressing))
            .count();

        eprintln!("binary: {bin}");
        eprintln!("scene: {n} CanaryPromotions in {namespaces} namespaces, {progressing} progressing, {finished} finished; interval {interval}; driver created them at {create_rate:.0}/s");
        eprintln!("all {progressing} running (status written, weight applied) {ramp:?} after start; CPU {cpu_ramp:.2} s, RSS {} MiB", rss_ramp / 1024);
        eprintln!(
            "steady {steady:?}: {reconciled} reconciles ({:.2} per progressing promotion per interval), CPU {cpu_steady:.2} s = {:.2} ms/reconcile, {:.1} % of a core; RSS {} MiB (peak {} MiB)",
            reconciled / progressing as f64 / intervals,
            cpu_steady * 1000.0 / reconciled.max(1.0),
            cpu_steady * 100.0 / steady.as_secs_f64(),
            rss / 1024,
            peak / 1024
        );
        eprintln!(
            "evaluation lateness: {}",
            quantiles(
                &buckets(&before, "canary_operator_evaluation_lateness_seconds"),
                &buckets(&after, "canary_operator_evaluation_lateness_seconds")
            )
        );
        eprintln!(
            "Prometheus: {queries} queries in {steady:?} = {:.0} per interval for {progressing} progressing promotions ({:.1} each); for the {finished} finished ones: {idle_queries} since the start",
            queries as f64 / intervals,
            queries as f64 / intervals / progressing as f64
        );
        eprintln!(
            "one breach among {n}: canary weight 0 {rollback:?} after it became visible (goal: interval + 1 s = {}s); {others_untouched} others still progressing",
            interval_s + 1
        );
        assert_eq!(others_untouched, progressing - 1, "only the breaching promotion left Progressing");
        assert_eq!(idle_queries, 0, "finished promotions cost no metric queries");
        drop(child);
    })
    .await
    .expect("benchmark timed out");
}
