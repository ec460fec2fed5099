use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop the harness, named by what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Cluster set-up, or a `kubectl` run.
    #[error(transparent)]
    Fixture(#[from] testkit::kube::KubeFixtureError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("manifest {name}: {message}")]
    Manifest { name: String, message: String },
    #[error("binary {0} not found: build it first (see docs/demo.md)")]
    MissingBinary(PathBuf),
    #[error("{what} was not ready within {limit:?}{detail}")]
    NotReady {
        what: String,
        limit: Duration,
        detail: String,
    },
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl HarnessError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
        let what = what.into();
        move |source| HarnessError::Io { what, source }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
