//! A real Kubernetes API server for tests: upstream `kube-apiserver` and `etcd`, built from
//! the Kubernetes Go modules by `scripts/build-kube-apiserver.sh` (see `e2e/kube-apiserver`),
//! started on loopback ports with a throwaway PKI and `--authorization-mode=RBAC`.
//!
//! What a real cluster enforces is enforced here: structural schemas, CEL rules and their cost
//! budget, RBAC, admission, protobuf, server-side apply. There is no controller manager, no
//! scheduler and no kubelet, so nothing writes Deployment status or collects garbage unless a
//! test does.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::pki::{Ca, CertPair, Usage, signing_key};
use crate::{ManagedChild, free_port, remove_at_exit, scratch_dir, wait_for_tcp};

/// Where `scripts/build-kube-apiserver.sh` puts the binaries, unless `$KUBE_APISERVER_BIN_DIR`
/// says otherwise.
pub fn binaries_dir() -> PathBuf {
    std::env::var_os("KUBE_APISERVER_BIN_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../kube-apiserver/bin"),
        PathBuf::from,
    )
}

/// The upstream Gateway API HTTPRoute CRD (standard channel) that
/// `scripts/build-kube-apiserver.sh` puts beside the binaries.
pub fn httproute_crd() -> PathBuf {
    binaries_dir().join("crds/gateway.networking.k8s.io_httproutes.yaml")
}

/// How long the API server may take to answer `/readyz` (it bootstraps RBAC roles, priority
/// levels and the default namespaces first; a few seconds here).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// etcd plus kube-apiserver on loopback; both stop when this is dropped, when the test
/// process exits, or when it dies.
#[derive(Debug)]
pub struct KubeApiServer {
    port: u16,
    dir: PathBuf,
    started_in: Duration,
    // Declaration order is drop order: the API server goes before its storage.
    apiserver: ManagedChild,
    _etcd: ManagedChild,
}

impl KubeApiServer {
    /// One server for the whole test process, started on first use: tests share it and keep
    /// apart by namespace (start-up costs seconds; a namespace costs milliseconds). Started on
    /// a thread of its own, so it may be called from async code.
    pub fn shared() -> io::Result<&'static KubeApiServer> {
        static SHARED: OnceLock<Result<KubeApiServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                std::thread::spawn(Self::start)
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("kube-apiserver start-up panicked")))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }

    /// Starts in a scratch directory that is removed when the test process exits.
    pub fn start() -> io::Result<Self> {
        let dir = scratch_dir("testkit-kube-apiserver-")?.keep();
        remove_at_exit(dir.clone());
        Self::start_in(&dir)
    }

    /// Starts with every file (PKI, etcd data, logs, `kubeconfig`) in `dir`, which must exist.
    /// Blocks until `/readyz` answers 200.
    pub fn start_in(dir: &Path) -> io::Result<Self> {
        let started = Instant::now();
        let bin = binaries_dir();
        for name in ["kube-apiserver", "etcd"] {
            if !bin.join(name).is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is missing: run scripts/build-kube-apiserver.sh first (it needs Go)",
                        bin.join(name).display()
                    ),
                ));
            }
        }
        let dir = std::fs::canonicalize(dir)?;
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        let ca = Ca::create(&pki, "local-apiserver CA")?;
        let serving = ca.issue(
            "apiserver",
            "/CN=kube-apiserver",
            Usage::Server,
            &["kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        )?;
        let admin = ca.issue("admin", "/CN=local-admin/O=system:masters", Usage::Client, &[])?;
        let service_accounts = signing_key(&pki, "service-accounts")?;

        let etcd_port = free_port();
        let etcd = start_etcd(&bin, &dir, etcd_port)?;
        let port = free_port();
        let mut command = Command::new(bin.join("kube-apiserver"));
        command
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", pki.display()))
            .arg(format!("--tls-cert-file={}", serving.cert.display()))
            .arg(format!("--tls-private-key-file={}", serving.key.display()))
            .arg(format!("--client-ca-file={}", ca.pair.cert.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                service_accounts.cert.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                service_accounts.key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            // Nothing here reconciles the `kubernetes` Service's endpoints to this address.
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false")
            .arg("--v=0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("kube-apiserver.log"))?));
        let apiserver = ManagedChild::spawn(command, libc::SIGTERM)?;
        let mut server = Self {
            port,
            dir: dir.clone(),
            started_in: Duration::ZERO,
            apiserver,
            _etcd: etcd,
        };
        write_admin_kubeconfig(&server.kubeconfig(), &server.url(), &server.ca_cert(), &admin)?;
        server.wait_until_ready()?;
        Ok(Self {
            started_in: started.elapsed(),
            ..server
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A cluster-admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The CA that signed the serving certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The directory holding the PKI, etcd's data and both logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// From the first command to `/readyz` answering 200, PKI generation included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Whether the API server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.apiserver.wait_timeout(Duration::ZERO), Ok(None))
    }
}

fn start_etcd(bin: &Path, dir: &Path, client_port: u16) -> io::Result<ManagedChild> {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let client = format!("http://127.0.0.1:{client_port}");
    let mut command = Command::new(bin.join("etcd"));
    command
        .arg("--name=local")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=local={peer}"))
        // Test data is disposable: skip fsync, which dominates etcd's write latency.
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("etcd.log"))?));
    let etcd = ManagedChild::spawn(command, libc::SIGTERM)?;
    wait_for_tcp(([127, 0, 0, 1], client_port).into(), Duration::from_secs(20))
        .map_err(|e| io::Error::other(format!("etcd (see {}): {e}", dir.join("etcd.log").display())))?;
    Ok(etcd)
}

impl KubeApiServer {
    fn wait_until_ready(&mut self) -> io::Result<()> {
        let log = self.dir.join("kube-apiserver.log");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca_cert())?).map_err(io::Error::other)?;
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(io::Error::other)?;
        let deadline = Instant::now() + READY_LIMIT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if !self.is_running() {
                return Err(io::Error::other(format!(
                    "kube-apiserver exited during start-up: {}",
                    last_line(&log)
                )));
            }
            match client.get(format!("{}/readyz", self.url())).send() {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("/readyz answered {}", response.status()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "kube-apiserver not ready after {READY_LIMIT:?} ({last}); see {}",
                log.display()
            ),
        ))
    }
}

fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_owned))
        .unwrap_or_else(|| format!("see {}", log.display()))
}

fn write_admin_kubeconfig(path: &Path, url: &str, ca: &Path, admin: &CertPair) -> io::Result<()> {
    // JSON is YAML: no YAML writer needed, and every string is quoted correctly.
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": url, "certificate-authority": ca}}],
        "users": [{"name": "local-admin", "user": {"client-certificate": admin.cert, "client-key": admin.key}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local-admin", "namespace": "default"}}],
        "current-context": "local",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).map_err(io::Error::other)?)
}
