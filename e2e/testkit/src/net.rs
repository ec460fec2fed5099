use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago.
///
/// Ports are handed out from a per-process cursor so concurrent tests in one binary never get
/// the same port, and probed so another process's port is skipped.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, start_port(), Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        if port >= 60_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Spread test binaries running at the same time over different port ranges.
fn start_port() -> u16 {
    20_000 + (std::process::id() % 400) as u16 * 100
}

/// Polls until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing listening on {addr} after {limit:?}: {e}"),
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(25)),
        }
    }
}
