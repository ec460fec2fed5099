//! A Kubernetes API-server stand-in (a test double, never for production): serves the
//! Kubernetes HTTP API from memory on a loopback port, closely enough that kube-rs clients
//! (the operator) and `kubectl` work against it unmodified. See `docs/kube-standin.md`.

pub mod api;
pub mod crd;
pub mod discovery;
pub mod events;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod selector;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use server::{router, serve};
pub use store::{Store, StoreConfig};

/// A kubeconfig for a plain-HTTP server without authentication.
pub fn kubeconfig_yaml(base_url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-standin\n  cluster:\n    server: {base_url}\ncontexts:\n- name: kube-standin\n  context:\n    cluster: kube-standin\n    user: kube-standin\n    namespace: default\ncurrent-context: kube-standin\nusers:\n- name: kube-standin\n  user: {{}}\n"
    )
}

pub fn write_kubeconfig(path: &Path, base_url: &str) -> std::io::Result<()> {
    std::fs::write(path, kubeconfig_yaml(base_url))
}

/// A running stand-in for a test: stops when dropped.
pub struct StandIn {
    pub addr: SocketAddr,
    pub base_url: String,
    pub kubeconfig: PathBuf,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("base_url", &self.base_url).finish()
    }
}

impl StandIn {
    /// Starts on `127.0.0.1:0` with default settings.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(StoreConfig::default()).await
    }

    pub async fn start_with(config: StoreConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &base_url)?;
        let store = Arc::new(Store::new(config));
        api::seed(&store);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(store.clone(), addr.to_string());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            base_url,
            kubeconfig,
            store,
            _dir: dir,
            shutdown: Some(tx),
        })
    }

    /// The in-memory state, for tests that need to provoke server-side conditions.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.store.disconnect_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
