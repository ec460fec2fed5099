use std::process::ExitCode;

use clap::Parser;
use scholarship_api::config::Config;
use scholarship_api::state::AppState;
use scholarship_api::telemetry;
use tokio::net::TcpListener;

/// glibc's malloc was 8–10 % of the CPU under load (`perf`, public and authenticated reads);
/// mimalloc's per-thread free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Socket activation's variables are read, and removed from the environment, before the
    // runtime starts any other thread.
    let inherited = listenfd::ListenFd::from_env();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(start(inherited)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start(inherited: listenfd::ListenFd) -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the option, as operators read it in `kubectl logs`.
            let rendered = e.render().to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    if let Err(message) = config.check() {
        eprintln!("{message}");
        return ExitCode::from(2);
    }
    telemetry::init_logging(&config.server.log_filter);
    if config.auth.insecure_no_auth {
        tracing::warn!("--insecure-no-auth: authentication is OFF; every caller is anonymous");
    }
    if config.auth.allow_tokens_without_jti {
        tracing::warn!("--allow-tokens-without-jti: tokens without jti are accepted and cannot be replay-checked");
    }
    match run(config, inherited).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "scholarship-api failed");
            ExitCode::FAILURE
        }
    }
}

/// A listening socket passed by the process manager (systemd socket activation:
/// `LISTEN_FDS`, first descriptor 3). It takes the place of `--listen`, so a supervisor can
/// hold the port across restarts, or bind it where this process could not (another network
/// namespace).
fn inherited_listener(mut inherited: listenfd::ListenFd) -> std::io::Result<Option<TcpListener>> {
    let Some(listener) = inherited.take_tcp_listener(0)? else {
        return Ok(None);
    };
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener).map(Some)
}

async fn run(config: Config, inherited: listenfd::ListenFd) -> Result<(), scholarship_api::StartupError> {
    let (listener, activated) = match inherited_listener(inherited)? {
        Some(listener) => (listener, true),
        None => (TcpListener::bind(config.server.listen).await?, false),
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        socket_activated = activated,
        track = config.server.track.as_str(),
        recommendations = config.model.recommendations_enabled,
        model = config.model.openai_base_url.is_some(),
        "scholarship-api starting"
    );
    let state = AppState::new(config)?;
    scholarship_api::serve(state, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
