//! Throughput and tail latency of the real binary under `wrk` on loopback, with the rate
//! limiter off and on, plus Redis commands per request from `INFO commandstats`.
//!
//! `cargo bench -p scholarship-api --bench http_throughput` (needs wrk: scripts/setup.sh).
//! Prints figures; asserts nothing about speed (the machine decides those).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{ManagedChild, Postgres, RedisOptions, RedisServer, free_port, wait_for_tcp};

const DURATION: &str = "10s";
const CONNECTIONS: &str = "32";
const ROUNDS: usize = 3;

struct Figures {
    requests: u64,
    per_second: f64,
    p99_ms: f64,
}

fn main() {
    let pg = Postgres::shared();
    let redis = RedisServer::start(RedisOptions::default()).unwrap();
    let db = pg.fresh_database();
    let off = start_api(&db, &[]);
    let on = start_api(
        &db,
        &["--redis-url", &redis.url(), "--rate-limits", "default=1000000000/60s"],
    );
    let id = first_scholarship_id(off.1);
    let path = format!("/api/v1/scholarships/{id}");

    println!(
        "GET {path} — wrk -t2 -c{CONNECTIONS} -d{DURATION}, release build, loopback, 2 cores shared by wrk, API, PostgreSQL, Redis"
    );
    warm(off.1, &path);
    warm(on.1, &path);
    // Alternate the two so drift on a shared machine hits both alike.
    let (mut baseline, mut limited) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let f = wrk(off.1, &path);
        report(&format!("round {round} limiter off"), &f);
        baseline.push(f);
        redis.cli(&["CONFIG", "RESETSTAT"]).unwrap();
        let f = wrk(on.1, &path);
        report(&format!("round {round} limiter on "), &f);
        let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
        let round_trips = calls(&stats, "evalsha") + calls(&stats, "eval") + calls(&stats, "script|load");
        println!(
            "    redis round trips per request: {:.4} ({round_trips} for {} requests; INCR inside the script: {})",
            round_trips as f64 / f.requests as f64,
            f.requests,
            calls(&stats, "incr")
        );
        limited.push(f);
    }
    let (off_rps, on_rps) = (median(&baseline, |f| f.per_second), median(&limited, |f| f.per_second));
    println!(
        "median: limiter off {off_rps:.0} req/s (p99 {:.2} ms), on {on_rps:.0} req/s (p99 {:.2} ms); throughput cost {:.1} %",
        median(&baseline, |f| f.p99_ms),
        median(&limited, |f| f.p99_ms),
        100.0 * (1.0 - on_rps / off_rps)
    );
    drop((off, on));
}

fn start_api(database_url: &str, extra: &[&str]) -> (ManagedChild, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scholarship-api"));
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
            "--log-filter",
            "warn",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = ManagedChild::spawn(command, libc::SIGTERM).unwrap();
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(30)).unwrap();
    for _ in 0..300 {
        if curl(port, "/readyz").contains("\"ready\"") {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("API on {port} never became ready");
}

fn curl(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn first_scholarship_id(port: u16) -> String {
    let body = curl(port, "/api/v1/scholarships?page_size=1");
    let start = body.find("\"id\":\"").unwrap() + 6;
    body[start..start + 36].to_owned()
}

fn warm(port: u16, path: &str) {
    let _ = Command::new("wrk")
        .args(["-t1", "-c8", "-d2s", &format!("http://127.0.0.1:{port}{path}")])
        .output();
}

fn wrk(port: u16, path: &str) -> Figures {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{DURATION}"),
            "--latency",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk (install with scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("unexpected wrk output:\n{text}"));
    let per_second = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    let p99_ms = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| parse_latency(l.split_whitespace().nth(1)?))
        .unwrap();
    if text.contains("Non-2xx") {
        println!("warning: wrk saw non-2xx responses:\n{text}");
    }
    Figures {
        requests,
        per_second,
        p99_ms,
    }
}

fn parse_latency(raw: &str) -> Option<f64> {
    let (number, unit) = raw.split_at(raw.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// `calls=` of one command in `INFO commandstats`.
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn median(figures: &[Figures], pick: impl Fn(&Figures) -> f64) -> f64 {
    let mut values: Vec<f64> = figures.iter().map(pick).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(label: &str, f: &Figures) {
    println!(
        "{label}: {:>9.0} req/s   p99 {:>7.2} ms   ({} requests)",
        f.per_second, f.p99_ms, f.requests
    );
}
