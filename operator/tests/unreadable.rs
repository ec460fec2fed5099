//! One CanaryPromotion this version cannot read (stored under an older, looser schema) must
//! not stall the others: it gets a Warning Event naming the field, the rest are reconciled.
//! This test binary installs that looser CRD on its own API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use canary_operator::CanaryPromotion;
use common::*;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::CustomResourceExt;
use serde_json::json;

/// The CRD with a spec that accepts anything, as an old version of the schema might have.
async fn install_loose_crd() {
    let server = testkit::KubeApiServer::shared().unwrap();
    let client = testkit::kube::client(&server.kubeconfig()).await.unwrap();
    let mut crd = serde_json::to_value(CanaryPromotion::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_promotion_is_reported_and_the_others_still_promote() {
    tokio::time::timeout(Duration::from_secs(60), async {
        install_loose_crd().await;
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_nginx_scene().await;
        let resource = kube::api::ApiResource::erase::<CanaryPromotion>(&());
        let raw: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &c.ns, &resource);
        let mut old = spec(nginx(), &prom.address, "1s", "2s");
        old["steps"][0]["weight"] = json!("ten");
        // Reconciled once, before the schema changed: it carries our finalizer.
        let object = json!({"apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                            "metadata": {"name": "old", "finalizers": ["scholarship.dev/restore-stable"]},
                            "spec": old});
        raw.create(&PostParams::default(), &serde_json::from_value(object).unwrap())
            .await
            .unwrap();

        let op = InProcess::start(&c).await;
        c.create_cp("promo", spec(nginx(), &prom.address, "1s", "2s")).await;
        c.wait_phase("promo", "Promoted", Duration::from_secs(30)).await;

        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client.clone(), &c.ns);
        let note = eventually(Duration::from_secs(10), "the InvalidObject event", || async {
            events
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("InvalidObject")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("old")
                })
                .and_then(|e| e.note)
        })
        .await;
        assert!(note.contains("spec.steps[0].weight: invalid type"), "{note}");
        // Left alone: no status written.
        let old = raw.get("old").await.unwrap();
        assert!(old.data.get("status").is_none());
        // Deleting it does not hang on the finalizer the operator can no longer act on.
        raw.delete("old", &Default::default()).await.unwrap();
        eventually(Duration::from_secs(10), "the unreadable object to go", || async {
            raw.get_opt("old").await.unwrap().is_none().then_some(())
        })
        .await;
        op.shutdown().await;
    })
    .await
    .expect("test timed out");
}
