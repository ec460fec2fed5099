//! Kubelet stand-in: plays the Deployment controller and the kubelets for one namespace.
//!
//! The local API server runs no kube-controller-manager and no kubelets, so a Deployment's
//! `status` never changes on its own. This watches Deployments and, a short delay after a spec change (the time a real
//! rollout takes), writes the status a healthy rollout ends with: `observedGeneration` =
//! `generation`, every replica count = `spec.replicas`, `Available=True`. That is what the
//! operator's `patch` promotion waits for after setting the stable image.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

/// A rollout the stand-in completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub deployment: String,
    pub generation: i64,
    pub image: Option<String>,
    /// Since the stand-in started.
    pub at: Duration,
}

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub namespace: String,
    /// How long a rollout takes before the Deployment reports it complete.
    pub rollout_delay: Duration,
}

/// A running kubelet stand-in; stops when dropped.
#[derive(Debug)]
pub struct KubeletStandIn {
    rollouts: Arc<Mutex<Vec<Rollout>>>,
    task: JoinHandle<()>,
}

impl KubeletStandIn {
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let rollouts = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(run(client, config, rollouts.clone()));
        Self { rollouts, task }
    }

    /// Rollouts completed so far, oldest first.
    pub fn rollouts(&self) -> Vec<Rollout> {
        self.rollouts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the Deployment's status does not yet describe its current spec as fully rolled out.
pub fn needs_rollout(deployment: &Deployment) -> bool {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let replicas = desired_replicas(deployment);
    let Some(status) = deployment.status.as_ref() else {
        return true;
    };
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    status.observed_generation != Some(generation)
        || status.replicas.unwrap_or(0) != replicas
        || status.updated_replicas.unwrap_or(0) != replicas
        || status.ready_replicas.unwrap_or(0) != replicas
        || status.available_replicas.unwrap_or(0) != replicas
        || !available
}

fn desired_replicas(deployment: &Deployment) -> i32 {
    deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn first_image(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// The status a finished, healthy rollout leaves behind.
pub fn rolled_out_status(deployment: &Deployment, now: &str) -> serde_json::Value {
    let replicas = desired_replicas(deployment);
    json!({"status": {
        "observedGeneration": deployment.metadata.generation.unwrap_or(0),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "unavailableReplicas": null,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": now, "lastTransitionTime": now}
        ]
    }})
}

async fn run(client: Client, config: KubeletConfig, rollouts: Arc<Mutex<Vec<Rollout>>>) {
    let started = Instant::now();
    let api: Api<Deployment> = Api::namespaced(client, &config.namespace);
    // (name, generation) already scheduled, so repeated watch events don't stack rollouts.
    let mut scheduled: HashSet<(String, i64)> = HashSet::new();
    let mut pending = JoinSet::new();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        let next = events.try_next().await;
        while pending.try_join_next().is_some() {}
        let deployment = match next {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "kubelet stand-in: watch error; retrying");
                continue;
            }
        };
        if !needs_rollout(&deployment) {
            continue;
        }
        let key = (deployment.name_any(), deployment.metadata.generation.unwrap_or(0));
        if !scheduled.insert(key.clone()) {
            continue;
        }
        let (api, rollouts, delay) = (api.clone(), rollouts.clone(), config.rollout_delay);
        pending.spawn(async move {
            tokio::time::sleep(delay).await;
            match complete_rollout(&api, &key.0, key.1).await {
                Ok(Some(rollout_image)) => {
                    tracing::info!(deployment = %key.0, generation = key.1, image = ?rollout_image, "rollout complete");
                    rollouts.lock().unwrap_or_else(PoisonError::into_inner).push(Rollout {
                        deployment: key.0,
                        generation: key.1,
                        image: rollout_image,
                        at: started.elapsed(),
                    });
                }
                Ok(None) => {} // superseded by a newer generation, which has its own rollout
                Err(e) => tracing::warn!(deployment = %key.0, error = %e, "cannot write Deployment status"),
            }
        });
    }
}

/// Writes the rolled-out status if the Deployment is still at `generation`; returns the image
/// rolled out (`None` when there was nothing to do).
async fn complete_rollout(api: &Api<Deployment>, name: &str, generation: i64) -> kube::Result<Option<Option<String>>> {
    let Some(current) = api.get_opt(name).await? else {
        return Ok(None);
    };
    if current.metadata.generation.unwrap_or(0) != generation || !needs_rollout(&current) {
        return Ok(None);
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = rolled_out_status(&current, &now);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(Some(first_image(&current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, replicas: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "api", "generation": generation},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"containers": [{"name": "api", "image": "img:1"}]}}}
        }))
        .expect("valid Deployment")
    }

    #[test]
    fn a_new_deployment_needs_a_rollout_and_the_written_status_ends_it() {
        let mut d = deployment(1, 3);
        assert!(needs_rollout(&d));
        let status = rolled_out_status(&d, "2025-01-01T00:00:00Z");
        d.status = serde_json::from_value(status["status"].clone()).expect("valid status");
        assert!(!needs_rollout(&d));
        assert_eq!(first_image(&d).as_deref(), Some("img:1"));
        // A spec change bumps the generation: rolled out again.
        d.metadata.generation = Some(2);
        assert!(needs_rollout(&d));
    }
}
