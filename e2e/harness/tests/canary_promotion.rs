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
    // The operator's own probes judged the pods through their EndpointSlices: Redis rows,
    // the cross-pod replay check (canary and stable pod) and the rate-limit burst, each 1.
    for gate in [
        "redis.tls",
        "redis.auth",
        "redis.replica",
        "replayProtection.crossPod",
        "rateLimit.crossPod",
    ] {
        let row = report.status["gates"]
            .as_array()
            .and_then(|rows| rows.iter().find(|g| g["name"] == gate))
            .unwrap_or_else(|| panic!("no {gate} row: {rendered}"));
        assert_eq!(
            (&row["state"], row["value"].as_f64()),
            (&serde_json::json!("Passing"), Some(1.0)),
            "{row}"
        );
    }
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
        wait_for_weight(&stack, 30, Instant::now() + timeout).await;
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

/// Waits (bounded by `deadline`) until the canary carries `percent` of the traffic.
async fn wait_for_weight(stack: &Stack, percent: u64, deadline: Instant) {
    while stack.promotion_status().await.unwrap()["weight"].as_u64().unwrap_or(0) < percent {
        assert!(Instant::now() < deadline, "the canary never reached {percent} %");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the rollback criterion on `metric` to see a breach and then clear it, bounded by
/// `limit`; returns how long status showed the breach. The rollback must not start meanwhile.
async fn breach_seen_and_cleared(stack: &Stack, metric: &str, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    let mut seen: Option<Instant> = None;
    loop {
        let status = stack.promotion_status().await.unwrap();
        let phase = status["phase"].as_str().unwrap_or_default().to_owned();
        assert!(
            !phase.starts_with("Roll"),
            "{metric}: rolled back on a breach shorter than its window: {status}"
        );
        let breached = status["rollback"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["metric"] == metric))
            .is_some_and(|c| c["breachSince"].is_string());
        match (seen, breached) {
            (None, true) => seen = Some(Instant::now()),
            (Some(since), false) => return since.elapsed(),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{metric}: breach seen: {}, not cleared within {limit:?}: {status}",
            seen.is_some()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The runbook's game day at the canary's first two steps (Sentinel, TLS and AUTH on Redis; a
/// model stand-in behind recommendations): the canary's process is killed and restarted, Redis
/// fails over, the model is throttled for a few seconds and then for good. Each fault gets its
/// expected verdict: the restart costs a few 502s at the ingress and no rollback, the failover
/// costs nothing, the short throttle breaches the model fallback criterion for less than its
/// window (no rollback), and the lasting throttle rolls the canary back on that criterion
/// once, and only once, its 30 s window is reached. Recommendations stay answered
/// (rule-based) throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn game_day_every_fault_gets_its_verdict_and_only_a_lasting_model_throttle_rolls_back() {
    let _serial = ONE_AT_A_TIME.lock().await;
    canary_e2e::install_crypto_provider();
    canary_e2e::init_logging("warn");
    let s = Duration::from_secs;
    let mut config = ScenarioConfig::demo(binaries());
    config.redis_sentinels = true;
    config.model = true;
    config.steps = vec![(10, s(20)), (30, s(200)), (100, s(5))];
    config.progress_deadline = s(240);
    config.timeout = s(240);
    let timeout = config.timeout;
    let mut log = Vec::new();
    let (throttled_at, failures_after_restart, model_calls, report) = tokio::time::timeout(timeout + s(60), async {
        let mut stack = Stack::start(config, |line| eprintln!("started: {line}")).await.unwrap();
        let deadline = Instant::now() + timeout;

        // 1. At 10 %, the canary's pod is killed and its container restarted a second later.
        wait_for_weight(&stack, 10, deadline).await;
        tokio::time::sleep(s(4)).await;
        let at = stack.elapsed();
        let down = stack.kill_and_restart_canary(s(1)).await.unwrap();
        let failures = stack.ingress().totals();
        // The requests the dead process never got are the ingress's 502s, not the API's: its
        // own counters restart from zero and show no error at all, so the SLIs stay green.
        tokio::time::sleep(s(5)).await;
        let status = stack.promotion_status().await.unwrap();
        assert_eq!(status["phase"], "Progressing", "after the restart: {status}");
        log.push(format!(
            "{:.1} s: canary killed, answering again after {:.1} s: {} requests failed at the ingress \
             (502, canary only); the API's own metrics saw none: no rollback",
            at.as_secs_f64(),
            down.as_secs_f64(),
            failures.canary.status_5xx + failures.canary.transport_errors,
        ));

        // 2. At 30 %, Redis fails over.
        wait_for_weight(&stack, 30, deadline).await;
        let at = stack.elapsed();
        let (from, to) = stack.redis_failover(s(60)).await.unwrap();
        log.push(format!("{:.1} s: Redis primary {from} → {to}", at.as_secs_f64()));

        // 3. The model is throttled for 4 s: a breach shorter than the 30 s window.
        let model = stack.model().unwrap();
        let at = stack.elapsed();
        model.set_throttled(true);
        tokio::time::sleep(s(4)).await;
        model.set_throttled(false);
        let breach = breach_seen_and_cleared(&stack, "openaiFallbackRate", s(60)).await;
        log.push(format!(
            "{:.1} s: model throttled for 4 s; openaiFallbackRate breached for {:.1} s (window 30 s): no rollback",
            at.as_secs_f64(),
            breach.as_secs_f64()
        ));
        let status = stack.promotion_status().await.unwrap();
        assert_eq!(status["weight"], 30, "still at the second step: {status}");

        // 4. The model is throttled for good.
        let throttled_at = stack.elapsed();
        model.set_throttled(true);
        log.push(format!("{:.1} s: model throttled for good", throttled_at.as_secs_f64()));
        stack
            .wait_for_terminal_phase(deadline.saturating_duration_since(Instant::now()))
            .await;
        let model_calls = (model.answered(), model.refused());
        (throttled_at, failures, model_calls, stack.finish().await.unwrap())
    })
    .await
    .expect("the game day finished within its timeout and a minute");
    let rendered = report.render();
    let log = log.join("\n");
    eprintln!("{rendered}\n{log}");

    assert_eq!(report.phase, "RolledBack", "{rendered}\n{log}");
    let message = report.status["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("rollback: openaiFallbackRate "), "{rendered}");
    assert_eq!(report.canary_weights_seen(), [10, 30], "{rendered}");
    assert_eq!(report.stable_image.as_deref(), Some(STABLE_IMAGE), "{rendered}");
    assert_eq!(report.segments.last().unwrap().weight.weight, 0, "{rendered}");
    // The rollback came once the window was reached, not before, and not much after: the
    // breach shows within an interval, the metric window and a scrape.
    let rolling_back = report
        .timeline
        .iter()
        .find(|c| c.phase.starts_with("Roll"))
        .expect("a rollback phase in the timeline")
        .at;
    let took = rolling_back.saturating_sub(throttled_at);
    eprintln!("model throttled for good → rollback started: {took:?}");
    assert!(took >= s(30), "{took:?}: {rendered}\n{log}");
    assert!(took < s(50), "{took:?}: {rendered}\n{log}");
    // Graceful: the stable track never failed, and after the restart neither did the canary
    // (the failover and the throttle cost no 5xx); recommendations were answered throughout.
    assert_eq!(report.ingress_totals.stable.status_5xx, 0, "{rendered}");
    assert_eq!(report.ingress_totals.stable.transport_errors, 0, "{rendered}");
    assert_eq!(
        report.ingress_totals.failures(),
        failures_after_restart.failures(),
        "failures after the restart: {rendered}\n{log}"
    );
    assert_eq!(report.load.transport_errors, 0, "{rendered}");
    assert_eq!(
        report.load.server_errors(),
        failures_after_restart.failures(),
        "{rendered}"
    );
    let (answered, refused) = model_calls;
    assert!(
        answered > 0 && refused > 0,
        "model answered {answered}, refused {refused}"
    );
    assert!(
        !report
            .events
            .iter()
            .any(|e| e.reason == "RollbackStarted" && !e.note.contains("openaiFallbackRate")),
        "{rendered}"
    );
}
