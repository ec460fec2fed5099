//! Two shards of the real binary, two replicas each, on a real API server: each shard reconciles
//! exactly its own promotions (`SHARD_TEST_N` each: 1,000 with the release binary named by
//! `CANARY_OPERATOR_BIN`, as `scripts/test.sh` runs it, 200 with the debug build), their
//! leaders report the promotion neither selects, and killing one shard's leader hands its
//! promotions to the standby (same step, same timestamps, no repeated Events) without
//! disturbing the other shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use testkit::ManagedChild;

const LEASE: Duration = Duration::from_secs(2);
const SHARDS: [&str; 2] = ["a", "b"];
const SHARD_LABEL: &str = "scholarship.dev/shard";

struct Replica {
    child: ManagedChild,
    port: u16,
    identity: String,
}

fn lease_name(c: &Cluster, shard: &str) -> String {
    format!("{}-{shard}", c.lease_name())
}

fn spawn(c: &Cluster, shard: &str, identity: &str) -> Replica {
    let port = testkit::free_port();
    let bin = std::env::var("CANARY_OPERATOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_canary-operator").into());
    let mut cmd = operator_command(&bin, c, identity, &lease_name(c, shard), LEASE, port);
    cmd.env("CANARY_OPERATOR_SHARD_SELECTOR", format!("{SHARD_LABEL}={shard}"))
        .env("CANARY_OPERATOR_SHARD_SURVEY_INTERVAL", "1s")
        .env("CANARY_OPERATOR_CONCURRENCY", "32")
        .env(
            "RUST_LOG",
            std::env::var("SHARD_TEST_LOG").unwrap_or_else(|_| "error".into()),
        );
    Replica {
        child: ManagedChild::spawn(cmd, libc::SIGTERM).unwrap(),
        port,
        identity: identity.to_owned(),
    }
}

async fn metric(r: &Replica, name: &str) -> Option<f64> {
    operator_metric(r.port, name).await
}

async fn lease(c: &Cluster, shard: &str) -> Option<Lease> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), OPERATOR_NAMESPACE);
    leases.get_opt(&lease_name(c, shard)).await.ok()?
}

async fn holder(c: &Cluster, shard: &str) -> Option<String> {
    lease(c, shard).await?.spec?.holder_identity
}

/// `(shard, stepStartedAt)` of every promotion that has reached step 1, by name.
async fn started(c: &Cluster) -> BTreeMap<String, (String, String)> {
    let list = c.cps().list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter_map(|cp| {
            let status = cp.status.as_ref().filter(|s| s.current_step == 1)?;
            let shard = cp.labels().get(SHARD_LABEL).cloned()?;
            Some((cp.name_any(), (shard, status.step_started_at?.to_rfc3339())))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_promotions_and_survive_a_leader_kill_independently() {
    // The 1,000 per shard with the release binary (`scripts/test.sh` passes it); 200
    // with a debug build, which needs about ten times the CPU per evaluation.
    let release = std::env::var("CANARY_OPERATOR_BIN").is_ok();
    let per_shard: usize = std::env::var("SHARD_TEST_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if release { 1000 } else { 200 });
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 1).await;

        // Server-side apply, many in flight: the driver must not be what the test waits on.
        let apply = PatchParams::apply("shard-test").force();
        let total = per_shard * SHARDS.len() + 1;
        futures::stream::iter(0..total)
            .map(|k| {
                let (c, prom, apply) = (&c, &prom, &apply);
                async move {
                    // The last one carries no shard label: no shard selects it.
                    let (name, labels) = match k {
                        k if k < total - 1 => (format!("p{k}"), json!({SHARD_LABEL: SHARDS[k % SHARDS.len()]})),
                        _ => ("stray".to_owned(), json!({})),
                    };
                    let ingress = format!("{name}-canary");
                    c.create_canary_ingress(&ingress).await;
                    let mut s = spec(json!({"nginx": {"canaryIngress": ingress}}), &prom.address, "6h", "1m");
                    s["interval"] = json!("30s");
                    s["progressDeadline"] = json!("24h");
                    let cp = json!({"apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                        "metadata": {"name": name, "labels": labels}, "spec": s});
                    c.cps().patch(&name, apply, &Patch::Apply(cp)).await.map(|_| ())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await
            .unwrap();

        let mut replicas: BTreeMap<&str, Vec<Replica>> = BTreeMap::new();
        for shard in SHARDS {
            replicas.insert(
                shard,
                (1..=2).map(|i| spawn(&c, shard, &format!("{shard}{i}"))).collect(),
            );
        }
        let ramp = std::time::Instant::now();
        let running = eventually(
            Duration::from_secs(240),
            "every sharded promotion at step 1",
            || async {
                // Listing thousands of promotions is work for the API server: not every 50 ms.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let s = started(&c).await;
                (s.len() == per_shard * SHARDS.len()).then_some(s)
            },
        )
        .await;
        eprintln!(
            "{} promotions running {:?} after the shards started",
            running.len(),
            ramp.elapsed()
        );
        let stray = c.cp("stray").await.unwrap();
        assert!(stray.status.is_none(), "no shard selects the stray: {:?}", stray.status);
        assert!(stray.finalizers().is_empty());

        // Every Event about a promotion comes from a replica of its own shard.
        let events: Api<Event> = Api::namespaced(c.client.clone(), &c.ns);
        let mut reporters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in events.list(&ListParams::default()).await.unwrap().items {
            if let (Some(name), Some(instance)) = (e.regarding.and_then(|r| r.name), e.reporting_instance) {
                reporters.entry(name).or_default().insert(instance);
            }
        }
        for (name, (shard, _)) in &running {
            let by = reporters.get(name).cloned().unwrap_or_default();
            assert!(
                !by.is_empty() && by.iter().all(|i| i.starts_with(shard.as_str())),
                "{name} (shard {shard}) reported by {by:?}"
            );
        }

        // The leaders see both shards and the stray.
        let leaders: BTreeMap<&str, String> = {
            let mut m = BTreeMap::new();
            for shard in SHARDS {
                m.insert(
                    shard,
                    eventually(Duration::from_secs(10), "a leader", || holder(&c, shard)).await,
                );
            }
            m
        };
        for shard in SHARDS {
            let leader = replicas[shard].iter().find(|r| r.identity == leaders[shard]).unwrap();
            eventually(Duration::from_secs(15), "the shard survey", || async {
                let seen = (
                    metric(leader, "canary_operator_shards").await?,
                    metric(leader, "canary_operator_unsharded_promotions").await?,
                    metric(leader, "canary_operator_overlapping_promotions").await?,
                );
                (seen == (2.0, 1.0, 0.0)).then_some(())
            })
            .await;
            let on_lease = lease(&c, shard).await.unwrap();
            assert_eq!(
                on_lease
                    .annotations()
                    .get("scholarship.dev/shard-selector")
                    .map(String::as_str),
                Some(format!("{SHARD_LABEL}={shard}").as_str())
            );
        }

        // Kill shard a's leader. Its standby takes over; shard b never notices.
        let b_lease = lease(&c, "b").await.unwrap().spec.unwrap();
        let b = replicas.remove("b").unwrap();
        let b_leader = b.iter().find(|r| r.identity == leaders["b"]).unwrap();
        let b_reconciles = metric(b_leader, "canary_operator_reconciles_total").await.unwrap();
        let mut a = replicas.remove("a").unwrap();
        let dead = a.iter().position(|r| r.identity == leaders["a"]).unwrap();
        a[dead].child.kill();
        let killed = std::time::Instant::now();
        let standby = a.iter().find(|r| r.identity != leaders["a"]).unwrap();
        eventually(Duration::from_secs(20), "shard a's standby to lead", || async {
            (holder(&c, "a").await.as_deref() == Some(standby.identity.as_str())).then_some(())
        })
        .await;
        eventually(
            Duration::from_secs(120),
            "the new leader to hold all of shard a",
            || async {
                let n = metric(standby, "canary_operator_promotions{phase=\"Progressing\"}").await?;
                (n as usize == per_shard).then_some(())
            },
        )
        .await;
        eprintln!(
            "shard a: leader killed → standby leads and holds all {per_shard} promotions in {:?}",
            killed.elapsed()
        );
        let after = started(&c).await;
        assert_eq!(
            after, running,
            "same step and step clock for every promotion of both shards"
        );
        let b_after = lease(&c, "b").await.unwrap().spec.unwrap();
        assert_eq!(
            b_after.holder_identity, b_lease.holder_identity,
            "shard b kept its leader"
        );
        assert_eq!(b_after.lease_transitions, b_lease.lease_transitions);
        eventually(Duration::from_secs(45), "shard b to keep evaluating", || async {
            (metric(b_leader, "canary_operator_reconciles_total").await? > b_reconciles).then_some(())
        })
        .await;
        let mut started_events: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.list(&ListParams::default()).await.unwrap().items {
            if e.reason.as_deref() == Some("Started")
                && let Some(name) = e.regarding.and_then(|r| r.name)
            {
                *started_events.entry(name).or_default() += 1;
            }
        }
        let repeated: Vec<_> = started_events.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "started twice: {repeated:?}");
        assert_eq!(started_events.len(), per_shard * SHARDS.len());
    })
    .await
    .expect("test timed out");
}
