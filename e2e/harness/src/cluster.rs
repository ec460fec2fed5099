//! `kubectl` for what a person would type, against the stack's API server (kube clients come
//! from `testkit::kube::client`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{HarnessError, Result};

/// `kubectl` bound to one kubeconfig and a private discovery cache, so runs never share
/// (or leave behind) cached discovery for a port another run may reuse.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
    pub cache_dir: PathBuf,
}

impl Kubectl {
    /// Uses `$KUBECTL` when set, else `/usr/bin/kubectl`.
    pub fn new(kubeconfig: &Path, cache_dir: &Path) -> Self {
        let program = std::env::var_os("KUBECTL").map_or_else(|| PathBuf::from("/usr/bin/kubectl"), PathBuf::from);
        Self {
            program,
            kubeconfig: kubeconfig.to_owned(),
            cache_dir: cache_dir.to_owned(),
        }
    }

    /// Runs kubectl and returns its stdout; a non-zero exit is an error carrying stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .map_err(|_| HarnessError::Kubectl {
                args: args.join(" "),
                stderr: "no answer within 30 s".into(),
            })?
            .map_err(HarnessError::io(format!("run {}", self.program.display())))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(HarnessError::Kubectl {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}
