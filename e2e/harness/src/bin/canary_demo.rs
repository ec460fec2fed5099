//! `canary-demo`: the whole canary promotion on this machine in one command (see
//! docs/demo.md). Starts every part on loopback, prints `kubectl get canarypromotions -o wide`
//! every few seconds until the promotion ends, then what each part saw. Stops everything it
//! started on exit, Ctrl-C included.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use canary_e2e::manifests::{NAMESPACE, PROMOTION};
use canary_e2e::processes::Binaries;
use canary_e2e::scenario::{CanaryRelease, ScenarioConfig, Stack, TERMINAL_PHASES};
use clap::Parser;

/// One-command local demo of the canary operator promoting scholarship-api v1.4.0 → v1.5.0.
#[derive(Parser)]
#[command(name = "canary-demo", version)]
struct Cli {
    /// Directory holding `scholarship-api` and `canary-operator` (default: next to this binary).
    #[arg(long, env = "CANARY_DEMO_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Load through the ingress stand-in, requests per second.
    #[arg(long, env = "CANARY_DEMO_RATE", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=200))]
    rate: u32,
    /// Give up waiting for the promotion after this many seconds.
    #[arg(long, env = "CANARY_DEMO_TIMEOUT_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(30..=300))]
    timeout_seconds: u64,
    /// Print `kubectl get canarypromotions` every this many seconds.
    #[arg(long, env = "CANARY_DEMO_PRINT_EVERY_SECONDS", default_value_t = 3)]
    print_every_seconds: u64,
    /// Keep the directory with every process's log.
    #[arg(long, env = "CANARY_DEMO_KEEP_LOGS")]
    keep_logs: bool,
    /// Which releases to run: `good` (promoted through every step), `bad` (its canary cannot
    /// reach the database and is rolled back on 5xx), `slow` (its database link is slow and it
    /// is rolled back on latency), `both` (good, then bad) or `all`, one after the other.
    #[arg(long, env = "CANARY_DEMO_RELEASES", value_enum, default_value_t = Releases::Both)]
    releases: Releases,
    /// Serve the API on 127.0.0.1 with authentication off, without the operator's replay and
    /// rate-limit probes: no network namespace, so no root needed.
    #[arg(long, env = "CANARY_DEMO_WITHOUT_PROBES")]
    without_probes: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Releases {
    Good,
    Bad,
    Slow,
    Both,
    All,
}

fn main() -> ExitCode {
    canary_e2e::install_crypto_provider();
    canary_e2e::init_logging("warn");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("canary-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            result = demo(cli) => match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("canary-demo: {e}");
                    ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => {
                // Dropping `demo` drops the stack: every child is stopped before we return.
                eprintln!("\ncanary-demo: interrupted; stopping everything");
                ExitCode::from(130)
            }
        }
    });
    // Background tasks (proxy, watchers) end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// Runs the chosen releases; `Ok(true)` when each ended as it should (the good one
/// `Promoted`, the bad one `RolledBack`).
async fn demo(cli: Cli) -> Result<bool, canary_e2e::HarnessError> {
    let binaries = match &cli.bin_dir {
        Some(dir) => Binaries::in_dir(dir),
        None => Binaries::next_to_current_exe()?,
    };
    let releases: &[CanaryRelease] = match cli.releases {
        Releases::Good => &[CanaryRelease::Healthy],
        Releases::Bad => &[CanaryRelease::BrokenDatabase],
        Releases::Slow => &[CanaryRelease::SlowDatabase],
        Releases::All => &[
            CanaryRelease::Healthy,
            CanaryRelease::BrokenDatabase,
            CanaryRelease::SlowDatabase,
        ],
        Releases::Both => &[CanaryRelease::Healthy, CanaryRelease::BrokenDatabase],
    };
    let mut as_expected = true;
    for (i, release) in releases.iter().enumerate() {
        if i > 0 {
            println!(
                "
{}
",
                "=".repeat(100)
            );
        }
        let phase = run_release(&cli, binaries.clone(), *release).await?;
        let expected = match release {
            CanaryRelease::Healthy => "Promoted",
            CanaryRelease::BrokenDatabase | CanaryRelease::SlowDatabase => "RolledBack",
        };
        as_expected &= phase == expected;
    }
    Ok(as_expected)
}

/// One release on a fresh stack; returns the final phase.
async fn run_release(
    cli: &Cli,
    binaries: Binaries,
    release: CanaryRelease,
) -> Result<String, canary_e2e::HarnessError> {
    let mut config = ScenarioConfig::demo(binaries);
    config.canary = release;
    config.requests_per_second = cli.rate;
    config.timeout = Duration::from_secs(cli.timeout_seconds);
    config.keep_logs = cli.keep_logs;
    config.probes = !cli.without_probes;
    let steps = config
        .steps
        .iter()
        .map(|(w, bake)| format!("{w}% for {}s", bake.as_secs()))
        .collect::<Vec<_>>()
        .join(", ");
    match release {
        CanaryRelease::Healthy => {
            println!("canary-demo: promoting scholarship-api v1.4.0 -> v1.5.0 in steps of {steps}\n");
        }
        CanaryRelease::BrokenDatabase => println!(
            "canary-demo: the bad day: v1.5.0 ships with a database URL that points nowhere, so its \
             reads answer 503.\n             Steps of {steps}; rollback when the 5xx rate stays above 5 % for 20 s.\n"
        ),
        CanaryRelease::SlowDatabase => println!(
            "canary-demo: the slow day: v1.5.0 reaches its database over a slow link, so its reads \
             succeed, but over a second late.\n             Steps of {steps}; rollback when p95 latency stays above 1000 ms for 30 s.\n"
        ),
    }
    let timeout = config.timeout;
    let stack = Stack::start(config, |line| println!("  started: {line}")).await?;
    println!("\n  logs: {}", stack.log_dir().display());
    println!(
        "  try:  KUBECONFIG={} kubectl get canprom -n {NAMESPACE} -o wide",
        stack.kubeconfig().display()
    );
    println!(
        "        curl -s '{}/api/v1/scholarships?page_size=2'\n",
        stack.ingress().url()
    );

    let get = ["get", "canarypromotions", "-n", NAMESPACE, "-o", "wide"];
    println!("$ kubectl {}", get.join(" "));
    let mut header_printed = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(cli.print_every_seconds.max(1)));
    loop {
        ticker.tick().await;
        match stack.kubectl(&get).await {
            Ok(table) => {
                for (i, line) in table.lines().enumerate() {
                    if i == 0 && header_printed {
                        continue;
                    }
                    let at = if i == 0 {
                        "      ".to_owned()
                    } else {
                        format!("{:>5}s", stack.elapsed().as_secs())
                    };
                    println!("{at}  {line}");
                }
                header_printed = true;
            }
            Err(e) => println!("  (kubectl: {e})"),
        }
        let phase = stack.phase();
        if phase.as_deref().is_some_and(|p| TERMINAL_PHASES.contains(&p)) {
            break;
        }
        if stack.elapsed() > timeout {
            println!("\ncanary-demo: no terminal phase after {timeout:?}; last phase {phase:?}");
            break;
        }
    }
    let deployments = stack
        .kubectl(&["get", "deployments", "-n", NAMESPACE, "-o", "wide"])
        .await
        .unwrap_or_else(|e| e.to_string());
    // Every gate's last reading, the Redis rows the operator probed itself among them.
    let gates_jsonpath =
        "jsonpath={range .status.gates[*]}{.name}{\"\\t\"}{.state}{\"\\t\"}{.value}{\"\\t\"}{.threshold}{\"\\n\"}{end}";
    let gates = stack
        .kubectl(&["get", "canprom", "-n", NAMESPACE, PROMOTION, "-o", gates_jsonpath])
        .await
        .unwrap_or_else(|e| e.to_string());
    // What `kubectl describe` shows a user: every row with its value and the probes' messages.
    let describe = stack
        .kubectl(&["describe", "canarypromotion", "-n", NAMESPACE, PROMOTION])
        .await
        .unwrap_or_else(|e| e.to_string());
    let report = stack.finish().await?;
    println!("\n{}", report.render());
    println!("Gates at the end (name, state, value, threshold):");
    for line in gates.lines() {
        let cells: Vec<&str> = line.split('\t').collect();
        if let [name, state, value, threshold] = cells[..] {
            let value = value
                .parse::<f64>()
                .map_or_else(|_| value.to_owned(), |v| format!("{v:.3}"));
            println!("  {name:<26} {state:<8} {value:>8}  {threshold}");
        }
    }
    println!("\n$ kubectl describe canarypromotion -n {NAMESPACE} {PROMOTION}\n{describe}");
    println!("\n$ kubectl get deployments -n {NAMESPACE} -o wide\n{deployments}");
    Ok(report.phase)
}
