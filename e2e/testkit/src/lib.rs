//! Real servers for tests, started on loopback ports and torn down with the test process:
//! PostgreSQL, Redis and Prometheus (Debian's packages), and etcd with kube-apiserver (built
//! from the upstream Go modules). Nothing here is a mock; each is configured for speed (no
//! fsync, no persistence) because test data is disposable.
//! The stand-ins are for what has no real counterpart on this machine: [`idp`] (feature
//! `idp`), an identity provider with JWKS and the client credentials grant, and [`model`]
//! (feature `model`), an OpenAI-compatible chat-completions endpoint.
#![allow(unsafe_code)] // fork/exec hooks, atexit and setns need libc: `process` and `test_host`.

pub mod charts;
#[cfg(feature = "idp")]
pub mod idp;
#[cfg(feature = "kube")]
pub mod kube;
mod kube_apiserver;
#[cfg(feature = "model")]
pub mod model;
mod net;
mod pki;
mod postgres;
mod process;
mod prometheus;
mod redis;
mod test_host;
mod tool;

pub use kube_apiserver::{KubeApiServer, httproute_crd};
pub use net::{free_port, wait_for_tcp};
pub use pki::{Ca, CertPair, Usage};
pub use postgres::Postgres;
pub use process::{ManagedChild, remove_at_exit};
pub use prometheus::Prometheus;
pub use redis::{RedisOptions, RedisServer, Sentinel, TlsFiles};
pub use test_host::TestHost;

/// A new scratch directory in the system temp dir (callers decide when it is removed).
pub fn scratch_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir()
}
