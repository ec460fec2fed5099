//! The Helm charts under `charts/` and the tools that check them, as `scripts/fetch-tools.sh`
//! installs them in `tools/`: helm, kubernetes-validate and the Prometheus Operator's CRDs.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (the directory holding `charts/` and `tools/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `charts/<name>`.
pub fn chart_dir(name: &str) -> PathBuf {
    workspace_root().join("charts").join(name)
}

fn tools_dir() -> PathBuf {
    std::env::var_os("CANARY_TOOLS_DIR").map_or_else(|| workspace_root().join("tools"), PathBuf::from)
}

/// The ServiceMonitor and PrometheusRule CRDs (`tools/crds/*.yaml`).
pub fn prometheus_operator_crds() -> io::Result<Vec<PathBuf>> {
    let dir = tools_dir().join("crds");
    let mut crds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| missing(&dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    crds.sort();
    Ok(crds)
}

fn missing(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("{}: {e} (run scripts/fetch-tools.sh)", path.display()),
    )
}

/// Runs `program` and returns its output whatever the exit status; only a failure to start
/// is an error.
fn output(mut command: Command) -> io::Result<Output> {
    let program = PathBuf::from(command.get_program());
    command.output().map_err(|e| missing(&program, e))
}

/// Everything a checking tool printed (stdout, then stderr): its report when it exits 0, an
/// error carrying the report otherwise.
fn report(command: Command) -> io::Result<String> {
    let out = output(command)?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(report)
    } else {
        Err(io::Error::other(report))
    }
}

/// A command's stdout, or an error carrying its stderr.
fn stdout(command: Command) -> io::Result<String> {
    let out = output(command)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// The pinned helm binary, with its cache, config and data kept in a scratch directory so a
/// test never reads or writes the user's Helm state.
#[derive(Debug)]
pub struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

/// What to render: a chart, a release name and namespace, values files and `--set` pairs.
#[derive(Debug, Clone, Default)]
pub struct Release<'a> {
    pub chart: PathBuf,
    pub name: &'a str,
    pub namespace: &'a str,
    pub values: Vec<PathBuf>,
    pub set: Vec<(&'a str, &'a str)>,
}

impl<'a> Release<'a> {
    pub fn new(chart: &str, name: &'a str, namespace: &'a str) -> Self {
        Self {
            chart: chart_dir(chart),
            name,
            namespace,
            ..Self::default()
        }
    }

    /// A values file of the chart, e.g. `ci/production-values.yaml`.
    pub fn values(mut self, relative: &str) -> Self {
        self.values.push(self.chart.join(relative));
        self
    }

    /// A values file anywhere.
    pub fn values_file(mut self, path: &Path) -> Self {
        self.values.push(path.to_owned());
        self
    }

    pub fn set(mut self, key: &'a str, value: &'a str) -> Self {
        self.set.push((key, value));
        self
    }

    fn args(&self, command: &mut Command) {
        for values in &self.values {
            command.arg("--values").arg(values);
        }
        for (key, value) in &self.set {
            command.arg("--set").arg(format!("{key}={value}"));
        }
    }
}

impl Helm {
    /// `$HELM`, else `tools/bin/helm`.
    pub fn new() -> io::Result<Self> {
        let bin = std::env::var_os("HELM").map_or_else(|| tools_dir().join("bin/helm"), PathBuf::from);
        if !bin.is_file() {
            return Err(missing(&bin, io::ErrorKind::NotFound.into()));
        }
        Ok(Self {
            bin,
            home: crate::scratch_dir("helm-home-")?,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        for (var, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(var, self.home.path().join(dir));
        }
        command
    }

    /// `helm template`: the rendered manifests, or the error Helm printed.
    pub fn template(&self, release: &Release<'_>) -> io::Result<String> {
        let mut command = self.command();
        command
            .arg("template")
            .arg(release.name)
            .arg(&release.chart)
            .arg("--namespace")
            .arg(release.namespace);
        release.args(&mut command);
        stdout(command)
    }

    /// `helm lint --strict` with the release's values: its report, or an error carrying it.
    pub fn lint_strict(&self, release: &Release<'_>) -> io::Result<String> {
        let mut command = self.command();
        command.arg("lint").arg("--strict").arg(&release.chart);
        release.args(&mut command);
        report(command)
    }
}

/// `kubernetes-validate --strict` for one Kubernetes version: its report (one line per object,
/// `passed`, `failed` or a warning for kinds it has no schema for), or an error carrying it.
pub fn kubernetes_validate(manifests: &Path, kubernetes_version: &str) -> io::Result<String> {
    let mut command = Command::new(tools_dir().join("venv/bin/kubernetes-validate"));
    command.arg("--strict").arg("-k").arg(kubernetes_version).arg(manifests);
    report(command)
}
