//! The order archive: every order state change copied to PostgreSQL exactly once, off the
//! purchase path: orders as placed (with their lines), and cancellations.
//!
//! Every voter with `archive.postgres_url` set runs an archiver for each Raft group, but only
//! the group's current leader archives it: each group has its own cursor, in its own log, and
//! its orders' ids name the group, so the groups' rows never collide. One step:
//!
//! 1. read the replicated archive cursor and, from the leader's own applied state, up to
//!    `archive.batch_max` orders and up to as many cancellations after it, in log order, both
//!    from one snapshot of the state; both live in the log positions' space, so one cursor
//!    covers both: the step goes up to the last position it read of both (or the last of a full
//!    list, whichever comes first);
//! 2. insert them in one transaction (orders, their lines, then the cancellations, which name
//!    orders archived before or in the same batch); a row already present by key must hold the
//!    same contents (a batch sent again), or the step fails with [`ArchiveError::Conflict`];
//! 3. propose `MarkArchived { up_to: last }` through Raft, keyed by that position.
//!
//! The cursor moves only after the rows are committed in PostgreSQL, and the rows are written in
//! log order from the cursor, so there is never a gap. A step interrupted anywhere (PostgreSQL
//! down, leader killed between 2 and 3, a new leader with an older applied state) is simply done
//! again from the replicated cursor; the insert leaves the identical rows that are already there,
//! so there is never a duplicate. A row with an order's id and other contents is never skipped:
//! the archiver halts there, loudly (error log, `archive_conflicts_total`, `last_error_kind`
//! `conflict` in every status), and goes on once an operator resolved the row. Purchases never
//! wait for any of this: they are confirmed by Raft alone, and an archive outage only grows the
//! backlog (`archive_backlog_orders`, `stockctl status`).
//!
//! Connections: each voter's pool opens at most `archive.pool_size` connections, lazily, and
//! the archivers of all its groups share it; the configuration caps it so that every voter
//! holding a full pool at once (a deposed leader that has not noticed yet, and reports served
//! by followers) stays within the cluster's limit, whatever the number of groups.
//!
//! The schema is versioned: [`MIGRATIONS`] are applied in order under an advisory lock, each
//! recorded in `flashstock_schema_migrations`, so starting twice or from two nodes is harmless.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_config::ArchiveSection;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use flashstock_api::{
    ArchiveErrorKind, ArchiveReport, ArchiveReportRow, ArchiveStatus, Command, Op, Order, OrderId,
    Outcome, WriteResponse,
};
use openraft::ServerState;
use raft_store::inventory::{Cancellation, InventoryMeta, OrderRecord};
use tokio::sync::watch;

use crate::NodeState;

/// Schema versions, applied in order, each once. Never edit a released one: add the next.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "orders",
        "CREATE TABLE flashstock_orders (
        order_id         bigint      PRIMARY KEY,
        product          text        NOT NULL,
        quantity         integer     NOT NULL CHECK (quantity > 0),
        unit_price_cents bigint      NOT NULL CHECK (unit_price_cents >= 0),
        customer         text,
        idempotency_key  text        NOT NULL,
        log_index        bigint      NOT NULL,
        slot             integer     NOT NULL,
        committed_at     timestamptz NOT NULL,
        archived_at      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX flashstock_orders_committed_at ON flashstock_orders (committed_at);",
    ),
    (
        2,
        "incarnations",
        "CREATE TABLE flashstock_incarnations (
        incarnation     smallint    PRIMARY KEY CHECK (incarnation BETWEEN 1 AND 127),
        after_log_index bigint      NOT NULL,
        claimed_at      timestamptz NOT NULL DEFAULT now()
    );",
    ),
    // An order of several lines (a cart, a hold) keeps its first line in flashstock_orders,
    // whose meaning is unchanged, and every line here; an order of one line has no rows here.
    // A cancellation is an event at its own log position, once per order.
    (
        3,
        "order lines and events",
        "CREATE TABLE flashstock_order_lines (
        order_id         bigint  NOT NULL REFERENCES flashstock_orders (order_id),
        line             integer NOT NULL CHECK (line >= 0),
        product          text    NOT NULL,
        quantity         integer NOT NULL CHECK (quantity > 0),
        unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0),
        PRIMARY KEY (order_id, line)
    );
    CREATE TABLE flashstock_order_events (
        position         bigint      PRIMARY KEY,
        order_id         bigint      NOT NULL REFERENCES flashstock_orders (order_id),
        kind             text        NOT NULL CHECK (kind IN ('cancelled')),
        happened_at      timestamptz NOT NULL,
        archived_at      timestamptz NOT NULL DEFAULT now(),
        UNIQUE (order_id, kind)
    );",
    ),
];

/// Key of the advisory lock that serialises migrations across nodes.
const MIGRATION_LOCK: i64 = 0x666c_6173_6873_746b; // "flashstk"

/// 9999-12-31T23:59:59.999Z, in milliseconds since the Unix epoch.
const TIME_MS_MAX: u64 = 253_402_300_799_999;

/// How often a follower checks whether it became the leader.
const LEADERSHIP_POLL: Duration = Duration::from_millis(250);
/// Longest wait for new orders before checking leadership again.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Why an archive step failed. Every failure is retried from the replicated cursor.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive database unavailable: {0}")]
    Pool(String),
    #[error("archive database error: {0}")]
    Database(String),
    #[error("{0} took longer than archive.timeout_ms")]
    Timeout(&'static str),
    #[error("reading orders from the state machine failed: {0}")]
    Storage(String),
    #[error("the archive cursor was not replicated: {0}")]
    Cursor(String),
    /// The archive holds rows with these orders' ids and other contents: never skipped, never
    /// overwritten.
    #[error(
        "the archive holds {count} row(s) with the id of an order to archive and different \
         contents (order ids {first:?}); the archiver stops at them: compare the rows in \
         flashstock_orders with the cluster's orders and resolve them (deploy/RUNBOOK.md)"
    )]
    Conflict { count: usize, first: Vec<u64> },
    #[error("{0}")]
    Invalid(String),
}

impl ArchiveError {
    /// The stable category of this error, which may be shown publicly (the message may not).
    /// `None` for a request's own bad input, which is never an archiver failure.
    pub fn kind(&self) -> Option<ArchiveErrorKind> {
        match self {
            ArchiveError::Pool(_) => Some(ArchiveErrorKind::DatabaseUnavailable),
            ArchiveError::Database(_) => Some(ArchiveErrorKind::DatabaseError),
            ArchiveError::Timeout(_) => Some(ArchiveErrorKind::Timeout),
            ArchiveError::Storage(_) => Some(ArchiveErrorKind::Storage),
            ArchiveError::Cursor(_) => Some(ArchiveErrorKind::Cursor),
            ArchiveError::Conflict { .. } => Some(ArchiveErrorKind::Conflict),
            ArchiveError::Invalid(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for ArchiveError {
    fn from(e: tokio_postgres::Error) -> ArchiveError {
        ArchiveError::Database(describe_postgres_error(&e))
    }
}

impl From<deadpool_postgres::PoolError> for ArchiveError {
    fn from(e: deadpool_postgres::PoolError) -> ArchiveError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => {
                ArchiveError::Pool(describe_postgres_error(&e))
            }
            other => ArchiveError::Pool(other.to_string()),
        }
    }
}

/// tokio-postgres's own message is terse ("db error", "error connecting to server"); the server's
/// message or the IO cause is what an operator needs.
fn describe_postgres_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// What this node's archiver last did, for `GET /admin/status`.
#[derive(Debug, Clone, Default)]
struct Progress {
    active: bool,
    last_error: Option<(ArchiveErrorKind, String)>,
    last_batch_at_ms: Option<u64>,
}

/// The archive of one voter: its connection pool, which the archivers of all its groups share,
/// and each archiver's progress.
pub struct Archive {
    settings: ArchiveSection,
    pool: Pool,
    /// `host:port/dbname`, for logs (never the password).
    target: String,
    /// By group number.
    progress: Mutex<std::collections::BTreeMap<u16, Progress>>,
}

/// What one archive step did.
enum Step {
    /// Nothing to archive.
    Idle,
    /// This many orders were written and the cursor replicated.
    Archived(usize),
    /// Leadership moved away before the cursor was proposed.
    NotLeader,
}

impl Archive {
    /// The archive described by `settings`, or `None` when it is off. Connects to nothing yet.
    pub fn new(settings: &ArchiveSection) -> Result<Option<Arc<Archive>>, String> {
        let Some(url) = &settings.postgres_url else {
            return Ok(None);
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("archive.postgres_url is not a PostgreSQL URL: {e}"))?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        config.connect_timeout(timeout);
        config.application_name("flashstock-archiver");
        let target = describe_target(&config);
        let recycling = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &settings.postgres_ca_path {
            None => Manager::from_config(config, tokio_postgres::NoTls, recycling()),
            Some(ca) => {
                let mut tls = flashstock_tls::trusting(ca)
                    .map_err(|e| format!("archive.postgres_ca_path: {e}"))?;
                // PostgreSQL's own protocol name: servers that check ALPN accept only it.
                tls.alpn_protocols = vec![b"postgresql".to_vec()];
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                Manager::from_config(config, connector, recycling())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| format!("cannot build the archive's connection pool: {e}"))?;
        Ok(Some(Arc::new(Archive {
            settings: settings.clone(),
            pool,
            target,
            progress: Mutex::default(),
        })))
    }

    /// Claim the next incarnation for a restore from a backup (see `raft_store::restore`): one
    /// above every incarnation claimed before, every incarnation of an archived order, and the
    /// backup's own `current`. The table's key makes two claims of one number impossible, so no
    /// two restores ever start the same incarnation, whatever backup they start from.
    pub async fn claim_incarnation(
        &self,
        current: u8,
        after_index: u64,
    ) -> Result<u8, ArchiveError> {
        let mut client = self.pool.get().await?;
        migrate(&mut client).await?;
        let after = i64::try_from(after_index).unwrap_or(i64::MAX);
        let row = client
            .query_one(
                "INSERT INTO flashstock_incarnations (incarnation, after_log_index)
                 SELECT GREATEST(
                     (SELECT COALESCE(max(incarnation), 0) FROM flashstock_incarnations),
                     (SELECT COALESCE(max(order_id >> 56), 0) FROM flashstock_orders),
                     $1::smallint
                 ) + 1, $2
                 RETURNING incarnation",
                &[&i16::from(current), &after],
            )
            .await?;
        let claimed: i16 = row.get(0);
        u8::try_from(claimed).map_err(|_| {
            ArchiveError::Invalid(format!("the archive claimed incarnation {claimed}"))
        })
    }

    /// Where the archive goes, for the start-up log: `host:port/dbname`, pool size.
    pub fn describe(&self) -> String {
        let tls = match self.settings.postgres_ca_path {
            Some(_) => "TLS",
            None => "no TLS",
        };
        format!(
            "{} (pool of at most {} connections, {tls})",
            self.target, self.settings.pool_size
        )
    }

    /// The archive's status in `group` as a voter sees it: the replicated counters of `meta`
    /// (the group's), and the progress of this node's archiver of the group, if it has one
    /// (`None`: the archive is off).
    pub fn status(archive: Option<&Archive>, group: u16, meta: &InventoryMeta) -> ArchiveStatus {
        let progress = archive
            .map(|archive| archive.progress_of(group))
            .unwrap_or_default();
        ArchiveStatus {
            enabled: archive.is_some(),
            active: progress.active,
            cursor: meta.archived_up_to,
            backlog: meta.archive_backlog(),
            orders_placed: meta.orders_placed,
            orders_held: meta.orders_held(),
            last_error_kind: progress.last_error.as_ref().map(|(kind, _)| *kind),
            last_error: progress.last_error.map(|(_, message)| message),
            last_batch_at_ms: progress.last_batch_at_ms,
        }
    }

    /// Units sold and revenue per product for orders committed in `from_ms..to_ms`, and what
    /// cancellations archived so far took back from them. Times past
    /// the year 9999 are read as the end of 9999 (PostgreSQL's timestamps end soon after).
    pub async fn report(&self, from_ms: u64, to_ms: u64) -> Result<ArchiveReport, ArchiveError> {
        let (from_ms, to_ms) = (from_ms.min(TIME_MS_MAX), to_ms.min(TIME_MS_MAX));
        if from_ms >= to_ms {
            return Err(ArchiveError::Invalid(format!(
                "the range must not be empty (from_ms {from_ms} >= to_ms {to_ms})"
            )));
        }
        let (from, to) = (system_time(from_ms), system_time(to_ms));
        let rows = self
            .bounded("the report", async {
                let client = self.pool.get().await?;
                let rows = client
                    .query(
                        // One row per line: an order's lines if it has any, else its own.
                        "WITH lines AS (
                             SELECT o.order_id,
                                    COALESCE(l.product, o.product) AS product,
                                    COALESCE(l.quantity, o.quantity)::bigint AS quantity,
                                    COALESCE(l.unit_price_cents, o.unit_price_cents) AS price,
                                    e.position IS NOT NULL AS cancelled
                               FROM flashstock_orders o
                               LEFT JOIN flashstock_order_lines l USING (order_id)
                               LEFT JOIN flashstock_order_events e
                                      ON e.order_id = o.order_id AND e.kind = 'cancelled'
                              WHERE o.committed_at >= $1 AND o.committed_at < $2
                         )
                         SELECT product, count(DISTINCT order_id)::bigint,
                                sum(quantity)::bigint, sum(quantity * price)::bigint,
                                (sum(quantity) FILTER (WHERE cancelled))::bigint,
                                (sum(quantity * price) FILTER (WHERE NOT cancelled))::bigint
                           FROM lines GROUP BY product ORDER BY product",
                        &[&from, &to],
                    )
                    .await?;
                Ok(rows)
            })
            .await?;
        let count = |row: &tokio_postgres::Row, at: usize| {
            row.get::<_, Option<i64>>(at).unwrap_or(0) as u64
        };
        let products = rows
            .iter()
            .map(|row| ArchiveReportRow {
                product: row.get(0),
                orders: count(row, 1),
                units: count(row, 2),
                revenue_cents: count(row, 3),
                cancelled_units: count(row, 4),
                net_revenue_cents: count(row, 5),
            })
            .collect();
        Ok(ArchiveReport {
            from_ms,
            to_ms,
            products,
        })
    }

    /// The archiver of `group`: runs until `stopping` turns true, archiving whenever this node
    /// leads the group. Each group has its own cursor and its own archiver, on its leader.
    pub async fn run(
        self: Arc<Self>,
        node: Arc<NodeState>,
        group: u16,
        mut stopping: watch::Receiver<bool>,
    ) {
        let this_group = &node.groups[usize::from(group)];
        let mut applied = this_group.reader.watch_applied();
        let mut migrated = false;
        let mut failures: u32 = 0;
        tracing::info!(
            target = %self.target,
            group,
            "archiver started; it archives while this node leads the group"
        );
        loop {
            if *stopping.borrow() {
                break;
            }
            let leading = is_leader(&node, this_group);
            self.set_active(group, leading);
            let wait = if !leading {
                // The schema is checked again by the next term's archiver: cheap, and safe if
                // someone dropped the table in between.
                migrated = false;
                LEADERSHIP_POLL
            } else {
                match self.step(&node, this_group, &mut migrated).await {
                    Ok(Step::Idle) => {
                        failures = 0;
                        let _ = tokio::time::timeout(IDLE_WAIT, applied.changed()).await;
                        continue;
                    }
                    Ok(Step::Archived(count)) => {
                        if failures > 0 {
                            tracing::info!(
                                count,
                                group,
                                "archive resumed after {failures} failures"
                            );
                        }
                        failures = 0;
                        node.metrics.archive_orders.inc_by(count as u64);
                        if count >= self.settings.batch_max {
                            // A full batch: more are waiting, so the backlog is worked off at
                            // full speed; the interval only lets small batches fill up.
                            continue;
                        }
                        Duration::from_millis(self.settings.interval_ms)
                    }
                    Ok(Step::NotLeader) => continue,
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        node.metrics.archive_errors.inc();
                        let backlog = this_group
                            .reader
                            .inventory_meta()
                            .map_or(0, |meta| meta.archive_backlog());
                        let wait = if let ArchiveError::Conflict { .. } = error {
                            // Not a passing failure: it stays until an operator acts, so it is
                            // retried slowly, and said at error level every time.
                            node.metrics.archive_conflicts.inc();
                            let wait = Duration::from_millis(self.settings.retry_max_ms);
                            tracing::error!(
                                %error,
                                group,
                                failures,
                                backlog,
                                retry_in_ms = wait.as_millis() as u64,
                                "ARCHIVE HALTED: an order's id is taken by a different row; \
                                 purchases are unaffected, the backlog grows until resolved"
                            );
                            wait
                        } else {
                            let wait = self.retry_wait(failures);
                            tracing::warn!(
                                %error,
                                group,
                                failures,
                                backlog,
                                retry_in_ms = wait.as_millis() as u64,
                                "archive step failed; purchases are unaffected, retrying from the cursor"
                            );
                            wait
                        };
                        let last_error = (
                            error.kind().unwrap_or(ArchiveErrorKind::DatabaseError),
                            error.to_string(),
                        );
                        self.progress_mut(group, |progress| progress.last_error = Some(last_error));
                        wait
                    }
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => {}
            }
        }
        self.set_active(group, false);
        tracing::info!(group, "archiver stopped");
    }

    /// One step: write the orders after the cursor, then replicate the new cursor.
    async fn step(
        &self,
        node: &NodeState,
        group: &crate::Group,
        migrated: &mut bool,
    ) -> Result<Step, ArchiveError> {
        let storage = |e: openraft::StorageError<u64>| ArchiveError::Storage(e.to_string());
        let meta = group.reader.inventory_meta().map_err(storage)?;
        let batch_max = self.settings.batch_max;
        // One snapshot for both lists (see `archive_batch`): read apart, a cursor could pass an
        // order placed between the two reads.
        let (mut orders, mut cancellations) = group
            .reader
            .archive_batch(meta.archived_up_to, batch_max)
            .map_err(storage)?;
        let Some(last) = batch_end(&orders, &cancellations, batch_max) else {
            return Ok(Step::Idle);
        };
        orders.retain(|record| record.order.id <= last);
        cancellations.retain(|(position, _)| *position <= last);
        let started = std::time::Instant::now();
        self.bounded("writing a batch", async {
            let mut client = self.pool.get().await?;
            if !*migrated {
                migrate(&mut client).await?;
                *migrated = true;
            }
            let transaction = client.transaction().await?;
            let plain: Vec<Order> = orders.iter().map(|record| record.order.clone()).collect();
            insert(&transaction, &plain).await?;
            insert_lines(&transaction, &orders).await?;
            insert_cancellations(&transaction, &cancellations).await?;
            transaction.commit().await?;
            Ok(())
        })
        .await?;
        node.metrics
            .archive_batch_seconds
            .observe(started.elapsed().as_secs_f64());

        let command = Command {
            key: format!("archive-{last}"),
            op: Op::MarkArchived { up_to: last },
        };
        match node.propose(group, vec![command]).await {
            WriteResponse::Applied { outcomes, .. } => match outcomes.first().map(Outcome::first) {
                Some(Outcome::Archived { .. }) => {
                    self.progress_mut(group.number, |progress| {
                        progress.last_error = None;
                        progress.last_batch_at_ms = Some(crate::now_ms());
                    });
                    Ok(Step::Archived(orders.len() + cancellations.len()))
                }
                other => Err(ArchiveError::Cursor(format!(
                    "unexpected outcome {other:?}"
                ))),
            },
            WriteResponse::NotLeader { .. } => Ok(Step::NotLeader),
            WriteResponse::Refused { message, .. } => Err(ArchiveError::Cursor(message)),
            WriteResponse::Unknown { message } => Err(ArchiveError::Cursor(message)),
        }
    }

    /// Run a database step under `archive.timeout_ms`.
    async fn bounded<T>(
        &self,
        what: &'static str,
        step: impl std::future::Future<Output = Result<T, ArchiveError>>,
    ) -> Result<T, ArchiveError> {
        let limit = Duration::from_millis(self.settings.timeout_ms);
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| ArchiveError::Timeout(what))?
    }

    /// Exponential backoff from `retry_min_ms`, capped at `retry_max_ms`.
    fn retry_wait(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let ms = self
            .settings
            .retry_min_ms
            .saturating_mul(1 << doublings)
            .min(self.settings.retry_max_ms);
        Duration::from_millis(ms)
    }

    fn set_active(&self, group: u16, active: bool) {
        self.progress_mut(group, |progress| progress.active = active);
    }

    /// What the archiver of `group` last did.
    fn progress_of(&self, group: u16) -> Progress {
        let progress = self.progress.lock().expect("progress lock");
        progress.get(&group).cloned().unwrap_or_default()
    }

    fn progress_mut(&self, group: u16, change: impl FnOnce(&mut Progress)) {
        let mut progress = self.progress.lock().expect("progress lock");
        change(progress.entry(group).or_default());
    }
}

fn is_leader(node: &NodeState, group: &crate::Group) -> bool {
    let metrics = group.raft.metrics();
    let metrics = metrics.borrow();
    metrics.state == ServerState::Leader && metrics.current_leader == Some(node.id)
}

/// Apply the migrations not applied yet, under an advisory lock, in one transaction.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), ArchiveError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS flashstock_schema_migrations (
                version     integer     PRIMARY KEY,
                description text        NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let applied: Vec<i32> = transaction
        .query("SELECT version FROM flashstock_schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO flashstock_schema_migrations (version, description) VALUES ($1, $2)",
                &[version, description],
            )
            .await?;
        tracing::info!(version, description, "archive schema migrated");
    }
    transaction.commit().await?;
    Ok(())
}

/// Insert `orders` in `transaction`. A row already present with an order's id and the same
/// contents is a batch sent again (the cursor did not move after a commit) and is left as it
/// is; one with other contents is [`ArchiveError::Conflict`], and the caller drops the
/// transaction, so nothing of the batch is kept.
async fn insert(
    transaction: &deadpool_postgres::Transaction<'_>,
    orders: &[Order],
) -> Result<(), ArchiveError> {
    let column = |name: &str, e: std::num::TryFromIntError| {
        ArchiveError::Invalid(format!(
            "an order's {name} does not fit PostgreSQL's type: {e}"
        ))
    };
    let mut ids = Vec::with_capacity(orders.len());
    let mut prices = Vec::with_capacity(orders.len());
    let mut indexes = Vec::with_capacity(orders.len());
    for order in orders {
        ids.push(i64::try_from(order.id.0).map_err(|e| column("id", e))?);
        prices.push(i64::try_from(order.price_cents).map_err(|e| column("price", e))?);
        indexes.push(i64::try_from(order.id.log_index()).map_err(|e| column("log index", e))?);
    }
    let quantities: Vec<i32> = orders
        .iter()
        .map(|o| i32::try_from(o.quantity).map_err(|e| column("quantity", e)))
        .collect::<Result<_, _>>()?;
    let products: Vec<&str> = orders.iter().map(|o| o.product.as_str()).collect();
    let customers: Vec<Option<&str>> = orders.iter().map(|o| o.customer.as_deref()).collect();
    let keys: Vec<&str> = orders.iter().map(|o| o.key.as_str()).collect();
    let slots: Vec<i32> = orders.iter().map(|o| i32::from(o.id.slot())).collect();
    let committed: Vec<SystemTime> = orders.iter().map(|o| system_time(o.placed_at_ms)).collect();

    // The outer SELECT sees the table as it was before this statement's INSERT: the rows it
    // joins are exactly those that were there already, and it returns the ones that differ.
    let differing = transaction
        .query(
            "WITH batch (order_id, product, quantity, unit_price_cents, customer,
                        idempotency_key, log_index, slot, committed_at) AS (
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::integer[], $4::bigint[],
                                      $5::text[], $6::text[], $7::bigint[], $8::integer[],
                                      $9::timestamptz[])
             ),
             inserted AS (
                 INSERT INTO flashstock_orders (order_id, product, quantity, unit_price_cents,
                                                customer, idempotency_key, log_index, slot,
                                                committed_at)
                 SELECT * FROM batch
                 ON CONFLICT (order_id) DO NOTHING
                 RETURNING order_id
             )
             SELECT b.order_id
               FROM batch b JOIN flashstock_orders o ON o.order_id = b.order_id
              WHERE (o.product, o.quantity, o.unit_price_cents, o.customer, o.idempotency_key,
                     o.log_index, o.slot, o.committed_at)
                    IS DISTINCT FROM
                    (b.product, b.quantity, b.unit_price_cents, b.customer, b.idempotency_key,
                     b.log_index, b.slot, b.committed_at)
              ORDER BY b.order_id",
            &[
                &ids,
                &products,
                &quantities,
                &prices,
                &customers,
                &keys,
                &indexes,
                &slots,
                &committed,
            ],
        )
        .await?;
    conflict_if_any(&differing)
}

/// [`ArchiveError::Conflict`] naming the first ids of `differing`, if it is not empty. Nothing
/// of the batch is kept (its transaction is dropped): the cursor stays before the conflict.
fn conflict_if_any(differing: &[tokio_postgres::Row]) -> Result<(), ArchiveError> {
    const NAMED: usize = 5;
    if differing.is_empty() {
        return Ok(());
    }
    Err(ArchiveError::Conflict {
        count: differing.len(),
        first: differing
            .iter()
            .take(NAMED)
            .map(|row| row.get::<_, i64>(0) as u64)
            .collect(),
    })
}

/// Where one step ends: the last position of `orders` and `cancellations` together, or, if one
/// of them is a full batch (more may follow it), no further than its last, so that nothing
/// before the new cursor is left unread. `None`: nothing to archive.
fn batch_end(
    orders: &[OrderRecord],
    cancellations: &[(OrderId, Cancellation)],
    batch_max: usize,
) -> Option<OrderId> {
    let last_order = orders.last().map(|record| record.order.id);
    let last_cancellation = cancellations.last().map(|(position, _)| *position);
    let mut end = last_order.max(last_cancellation)?;
    if orders.len() >= batch_max {
        end = end.min(last_order?);
    }
    if cancellations.len() >= batch_max {
        end = end.min(last_cancellation?);
    }
    Some(end)
}

/// Insert the lines of the orders of several lines, as [`insert`] does orders.
async fn insert_lines(
    transaction: &deadpool_postgres::Transaction<'_>,
    orders: &[OrderRecord],
) -> Result<(), ArchiveError> {
    let (mut ids, mut lines, mut products, mut quantities, mut prices) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for record in orders.iter().filter(|record| record.terms.lines.len() > 1) {
        for (at, line) in record.terms.lines.iter().enumerate() {
            ids.push(record.order.id.0 as i64);
            lines.push(at as i32);
            products.push(line.product.as_str());
            quantities.push(line.quantity as i32);
            prices.push(i64::try_from(line.price_cents).map_err(|e| {
                ArchiveError::Invalid(format!("a line's price does not fit a bigint: {e}"))
            })?);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let differing = transaction
        .query(
            "WITH batch (order_id, line, product, quantity, unit_price_cents) AS (
                 SELECT * FROM UNNEST($1::bigint[], $2::integer[], $3::text[], $4::integer[],
                                      $5::bigint[])
             ),
             inserted AS (
                 INSERT INTO flashstock_order_lines SELECT * FROM batch
                 ON CONFLICT (order_id, line) DO NOTHING
                 RETURNING order_id
             )
             SELECT b.order_id
               FROM batch b JOIN flashstock_order_lines l USING (order_id, line)
              WHERE (l.product, l.quantity, l.unit_price_cents)
                    IS DISTINCT FROM (b.product, b.quantity, b.unit_price_cents)
              ORDER BY b.order_id",
            &[&ids, &lines, &products, &quantities, &prices],
        )
        .await?;
    conflict_if_any(&differing)
}

/// Insert cancellations, as [`insert`] does orders: one event per position, and per order.
async fn insert_cancellations(
    transaction: &deadpool_postgres::Transaction<'_>,
    cancellations: &[(OrderId, Cancellation)],
) -> Result<(), ArchiveError> {
    if cancellations.is_empty() {
        return Ok(());
    }
    let positions: Vec<i64> = cancellations.iter().map(|(at, _)| at.0 as i64).collect();
    let orders: Vec<i64> = cancellations
        .iter()
        .map(|(_, c)| c.order.0 as i64)
        .collect();
    let times: Vec<SystemTime> = cancellations
        .iter()
        .map(|(_, c)| system_time(c.cancelled_at_ms))
        .collect();
    let differing = transaction
        .query(
            "WITH batch (position, order_id, happened_at) AS (
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[])
             ),
             inserted AS (
                 INSERT INTO flashstock_order_events (position, order_id, kind, happened_at)
                 SELECT position, order_id, 'cancelled', happened_at FROM batch
                 ON CONFLICT (position) DO NOTHING
                 RETURNING position
             )
             SELECT b.order_id
               FROM batch b JOIN flashstock_order_events e USING (position)
              WHERE (e.order_id, e.kind, e.happened_at)
                    IS DISTINCT FROM (b.order_id, 'cancelled', b.happened_at)
              ORDER BY b.order_id",
            &[&positions, &orders, &times],
        )
        .await?;
    conflict_if_any(&differing)
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `host:port/dbname` of a connection config; every host of a multi-host URL, in order, and
/// `(read-write)` when only a server accepting writes will do.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            // One port for every host, or one each.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    if hosts.is_empty() {
        hosts.push("localhost:5432".into());
    }
    let dbname = config.get_dbname().unwrap_or("(default)");
    let read_write = match config.get_target_session_attrs() {
        tokio_postgres::config::TargetSessionAttrs::ReadWrite => " (read-write)",
        _ => "",
    };
    format!("{}/{dbname}{read_write}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
        }
    }

    #[test]
    fn retry_waits_double_up_to_the_cap() {
        let settings = ArchiveSection {
            postgres_url: Some("postgres://u@127.0.0.1:5432/db".into()),
            retry_min_ms: 100,
            retry_max_ms: 1000,
            ..ArchiveSection::default()
        };
        let archive = Archive::new(&settings).unwrap().unwrap();
        let waits: Vec<u64> = (1..=6)
            .map(|n| archive.retry_wait(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            archive.describe(),
            "127.0.0.1:5432/db (pool of at most 4 connections, no TLS)"
        );
    }

    async fn archived_keys(client: &deadpool_postgres::Client) -> Vec<(u64, String)> {
        client
            .query(
                "SELECT order_id, idempotency_key FROM flashstock_orders ORDER BY order_id",
                &[],
            )
            .await
            .expect("read the archive")
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, String>(1)))
            .collect()
    }

    /// Against a real PostgreSQL: a batch sent again (the cursor did not move after a commit)
    /// is accepted and adds nothing; a row with an order's id and other contents is a conflict,
    /// and nothing of that batch is kept.
    #[tokio::test]
    async fn a_batch_sent_again_is_fine_and_a_different_row_is_a_conflict() {
        use flashstock_api::OrderId;
        use flashstock_deploy::postgres::{Postgres, PostgresOptions};

        let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
        let settings = ArchiveSection {
            postgres_url: Some(postgres.url()),
            ..ArchiveSection::default()
        };
        let archive = Archive::new(&settings).unwrap().unwrap();
        let mut client = archive.pool.get().await.expect("connect");
        migrate(&mut client).await.expect("migrate");
        let order = |log_index: u64, key: &str| Order {
            id: OrderId::new(log_index, 0),
            key: key.into(),
            product: "kettle".into(),
            quantity: 2,
            customer: Some("c-1".into()),
            price_cents: 3900,
            remaining: 8,
            placed_at_ms: 1_700_000_000_123 + log_index,
            token: None,
        };
        let (a, b, c) = (order(10, "a"), order(11, "b"), order(12, "c"));
        insert_committed(&mut client, &[a.clone(), b.clone()])
            .await
            .expect("first batch");
        // Sent again, and with one more order: the same rows stay, the new one is added.
        insert_committed(&mut client, &[a.clone(), b.clone(), c.clone()])
            .await
            .expect("a batch sent again");
        let expected = vec![
            (a.id.0, "a".to_owned()),
            (b.id.0, "b".into()),
            (c.id.0, "c".into()),
        ];
        assert_eq!(archived_keys(&client).await, expected);

        // Another order with b's id (a restored log placing a new order at a used position),
        // in a batch with a new order: refused whole, and the row already there is untouched.
        let d = order(13, "d");
        let mut other_b = order(11, "b-after-restore");
        other_b.quantity = 1;
        match insert_committed(&mut client, &[other_b, d]).await {
            Err(error @ ArchiveError::Conflict { .. }) => {
                assert_eq!(error.kind(), Some(ArchiveErrorKind::Conflict));
                let ArchiveError::Conflict { count, first } = &error else {
                    unreachable!()
                };
                assert_eq!((*count, first.as_slice()), (1, [b.id.0].as_slice()));
                assert!(error.to_string().contains(&b.id.0.to_string()), "{error}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            archived_keys(&client).await,
            expected,
            "nothing of the batch is kept"
        );
        // Each field counts, the customer's absence too.
        let mut no_customer = b.clone();
        no_customer.customer = None;
        assert!(matches!(
            insert_committed(&mut client, &[no_customer]).await,
            Err(ArchiveError::Conflict { .. })
        ));
        let mut later = b.clone();
        later.placed_at_ms += 1;
        assert!(matches!(
            insert_committed(&mut client, &[later]).await,
            Err(ArchiveError::Conflict { .. })
        ));
    }

    async fn insert_committed(
        client: &mut deadpool_postgres::Client,
        orders: &[Order],
    ) -> Result<(), ArchiveError> {
        let transaction = client.transaction().await?;
        insert(&transaction, orders).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// One archive step's writes, committed.
    async fn archive_batch(
        client: &mut deadpool_postgres::Client,
        orders: &[OrderRecord],
        cancellations: &[(OrderId, Cancellation)],
    ) -> Result<(), ArchiveError> {
        let transaction = client.transaction().await?;
        let plain: Vec<Order> = orders.iter().map(|r| r.order.clone()).collect();
        insert(&transaction, &plain).await?;
        insert_lines(&transaction, orders).await?;
        insert_cancellations(&transaction, cancellations).await?;
        transaction.commit().await?;
        Ok(())
    }

    fn cart_order(log_index: u64, lines: &[(&str, u32, u64)]) -> OrderRecord {
        let terms = flashstock_api::OrderTerms {
            lines: lines
                .iter()
                .map(|(product, quantity, price)| flashstock_api::OrderLine {
                    product: (*product).into(),
                    quantity: *quantity,
                    price_cents: *price,
                    remaining: 0,
                    limit_epoch: 0,
                })
                .collect(),
            hold: None,
            cancelled_at_ms: None,
        };
        let first = &terms.lines[0];
        OrderRecord {
            order: Order {
                id: OrderId::new(log_index, 0),
                key: format!("cart-{log_index}"),
                product: first.product.clone(),
                quantity: first.quantity,
                customer: None,
                price_cents: first.price_cents,
                remaining: 0,
                placed_at_ms: 1_700_000_000_000 + log_index,
                token: None,
            },
            terms,
        }
    }

    /// A step ends at the last position read, but never past a full list's last one.
    #[test]
    fn a_step_ends_where_both_lists_are_complete() {
        let cancel = |at: u64| {
            (
                OrderId::new(at, 0),
                Cancellation {
                    order: OrderId::new(1, 0),
                    cancelled_at_ms: 0,
                },
            )
        };
        let orders = [cart_order(2, &[("a", 1, 1)]), cart_order(5, &[("a", 1, 1)])];
        assert_eq!(batch_end(&[], &[], 10), None);
        assert_eq!(
            batch_end(&orders, &[cancel(3)], 10),
            Some(OrderId::new(5, 0))
        );
        assert_eq!(
            batch_end(&orders, &[cancel(9)], 10),
            Some(OrderId::new(9, 0))
        );
        // Two orders is a full batch: a cancellation after the second waits for the next step.
        assert_eq!(
            batch_end(&orders, &[cancel(9)], 2),
            Some(OrderId::new(5, 0))
        );
        assert_eq!(
            batch_end(&orders[..1], &[cancel(3), cancel(4)], 2),
            Some(OrderId::new(4, 0))
        );
    }

    /// Lines of a cart's order and its cancellation are archived once each (a batch sent again
    /// is fine, a different row is a conflict), and the report takes cancellations off the net.
    #[tokio::test]
    async fn lines_and_cancellations_are_archived_once_and_net_of_cancellations() {
        use flashstock_deploy::postgres::{Postgres, PostgresOptions};

        let postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
        let settings = ArchiveSection {
            postgres_url: Some(postgres.url()),
            ..ArchiveSection::default()
        };
        let archive = Archive::new(&settings).unwrap().unwrap();
        let mut client = archive.pool.get().await.expect("connect");
        migrate(&mut client).await.expect("migrate");
        let cart = cart_order(10, &[("kettle", 2, 3900), ("mug", 1, 900)]);
        let single = cart_order(11, &[("kettle", 1, 3900)]);
        let cancellation = (
            OrderId::new(12, 0),
            Cancellation {
                order: cart.order.id,
                cancelled_at_ms: 1_700_000_000_500,
            },
        );
        archive_batch(&mut client, &[cart.clone(), single.clone()], &[])
            .await
            .expect("first batch");
        archive_batch(
            &mut client,
            &[cart.clone(), single.clone()],
            std::slice::from_ref(&cancellation),
        )
        .await
        .expect("sent again, with the cancellation");
        archive_batch(&mut client, &[], std::slice::from_ref(&cancellation))
            .await
            .expect("the cancellation sent again");
        let mut other_line = cart.clone();
        other_line.terms.lines[1].quantity = 5;
        assert!(matches!(
            archive_batch(&mut client, &[other_line], &[]).await,
            Err(ArchiveError::Conflict { .. })
        ));
        let mut other_time = cancellation.clone();
        other_time.1.cancelled_at_ms += 1;
        assert!(matches!(
            archive_batch(&mut client, &[], &[other_time]).await,
            Err(ArchiveError::Conflict { .. })
        ));
        let lines: i64 = client
            .query_one("SELECT count(*) FROM flashstock_order_lines", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(lines, 2, "the cart's two lines, none for the single line");

        let report = archive.report(0, u64::MAX).await.expect("a report");
        let row = |product: &str| {
            report
                .products
                .iter()
                .find(|row| row.product == product)
                .cloned()
                .unwrap_or_else(|| panic!("no row for {product}"))
        };
        let kettle = row("kettle");
        assert_eq!(
            (
                kettle.orders,
                kettle.units,
                kettle.revenue_cents,
                kettle.cancelled_units,
                kettle.net_revenue_cents
            ),
            (2, 3, 3 * 3900, 2, 3900),
            "the cart's kettles were cancelled, the single one stands"
        );
        let mug = row("mug");
        assert_eq!(
            (
                mug.orders,
                mug.units,
                mug.cancelled_units,
                mug.net_revenue_cents
            ),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn a_multi_host_url_is_described_host_by_host() {
        let settings = ArchiveSection {
            postgres_url: Some(
                "postgres://u:secret@10.0.0.4:5432,10.0.0.5:5433/shop?target_session_attrs=read-write"
                    .into(),
            ),
            ..ArchiveSection::default()
        };
        let archive = Archive::new(&settings).unwrap().unwrap();
        assert_eq!(
            archive.describe(),
            "10.0.0.4:5432,10.0.0.5:5433/shop (read-write) (pool of at most 4 connections, no TLS)"
        );
    }

    #[test]
    fn a_malformed_url_is_refused_with_the_key_named() {
        let settings = ArchiveSection {
            postgres_url: Some("postgres://u@host:notaport/db".into()),
            ..ArchiveSection::default()
        };
        let error = Archive::new(&settings).err().unwrap();
        assert!(error.contains("archive.postgres_url"), "{error}");
    }
}
