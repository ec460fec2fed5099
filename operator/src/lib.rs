//! The canary-promotion operator: the imperative shell around `canary-core`.
//!
//! observe (Deployments, router, metric providers) → `canary_core::decide` → act (router
//! weight, stable image, Events) → status (server-side apply), under leader election.

pub mod clock;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod ownership;
pub mod provider;
pub mod reconcile;
pub mod router;
pub mod shards;
pub mod shutdown;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

pub use crd::{CanaryPromotion, CanaryPromotionSpec, crd_yaml};

/// Settings of `canary-operator run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// Reconcile only the CanaryPromotions with these labels (a label selector).
    pub shard_selector: Option<String>,
    /// How often a shard's leader compares every promotion with the live shards' selectors.
    pub shard_survey_period: Duration,
    /// `/metrics`, `/livez`, `/readyz`.
    pub listen: SocketAddr,
    /// `None`: no election, this replica always acts (a single replica).
    pub lease: Option<leader::LeaseSettings>,
    pub identity: String,
    pub prometheus_timeout: Duration,
    pub min_window: Duration,
    pub concurrency: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot serve metrics: {0}")]
    Listen(#[from] std::io::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("lost the leader lease")]
    LostLeadership,
    #[error("--shard-selector {selector:?}: {message}")]
    InvalidShardSelector { selector: String, message: String },
}

/// Asks the API server to parse the selector (a list of at most one object), so a typo stops
/// the operator with the server's message instead of a watch that fails forever.
async fn check_shard_selector(client: &Client, namespace: Option<&str>, selector: &str) -> Result<(), RunError> {
    let api: kube::Api<CanaryPromotion> = match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    };
    match api
        .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 400 => Err(RunError::InvalidShardSelector {
            selector: selector.to_owned(),
            message: status.message,
        }),
        // Anything else (the API server briefly away) is the watcher's to retry.
        _ => Ok(()),
    }
}

/// Runs the operator until `shutdown` turns true. Returns `LostLeadership` when another
/// replica took over (the process should exit and be restarted as a candidate).
pub async fn run(
    client: Client,
    settings: Settings,
    clock: Arc<dyn clock::Clock>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let metrics = Arc::new(metrics::Metrics::new());
    let bound = metrics::serve(settings.listen, metrics.clone()).await?;
    tracing::info!(listen = %bound, identity = %settings.identity, "serving /metrics, /livez, /readyz");
    // Ready once the API server answers (a standby replica is ready too).
    let probe = client.clone();
    let ready_metrics = metrics.clone();
    tokio::spawn(async move {
        loop {
            if probe.apiserver_version().await.is_ok() {
                ready_metrics.set_ready(true);
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });

    // Before the election: a replica that cannot start must not take the Lease first.
    if let Some(selector) = &settings.shard_selector {
        check_shard_selector(&client, settings.namespace.as_deref(), selector).await?;
    }
    let (mut leadership, election) = match &settings.lease {
        Some(lease) => {
            let (l, task) = leader::spawn(
                client.clone(),
                lease.clone(),
                clock.clone(),
                metrics.clone(),
                shutdown.clone(),
            );
            (l, Some(task))
        }
        None => {
            metrics.leader.set(1);
            (leader::Leadership::always(), None)
        }
    };
    tokio::select! {
        () = shutdown::stopped(&mut shutdown) => {
            if let Some(task) = election { let _ = task.await; }
            return Ok(());
        }
        _ = leadership.acquired() => {}
    }
    tracing::info!(
        shard_selector = settings.shard_selector.as_deref(),
        "leading: starting the controller"
    );
    let ctx = Arc::new(reconcile::Context::new(
        client,
        clock,
        metrics,
        leadership.clone(),
        &reconcile::ContextSettings {
            prometheus_timeout: settings.prometheus_timeout,
            min_window: settings.min_window,
            identity: settings.identity.clone(),
        },
    )?);
    let (survey_stop, survey_stopped) = watch::channel(false);
    if let (Some(_), Some(lease)) = (&settings.shard_selector, &settings.lease) {
        tokio::spawn(shards::report(
            ctx.client.clone(),
            lease.namespace.clone(),
            settings.namespace.clone(),
            ctx.metrics.clone(),
            settings.shard_survey_period,
            survey_stopped,
        ));
    }
    let mut stop = shutdown.clone();
    let lost = leadership.clone();
    let stop_controller = async move {
        tokio::select! {
            () = shutdown::stopped(&mut stop) => {}
            () = lost.lost() => {}
        }
    };
    reconcile::run(
        ctx,
        settings.namespace.as_deref(),
        settings.shard_selector.as_deref(),
        settings.concurrency,
        stop_controller,
    )
    .await;
    let _ = survey_stop.send(true);
    let shutting_down = *shutdown.borrow();
    if let Some(task) = election {
        if shutting_down {
            // The election task releases the lease on shutdown.
            let _ = task.await;
        } else {
            task.abort();
        }
    }
    if shutting_down {
        Ok(())
    } else {
        Err(RunError::LostLeadership)
    }
}
