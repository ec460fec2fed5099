use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pki::{Ca, Usage};
use crate::{ManagedChild, free_port, remove_at_exit, scratch_dir, wait_for_tcp};

/// How to start a Redis server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass` (the `default` user's password).
    pub password: Option<String>,
    /// Serve TLS only, with these files.
    pub tls: Option<TlsFiles>,
    /// Start as a replica of the primary on this loopback port.
    pub replica_of: Option<u16>,
}

/// A Redis server on a loopback port, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    options: RedisOptions,
    process: ManagedChild,
}

impl RedisServer {
    pub fn start(options: RedisOptions) -> io::Result<Self> {
        Self::start_on(free_port(), options)
    }

    /// Starts on a given port (e.g. to restart a killed server at the same address).
    pub fn start_on(port: u16, options: RedisOptions) -> io::Result<Self> {
        let dir = scratch_dir("testkit-redis-")?.keep();
        remove_at_exit(dir.clone());
        let mut command = Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::from(std::fs::File::create(dir.join("redis.log"))?))
            .stderr(Stdio::null());
        match &options.tls {
            Some(tls) => {
                command.args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-auth-clients",
                    "no",
                ]);
                command.arg("--tls-cert-file").arg(&tls.server_cert);
                command.arg("--tls-key-file").arg(&tls.server_key);
                command.arg("--tls-ca-cert-file").arg(&tls.ca_cert);
                command.args(["--tls-replication", "yes"]);
            }
            None => {
                command.args(["--port", &port.to_string()]);
            }
        }
        if let Some(password) = &options.password {
            command.args(["--requirepass", password, "--masterauth", password]);
        }
        if let Some(primary) = options.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let process = ManagedChild::spawn(command, libc::SIGKILL)?;
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10))
            .map_err(|e| io::Error::other(format!("redis-server (see {}): {e}", dir.display())))?;
        Ok(Self { port, options, process })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://` or `rediss://` URL with the password when there is one.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        let auth = self
            .options
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// Runs one command through `redis-cli` and returns its raw output.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out = self.cli_command().args(args).output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()))
        }
    }

    /// `redis-cli` connected to this server (TLS and password included), for a caller to add
    /// the command and run or spawn it.
    pub fn cli_command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.options.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        if let Some(tls) = &self.options.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca_cert);
        }
        command
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A Redis Sentinel watching one primary, on a loopback port.
#[derive(Debug)]
pub struct Sentinel {
    port: u16,
    _process: ManagedChild,
}

impl Sentinel {
    pub fn start(master_name: &str, primary_port: u16, quorum: u32, password: Option<&str>) -> io::Result<Self> {
        Self::start_with(master_name, primary_port, quorum, password, None)
    }

    /// The same for a TLS-only primary: the Sentinel itself listens in plaintext on loopback,
    /// and speaks TLS to the primary and its replicas (`tls-replication yes`).
    pub fn start_with(
        master_name: &str,
        primary_port: u16,
        quorum: u32,
        password: Option<&str>,
        tls: Option<&TlsFiles>,
    ) -> io::Result<Self> {
        let dir = scratch_dir("testkit-sentinel-")?.keep();
        remove_at_exit(dir.clone());
        let port = free_port();
        let mut config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
             sentinel monitor {master_name} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {master_name} 1000\n\
             sentinel failover-timeout {master_name} 5000\n\
             sentinel parallel-syncs {master_name} 1\n",
            dir.display()
        );
        if let Some(password) = password {
            config.push_str(&format!("sentinel auth-pass {master_name} {password}\n"));
        }
        if let Some(tls) = tls {
            config.push_str(&format!(
                "tls-replication yes\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                tls.server_cert.display(),
                tls.server_key.display(),
                tls.ca_cert.display()
            ));
        }
        // Sentinel rewrites its configuration file, so it must be writable.
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, config)?;
        let mut command = Command::new("redis-sentinel");
        command
            .arg(&path)
            .stdout(Stdio::from(std::fs::File::create(dir.join("sentinel.log"))?))
            .stderr(Stdio::null());
        let process = ManagedChild::spawn(command, libc::SIGKILL)?;
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(10))?;
        Ok(Self {
            port,
            _process: process,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// A test CA and a server certificate for `127.0.0.1` / `localhost`, made with `openssl`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    pub fn generate() -> io::Result<Self> {
        let dir = scratch_dir("testkit-tls-")?.keep();
        remove_at_exit(dir.clone());
        let ca = Ca::create(&dir, "testkit CA")?;
        let server = ca.issue("server", "/CN=127.0.0.1", Usage::Server, &[])?;
        Ok(Self {
            ca_cert: ca.pair.cert,
            server_cert: server.cert,
            server_key: server.key,
        })
    }
}
