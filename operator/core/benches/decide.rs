//! Cost of `decide`: one call in a typical Progressing state, and 10,000 promotions each
//! decided once per tick (the per-interval work of an operator watching 10,000 objects).

use std::hint::black_box;

use canary_core::{CanaryPromotionStatus, DeploymentObservation, Observation, PromotionSpec, Reading, decide};
use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

fn spec() -> PromotionSpec {
    let yaml_like = serde_json::json!({
        "stable": {"deployment": "scholarship-api"},
        "canary": {"deployment": "scholarship-api-canary", "image": "registry.example/scholarship-api:v1.5.0"},
        "traffic": {"nginx": {"canaryIngress": "scholarship-api-canary"}},
        "steps": [{"weight": 5, "bake": "10m"}, {"weight": 25, "bake": "6h"},
                  {"weight": 50, "bake": "6h"}, {"weight": 100, "bake": "30m"}],
        "metrics": {"prometheus": {"address": "http://prometheus.monitoring:9090"}},
        "gates": {
            "sli": {"availability": ">= 0.999", "p95LatencyMs": "<= 220", "errorRate5xx": "<= 0.005", "rateLimited429": "<= 0.01"},
            "redis": {"secretRef": "redis", "requireTls": true, "requireAuth": true, "requireReplica": true,
                      "p95LatencyMs": "< 10", "fragmentationRatio": "< 1.5", "evictedKeys": "== 0", "limiterErrors": "== 0"},
            "replayProtection": {"probe": {"tokenSecretRef": "probe"}},
            "custom": [{"name": "openai-fallback", "query": "q", "condition": "< 0.05"}]
        },
        "rollback": [
            {"metric": "p95LatencyMs", "above": 250, "for": "10m"}, {"metric": "errorRate5xx", "above": 0.01, "for": "10m"},
            {"metric": "limiterRedisErrors", "above": 0, "for": "5m"}, {"metric": "rateLimited429", "above": 0.02, "for": "10m"},
            {"metric": "openaiFallbackRate", "above": 0.10, "for": "10m"}, {"metric": "dbPoolUtilization", "above": 0.85, "for": "5m"}
        ]
    });
    serde_json::from_value(yaml_like).expect("valid spec")
}

fn observation() -> Observation {
    let mut obs = Observation {
        generation: 1,
        router_weight: Some(25),
        stable: DeploymentObservation {
            image: Some("registry.example/scholarship-api:v1.4.2".into()),
            available: true,
        },
        canary_image: Some("registry.example/scholarship-api:v1.5.0".into()),
        ..Observation::default()
    };
    let green = [
        ("sli.availability", 0.9995),
        ("sli.p95LatencyMs", 180.0),
        ("sli.errorRate5xx", 0.001),
        ("sli.rateLimited429", 0.002),
        ("redis.tls", 1.0),
        ("redis.auth", 1.0),
        ("redis.replica", 1.0),
        ("redis.p95LatencyMs", 2.0),
        ("redis.fragmentationRatio", 1.1),
        ("redis.evictedKeys", 0.0),
        ("redis.limiterErrors", 0.0),
        ("replayProtection", 0.0),
        ("custom.openai-fallback", 0.01),
    ];
    for (name, value) in green {
        obs.gates.insert(name.into(), Reading::Value { value, samples: 1000 });
    }
    for (name, value) in [
        ("p95LatencyMs", 180.0),
        ("errorRate5xx", 0.001),
        ("limiterRedisErrors", 0.0),
        ("rateLimited429", 0.002),
        ("openaiFallbackRate", 0.01),
        ("dbPoolUtilization", 0.4),
    ] {
        obs.criteria
            .insert(name.into(), Reading::Value { value, samples: 1000 });
    }
    obs
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    let obs = observation();
    let t0 = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).single().expect("valid time");
    // Walk into step 2 (25 %, mid-bake) so the measured call is a typical Progressing tick.
    let mut status = CanaryPromotionStatus::default();
    let mut now = t0;
    while now < t0 + TimeDelta::hours(1) {
        status = decide(&spec, &status, &obs, now).status;
        now += TimeDelta::seconds(30);
    }
    assert_eq!(status.weight, 25);

    c.bench_function("decide/progressing_tick", |b| {
        b.iter(|| decide(black_box(&spec), black_box(&status), black_box(&obs), black_box(now)))
    });

    let fleet: Vec<CanaryPromotionStatus> = (0..10_000).map(|_| status.clone()).collect();
    c.bench_function("decide/10000_promotions_one_tick", |b| {
        b.iter(|| {
            let mut weights = 0u64;
            for st in &fleet {
                weights += u64::from(decide(&spec, st, &obs, now).weight);
            }
            black_box(weights)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
