//! Test hosts with addresses of their own: a network namespace joined to this one by a veth
//! pair, so a fake pod can listen on a pod-like IPv4 address that a real API server accepts in
//! an EndpointSlice (it refuses loopback addresses there), while every packet stays inside
//! namespaces this test process made. Needs root and `ip` (Debian's iproute2).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::process::at_exit;

/// Namespaces and links still to delete when the process exits.
static CREATED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// One network namespace holding a single address, reachable from this namespace.
#[derive(Debug)]
pub struct TestHost {
    name: String,
    address: Ipv4Addr,
    peer: Ipv4Addr,
    namespace: File,
}

impl TestHost {
    /// Creates a namespace and a /30 link to it: `10.254.<a>.<b+1>` on our side, the host's
    /// address one above. The subnet is chosen from the process id and a counter, so test
    /// binaries running one after another never reuse a name or subnet still being removed.
    pub fn create() -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let slot = (std::process::id().wrapping_mul(16).wrapping_add(n)) % 16_384;
        let (a, b) = ((slot / 64) as u8, ((slot % 64) * 4) as u8);
        let ours = Ipv4Addr::new(10, 254, a, b + 1);
        let address = Ipv4Addr::new(10, 254, a, b + 2);
        let name = format!("tk{}-{n}", std::process::id());
        let (link, peer) = (format!("{name}a"), format!("{name}b"));

        at_exit(remove_all);
        ip(&["netns", "add", &name])?;
        remember(&name);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["addr", "add", &format!("{ours}/30"), "dev", &link])?;
        ip(&["link", "set", &link, "up"])?;
        let inside = ["netns", "exec", &name, "ip"];
        ip(&[&inside[..], &["addr", "add", &format!("{address}/30"), "dev", &peer]].concat())?;
        ip(&[&inside[..], &["link", "set", &peer, "up"]].concat())?;
        ip(&[&inside[..], &["link", "set", "lo", "up"]].concat())?;
        let namespace = File::open(format!("/run/netns/{name}"))?;
        Ok(Self {
            name,
            address,
            peer: ours,
            namespace,
        })
    }

    /// The host's own address (what an EndpointSlice would list for a pod).
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Our side of the link: the source address of every connection from this namespace to
    /// the host (a proxy's address, as the host's servers see it).
    pub fn peer_address(&self) -> Ipv4Addr {
        self.peer
    }

    /// A listening socket on `address():port` (0 = any free port), bound inside the host's
    /// namespace. The socket stays in that namespace wherever it is used afterwards.
    pub fn listen(&self, port: u16) -> io::Result<TcpListener> {
        let fd = self.namespace.as_raw_fd();
        let addr = SocketAddr::from((self.address, port));
        // A thread of its own joins the namespace, so no other thread's sockets move.
        std::thread::spawn(move || {
            // SAFETY: setns on a fresh thread that only binds one socket and then ends.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .join()
        .map_err(|_| io::Error::other("test host listener thread panicked"))?
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = ip(&["netns", "del", &self.name]);
        if let Ok(mut created) = CREATED.lock() {
            created.retain(|n| *n != self.name);
        }
    }
}

fn remember(name: &str) {
    if let Ok(mut created) = CREATED.lock() {
        created.push(name.to_owned());
    }
}

fn remove_all() {
    for name in CREATED.lock().map(|c| c.clone()).unwrap_or_default() {
        let _ = ip(&["netns", "del", &name]);
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let mut command = Command::new("ip");
    command.args(args);
    crate::tool::run(command, "iproute2", " (test hosts need root)")
}
