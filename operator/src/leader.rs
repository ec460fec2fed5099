//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas can run and only one
//! acts. The protocol is client-go's: the holder renews `renewTime` every `duration / 3`; a
//! candidate takes the lease once the record has not changed for a whole `duration`, measured
//! on its own monotonic clock (never by comparing timestamps written by another machine, so
//! clock skew between nodes cannot cause two leaders). Writes carry the `resourceVersion`
//! read, so of two simultaneous candidates one gets a conflict.
//!
//! A leader that cannot renew within `2/3 · duration` steps down before anyone else may take
//! over; the process then exits and is restarted as a candidate.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::shards::SELECTOR_ANNOTATION;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
    /// Written on the Lease (`shards::SELECTOR_ANNOTATION`), so the other shards' leaders
    /// can tell which promotions no shard selects.
    pub shard_selector: Option<String>,
}

/// Whether this replica leads, as it changes.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// For a single replica without election.
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        // Keep the sender alive for the life of the process so `rx` never reports closure.
        std::mem::forget(tx);
        Self { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once this replica leads (false if the election task ended first).
    pub async fn acquired(&mut self) -> bool {
        self.rx.wait_for(|l| *l).await.is_ok()
    }

    /// Resolves once leadership is lost (or the election task ended).
    pub async fn lost(mut self) {
        let _ = self.rx.wait_for(|l| !*l).await;
    }
}

fn micro(t: DateTime<Utc>) -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .ok()
        .map(MicroTime)
}

struct Elector {
    api: Api<Lease>,
    s: LeaseSettings,
    clock: Arc<dyn Clock>,
    /// The last lease record seen (holder, renewTime, resourceVersion) and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl Elector {
    fn duration_secs(&self) -> i32 {
        i32::try_from(self.s.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One round: returns whether we hold the lease afterwards.
    async fn round(&mut self) -> Result<bool, kube::Error> {
        let now = micro(self.clock.now());
        let Some(mut lease) = self.api.get_opt(&self.s.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.s.name.clone()),
                    namespace: Some(self.s.namespace.clone()),
                    annotations: self
                        .s
                        .shard_selector
                        .as_ref()
                        .map(|s| [(SELECTOR_ANNOTATION.to_owned(), s.clone())].into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.s.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: now.clone(),
                    renew_time: now,
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!(
            "{holder}|{:?}|{}",
            spec.renew_time,
            lease.metadata.resource_version.clone().unwrap_or_default()
        );
        let seen_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let mine = holder == self.s.identity;
        let expired = holder.is_empty() || seen_at.elapsed() >= self.s.duration;
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.s.identity.clone());
            spec.acquire_time = now.clone();
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = now;
        spec.lease_duration_seconds = Some(self.duration_secs());
        let annotations = lease.metadata.annotations.get_or_insert_default();
        match &self.s.shard_selector {
            Some(s) => annotations.insert(SELECTOR_ANNOTATION.to_owned(), s.clone()),
            None => annotations.remove(SELECTOR_ANNOTATION),
        };
        match self.api.replace(&self.s.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up on shutdown so the other replica need not wait for it to expire.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.s.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.s.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api.replace(&self.s.name, &PostParams::default(), &lease).await?;
        Ok(())
    }
}

/// Runs the election until `shutdown` turns true; returns the leadership view and the task.
pub fn spawn(
    client: Client,
    settings: LeaseSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let retry = (settings.duration / 3).max(Duration::from_millis(100));
    let renew_deadline = settings.duration * 2 / 3;
    let mut elector = Elector {
        api: Api::namespaced(client, &settings.namespace),
        s: settings,
        clock,
        observed: None,
    };
    let task = tokio::spawn(async move {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let leading = *tx.borrow();
            match elector.round().await {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
                    if !leading {
                        tracing::info!(identity = %elector.s.identity, lease = %elector.s.name, "acquired the leader lease");
                    }
                    let _ = tx.send(true);
                }
                Ok(false) => {
                    if leading {
                        tracing::warn!(lease = %elector.s.name, "lost the leader lease to another replica");
                    }
                    let _ = tx.send(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %elector.s.name, "lease round failed");
                    // Step down before the lease can expire for the others.
                    if leading && last_renewal.is_none_or(|t| t.elapsed() >= renew_deadline) {
                        tracing::error!("could not renew the leader lease in time: stepping down");
                        let _ = tx.send(false);
                    }
                }
            }
            metrics.leader.set(i64::from(*tx.borrow()));
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                () = crate::shutdown::stopped(&mut shutdown) => break,
            }
        }
        let leading = *tx.borrow();
        if leading {
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "could not release the leader lease");
            }
            let _ = tx.send(false);
            metrics.leader.set(0);
        }
    });
    (Leadership { rx }, task)
}
