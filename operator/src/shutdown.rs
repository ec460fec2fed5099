//! The shutdown signal shared by the controller, the leader election and the HTTP server.

use tokio::sync::watch;

/// Resolves once `rx` turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, inside.
    let _ = rx.wait_for(|s| *s).await;
}
