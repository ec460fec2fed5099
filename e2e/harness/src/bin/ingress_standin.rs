//! `ingress-standin`: the ingress-nginx canary stand-in as a process of its own, for trying
//! the operator by hand against the API-server stand-in (see docs/demo.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use canary_e2e::ingress::{IngressConfig, IngressStandIn};
use clap::Parser;

/// Reverse proxy splitting traffic between a stable and a canary backend by the
/// `nginx.ingress.kubernetes.io/canary-weight` of a canary Ingress (a test double).
#[derive(Parser)]
#[command(name = "ingress-standin", version)]
struct Cli {
    /// Listen address (keep it on loopback).
    #[arg(long, env = "INGRESS_STANDIN_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Kubeconfig of the cluster holding the canary Ingress (default: the usual lookup).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[arg(long, env = "INGRESS_STANDIN_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Name of the canary Ingress to follow.
    #[arg(long, env = "INGRESS_STANDIN_CANARY_INGRESS")]
    canary_ingress: String,
    /// Stable backend, host:port on loopback.
    #[arg(long, env = "INGRESS_STANDIN_STABLE_BACKEND")]
    stable_backend: SocketAddr,
    /// Canary backend, host:port on loopback.
    #[arg(long, env = "INGRESS_STANDIN_CANARY_BACKEND")]
    canary_backend: SocketAddr,
    /// How often the canary Ingress is read, in milliseconds.
    #[arg(long, env = "INGRESS_STANDIN_POLL_MS", default_value_t = 250)]
    poll_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    canary_e2e::install_crypto_provider();
    canary_e2e::init_logging("info");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ingress-standin failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), canary_e2e::HarnessError> {
    let client = match &cli.kubeconfig {
        Some(path) => testkit::kube::client(path).await?,
        None => kube::Client::try_default().await?,
    };
    let mut config = IngressConfig::new(
        &cli.namespace,
        &cli.canary_ingress,
        cli.stable_backend,
        cli.canary_backend,
    );
    config.listen = cli.listen;
    config.poll_interval = Duration::from_millis(cli.poll_ms.max(50));
    let ingress = IngressStandIn::start(client, config).await?;
    println!("{}", ingress.url());
    let _ = tokio::signal::ctrl_c().await;
    for segment in ingress.segments() {
        tracing::info!(
            weight = segment.weight.weight,
            total = segment.weight.total,
            stable = segment.split.stable.requests,
            canary = segment.split.canary.requests,
            failures = segment.split.failures(),
            "requests routed"
        );
    }
    Ok(())
}
