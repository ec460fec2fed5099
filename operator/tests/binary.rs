//! The real `canary-operator` binary, as its own ServiceAccount, on a real API server: a restart mid-bake resumes at the
//! same step with the same timestamps; two replicas elect one leader and the other takes over
//! when the leader is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use testkit::ManagedChild;

const LEASE: Duration = Duration::from_secs(2);

struct Operator {
    child: ManagedChild,
    port: u16,
    identity: String,
}

fn spawn(c: &Cluster, identity: &str) -> Operator {
    let port = testkit::free_port();
    let mut cmd = operator_command(
        env!("CARGO_BIN_EXE_canary-operator"),
        c,
        identity,
        &c.lease_name(),
        LEASE,
        port,
    );
    cmd.env("CANARY_OPERATOR_LOG_FORMAT", "json").env("RUST_LOG", "warn");
    Operator {
        child: ManagedChild::spawn(cmd, libc::SIGTERM).unwrap(),
        port,
        identity: identity.to_owned(),
    }
}

async fn metric(op: &Operator, name: &str) -> Option<f64> {
    operator_metric(op.port, name).await
}

async fn holder(c: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), OPERATOR_NAMESPACE);
    leases.get_opt(&c.lease_name()).await.ok()??.spec?.holder_identity
}

async fn setup(c: &Cluster, prom: &ScriptedProm) {
    c.create_deployment("api", OLD_IMAGE, 2).await;
    c.create_deployment("api-canary", NEW_IMAGE, 1).await;
    c.create_canary_ingress("api-canary").await;
    let mut s = spec(nginx(), &prom.address, "2s", "1m");
    s["steps"] = json!([{"weight": 10, "bake": "2s"}, {"weight": 50, "bake": "1h"}, {"weight": 100, "bake": "1s"}]);
    c.create_cp("promo", s).await;
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_bake_resumes_at_the_same_step_with_the_same_timestamps() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        setup(&c, &prom).await;
        let mut op = spawn(&c, "op-a");
        let before = eventually(Duration::from_secs(30), "step 2 baking", || async {
            let s = c.status("promo").await;
            (s["currentStep"] == 2 && s["gatesPassingSince"].is_string()).then_some(s)
        })
        .await;
        op.child.kill();
        let started_events = c
            .event_reasons("promo")
            .await
            .iter()
            .filter(|r| *r == "Started")
            .count();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _op = spawn(&c, "op-b");
        // op-a died holding the lease: op-b waits for it to expire, then evaluates.
        eventually(Duration::from_secs(15), "op-b to lead", || async {
            (holder(&c).await.as_deref() == Some("op-b")).then_some(())
        })
        .await;
        let baseline = prom.queries.lock().map(|q| *q).unwrap();
        eventually(Duration::from_secs(10), "op-b to evaluate gates", || async {
            (prom.queries.lock().map(|q| *q).unwrap() > baseline + 10).then_some(())
        })
        .await;
        let after = c.status("promo").await;
        assert_eq!(after["phase"], "Progressing", "{after}");
        assert_eq!(after["currentStep"], 2);
        assert_eq!(after["stepStartedAt"], before["stepStartedAt"], "step clock kept");
        assert_eq!(
            after["gatesPassingSince"], before["gatesPassingSince"],
            "bake clock kept"
        );
        assert_eq!(after["observedGeneration"], before["observedGeneration"]);
        assert_eq!(c.ingress_weight("api-canary").await.as_deref(), Some("50"));
        let reasons = c.event_reasons("promo").await;
        assert_eq!(
            reasons.iter().filter(|r| *r == "Started").count(),
            started_events,
            "not restarted: {reasons:?}"
        );
        assert!(!reasons.iter().any(|r| r == "SpecChanged"), "{reasons:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_takeover_when_it_dies() {
    bounded(async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        let a = spawn(&c, "op-a");
        let b = spawn(&c, "op-b");
        let first = eventually(Duration::from_secs(15), "a leader", || async { holder(&c).await }).await;
        let (mut leader, standby) = if first == a.identity { (a, b) } else { (b, a) };
        // Both serve metrics; exactly one says it leads.
        let leads = eventually(Duration::from_secs(10), "leader metrics", || async {
            Some((
                metric(&leader, "canary_operator_leader").await?,
                metric(&standby, "canary_operator_leader").await?,
            ))
        })
        .await;
        assert_eq!(leads, (1.0, 0.0));
        setup(&c, &prom).await;
        eventually(Duration::from_secs(20), "weight 10", || async {
            (c.ingress_weight("api-canary").await.as_deref() == Some("10")).then_some(())
        })
        .await;
        // Only the leader acts: every event so far comes from it.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client.clone(), &c.ns);
        let instances: Vec<String> = eventually(Duration::from_secs(5), "events", || async {
            let list = events.list(&Default::default()).await.ok()?;
            let i: Vec<String> = list.items.into_iter().filter_map(|e| e.reporting_instance).collect();
            (!i.is_empty()).then_some(i)
        })
        .await;
        assert!(
            !instances.is_empty() && instances.iter().all(|i| *i == leader.identity),
            "{instances:?}"
        );
        assert_eq!(metric(&standby, "canary_operator_reconciles").await.unwrap_or(0.0), 0.0);

        leader.child.kill();
        let killed = Instant::now();
        eventually(Duration::from_secs(10), "takeover", || async {
            (holder(&c).await.as_deref() == Some(standby.identity.as_str())).then_some(())
        })
        .await;
        let takeover = killed.elapsed();
        eprintln!("takeover after the leader was killed: {takeover:?} (lease {LEASE:?})");
        assert!(takeover <= LEASE + Duration::from_secs(2), "takeover took {takeover:?}");
        // The new leader carries on: step 2 at 50 %.
        eventually(Duration::from_secs(20), "weight 50 by the new leader", || async {
            (c.ingress_weight("api-canary").await.as_deref() == Some("50")).then_some(())
        })
        .await;
        assert_eq!(metric(&standby, "canary_operator_leader").await, Some(1.0));
    })
    .await;
}
