//! `local-apiserver DIR`: a real kube-apiserver and etcd on loopback, for trying kubectl and
//! the operator by hand (`scripts/local-apiserver.sh DIR` builds and runs it). Writes the PKI,
//! etcd's data, both logs and a cluster-admin `DIR/kubeconfig`, prints the kubeconfig's path,
//! and serves until Ctrl-C or SIGTERM, then stops both servers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// A real kube-apiserver (RBAC on) and etcd on 127.0.0.1 until Ctrl-C or SIGTERM.
#[derive(Parser)]
#[command(name = "local-apiserver", version)]
struct Cli {
    /// Directory for the PKI, etcd's data, the logs and `kubeconfig` (created if missing).
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = std::fs::create_dir_all(&cli.dir) {
        eprintln!("local-apiserver: cannot create {}: {e}", cli.dir.display());
        return ExitCode::FAILURE;
    }
    let server = match testkit::KubeApiServer::start_in(&cli.dir) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("local-apiserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "local-apiserver: {} ready in {:.1} s (logs in {}); Ctrl-C stops it",
        server.url(),
        server.started_in().as_secs_f64(),
        server.dir().display()
    );
    println!("{}", server.kubeconfig().display());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("local-apiserver: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stopped_by = runtime.block_on(async {
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return "an error installing signal handlers";
        };
        tokio::select! {
            _ = interrupt.recv() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
        }
    });
    eprintln!("local-apiserver: {stopped_by}; stopping kube-apiserver and etcd");
    drop(server);
    ExitCode::SUCCESS
}
