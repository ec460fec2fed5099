//! The scholarship catalogue in memory. Catalogue reads are public and cacheable by contract
//! (`Cache-Control: public, max-age=60`, ETags), the catalogue is a few hundred rows that
//! change rarely, and reading it from PostgreSQL cost a database round trip on every
//! single-scholarship, eligibility and recommendation request (the filtered, paginated list
//! still queries PostgreSQL) (with the wake-ups it causes, the largest item of the
//! profile after the kernel's own network path).
//!
//! A trigger NOTIFYs `catalogue_changed` on every write to `scholarships` (migration 0004).
//! This process LISTENs, then loads the snapshot, and reloads on each notification. While it
//! is not listening (before the first load, after a lost connection until it listens again)
//! there is no snapshot and reads go to PostgreSQL. A write is visible within milliseconds of
//! its commit; a quiet feed is pinged and the catalogue reloaded every 20 s, so even a
//! notification lost on a connection that died silently leaves the snapshot at most that old,
//! well inside the `max-age` clients are told.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::state::SharedState;
use crate::store::{self, Scholarship};

/// The channel migration 0004's trigger notifies.
pub const CHANNEL: &str = "catalogue_changed";
/// A quiet feed is pinged, and the catalogue reloaded, this often: a connection that died
/// without a word (a fenced primary, an idle timeout in between) would otherwise keep a stale
/// snapshot in service. It also bounds the age of the snapshot, well inside `max-age=60`.
const PING_EVERY: Duration = Duration::from_secs(20);
/// Bound of that ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// One scholarship with its response body and ETag computed once per load.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    pub etag: String,
}

/// The whole catalogue at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// In stable order (deadline, id), as `store::all_scholarships` returns it.
    pub all: Arc<Vec<Scholarship>>,
    by_id: HashMap<Uuid, Cached>,
}

impl Snapshot {
    fn new(all: Vec<Scholarship>) -> Snapshot {
        let by_id = all
            .iter()
            .map(|s| {
                let body = Bytes::from(serde_json::to_vec(s).unwrap_or_default());
                let etag = etag_of(&body);
                (s.id, Cached { body, etag })
            })
            .collect();
        Snapshot {
            all: Arc::new(all),
            by_id,
        }
    }

    /// `None` means no such scholarship: the snapshot holds every row.
    pub fn get(&self, id: Uuid) -> Option<&Cached> {
        self.by_id.get(&id)
    }
}

/// A strong ETag of a JSON body: the first 128 bits of its SHA-256.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

#[derive(Debug, Default)]
pub struct Catalogue {
    current: RwLock<Option<Arc<Snapshot>>>,
}

impl Catalogue {
    /// The current snapshot, while the process is listening for changes.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.read().ok()?.clone()
    }

    /// Every scholarship, from the snapshot or else from PostgreSQL.
    pub async fn all(&self, db: &PgPool) -> Result<Arc<Vec<Scholarship>>, sqlx::Error> {
        match self.snapshot() {
            Some(snapshot) => Ok(snapshot.all.clone()),
            None => store::all_scholarships(db).await.map(Arc::new),
        }
    }

    fn set(&self, snapshot: Option<Snapshot>) {
        if let Ok(mut current) = self.current.write() {
            *current = snapshot.map(Arc::new);
        }
    }
}

/// Keeps the snapshot in step with PostgreSQL for the life of the process; started once the
/// migrations (which create the trigger) have run.
pub async fn keep_fresh(state: SharedState) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen(&state, &mut backoff).await {
            Ok(()) => {
                tracing::warn!("catalogue change feed lost: reading the catalogue from PostgreSQL until it is back")
            }
            Err(e) => {
                tracing::warn!(error = %e, "catalogue change feed failed: reading the catalogue from PostgreSQL until it is back")
            }
        }
        state.catalogue.set(None);
        state.applications.set_live(false);
        state.metrics.catalogue_in_memory.set(0);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Listens, loads, and reloads on every notification; returns when the connection is lost
/// or stops answering.
async fn listen(state: &SharedState, backoff: &mut Duration) -> Result<(), sqlx::Error> {
    // A connection of its own, outside the pool: it is held for the life of the process and
    // must not count as a pool connection in use (`db_pool_connections`).
    let mut listener = PgListener::connect(state.config.database.database_url.as_str()).await?;
    // A lost connection ends this feed (the caller reconnects, reloads and re-arms the caches):
    // no silent reconnect that would be thrown away.
    listener.eager_reconnect(false);
    listener
        .listen_all([CHANNEL, crate::application_cache::CHANNEL])
        .await?;
    // Loaded after LISTEN: a write committed in between is both in the load and notified.
    reload(state).await?;
    state.applications.set_live(true);
    *backoff = Duration::from_millis(200);
    loop {
        match tokio::time::timeout(PING_EVERY, listener.try_recv()).await {
            Ok(Ok(Some(n))) if n.channel() == crate::application_cache::CHANNEL => {
                state.applications.invalidate(n.payload().parse().ok());
            }
            Ok(Ok(Some(_))) => reload(state).await?,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_quiet) => {
                let ping = sqlx::query("SELECT 1").execute(&mut listener);
                match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    // Alive. Reload anyway: whatever a notification could have missed (one
                    // cut short by the timeout above) is then at most this old.
                    Ok(result) => {
                        result?;
                        reload(state).await?;
                    }
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}

async fn reload(state: &SharedState) -> Result<(), sqlx::Error> {
    let all = store::all_scholarships(&state.db).await?;
    let rows = all.len();
    state.catalogue.set(Some(Snapshot::new(all)));
    state.metrics.catalogue_reloads.inc();
    state.metrics.catalogue_in_memory.set(1);
    tracing::debug!(rows, "catalogue snapshot loaded");
    Ok(())
}
