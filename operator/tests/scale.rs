//! Benchmark (ignored by default; run with `--ignored --nocapture`): the operator binary with
//! `SCALE_N` (default 1,000) CanaryPromotions on a real kube-apiserver: time to start them
//! all, RSS, CPU per reconcile. Use a release binary for figures:
//! `CANARY_OPERATOR_BIN=$PWD/target/release/canary-operator` (an absolute path).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// Promotions to create: `SCALE_N`, default 1,000.
fn n() -> usize {
    std::env::var("SCALE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn proc_stat(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf is always safe to call.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kib, ticks as f64 / hz)
}

async fn reconciles(port: u16) -> f64 {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find(|l| l.starts_with("canary_operator_reconciles_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes of CPU"]
async fn thousand_promotions() {
    let n = n();
    tokio::time::timeout(Duration::from_secs(1800), async {
        let c = Cluster::start().await;
        let prom = ScriptedProm::start().await;
        c.create_deployment("api", OLD_IMAGE, 2).await;
        c.create_deployment("api-canary", NEW_IMAGE, 1).await;
        let interval = std::env::var("SCALE_INTERVAL").unwrap_or_else(|_| "30s".into());
        let creating = Instant::now();
        for i in 0..n {
            c.create_canary_ingress(&format!("ing-{i}")).await;
            let mut s = spec(json!({"nginx": {"canaryIngress": format!("ing-{i}")}}), &prom.address, "6h", "10m");
            s["interval"] = json!(interval);
            let cp: canary_operator::CanaryPromotion = serde_json::from_value(json!({
                "apiVersion": "scholarship.dev/v1alpha1", "kind": "CanaryPromotion",
                "metadata": {"name": format!("promo-{i}")}, "spec": s})).unwrap();
            c.cps().create(&PostParams::default(), &cp).await.unwrap();
        }
        eprintln!("created {n} Ingresses and {n} CanaryPromotions in {:?}", creating.elapsed());
        let port = testkit::free_port();
        let bin = std::env::var("CANARY_OPERATOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_canary-operator").into());
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .env("KUBECONFIG", &c.operator_kubeconfig)
            .env("CANARY_OPERATOR_NAMESPACE", &c.ns)
            .env("CANARY_OPERATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("CANARY_OPERATOR_LEADER_ELECTION", "false")
            .env("CANARY_OPERATOR_MIN_WINDOW", "2s")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = testkit::ManagedChild::spawn(cmd, libc::SIGTERM).unwrap();
        let pid = child.id();
        let started = Instant::now();
        loop {
            let list = c.cps().list(&ListParams::default()).await.unwrap();
            let progressing = list.items.iter().filter(|cp| cp.status.as_ref().is_some_and(|s| s.current_step == 1)).count();
            if progressing == n {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(900), "only {progressing}/{n} started");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ramp = started.elapsed();
        let (rss_ramp, cpu_ramp) = proc_stat(pid);
        let r0 = reconciles(port).await;
        let steady = Duration::from_secs(std::env::var("SCALE_STEADY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60));
        let mut peak = rss_ramp;
        let t0 = Instant::now();
        while t0.elapsed() < steady {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(proc_stat(pid).0);
        }
        let (rss, cpu) = proc_stat(pid);
        let r1 = reconciles(port).await;
        let reconciled = r1 - r0;
        let cpu_steady = cpu - cpu_ramp;
        eprintln!("binary: {bin}");
        eprintln!("{n} promotions started (status written, weight applied) in {ramp:?}; CPU {cpu_ramp:.2}s, RSS {} MiB", rss_ramp / 1024);
        eprintln!(
            "steady {steady:?} at interval {interval}: {reconciled} reconciles, CPU {cpu_steady:.2}s = {:.2} ms/reconcile ({:.1}% of a core); RSS {} MiB (peak {} MiB)",
            cpu_steady * 1000.0 / reconciled.max(1.0),
            cpu_steady * 100.0 / steady.as_secs_f64(),
            rss / 1024,
            peak / 1024
        );
        drop(child);
    })
    .await
    .expect("benchmark timed out");
}
