//! `postgres-failover`: the archive's primary PostgreSQL killed (SIGKILL) and its synchronous
//! standby promoted, mid-run ([`crate::archive_db`]). The voters name both servers with
//! `target_session_attrs=read-write`, so the archiver finds the new primary by itself; nothing
//! in the cluster is told. On heal the dead server is rebuilt as the new primary's synchronous
//! standby (`pg_basebackup`), so the fault can happen again in the same run, with the roles
//! swapped.
//!
//! Purchases must not wait for the archive: the report has the longest stretch without a
//! confirmed purchase while the archive was halted and local views were answered, and one above
//! [`PURCHASE_GAP_MAX_MS`] is a problem of availability. A stall of every request, views
//! included, is reported apart: views wait for neither the leader nor the archive, so it is the
//! machine's (the promotion writes on the disk every node shares in this harness). A stall
//! after the archive is back (the standby's rebuild copies the whole database on that disk,
//! where a deployment gives the database servers disks of their own) is not counted either;
//! the rules on the whole fault window (healed, whole again, purchases confirmed after) still
//! apply to both. Invariant 9
//! (archive exactly once) must hold at the end. A watcher measures how long the
//! archive halted (from the kill until the first row written on the promoted server) and lagged
//! (until the backlog was back to its level before the kill).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashstock_client::VoterClient;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::archive_db::ArchiveDb;
use crate::history::Clock;

/// How often the watcher polls the archive and the voters.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// How long the watcher may wait, after the heal, for the archive to resume and catch up.
const WATCH_MAX: Duration = Duration::from_secs(30);
/// The longest stretch without any confirmed purchase while the archive is halted: purchases
/// never wait for the archive, so anything near the archive's own halt would show they do.
pub const PURCHASE_GAP_MAX_MS: u64 = 1500;

/// What a `postgres-failover` fault measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// The run's clock at the kill. The fault starts earlier (the backlog is read first, which
    /// takes as long as the voters take to answer), and the archive is halted only from here.
    pub killed_at_ms: u64,
    /// `pg_ctl promote` until the promoted server took writes alone.
    pub promote_ms: u64,
    /// From the kill until the first row written on the promoted server.
    pub archive_halted_ms: Option<u64>,
    /// The largest archive backlog (orders confirmed, not archived) seen during the fault.
    pub backlog_max: u64,
    /// The backlog just before the kill.
    pub backlog_before: u64,
    /// From the kill until the backlog was back to its level before the kill.
    pub archive_caught_up_ms: Option<u64>,
    /// Rebuilding the dead server as the new standby, in the heal.
    pub rebuild_ms: u64,
}

impl Figures {
    /// `archive halted 812 ms, backlog 63 -> 410, back after 1530 ms; promote 120 ms, ...`
    pub fn describe(&self) -> String {
        let ms = |t: Option<u64>| t.map_or("never".into(), |t| format!("{t} ms"));
        format!(
            "archive halted {}, backlog {} before, {} at most, back within {}; \
             promotion {} ms, standby rebuilt in {} ms",
            ms(self.archive_halted_ms),
            self.backlog_before,
            self.backlog_max,
            ms(self.archive_caught_up_ms),
            self.promote_ms,
            self.rebuild_ms
        )
    }
}

/// A failover in place: what was measured at the kill, and the watcher.
pub struct Active {
    killed_at_ms: u64,
    promote_ms: u64,
    backlog_before: u64,
    watched: Arc<Mutex<Watched>>,
    watcher: JoinHandle<()>,
}

#[derive(Debug, Default, Clone)]
struct Watched {
    halted_ms: Option<u64>,
    backlog_max: u64,
    caught_up_ms: Option<u64>,
}

/// The archive backlog as the voters report it: the smallest any of them reports (the replicated
/// count; a voter that is behind reports more).
async fn backlog(client: &VoterClient, voters: &[String]) -> Option<u64> {
    let mut least = None;
    for addr in voters {
        if let Ok(status) = client.status(addr).await {
            if let Some(archive) = status.archive {
                least = Some(least.map_or(archive.backlog, |l: u64| l.min(archive.backlog)));
            }
        }
    }
    least
}

/// Rows in the archive, through the multi-host URL (so, on the primary).
async fn rows(url: &str) -> Option<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    let connection = tokio::spawn(connection);
    let count = client
        .query_one("SELECT count(*) FROM flashstock_orders", &[])
        .await
        .ok()
        .map(|row| row.get::<_, i64>(0));
    connection.abort();
    count
}

/// Kill the primary, promote the standby, start the watcher. `db` is taken and given back: its
/// calls block (pg_ctl), so they run on a blocking thread, not on the workload's.
pub async fn inject(
    db: ArchiveDb,
    clock: Clock,
    client: VoterClient,
    voters: Vec<String>,
) -> (ArchiveDb, Result<Active, String>) {
    let backlog_before = backlog(&client, &voters).await.unwrap_or(0);
    let killed_ms = clock.ms();
    let (db, promoted) = tokio::task::spawn_blocking(move || {
        let mut db = db;
        let promoted = db.fail_over();
        (db, promoted)
    })
    .await
    .expect("the failover thread does not panic");
    let promote_ms = match promoted {
        Ok(ms) => ms,
        Err(e) => return (db, Err(e)),
    };
    let url = db.url();
    let watched = Arc::new(Mutex::new(Watched::default()));
    let shared = watched.clone();
    let watcher = tokio::spawn(async move {
        // Rows on the promoted server right after the promotion: with a synchronous standby,
        // every row the dead primary had committed.
        let mut baseline = None;
        let mut halted = false;
        loop {
            if baseline.is_none() {
                baseline = rows(&url).await;
            } else if !halted {
                if let (Some(now), Some(then)) = (rows(&url).await, baseline) {
                    if now > then {
                        halted = true;
                        lock(&shared).halted_ms = Some(clock.ms() - killed_ms);
                    }
                }
            }
            if let Some(backlog) = backlog(&client, &voters).await {
                let mut watched = lock(&shared);
                watched.backlog_max = watched.backlog_max.max(backlog);
                if halted && backlog <= backlog_before {
                    watched.caught_up_ms = Some(clock.ms() - killed_ms);
                    return;
                }
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    });
    let active = Active {
        killed_at_ms: killed_ms,
        promote_ms,
        backlog_before,
        watched,
        watcher,
    };
    (db, Ok(active))
}

/// Rebuild the standby, then wait (at most 30 s) for the watcher to see the archive
/// resume and catch up; the figures.
pub async fn heal(db: ArchiveDb, active: Active) -> (ArchiveDb, Result<Figures, String>) {
    let (db, rebuilt) = tokio::task::spawn_blocking(move || {
        let mut db = db;
        let rebuilt = db.rebuild_standby();
        (db, rebuilt)
    })
    .await
    .expect("the rebuild thread does not panic");
    let rebuild_ms = match rebuilt {
        Ok(ms) => ms,
        Err(e) => return (db, Err(e)),
    };
    let mut watcher = active.watcher;
    if tokio::time::timeout(WATCH_MAX, &mut watcher).await.is_err() {
        watcher.abort();
    }
    let watched = lock(&active.watched).clone();
    let figures = Figures {
        killed_at_ms: active.killed_at_ms,
        promote_ms: active.promote_ms,
        archive_halted_ms: watched.halted_ms,
        backlog_max: watched.backlog_max,
        backlog_before: active.backlog_before,
        archive_caught_up_ms: watched.caught_up_ms,
        rebuild_ms,
    };
    (db, Ok(figures))
}

fn lock(watched: &Mutex<Watched>) -> std::sync::MutexGuard<'_, Watched> {
    // A few numbers, valid after any panic.
    watched.lock().unwrap_or_else(|e| e.into_inner())
}
