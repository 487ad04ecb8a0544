//! The archive's database for a run: a PostgreSQL primary and its synchronous standby, as
//! `deploy/RUNBOOK.md` ships them (`synchronous_standby_names = '*'`, voters on a multi-host URL
//! with `target_session_attrs=read-write`), so that the `postgres-failover` nemesis can kill the
//! primary and promote the standby with no change to the voters' configuration.
//!
//! The two servers keep their ports for the whole run (the URL names both): after a failover
//! the dead server is rebuilt as the new primary's standby on its old port
//! ([`ArchiveDb::rebuild_standby`]), and the roles have swapped; the next failover swaps them
//! back.

use std::time::{Duration, Instant};

use flashstock_deploy::postgres::{multi_host_url, Postgres, PostgresOptions};

/// How long a new standby may take to report itself synchronous to the primary.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// A primary and its synchronous standby.
pub struct ArchiveDb {
    /// Two servers; `servers[primary]` accepts writes.
    servers: [Postgres; 2],
    primary: usize,
    /// Whether the standby is streaming (false between a failover and its rebuild).
    standby_up: bool,
    url: String,
}

impl ArchiveDb {
    /// Start a primary, then a standby copied from it, then make the standby synchronous.
    pub fn start(options: PostgresOptions) -> Result<ArchiveDb, String> {
        let primary = Postgres::start(options).map_err(|e| format!("the primary: {e}"))?;
        let standby = Postgres::start_standby_of(&primary)
            .map_err(|e| format!("the standby (pg_basebackup from the primary): {e}"))?;
        let url = multi_host_url(&[&primary, &standby]);
        let db = ArchiveDb {
            servers: [primary, standby],
            primary: 0,
            standby_up: true,
            url,
        };
        db.make_standby_synchronous()?;
        Ok(db)
    }

    /// The voters' URL: both servers, writes to whichever is the primary.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The server that accepts writes.
    pub fn primary(&mut self) -> &mut Postgres {
        &mut self.servers[self.primary]
    }

    /// `primary 127.0.0.1:5433, standby 127.0.0.1:5434` (or `standby down`).
    pub fn describe(&self) -> String {
        let port = |i: usize| self.servers[i].port();
        match self.standby_up {
            true => format!(
                "primary on port {}, synchronous standby on port {}",
                port(self.primary),
                port(1 - self.primary)
            ),
            false => format!("primary on port {}, no standby", port(self.primary)),
        }
    }

    /// The `postgres-failover` fault: SIGKILL every process of the primary, promote the standby
    /// and let it commit alone (`synchronous_standby_names = ''`, or every commit would wait
    /// for a standby that does not exist). Returns how long the promotion took, in ms.
    pub fn fail_over(&mut self) -> Result<u64, String> {
        if !self.standby_up {
            return Err("no standby to promote".into());
        }
        self.servers[self.primary]
            .kill()
            .map_err(|e| format!("killing the primary: {e}"))?;
        let begun = Instant::now();
        let standby = 1 - self.primary;
        self.servers[standby]
            .promote()
            .map_err(|e| format!("promoting the standby: {e}"))?;
        self.primary = standby;
        self.standby_up = false;
        // The base backup copied the old primary's `synchronous_standby_names = '*'`.
        self.servers[standby]
            .set_synchronous_standby_names("")
            .map_err(|e| format!("letting the promoted server commit alone: {e}"))?;
        Ok(begun.elapsed().as_millis() as u64)
    }

    /// After a failover: rebuild the dead server as a standby of the new primary, on its old
    /// port (`pg_basebackup`), and make it synchronous again. Returns how long it took, in ms.
    pub fn rebuild_standby(&mut self) -> Result<u64, String> {
        if self.standby_up {
            return Ok(0);
        }
        let begun = Instant::now();
        let [a, b] = &mut self.servers;
        let (primary, dead) = match self.primary {
            0 => (&*a, b),
            _ => (&*b, a),
        };
        dead.rebuild_as_standby_of(primary)
            .map_err(|e| format!("rebuilding the standby: {e}"))?;
        self.standby_up = true;
        self.make_standby_synchronous()?;
        Ok(begun.elapsed().as_millis() as u64)
    }

    /// Whether the primary runs (a `postgres` fault crashes it, its heal restarts it).
    pub fn primary_running(&self) -> bool {
        self.servers[self.primary].is_running()
    }

    /// `synchronous_standby_names = '*'` on the primary, then wait until the standby streams
    /// synchronously, so that from now on a commit the archiver sees is on both servers.
    fn make_standby_synchronous(&self) -> Result<(), String> {
        let primary = &self.servers[self.primary];
        primary
            .set_synchronous_standby_names("*")
            .map_err(|e| format!("making the standby synchronous: {e}"))?;
        let deadline = Instant::now() + SYNC_WAIT;
        loop {
            let state = primary
                .sql("SELECT sync_state FROM pg_stat_replication")
                .unwrap_or_else(|e| e.to_string());
            if state == "sync" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the standby is not synchronous after {SYNC_WAIT:?}: {state:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
