//! A network link on loopback that can turn slow: a TCP relay that holds every chunk the
//! server sends for the current delay before passing it on. Put between a canary and its
//! PostgreSQL and slowed once the canary serves, every query round trip takes that much longer:
//! the canary turns slow without failing, which is what the latency rollback criterion is for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running relay; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct SlowLink {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl SlowLink {
    /// Relays connections on a free loopback port to `upstream`, at full speed until
    /// [`SlowLink::set_delay`].
    pub async fn start(upstream: SocketAddr) -> std::io::Result<SlowLink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(relay(client, upstream, delay.clone()));
            }
        });
        Ok(SlowLink { addr, delay_ms, task })
    }

    /// From now on every chunk the server sends arrives `delay` late, on open connections too.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, delay_ms: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_server = tokio::io::copy(&mut client_read, &mut server_write);
    let to_client = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_server => {}
        () = to_client => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_arrive_intact_and_late_once_slowed() {
        let echo = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let upstream = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 5];
                    if s.read_exact(&mut b).await.is_ok() {
                        let _ = s.write_all(&b).await;
                    }
                });
            }
        });
        let link = SlowLink::start(upstream).await.expect("start");
        let round_trip = || async {
            let mut s = TcpStream::connect(link.addr).await.expect("connect");
            let started = std::time::Instant::now();
            s.write_all(b"hello").await.expect("write");
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.expect("read");
            assert_eq!(&b, b"hello");
            started.elapsed()
        };
        assert!(round_trip().await < Duration::from_millis(200));
        link.set_delay(Duration::from_millis(300));
        let took = round_trip().await;
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
