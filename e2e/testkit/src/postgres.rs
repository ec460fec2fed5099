use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{ManagedChild, free_port, remove_at_exit, wait_for_tcp};

/// A throwaway PostgreSQL server on a loopback port, one per test process.
///
/// Tests share the server and isolate themselves with [`Postgres::fresh_database`], which is
/// far cheaper than one `initdb` per test.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    _server: ManagedChild,
}

const SUPERUSER: &str = "postgres";

impl Postgres {
    /// The process-wide server, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start().unwrap_or_else(|e| panic!("start PostgreSQL: {e}")))
    }

    pub fn start() -> io::Result<Self> {
        let bin = bin_dir()?;
        let scratch = crate::scratch_dir("testkit-pg-")?.keep();
        remove_at_exit(scratch.clone());
        let data = scratch.join("data");
        let run_as = RunAs::detect()?;
        run_as.prepare_dir(&scratch)?;

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["--auth=trust", "--encoding=UTF8", "--no-sync", "--locale=C.UTF-8"])
            .arg(format!("--username={SUPERUSER}"))
            .arg("-D")
            .arg(&data);
        run_as.apply(&mut initdb);
        let out = initdb.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }

        let port = free_port();
        let mut server = Command::new(bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&scratch)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(scratch.join("server.log"))?));
        run_as.apply(&mut server);
        let server = ManagedChild::spawn(server, libc::SIGQUIT)?;
        wait_for_tcp(([127, 0, 0, 1], port).into(), Duration::from_secs(20))?;
        let pg = Postgres { port, _server: server };
        // Accepting TCP is not the same as accepting queries while recovery finishes.
        let mut last = None;
        for _ in 0..100 {
            match pg.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(pg),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(last.unwrap_or_else(|| io::Error::other("PostgreSQL never answered")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database with a unique name and returns its URL.
    pub fn fresh_database(&self) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        self.url(&name)
    }

    /// Runs one SQL statement through `psql` and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
            ])
            .args(["-c", sql])
            .output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()))
        }
    }
}

fn bin_dir() -> io::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e} (run scripts/setup.sh)", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| io::Error::other("no PostgreSQL server under /usr/lib/postgresql (run scripts/setup.sh)"))
}

/// PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn detect() -> io::Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self(None));
        }
        let name = CString::new(SUPERUSER).map_err(io::Error::other)?;
        // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(io::Error::other("running as root but there is no `postgres` user"));
        }
        // SAFETY: non-null entry from getpwnam.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Self(Some((uid, gid))))
    }

    fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some((uid, gid)) = self.0 {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn apply(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.0 {
            command.uid(uid).gid(gid);
        }
    }
}
