//! The stand-in as a kube-rs client sees it: CRUD, conflicts, list/watch, reflectors
//! across a 410, server-side apply of status, finalizers, cascading deletion, Leases, Events.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TEST_TIMEOUT, client, create_widget_crd, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Error};
use kube_standin::{StandIn, StoreConfig};
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

fn code(e: Error) -> (u16, String) {
    match e {
        Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn widgets(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Widget"), "widgets");
    Api::namespaced_with(client.clone(), "default", &ar)
}

async fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

#[tokio::test]
async fn crud_conflicts_selectors_and_pagination() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let created = cms
            .create(&PostParams::default(), &cm("a", json!({"app": "x"})))
            .await
            .unwrap();
        let meta = &created.metadata;
        assert!(meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some());
        assert_eq!(
            code(
                cms.create(&PostParams::default(), &cm("a", json!({})))
                    .await
                    .unwrap_err()
            ),
            (409, "AlreadyExists".into())
        );

        // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
        let mut first = cms.get("a").await.unwrap();
        let mut second = first.clone();
        first.data = Some([("k".to_string(), "1".to_string())].into());
        let updated = cms.replace("a", &PostParams::default(), &first).await.unwrap();
        assert_ne!(updated.metadata.resource_version, created.metadata.resource_version);
        second.data = Some([("k".to_string(), "2".to_string())].into());
        assert_eq!(
            code(cms.replace("a", &PostParams::default(), &second).await.unwrap_err()),
            (409, "Conflict".into())
        );

        // generateName.
        let mut generated = cm("", json!({"app": "y"}));
        generated.metadata.name = None;
        generated.metadata.generate_name = Some("generated-".into());
        let g = cms.create(&PostParams::default(), &generated).await.unwrap();
        assert!(g.metadata.name.unwrap().starts_with("generated-"));

        for i in 0..5 {
            cms.create(&PostParams::default(), &cm(&format!("p{i}"), json!({"app": "page"})))
                .await
                .unwrap();
        }
        let xs = cms.list(&ListParams::default().labels("app=x")).await.unwrap();
        assert_eq!(xs.items.len(), 1);
        let by_name = cms
            .list(&ListParams::default().fields("metadata.name=p3"))
            .await
            .unwrap();
        assert_eq!(by_name.items.len(), 1);
        let notin = cms
            .list(&ListParams::default().labels("app notin (page,y)"))
            .await
            .unwrap();
        assert_eq!(notin.items.len(), 1);

        // limit/continue pages through everything exactly once.
        let mut names = Vec::new();
        let mut lp = ListParams::default().labels("app=page").limit(2);
        loop {
            let page = cms.list(&lp).await.unwrap();
            names.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
            match page.metadata.continue_ {
                Some(tok) if !tok.is_empty() => lp = lp.continue_token(&tok),
                _ => break,
            }
        }
        assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4"]);

        cms.delete("a", &DeleteParams::default()).await.unwrap();
        assert_eq!(code(cms.get("a").await.unwrap_err()), (404, "NotFound".into()));
        // Namespaced objects need their namespace.
        let missing: Api<ConfigMap> = Api::namespaced(c.clone(), "nope");
        assert_eq!(
            code(
                missing
                    .create(&PostParams::default(), &cm("z", json!({})))
                    .await
                    .unwrap_err()
            )
            .0,
            404
        );
    })
    .await;
}

#[tokio::test]
async fn watch_events_and_resume_from_resource_version() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let a = cms
            .create(&PostParams::default(), &cm("a", json!({"app": "x"})))
            .await
            .unwrap();
        let rv = a.metadata.resource_version.clone().unwrap();
        cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
            .await
            .unwrap();
        cms.delete("a", &DeleteParams::default()).await.unwrap();
        // Resuming from the create's resourceVersion replays what happened after it.
        let mut stream = cms
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        let mut kinds = Vec::new();
        while kinds.len() < 2 {
            match stream.try_next().await.unwrap().unwrap() {
                WatchEvent::Modified(_) => kinds.push("MODIFIED"),
                WatchEvent::Deleted(_) => kinds.push("DELETED"),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(kinds, vec!["MODIFIED", "DELETED"]);

        // An object that stops matching a label selector is DELETED for that watch.
        let b = cms
            .create(&PostParams::default(), &cm("b", json!({"app": "x"})))
            .await
            .unwrap();
        let mut sel = cms
            .watch(
                &WatchParams::default().labels("app=x").timeout(5),
                b.metadata.resource_version.as_deref().unwrap(),
            )
            .await
            .unwrap()
            .boxed();
        cms.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await
        .unwrap();
        assert!(matches!(sel.try_next().await.unwrap().unwrap(), WatchEvent::Deleted(_)));

        // A compacted resourceVersion is 410 Gone.
        s.store().compact();
        let mut gone = cms
            .watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap()
            .boxed();
        match gone.try_next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => assert_eq!(e.code, 410),
            other => panic!("expected 410, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn reflector_survives_410_gone() {
    run(async {
        let config = StoreConfig {
            history_limit: 5,
            bookmark_interval: Duration::from_millis(200),
        };
        let s = StandIn::start_with(config).await.unwrap();
        let c = client(&s).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        cms.create(&PostParams::default(), &cm("first", json!({})))
            .await
            .unwrap();

        let (reader, writer) = reflector::store::<ConfigMap>();
        let relists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = relists.clone();
        let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .inspect(move |ev| {
                if matches!(ev, Ok(watcher::Event::Init)) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
            .applied_objects()
            .for_each(|_| async {});
        let task = tokio::spawn(stream);
        reader.wait_until_ready().await.unwrap();
        eventually(|| async { (reader.state().len() == 1).then_some(()) }).await;

        // The "API server" becomes unreachable for watches while 20 changes happen: the
        // watcher's resourceVersion falls out of the 5-entry history, so it gets 410 and relists.
        s.store().set_watch_blackout(true);
        for i in 0..20 {
            cms.create(&PostParams::default(), &cm(&format!("during-{i}"), json!({})))
                .await
                .unwrap();
        }
        cms.delete("first", &DeleteParams::default()).await.unwrap();
        s.store().set_watch_blackout(false);

        eventually(|| async {
            (reader.state().len() == 20
                && reader
                    .get(&reflector::ObjectRef::new("first").within("default"))
                    .is_none())
            .then_some(())
        })
        .await;
        assert!(
            relists.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "the watcher re-listed after 410"
        );

        // And it keeps following live changes afterwards.
        cms.create(&PostParams::default(), &cm("after", json!({})))
            .await
            .unwrap();
        eventually(|| async { (reader.state().len() == 21).then_some(()) }).await;
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn custom_resources_status_subresource_and_server_side_apply() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        create_widget_crd(&c).await;
        let api = widgets(&c);
        let w: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "example.dev/v1", "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"color": "blue", "unknown": true},
            "status": {"phase": "ignored-on-create"},
        }))
        .unwrap();
        let created = api.create(&PostParams::default(), &w).await.unwrap();
        // Pruned, defaulted, status dropped, generation 1.
        assert_eq!(created.data["spec"], json!({"color": "blue", "replicas": 1}));
        assert!(created.data.get("status").is_none());
        assert_eq!(created.metadata.generation, Some(1));

        // Server-side apply of status, as the operator does.
        let ssa = PatchParams::apply("canary-operator").force();
        let status = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "status": {"phase": "Ready", "message": "hi",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        let after = api.patch_status("w1", &ssa, &Patch::Apply(&status)).await.unwrap();
        assert_eq!(after.data["status"]["phase"], "Ready");
        assert_eq!(after.metadata.generation, Some(1), "status writes do not bump generation");
        let mf = after.metadata.managed_fields.clone().unwrap();
        assert!(mf.iter().any(|m| m.manager.as_deref() == Some("canary-operator") && m.subresource.as_deref() == Some("status")));

        // Applying again without `message` removes it (the manager owned it), like a real server.
        let status2 = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "status": {"phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True"}]}});
        let after2 = api.patch_status("w1", &ssa, &Patch::Apply(&status2)).await.unwrap();
        assert!(after2.data["status"].get("message").is_none());
        // Re-applying the same thing is a no-op: no new resourceVersion.
        let again = api.patch_status("w1", &ssa, &Patch::Apply(&status2)).await.unwrap();
        assert_eq!(again.metadata.resource_version, after2.metadata.resource_version);

        // The main endpoint ignores status; spec changes bump generation.
        let bumped = api
            .patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"phase": "X"}})))
            .await
            .unwrap();
        assert_eq!(bumped.metadata.generation, Some(2));
        assert_eq!(bumped.data["status"]["phase"], "Ready");
        // /status ignores spec.
        let st = api
            .patch_status("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}, "status": {"phase": "Y"}})))
            .await
            .unwrap();
        assert_eq!(st.data["spec"]["replicas"], 3);
        assert_eq!(st.data["status"]["phase"], "Y");

        // Validation: schema and CEL errors name the field.
        let bad = api
            .patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 11}})))
            .await
            .unwrap_err();
        let Error::Api(e) = bad else { panic!() };
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("spec.replicas"), "{}", e.message);
        let cel = api
            .patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 7}})))
            .await
            .unwrap_err();
        let Error::Api(e) = cel else { panic!() };
        assert!(e.message.contains("more than 5 replicas only for red widgets"), "{}", e.message);

        // Server-side apply of spec by two managers: a conflict unless forced.
        let mine = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"color": "green"}});
        api.patch("w1", &PatchParams::apply("team-a"), &Patch::Apply(&mine)).await.unwrap();
        let theirs = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"color": "red"}});
        let conflict = api.patch("w1", &PatchParams::apply("team-b"), &Patch::Apply(&theirs)).await.unwrap_err();
        assert_eq!(code(conflict).0, 409);
        let forced = api.patch("w1", &PatchParams::apply("team-b").force(), &Patch::Apply(&theirs)).await.unwrap();
        assert_eq!(forced.data["spec"]["color"], "red");

        // Apply creates when absent.
        let fresh = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"color": "red"}});
        let w2 = api.patch("w2", &PatchParams::apply("team-a"), &Patch::Apply(&fresh)).await.unwrap();
        assert_eq!(w2.data["spec"]["replicas"], 1);

        // Deleting the CRD removes its objects and its endpoint.
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(c.clone());
        crds.delete("widgets.example.dev", &DeleteParams::default()).await.unwrap();
        assert_eq!(code(api.get("w1").await.unwrap_err()).0, 404);
    })
    .await;
}

#[tokio::test]
async fn finalizers_and_cascading_deletion() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let mut held = cm("held", json!({}));
        held.metadata.finalizers = Some(vec!["example.dev/cleanup".into()]);
        cms.create(&PostParams::default(), &held).await.unwrap();
        cms.delete("held", &DeleteParams::default()).await.unwrap();
        let deleting = cms.get("held").await.unwrap();
        assert!(deleting.metadata.deletion_timestamp.is_some());
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        assert_eq!(code(cms.get("held").await.unwrap_err()).0, 404);

        // Background cascade through ownerReferences.
        let owner = cms
            .create(&PostParams::default(), &cm("owner", json!({})))
            .await
            .unwrap();
        let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]);
        let mut dep: ConfigMap = cm("dependent", json!({}));
        dep.metadata.owner_references = Some(serde_json::from_value(owner_ref.clone()).unwrap());
        cms.create(&PostParams::default(), &dep).await.unwrap();
        cms.delete("owner", &DeleteParams::background()).await.unwrap();
        assert_eq!(code(cms.get("dependent").await.unwrap_err()).0, 404);

        // Foreground: the owner waits (deletionTimestamp + foregroundDeletion) until dependents are gone.
        let owner = cms
            .create(&PostParams::default(), &cm("owner2", json!({})))
            .await
            .unwrap();
        let mut dep: ConfigMap = cm("dependent2", json!({}));
        dep.metadata.finalizers = Some(vec!["example.dev/slow".into()]);
        dep.metadata.owner_references = Some(
            serde_json::from_value(
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}]),
            )
            .unwrap(),
        );
        cms.create(&PostParams::default(), &dep).await.unwrap();
        cms.delete("owner2", &DeleteParams::foreground()).await.unwrap();
        let waiting = cms.get("owner2").await.unwrap();
        assert!(
            waiting
                .metadata
                .finalizers
                .unwrap()
                .contains(&"foregroundDeletion".to_string())
        );
        assert!(
            cms.get("dependent2")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
        );
        cms.patch(
            "dependent2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        assert_eq!(code(cms.get("owner2").await.unwrap_err()).0, 404);
    })
    .await;
}

/// A minimal Lease lock with the semantics client-go's leader election relies on:
/// acquire by create (409 if someone else did), renew/take over by update with the last
/// seen resourceVersion (409 if someone wrote in between).
async fn try_acquire(leases: &Api<Lease>, me: &str, duration: i32) -> bool {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match leases.get_opt("leader").await.unwrap() {
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": "leader"},
                "spec": {"holderIdentity": me, "leaseDurationSeconds": duration, "acquireTime": now, "renewTime": now},
            }))
            .unwrap();
            leases.create(&PostParams::default(), &lease).await.is_ok()
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
                age.as_secs_f64() > f64::from(spec.lease_duration_seconds.unwrap_or(0))
            });
            if spec.holder_identity.as_deref() != Some(me) && !expired {
                return false;
            }
            spec.holder_identity = Some(me.into());
            spec.renew_time = Some(now);
            match leases.replace("leader", &PostParams::default(), &lease).await {
                Ok(_) => true,
                Err(Error::Api(e)) if e.code == 409 => false,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[tokio::test]
async fn lease_leader_election_between_two_clients() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let a: Api<Lease> = Api::default_namespaced(client(&s).await);
        let b: Api<Lease> = Api::default_namespaced(client(&s).await);
        let (ra, rb) = tokio::join!(try_acquire(&a, "a", 1), try_acquire(&b, "b", 1));
        assert!(ra ^ rb, "exactly one leader: a={ra} b={rb}");
        let (leader, follower, follower_name) = if ra { (&a, &b, "b") } else { (&b, &a, "a") };
        let leader_name = if ra { "a" } else { "b" };
        assert!(try_acquire(leader, leader_name, 1).await, "leader renews");
        assert!(
            !try_acquire(follower, follower_name, 1).await,
            "follower waits while the lease is fresh"
        );

        // Racing renewals: a stale resourceVersion loses with 409.
        let stale = follower.get("leader").await.unwrap();
        assert!(try_acquire(leader, leader_name, 1).await);
        assert_eq!(
            code(
                follower
                    .replace("leader", &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            )
            .0,
            409
        );

        // The leader stops renewing: the follower takes over after the lease duration.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(try_acquire(follower, follower_name, 1).await, "takeover after expiry");
        let lease = a.get("leader").await.unwrap();
        assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some(follower_name));
    })
    .await;
}

#[tokio::test]
async fn events_deployments_and_scale() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        let deployments: Api<Deployment> = Api::default_namespaced(c.clone());
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "api"},
            "spec": {"selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:1"}]}}},
        }))
        .unwrap();
        let created = deployments.create(&PostParams::default(), &d).await.unwrap();
        assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1));
        let scaled = deployments
            .patch_scale("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
            .await
            .unwrap();
        assert_eq!(scaled.spec.unwrap().replicas, Some(3));
        let d = deployments.get("api").await.unwrap();
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
        assert_eq!(d.metadata.generation, Some(2));
        // The "kubelet" (e2e supervisor) reports status through /status.
        let st = deployments
            .patch_status("api", &PatchParams::default(), &Patch::Merge(json!({"status": {"readyReplicas": 3, "replicas": 3}})))
            .await
            .unwrap();
        assert_eq!(st.status.unwrap().ready_replicas, Some(3));
        // Strategic merge patch keeps sibling containers (merge key `name`).
        let sm = deployments
            .patch("api", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:1"}]}}}})))
            .await
            .unwrap();
        assert_eq!(sm.spec.unwrap().template.spec.unwrap().containers.len(), 2);

        // Events through kube-rs' recorder (events.k8s.io/v1).
        use kube::runtime::events::{Event, EventType, Recorder, Reporter};
        let recorder = Recorder::new(c.clone(), Reporter { controller: "canary-operator".into(), instance: None });
        let reference = kube::Resource::object_ref(&d, &());
        for _ in 0..2 {
            recorder
                .publish(
                    &Event {
                        type_: EventType::Normal,
                        reason: "StepAdvanced".into(),
                        note: Some("weight 25".into()),
                        action: "Promote".into(),
                        secondary: None,
                    },
                    &reference,
                )
                .await
                .unwrap();
        }
        let events: Api<K8sEvent> = Api::default_namespaced(c.clone());
        let list = events.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].reason.as_deref(), Some("StepAdvanced"));
        assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
        // One storage, two shapes: `kubectl describe` finds the same event as core/v1 by involvedObject.
        let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(c.clone());
        let found = core
            .list(&ListParams::default().fields("involvedObject.kind=Deployment,involvedObject.name=api"))
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].message.as_deref(), Some("weight 25"));
    })
    .await;
}

#[tokio::test]
async fn controller_reconciles_and_applies_status() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        create_widget_crd(&c).await;
        let api = widgets(&c);
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Widget"), "widgets");

        async fn reconcile(obj: Arc<DynamicObject>, api: Arc<Api<DynamicObject>>) -> Result<Action, Error> {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let status = json!({"apiVersion": "example.dev/v1", "kind": "Widget", "status": {
                "phase": "Seen", "replicas": obj.data["spec"]["replicas"], "observedGeneration": obj.metadata.generation}});
            api.patch_status(&name, &PatchParams::apply("canary-operator").force(), &Patch::Apply(&status)).await?;
            Ok(Action::await_change())
        }
        fn error_policy(_: Arc<DynamicObject>, _: &Error, _: Arc<Api<DynamicObject>>) -> Action {
            Action::requeue(Duration::from_millis(200))
        }
        let controller = Controller::new_with(api.clone(), watcher::Config::default(), ar)
            .run(reconcile, error_policy, Arc::new(api.clone()))
            .for_each(|_| async {});
        let task = tokio::spawn(controller);

        let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.dev/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"color": "red", "replicas": 2}}))
        .unwrap();
        api.create(&PostParams::default(), &w).await.unwrap();
        eventually(|| async { (api.get("w").await.unwrap().data["status"]["replicas"] == 2).then_some(()) }).await;
        api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 8}}))).await.unwrap();
        eventually(|| async { (api.get("w").await.unwrap().data["status"]["replicas"] == 8).then_some(()) }).await;
        // observedGeneration is not in the schema: pruned, as a real server would.
        assert!(api.get("w").await.unwrap().data["status"].get("observedGeneration").is_none());
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    run(async {
        let s = StandIn::start().await.unwrap();
        let c = client(&s).await;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        cms.create(&PostParams::default(), &cm("one", json!({"app": "x"})))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &cm("other", json!({"app": "y"})))
            .await
            .unwrap();
        let (reader, writer) = reflector::store::<ConfigMap>();
        let config = watcher::Config::default().streaming_lists().labels("app=x");
        let task = tokio::spawn(
            reflector(writer, watcher(cms.clone(), config))
                .applied_objects()
                .for_each(|_| async {}),
        );
        reader.wait_until_ready().await.unwrap();
        assert_eq!(reader.state().len(), 1);
        cms.create(&PostParams::default(), &cm("two", json!({"app": "x"})))
            .await
            .unwrap();
        eventually(|| async { (reader.state().len() == 2).then_some(()) }).await;
        task.abort();
    })
    .await;
}
