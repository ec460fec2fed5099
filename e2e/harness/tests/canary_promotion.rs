//! The whole scenario with the real binaries: PostgreSQL, Redis, Prometheus, two
//! `scholarship-api` processes, the ingress and kubelet stand-ins, load, and the real
//! `canary-operator` on a real kube-apiserver. A good release must walk 10/30/60/100 and end
//! `Promoted`, with the stable Deployment on the canary image and no 5xx; a bad one (its
//! database unreachable) must be rolled back by the 5xx criterion, stable untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use canary_e2e::manifests::{CANARY_IMAGE, NAMESPACE, STABLE_IMAGE};
use canary_e2e::processes::Binaries;
use canary_e2e::scenario::{CanaryRelease, ScenarioConfig, ScenarioReport, Stack};

/// One scenario at a time: each runs a whole stack, and two at once on two cores would
/// measure the machine, not the operator.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The profile directory this test was built into (`<target>/debug`): the test binary lives
/// in its `deps/`, wherever `CARGO_TARGET_DIR` put it.
fn debug_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("<target>/debug/deps/<test>")
        .to_path_buf()
}

/// The debug binaries of the two other packages. `CARGO_BIN_EXE_*` covers only this
/// package's binaries, so they are built here when missing (`cargo test --workspace` has
/// built them already). Set `CANARY_E2E_REBUILD=1` to rebuild them even when present.
fn binaries() -> Binaries {
    let binaries = Binaries::in_dir(&debug_dir());
    let rebuild = std::env::var("CANARY_E2E_REBUILD").is_ok_and(|v| v == "1");
    if rebuild || binaries.check().is_err() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "scholarship-api", "-p", "canary-operator"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p scholarship-api -p canary-operator failed"
        );
    }
    binaries.check().expect("the binaries exist after the build");
    binaries
}

/// Runs one scenario to a terminal phase, one at a time, bounded by its timeout plus a
/// minute: what `kubectl get canarypromotions -o wide` shows at the end (the printer columns
/// through the real kubectl, as a person would see them), the report, and the report rendered
/// (printed too, for a failing assertion's context).
async fn run_scenario(config: ScenarioConfig) -> (String, ScenarioReport, String) {
    let _serial = ONE_AT_A_TIME.lock().await;
    canary_e2e::install_crypto_provider();
    canary_e2e::init_logging("warn");
    let timeout = config.timeout;
    let (table, report) = tokio::time::timeout(timeout + Duration::from_secs(60), async {
        let stack = Stack::start(config, |line| eprintln!("started: {line}")).await.unwrap();
        stack.wait_for_terminal_phase(timeout).await;
        let table = stack
            .kubectl(&["get", "canarypromotions", "-n", NAMESPACE, "-o", "wide"])
            .await
            .unwrap();
        (table, stack.finish().await.unwrap())
    })
    .await
    .expect("the scenario finished within its timeout and a minute");
    let rendered = report.render();
    eprintln!("{rendered}");
    (table, report, rendered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_walks_every_step_and_is_promoted_without_errors() {
    let started = Instant::now();
    let mut config = ScenarioConfig::demo(binaries());
    config.timeout = Duration::from_secs(180);
    let rate = config.requests_per_second;
    let max_requests = u64::from(rate) * (config.timeout.as_secs() + 30);
    let (table, report, rendered) = run_scenario(config).await;

    assert_eq!(report.phase, "Promoted", "{rendered}");
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.split_whitespace().take(3).eq(["scholarship-api", "Promoted", "0"]),
        "kubectl shows: {table}"
    );
    assert_eq!(report.stable_image.as_deref(), Some(CANARY_IMAGE), "{rendered}");
    assert_eq!(report.canary_weights_seen(), [10, 30, 60, 100], "{rendered}");
    let last = report.segments.last().unwrap();
    assert_eq!(last.weight.weight, 0, "weight back to 0 after promotion: {rendered}");
    for segment in report.segments.iter().filter(|s| s.weight.weight > 0) {
        assert!(
            segment.split.canary.requests > 0,
            "canary got no traffic at {:?}",
            segment.weight
        );
        if segment.split.requests() >= 200 {
            let want = segment.weight.percent() / 100.0;
            let share = segment.split.canary_share();
            assert!((share - want).abs() < 0.1, "share {share} at weight {want}: {rendered}");
        }
    }
    assert_eq!(
        report.ingress_totals.failures(),
        0,
        "5xx through the ingress: {rendered}"
    );
    assert_eq!(report.load.server_errors(), 0, "{rendered}");
    assert_eq!(report.load.transport_errors, 0, "{rendered}");
    assert!(report.load.sent > 0 && report.load.sent <= max_requests, "{rendered}");
    let reasons: Vec<&str> = report.events.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        reasons.contains(&"Started") && reasons.contains(&"Promoted"),
        "{rendered}"
    );
    assert!(
        report
            .rollouts
            .iter()
            .any(|r| r.deployment == "scholarship-api" && r.image.as_deref() == Some(CANARY_IMAGE)),
        "{rendered}"
    );
    assert!(started.elapsed() < Duration::from_secs(240));
}

/// Runs the demo with a bad `release` and checks it ended RolledBack by the `metric`
/// criterion, named in the status message; returns the scenario and that criterion's row.
async fn rolled_back_by(release: CanaryRelease, metric: &str) -> (String, ScenarioReport, String, serde_json::Value) {
    let mut config = ScenarioConfig::demo(binaries());
    config.canary = release;
    config.timeout = Duration::from_secs(120);
    let (table, report, rendered) = run_scenario(config).await;
    assert_eq!(report.phase, "RolledBack", "{rendered}");
    let message = report.status["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("rollback: {metric} ")), "{rendered}");
    let criterion = report.status["rollback"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["metric"] == metric))
        .cloned()
        .unwrap_or_else(|| panic!("no {metric} criterion: {rendered}"));
    (table, report, rendered, criterion)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_loses_its_database_is_rolled_back_by_the_5xx_criterion() {
    let (table, report, rendered, criterion) = rolled_back_by(CanaryRelease::BrokenDatabase, "errorRate5xx").await;
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.split_whitespace()
            .take(3)
            .eq(["scholarship-api", "RolledBack", "0"]),
        "kubectl shows: {table}"
    );
    // The criterion, its value and its threshold are in status and in the Events.
    assert!(criterion["value"].as_f64().unwrap_or_default() > 0.05, "{rendered}");
    assert!(
        report
            .events
            .iter()
            .any(|e| e.reason == "RollbackStarted" && e.note.contains("errorRate5xx")),
        "{rendered}"
    );
    // Never past the first step, stable untouched, the canary dark at the end.
    assert_eq!(report.canary_weights_seen(), [10], "{rendered}");
    assert_eq!(report.stable_image.as_deref(), Some(STABLE_IMAGE), "{rendered}");
    assert_eq!(report.segments.last().unwrap().weight.weight, 0, "{rendered}");
    assert_eq!(report.segments.last().unwrap().split.canary.requests, 0, "{rendered}");
    // The stable track served throughout: every failure was the canary's.
    assert_eq!(report.ingress_totals.stable.status_5xx, 0, "{rendered}");
    // for: 20s, plus an interval (2 s), the metric window (10 s) and the scrape (1 s), at most.
    let took = report.canary_exposure().expect("a rollback and a weight of 0");
    eprintln!("bad canary exposed to users: {took:?}");
    assert!(took < Duration::from_secs(40), "{took:?}: {rendered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_turns_slow_is_rolled_back_by_the_latency_criterion_without_a_single_5xx() {
    let (_, report, rendered, criterion) = rolled_back_by(CanaryRelease::SlowDatabase, "p95LatencyMs").await;
    assert!(criterion["value"].as_f64().unwrap_or_default() > 1000.0, "{rendered}");
    // Slow, never failing: not one 5xx or transport error on either track.
    assert_eq!(report.ingress_totals.failures(), 0, "{rendered}");
    assert_eq!(report.load.server_errors(), 0, "{rendered}");
    assert_eq!(report.canary_weights_seen(), [10], "{rendered}");
    assert_eq!(report.stable_image.as_deref(), Some(STABLE_IMAGE), "{rendered}");
    // for: 30s, plus an interval, the metric window and the scrape, at most.
    let took = report.canary_exposure().expect("a rollback and a weight of 0");
    eprintln!("slow canary exposed to users: {took:?}");
    assert!(took < Duration::from_secs(50), "{took:?}: {rendered}");
}

/// A Redis failover (Sentinel; TLS and AUTH on every Redis) while the canary carries traffic:
/// both tracks follow the Sentinels to the new primary, not one request fails on either, the
/// operator's Redis probe follows too, and nothing rolls back (no criterion's window is
/// reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_failover_during_the_canary_costs_no_5xx_and_no_rollback() {
    let _serial = ONE_AT_A_TIME.lock().await;
    canary_e2e::install_crypto_provider();
    canary_e2e::init_logging("warn");
    let mut config = ScenarioConfig::demo(binaries());
    config.redis_sentinels = true;
    config.timeout = Duration::from_secs(180);
    let timeout = config.timeout;
    let (failover, report) = tokio::time::timeout(timeout + Duration::from_secs(60), async {
        let stack = Stack::start(config, |line| eprintln!("started: {line}")).await.unwrap();
        // Once the canary carries real traffic (its second step), fail Redis over.
        let deadline = Instant::now() + timeout;
        while stack.promotion_status().await.unwrap()["weight"].as_u64().unwrap_or(0) < 30 {
            assert!(Instant::now() < deadline, "the canary never reached 30 %");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let at = stack.elapsed();
        let (from, to) = stack.redis_failover(Duration::from_secs(60)).await.unwrap();
        let failover = format!("Redis primary {from} → {to}, {:.1} s into the run", at.as_secs_f64());
        eprintln!("{failover}");
        stack.wait_for_terminal_phase(timeout).await;
        (failover, stack.finish().await.unwrap())
    })
    .await
    .expect("the scenario finished within its timeout and a minute");
    let rendered = report.render();
    eprintln!("{rendered}\n{failover}");
    assert_eq!(report.phase, "Promoted", "{rendered}");
    assert_eq!(report.canary_weights_seen(), [10, 30, 60, 100], "{rendered}");
    assert_eq!(
        report.ingress_totals.failures(),
        0,
        "5xx through the ingress: {rendered}"
    );
    assert_eq!(report.load.server_errors(), 0, "{rendered}");
    assert_eq!(report.load.transport_errors, 0, "{rendered}");
    assert!(
        !report.events.iter().any(|e| e.reason.starts_with("Rollback")),
        "{rendered}"
    );
}
