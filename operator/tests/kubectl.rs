//! What a platform engineer types, through the real kubectl against a real kube-apiserver:
//! everyday commands, `kubectl explain` on the CRD, and `kubectl auth can-i` for the operator's
//! ServiceAccount, which must be allowed exactly what the RBAC of `charts/canary-operator` grants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_commands_work() {
    bounded(async {
        let c = Cluster::start().await;
        // kubectl sends protobuf for these: a real server speaks it.
        c.kubectl(
            &[
                "create",
                "secret",
                "generic",
                "redis-credentials",
                "--from-literal=password=s3cret",
            ],
            None,
        )
        .await
        .unwrap();
        c.kubectl(
            &["create", "configmap", "settings", "--from-literal=track=canary"],
            None,
        )
        .await
        .unwrap();
        c.kubectl(
            &[
                "create",
                "deployment",
                "api",
                "--image=registry.example/api:v1",
                "--replicas=2",
            ],
            None,
        )
        .await
        .unwrap();
        let secret = c
            .kubectl(
                &["get", "secret", "redis-credentials", "-o", "jsonpath={.data.password}"],
                None,
            )
            .await
            .unwrap();
        assert_eq!(secret, "czNjcmV0", "base64 of s3cret");
        let image = c
            .kubectl(
                &[
                    "get",
                    "deployment",
                    "api",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
                None,
            )
            .await
            .unwrap();
        assert_eq!(image, "registry.example/api:v1");
        let namespaces = c.kubectl(&["get", "namespaces", "-o", "name"], None).await.unwrap();
        assert!(namespaces.contains(&format!("namespace/{}", c.ns)), "{namespaces}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_describes_the_crd_fields() {
    bounded(async {
        let c = Cluster::start().await;
        let spec = eventually(Duration::from_secs(20), "the CRD's OpenAPI to be published", || async {
            c.kubectl(&["explain", "canarypromotion.spec"], None).await.ok()
        })
        .await;
        for field in ["steps", "interval", "traffic", "gates", "rollback", "promotion"] {
            assert!(spec.contains(field), "{field} missing from:\n{spec}");
        }
        let interval = c.kubectl(&["explain", "canprom.spec.interval"], None).await.unwrap();
        assert!(interval.contains("at least"), "{interval}");
        let short = c.kubectl(&["get", "canprom"], None).await;
        assert!(short.is_ok(), "short name canprom: {short:?}");
    })
    .await;
}

/// `kubectl auth can-i` as the operator: every rule of the manifest holds, and nothing
/// broader slipped in (no Secrets outside bound namespaces, no deletes, no spec updates of its
/// own resource).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_account_may_do_exactly_what_the_manifest_grants() {
    bounded(async {
        let c = Cluster::start().await;
        let operator = format!("--as=system:serviceaccount:{OPERATOR_NAMESPACE}:canary-operator");
        let can = |verb: &'static str, resource: &'static str, namespace: String| {
            let operator = operator.clone();
            let c = &c;
            async move {
                let out = c
                    .kubectl(&["auth", "can-i", verb, resource, &operator, "-n", &namespace], None)
                    .await;
                // can-i exits 1 for "no": stdout says which.
                match out {
                    Ok(answer) => answer.trim() == "yes",
                    Err(e) => {
                        assert!(e.trim().is_empty() || e.contains("no"), "can-i failed: {e}");
                        false
                    }
                }
            }
        };
        let ns = c.ns.clone();
        let granted = [
            ("get", "canarypromotions.scholarship.dev"),
            ("watch", "canarypromotions.scholarship.dev"),
            ("patch", "canarypromotions.scholarship.dev"),
            ("patch", "canarypromotions.scholarship.dev/status"),
            ("patch", "deployments.apps"),
            ("watch", "ingresses.networking.k8s.io"),
            ("update", "httproutes.gateway.networking.k8s.io"),
            ("list", "endpointslices.discovery.k8s.io"),
            ("create", "events.events.k8s.io"),
        ];
        for (verb, resource) in granted {
            assert!(can(verb, resource, ns.clone()).await, "{verb} {resource} not granted");
        }
        let refused = [
            ("get", "secrets"),
            ("list", "pods"),
            ("delete", "deployments.apps"),
            ("create", "deployments.apps"),
            ("update", "canarypromotions.scholarship.dev"),
            ("delete", "canarypromotions.scholarship.dev"),
        ];
        for (verb, resource) in refused {
            assert!(!can(verb, resource, ns.clone()).await, "{verb} {resource} granted");
        }
        // Secrets only where a RoleBinding grants them (the manifest's example: `scholarship`).
        assert!(can("get", "secrets", "scholarship".to_owned()).await);
        assert!(!can("list", "secrets", "scholarship".to_owned()).await);
        // Leases only in its own namespace.
        assert!(can("update", "leases.coordination.k8s.io", OPERATOR_NAMESPACE.to_owned()).await);
        assert!(!can("update", "leases.coordination.k8s.io", ns.clone()).await);
    })
    .await;
}
