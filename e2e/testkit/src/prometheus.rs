use std::io;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ManagedChild, free_port, remove_at_exit, scratch_dir, wait_for_tcp};

/// A Prometheus server (Debian's `/usr/bin/prometheus`) on a loopback port, scraping the given
/// loopback targets every `scrape_interval`; stopped when dropped.
///
/// Prometheus is ready in well under a second, but the first scraped samples appear only
/// after a scrape or two: poll the query API rather than sleeping.
#[derive(Debug)]
pub struct Prometheus {
    port: u16,
    _process: ManagedChild,
}

impl Prometheus {
    /// `targets` are `host:port` strings scraped at `/metrics` as job `test`.
    pub fn start(targets: &[String], scrape_interval: Duration) -> io::Result<Self> {
        Self::start_labelled(targets, scrape_interval, &[])
    }

    /// As `start`, with `labels` on every scraped series, as Kubernetes service discovery
    /// would add `namespace`.
    pub fn start_labelled(targets: &[String], scrape_interval: Duration, labels: &[(&str, &str)]) -> io::Result<Self> {
        let dir = scratch_dir("testkit-prometheus-")?.keep();
        remove_at_exit(dir.clone());
        let port = free_port();
        let interval = format!("{}ms", scrape_interval.as_millis().max(100));
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}: '{v}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: test\n    scrape_interval: {interval}\n    scrape_timeout: {interval}\n    \
             static_configs:\n      - targets: [{list}]\n        labels: {{{labels}}}\n"
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("prometheus.log"))?));
        let process = ManagedChild::spawn(command, libc::SIGTERM)?;
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .map_err(|e| io::Error::other(format!("prometheus (see {}): {e}", dir.display())))?;
        Ok(Self {
            port,
            _process: process,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
