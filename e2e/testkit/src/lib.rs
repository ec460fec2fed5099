//! Real backing services for tests, started on loopback ports and torn down with the test
//! process. Nothing here is a mock: these are the Debian-packaged servers, configured for speed
//! (no fsync, no persistence) because test data is disposable.
#![allow(unsafe_code)] // fork/exec hooks and atexit need libc; confined to `process`.

mod net;
mod postgres;
mod process;
mod prometheus;
mod redis;

pub use net::{free_port, wait_for_tcp};
pub use postgres::Postgres;
pub use process::{ManagedChild, remove_at_exit};
pub use prometheus::Prometheus;
pub use redis::{RedisOptions, RedisServer, Sentinel, TlsFiles};

/// A new scratch directory in the system temp dir (callers decide when it is removed).
pub fn scratch_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir()
}
