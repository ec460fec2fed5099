//! `kube-standin`: serve the Kubernetes API stand-in on a loopback port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use kube_standin::{Store, StoreConfig, api, router, write_kubeconfig};

/// A Kubernetes API-server stand-in for tests (a test double; never for production).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (plain HTTP, no authentication: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:0", env = "KUBE_STANDIN_LISTEN")]
    listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this path.
    #[arg(long, env = "KUBE_STANDIN_KUBECONFIG_OUT")]
    kubeconfig_out: Option<PathBuf>,
    /// How many changes the watch history keeps before older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 1000)]
    history: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    if let Some(path) = &args.kubeconfig_out {
        write_kubeconfig(path, &base_url)?;
    }
    let store = Arc::new(Store::new(StoreConfig {
        history_limit: args.history,
        ..StoreConfig::default()
    }));
    api::seed(&store);
    // The address on stdout is the contract with scripts that start this binary.
    println!("{base_url}");
    axum::serve(listener, router(store, addr.to_string()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
