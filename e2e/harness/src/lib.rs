//! End-to-end harness for the canary operator, and the pieces of the one-command local demo.
//!
//! Everything runs on loopback with real parts where the machine has them (kube-apiserver and
//! etcd, PostgreSQL, Redis, Prometheus, the `scholarship-api` and `canary-operator` binaries,
//! `kubectl`) and small stand-ins where it has not (no ingress controller, no kubelet):
//!
//! * [`ingress`] — a reverse proxy honouring ingress-nginx canary annotations;
//! * [`kubelet`] — writes Deployment status the way a healthy rollout ends;
//! * [`load`] — a bounded-rate, bounded-duration load generator;
//! * [`scenario`] — the whole canary promotion, used by `canary-demo` and the e2e test.

pub mod error;
pub mod ingress;
pub mod kubelet;
pub mod load;
pub mod manifests;
pub mod processes;
pub mod scenario;
pub mod slow_link;

pub use error::HarnessError;

/// Installs the one rustls crypto provider the workspace uses (aws-lc-rs). kube and reqwest
/// both reach rustls; with no process-wide default installed, the first TLS setup panics.
/// Calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Plain-text logs on stderr, filtered by `RUST_LOG` (default `default_filter`).
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
