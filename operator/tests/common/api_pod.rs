//! Real `scholarship-api` processes as pods: each is handed a listening socket bound in a
//! [`TestHost`]'s network namespace (socket activation), so its EndpointSlice lists a pod-like
//! address the real kube-apiserver accepts, while the process reaches PostgreSQL, Redis and
//! the stand-ins on loopback.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use testkit::idp::Idp;
use testkit::{ManagedChild, TestHost};

use super::eventually;

/// The `scholarship-api` binary: `SCHOLARSHIP_API_BIN`, else the one `cargo test --workspace`
/// built next to this test's profile directory (built here when missing).
pub fn api_binary() -> PathBuf {
    if let Ok(bin) = std::env::var("SCHOLARSHIP_API_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("scholarship-api");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "scholarship-api", "--bin", "scholarship-api"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p scholarship-api failed");
    }
    bin
}

/// One API process serving on a port of a test host's address.
pub struct ApiPod {
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    _child: ManagedChild,
    _host: Arc<TestHost>,
}

impl ApiPod {
    /// Starts `scholarship-api --track <track> <flags>` on a free port of `host` and waits
    /// for `/readyz`.
    pub async fn start(host: &Arc<TestHost>, track: &str, flags: &[String]) -> ApiPod {
        let host = host.clone();
        let listener = host.listen(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut command = Command::new(api_binary());
        command
            .args(["--track", track])
            .args(["--shutdown-drain-ms", "0", "--shutdown-grace-seconds", "1"])
            .args(flags)
            .env("LOG_FILTER", "warn");
        let child = ManagedChild::spawn_with_listener(command, listener, libc::SIGTERM).unwrap();
        let pod = ApiPod {
            ip: host.address(),
            port,
            _child: child,
            _host: host,
        };
        let ready = format!("{}/readyz", pod.url());
        eventually(Duration::from_secs(60), "the API pod is ready", || {
            let ready = ready.clone();
            async move {
                let r = reqwest::get(&ready).await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        pod
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    /// Sum of a counter's series whose labels contain `matching` (e.g. `principal="tester"`).
    pub async fn counter(&self, name: &str, matching: &str) -> f64 {
        let page = reqwest::get(format!("{}/metrics", self.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.lines()
            .filter(|l| l.starts_with(name) && l.contains(matching))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Students' load, requests per second, and how many distinct students send it.
const RATE: u64 = 40;
const STUDENTS: u64 = 200;

/// Students: catalogue reads through a proxy (`X-Forwarded-For`, one address each; the pods
/// must trust their test host's peer, `TestHost::peer_address`) and, with an IdP, one request in four
/// for recommendations with a fresh token of their own, spread over `pods` in turn. Runs
/// until `stop` (at most ten minutes); returns the count of answers that were not 2xx.
pub fn students(pods: Vec<String>, idp: Option<Arc<Idp>>, stop: tokio::sync::watch::Receiver<bool>) -> Arc<AtomicU64> {
    let failed = Arc::new(AtomicU64::new(0));
    let counter = failed.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
        for n in 0..RATE * 600 {
            tick.tick().await;
            if *stop.borrow() {
                break;
            }
            let pod = &pods[(n % pods.len() as u64) as usize];
            let student = n % STUDENTS;
            let request = match &idp {
                Some(idp) if n % 4 == 3 => client
                    .get(format!(
                        "{pod}/api/v1/recommendations?gpa=3.6&level=masters&field_of_study=computer-science&residency=US&limit=5"
                    ))
                    .bearer_auth(idp.token("k1", &format!("student-{student}"))),
                _ => client
                    .get(format!("{pod}/api/v1/scholarships?page_size=5"))
                    .header("x-forwarded-for", format!("10.42.{}.{}", student / 250, student % 250 + 1)),
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                if !ok {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    failed
}
