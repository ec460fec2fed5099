//! Child processes that cannot outlive the test process.
//!
//! Two independent safety nets, because a test binary can end in ways that skip destructors:
//! every child gets `PR_SET_PDEATHSIG`, and an `atexit` hook (the test harness ends with
//! `std::process::exit`, which runs it) terminates whatever is still registered.
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, so all children are
//! forked by one spawner thread that lives as long as the process.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
/// Children still running, with the signal that shuts each down quickly.
static LIVE: Mutex<Vec<(u32, i32)>> = Mutex::new(Vec::new());
/// Scratch directories to delete once their processes are gone.
static SCRATCH: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
/// Other clean-ups (network namespaces, ...) to run once the processes are gone.
static CLEANUPS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the testkit spawner thread");
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(terminate_all_at_exit) };
        Mutex::new(tx)
    })
}

extern "C" fn terminate_all_at_exit() {
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for &(pid, signal) in &live {
        // SAFETY: signalling a pid we spawned; a stale pid at worst gets ESRCH.
        unsafe { libc::kill(pid as i32, signal) };
    }
    for &(pid, _) in &live {
        reap_within(pid, Duration::from_secs(3));
    }
    for dir in SCRATCH.lock().map(|d| d.clone()).unwrap_or_default() {
        let _ = std::fs::remove_dir_all(dir);
    }
    for cleanup in CLEANUPS.lock().map(|c| c.clone()).unwrap_or_default() {
        cleanup();
    }
}

/// Runs `cleanup` when the test process exits, after its processes are stopped (once, however
/// often it is registered).
pub(crate) fn at_exit(cleanup: fn()) {
    let _ = spawner();
    if let Ok(mut cleanups) = CLEANUPS.lock()
        && !cleanups.contains(&cleanup)
    {
        cleanups.push(cleanup);
    }
}

fn reap_within(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait on our own child.
        let done = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        if done != 0 {
            return;
        }
        if Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, &mut status, 0);
            }
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes `dir` when the test process exits (after its processes are stopped).
pub fn remove_at_exit(dir: std::path::PathBuf) {
    let _ = spawner();
    if let Ok(mut dirs) = SCRATCH.lock() {
        dirs.push(dir);
    }
}

/// A child process that is terminated (SIGTERM, then SIGKILL after a grace period) when dropped,
/// when the test process exits, or when the test process dies.
#[derive(Debug)]
pub struct ManagedChild {
    child: Option<Child>,
    stop_signal: i32,
    grace: Duration,
}

impl ManagedChild {
    /// Spawns `command` with the safety nets described in the module docs; `stop_signal` is
    /// what asks this program to shut down quickly (SIGTERM for most, SIGQUIT for PostgreSQL).
    pub fn spawn(mut command: Command, stop_signal: i32) -> io::Result<Self> {
        let death_signal = stop_signal;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        spawner()
            .lock()
            .map_err(|_| io::Error::other("spawner poisoned"))?
            .send((command, reply_tx))
            .map_err(|_| io::Error::other("spawner gone"))?;
        let child = reply_rx.recv().map_err(|_| io::Error::other("spawner gone"))??;
        if let Ok(mut live) = LIVE.lock() {
            live.push((child.id(), stop_signal));
        }
        Ok(Self {
            child: Some(child),
            stop_signal,
            grace: Duration::from_secs(10),
        })
    }

    /// Like [`ManagedChild::spawn`], handing the child `listener` by socket activation
    /// (`LISTEN_FDS=1`, descriptor 3), as systemd does. With a listener bound inside a
    /// [`crate::TestHost`], the child serves on that host's address while it still reaches
    /// everything else on this namespace's loopback.
    pub fn spawn_with_listener(
        mut command: Command,
        listener: std::net::TcpListener,
        stop_signal: i32,
    ) -> io::Result<Self> {
        use std::os::fd::{AsRawFd, OwnedFd};
        let socket = OwnedFd::from(listener);
        let fd = socket.as_raw_fd();
        command.env("LISTEN_FDS", "1").env_remove("LISTEN_PID");
        // SAFETY: dup2 and fcntl are async-signal-safe; descriptor 3 in the child is the
        // listener, without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec: clear the flag instead.
                let moved = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if moved < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = Self::spawn(command, stop_signal);
        // The parent's copy closes here; the child holds its own.
        drop(socket);
        child
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal without waiting (e.g. SIGTERM to test graceful shutdown).
    pub fn signal(&self, signal: i32) {
        // SAFETY: see `terminate_all_at_exit`.
        unsafe { libc::kill(self.id() as i32, signal) };
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                let pid = child.id();
                self.forget(pid);
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Terminates the child with its stop signal, then SIGKILL once the grace period is over.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(self.stop_signal);
        if matches!(self.wait_timeout(self.grace), Ok(Some(_))) {
            self.child = None;
            return;
        }
        self.kill();
    }

    /// Kills the child outright (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.forget(child.id());
        }
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    fn forget(&self, pid: u32) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|(p, _)| *p != pid);
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.stop();
    }
}
