use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use canary_operator::leader::LeaseSettings;
use canary_operator::telemetry::{self, LogFormat};
use canary_operator::{Settings, clock::SystemClock};
use clap::{Parser, Subcommand};

/// Kubernetes operator that promotes canaries through gated, weighted steps.
#[derive(Parser)]
#[command(name = "canary-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (uses KUBECONFIG, or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Print the CanaryPromotion CustomResourceDefinition as YAML.
    Crd,
}

fn duration(s: &str) -> Result<Duration, String> {
    canary_core::duration::parse_duration(s)
        .map_err(|e| e.to_string())?
        .to_std()
        .map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CANARY_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Reconcile only the CanaryPromotions this label selector matches (e.g.
    /// `scholarship.dev/shard=a`), so several operators, each with its own Lease, split a
    /// cluster's promotions. Give the shards disjoint selectors that together cover every
    /// value, e.g. `shard=a`, `shard=b` and `shard notin (a,b)`. The leader writes it on its
    /// Lease and reports promotions that no live shard, or more than one, selects (shards
    /// share the Lease namespace and run with leader election).
    #[arg(long, env = "CANARY_OPERATOR_SHARD_SELECTOR")]
    shard_selector: Option<String>,
    /// How often a shard's leader surveys which promotions the live shards select.
    #[arg(long, env = "CANARY_OPERATOR_SHARD_SURVEY_INTERVAL", default_value = "1m", value_parser = duration)]
    shard_survey_interval: Duration,
    /// Address of the /metrics, /livez and /readyz endpoints.
    #[arg(long, env = "CANARY_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Elect a leader on a Lease so several replicas can run; only the leader acts.
    #[arg(long, env = "CANARY_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "CANARY_OPERATOR_LEASE_NAME", default_value = "canary-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "CANARY_OPERATOR_LEASE_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long a lease lasts without renewal; a standby takes over after this.
    #[arg(long, env = "CANARY_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease and in Events (default: hostname-pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Timeout of one Prometheus query.
    #[arg(long, env = "CANARY_OPERATOR_PROMETHEUS_TIMEOUT", default_value = "5s", value_parser = duration)]
    prometheus_timeout: Duration,
    /// Shortest metric window; the window is otherwise twice the spec's interval.
    #[arg(long, env = "CANARY_OPERATOR_MIN_WINDOW", default_value = "1m", value_parser = duration)]
    min_window: Duration,
    /// CanaryPromotions reconciled in parallel.
    #[arg(long, env = "CANARY_OPERATOR_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Log format.
    #[arg(long, env = "CANARY_OPERATOR_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "canary-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client configuration");
            return ExitCode::FAILURE;
        }
    };
    let identity = args.identity.unwrap_or_else(identity);
    let settings = Settings {
        namespace: args.namespace,
        lease: args.leader_election.then(|| LeaseSettings {
            name: args.lease_name,
            namespace: args.lease_namespace,
            identity: identity.clone(),
            duration: args.lease_duration,
            shard_selector: args.shard_selector.clone(),
        }),
        shard_selector: args.shard_selector,
        shard_survey_period: args.shard_survey_interval,
        listen: args.listen,
        identity,
        prometheus_timeout: args.prometheus_timeout,
        min_window: args.min_window,
        concurrency: args.concurrency,
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    match canary_operator::run(client, settings, Arc::new(SystemClock), rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // One rustls crypto provider for kube and reqwest, installed before any TLS is set up.
    if rustls::crypto::aws_lc_rs::default_provider().install_default().is_err() {
        eprintln!("warning: a rustls crypto provider was already installed");
    }
    match Cli::parse().command {
        Command::Crd => match canary_operator::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        // The work is I/O-bound and `decide` takes microseconds, so one thread is plenty; it
        // also keeps memory down (no per-worker allocator arenas and stacks).
        Command::Run(args) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(run(*args)),
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
