//! Throughput and tail latency of the real binary under `wrk` on loopback: the public
//! catalogue read with the rate limiter off and on (Redis round trips per request from
//! `INFO commandstats`), and an authenticated read (JWT verify + limiter + replay check, a
//! fresh RS256 token per request) against the same public read.
//!
//! `cargo bench -p scholarship-api --bench http_throughput` (needs wrk: scripts/setup.sh).
//! Prints figures; asserts nothing about speed (the machine decides those).
#![allow(clippy::unwrap_used)]

use testkit::idp;

use std::io::Write;
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
    /// CPU time of the API process per request (user + system), in microseconds: the
    /// limiter's own cost, apart from Redis and wrk competing for the same cores.
    api_cpu_us: f64,
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // 100 Hz on every Linux build this runs on (USER_HZ).
    ticks as f64 / 100.0
}

/// Runs wrk and attributes the API process's CPU time to the requests it served.
fn measured(api: &(ManagedChild, u16), path: &str) -> Figures {
    let before = cpu_seconds(api.0.id());
    let mut f = wrk(api.1, path, None);
    f.api_cpu_us = (cpu_seconds(api.0.id()) - before) * 1e6 / f.requests as f64;
    f
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
        let f = measured(&off, &path);
        report(&format!("round {round} limiter off"), &f);
        baseline.push(f);
        redis.cli(&["CONFIG", "RESETSTAT"]).unwrap();
        let f = measured(&on, &path);
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
    // Rounds are paired (off then on, back to back), so compare within a round: on a shared
    // 2-core machine the same configuration drifts more between rounds than the effect.
    let pairs: Vec<(&Figures, &Figures)> = baseline.iter().zip(&limited).collect();
    let throughput_cost = median_of(
        pairs
            .iter()
            .map(|(off, on)| 100.0 * (1.0 - on.per_second / off.per_second)),
    );
    let cpu_cost = median_of(
        pairs
            .iter()
            .map(|(off, on)| 100.0 * (on.api_cpu_us / off.api_cpu_us - 1.0)),
    );
    println!(
        "median of rounds: limiter off {:.0} req/s (p99 {:.2} ms), on {:.0} req/s (p99 {:.2} ms)",
        median(&baseline, |f| f.per_second),
        median(&baseline, |f| f.p99_ms),
        median(&limited, |f| f.per_second),
        median(&limited, |f| f.p99_ms),
    );
    println!(
        "limiter cost, median of the paired rounds: throughput {throughput_cost:.1} %, API CPU per request {cpu_cost:.1} %"
    );
    drop((off, on));

    authenticated_versus_public(&redis, &db);
}

/// wrk sends a different token on every request: tokens are single-use.
const TOKEN_SCRIPT: &str = r#"
local tokens = {}
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  counter = id
end
function request()
  local token = tokens[counter % #tokens + 1]
  counter = counter + 2
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. token})
end
"#;

fn authenticated_versus_public(redis: &RedisServer, db: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let idp = runtime.block_on(idp::Idp::start(vec![idp::SigningKey::generate(
        "rsa",
        jsonwebtoken::Algorithm::RS256,
    )]));
    let mut flags = idp.flags();
    flags.extend([
        "--redis-url".into(),
        redis.url(),
        "--rate-limits".into(),
        "default=1000000000/60s".into(),
    ]);
    flags.extend(["--preauth-limit".into(), "1000000000/1s".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let api = start_api_with_auth(db, &flags);

    // One application owned by the benchmark's subject, read back on every request.
    let create = Command::new("curl")
        .args([
            "-s",
            "-XPOST",
            &format!("http://127.0.0.1:{}/api/v1/applications", api.1),
        ])
        .args([
            "-H",
            &format!("authorization: Bearer {}", idp.token("rsa", "bench-subject")),
        ])
        .args(["-H", "idempotency-key: bench", "-H", "content-type: application/json"])
        .args(["-d", &application_body(api.1)])
        .output()
        .unwrap();
    let receipt = String::from_utf8_lossy(&create.stdout).into_owned();
    let id_at = receipt
        .find("\"id\":\"")
        .unwrap_or_else(|| panic!("no application created: {receipt}"))
        + 6;
    let application = receipt[id_at..id_at + 36].to_owned();

    let tokens = sign_tokens(&idp, TOKENS);
    let dir = tempfile::tempdir().unwrap();
    let (token_file, script) = (dir.path().join("tokens.txt"), dir.path().join("tokens.lua"));
    std::fs::write(&token_file, tokens.join("\n")).unwrap();
    std::fs::File::create(&script)
        .unwrap()
        .write_all(TOKEN_SCRIPT.as_bytes())
        .unwrap();

    let public_path = format!("/api/v1/scholarships/{}", first_scholarship_id(api.1));
    let private_path = format!("/api/v1/applications/{application}");
    println!("\nauthenticated GET {private_path} (fresh RS256 token each) vs public GET {public_path}, same instance:");
    warm(api.1, &public_path);
    let public = wrk_for(api.1, &public_path, None, AUTH_DURATION);
    report("public route          ", &public);
    redis.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    let private = wrk_for(api.1, &private_path, Some((&script, &token_file)), AUTH_DURATION);
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap();
    report("authenticated route   ", &private);
    println!(
        "    redis round trips per authenticated request: {:.4}; jti SETs inside the script: {}",
        (calls(&stats, "evalsha") + calls(&stats, "eval")) as f64 / private.requests as f64,
        calls(&stats, "set")
    );
    if private.requests as usize > tokens.len() {
        println!("    note: more requests than tokens; the surplus were replays (401)");
    }
    drop(api);
}

/// Enough single-use tokens for the authenticated run: every request needs its own.
const TOKENS: usize = 80_000;
const AUTH_DURATION: &str = "6s";

fn sign_tokens(idp: &idp::Idp, count: usize) -> Vec<String> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(move || {
                    (0..count / 2)
                        .map(|_| idp.token("rsa", "bench-subject"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    })
}

fn application_body(port: u16) -> String {
    let body = curl(port, "/api/v1/scholarships?deadline_after=2027-06-01&page_size=1");
    let at = body.find("\"id\":\"").unwrap() + 6;
    format!(
        r#"{{"scholarship_id":"{}","applicant":{{"full_name":"Bench Mark","email":"bench@example.org","date_of_birth":"2000-01-01","residency":"DE","gpa":3.9}},"essay":"Benchmark."}}"#,
        &body[at..at + 36]
    )
}

fn start_api_with_auth(database_url: &str, flags: &[&str]) -> (ManagedChild, u16) {
    start_api_flags(database_url, flags, false)
}

fn start_api(database_url: &str, extra: &[&str]) -> (ManagedChild, u16) {
    start_api_flags(database_url, extra, true)
}

fn start_api_flags(database_url: &str, extra: &[&str], no_auth: bool) -> (ManagedChild, u16) {
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
        .args(if no_auth { &["--insecure-no-auth"][..] } else { &[][..] })
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = ManagedChild::spawn(command, libc::SIGTERM).unwrap();
    wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(30)).unwrap();
    for _ in 0..300 {
        if curl(port, "/readyz").contains("\"status\":\"ready\"") {
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

fn wrk(port: u16, path: &str, tokens: Option<(&std::path::Path, &std::path::Path)>) -> Figures {
    wrk_for(port, path, tokens, DURATION)
}

fn wrk_for(port: u16, path: &str, tokens: Option<(&std::path::Path, &std::path::Path)>, duration: &str) -> Figures {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{duration}"),
        "--latency",
    ]);
    if let Some((script, _)) = tokens {
        command.arg("-s").arg(script);
    }
    command.arg(format!("http://127.0.0.1:{port}{path}"));
    if let Some((_, token_file)) = tokens {
        command.arg("--").arg(token_file);
    }
    let out = command.output().expect("wrk (install with scripts/setup.sh)");
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
        api_cpu_us: 0.0,
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
    median_of(figures.iter().map(pick))
}

fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(label: &str, f: &Figures) {
    println!(
        "{label}: {:>9.0} req/s   p99 {:>7.2} ms   ({} requests{})",
        f.per_second,
        f.p99_ms,
        f.requests,
        if f.api_cpu_us > 0.0 {
            format!(", API CPU {:.1} µs/request", f.api_cpu_us)
        } else {
            String::new()
        }
    );
}
