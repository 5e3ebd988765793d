//! The shared store: PostgreSQL, for several replicas behind a load balancer.
//!
//! Dedup is a unique key every replica shares; work is claimed per record with a lease taken
//! under `FOR UPDATE SKIP LOCKED`, so no two replicas hand one record's callbacks to handlers at
//! once, and a crashed replica's leases return to the pool when they expire.
//!
//! Things replicas must agree on are decided by the database, not by each process:
//! - **Time.** Lease expiry and due times are read from the database's clock, so a replica whose
//!   clock runs ahead cannot steal live leases, nor one whose clock lags hold records back.
//! - **Order.** An insert takes its record's queue row lock *before* it draws its sequence
//!   number, so within a record sequence order is commit order: a worker never delivers a later
//!   callback while an earlier one is still being committed.
//! - **Ownership.** Each claim of a record takes the next *generation* of its lease; the
//!   heartbeat ([`Store::renew`], one statement for all of a replica's leases) and every outcome
//!   write name the generation they hold, and the database refuses stale ones. A replica that was
//!   paused or cut off while another took its record over records nothing for it: it hears
//!   [`StoreError::LeaseLost`] and stops, whatever its own clock says.
//!
//! Writes are group-committed: callbacks that arrive while others are being stored go into
//! the next insert statement together (one round trip, one WAL flush for all of them), and
//! handler outcomes of different records likewise. Every caller still hears back only after
//! its own write committed. All writers take row locks in one order — dedup keys, then the
//! records' queue rows (sorted), then callback rows — so concurrent batches cannot deadlock;
//! should the database refuse a batch anyway, its jobs are retried one by one.
//!
//! While the database is unreachable every call fails within the configured timeout with
//! [`StoreError::Unavailable`]: connections that stop answering are closed rather than reused,
//! TCP keepalives find dead ones while idle, and the pool reconnects by itself once the
//! database is back.

mod batch;
mod operator;
mod statements;
mod vacuum;

use std::{
    collections::HashMap,
    future::Future,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::{
    sync::{mpsc, oneshot},
    time::error::Elapsed,
};
use tokio_postgres::{Error as PgError, NoTls};

use super::{
    duration_ms, from_millis, millis, AfterLast, Attempt, Backlog, Claim, Cursor, Filter, Inserted,
    LeaseInfo, Listing, NewCallback, Outcome, Page, Renewal, Stats, Status, Store, StoreError,
    StoreOptions, StoredCallback, COLUMNS,
};
use batch::{gather, submit, Waiting, MAX_BATCH};
use operator::COUNT_SQL;
use statements::{from_row, pending_of, FinishJob, InsertJob, ReleaseJob};

/// Schema changes, applied in order, each once, under an advisory lock so replicas starting
/// together do not race.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_operator_view.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_lease_generation.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_history_in_row.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_idle_due.sql"),
    ),
];

/// How many batches of one kind (inserts, outcomes, releases) are committed at once: two, one
/// committing while the next gathers. More made every batch smaller and kept the server busy
/// with statements rather than rows (2 cores, PostgreSQL beside the receiver: four in flight
/// took 2,645–2,953 req/s at 0.38 transactions per callback and a p99 of 47–55 ms; two,
/// 3,569–3,902 at 0.22 and 31–35 ms); one alone let a slow commit hold up every writer behind
/// it (a p99 of 538 ms in one of two runs). Batches grow with the load up to [`MAX_BATCH`], so
/// two in flight is not what limits a larger server.
const IN_FLIGHT_BATCHES: usize = 2;

/// The key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006f_6b72_616d_6967;

/// The database's clock in unix milliseconds, for every lease and due-time decision.
pub(super) const NOW_MS: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The due time of an idle record (nothing pending): never. Kept in the `(due_at)` index
/// rather than left out by a predicate on `pending`, so the updates that change only the count
/// or the lease are HOT (migration 0005).
pub(super) const IDLE_DUE: &str = "9223372036854775807";

/// How many callbacks waiting to be stored make a burst, in which deliveries give way
/// ([`Store::acknowledgements_queued`]): at the rates that keep this many waiting, the
/// dispatcher's statements halve what is acknowledged (BENCHMARKS.md, "Issue 13, fifth
/// session").
const BURST_DEPTH: usize = 16;
/// How long a burst counts after its depth was last seen.
const BURST_HOLD: Duration = Duration::from_millis(200);

/// The PostgreSQL store. Cheap to clone; clones share the connections and the insert queue.
#[derive(Clone)]
pub struct PostgresStore {
    /// Everything but storing callbacks: the dispatcher, reads, replays, health checks.
    db: Db,
    /// Callbacks waiting to be stored; see [`gather`].
    inserts: mpsc::Sender<InsertJob>,
    /// How many callbacks wait to be stored, for [`Store::acknowledgements_queued`].
    waiting: Arc<Waiting>,
    /// Handler outcomes waiting to be recorded.
    finishes: mpsc::Sender<FinishJob>,
    /// Record leases waiting to be given back.
    releases: mpsc::Sender<ReleaseJob>,
    /// The leases this process holds: (owner, record) → the generation its claim took. Outcome
    /// writes and renewals name it, so the database can refuse them once the lease is another's.
    held: Arc<Mutex<HashMap<(String, String), i64>>>,
    /// Dropped with the last clone of the store: stops the vacuum task.
    _alive: Arc<()>,
}

/// A connection pool and the bound on each operation. A store has two: one that only stores
/// callbacks, and one for everything else.
#[derive(Clone)]
pub(super) struct Db {
    /// The connections.
    pool: Pool,
    /// How long one operation may take before the store counts as unavailable.
    timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A failed query's error, its cause named: a connection that broke or never opened is
/// `database unreachable`; a refusal by the server (it answered) keeps its own message.
fn query_failed(e: PgError) -> StoreError {
    if e.code().is_none() || e.is_closed() {
        StoreError::Unavailable(format!("database unreachable: {e}"))
    } else if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) {
        StoreError::Unavailable(format!("disk full: {e}"))
    } else if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
        StoreError::Unavailable(format!("read-only: {e}"))
    } else {
        unavailable(e)
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`) with the default
    /// [`StoreOptions`] and runs migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Like [`PostgresStore::connect`], with explicit pool size and timeout. Migrations run
    /// under an advisory lock, so replicas starting together apply each one exactly once.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "cannot read the PostgreSQL URL ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB"
            ))
        })?;
        let timeout = options.timeout.max(Duration::from_millis(100));
        // Settings the URL leaves unset: fail fast when the server is away, and find dead
        // connections while they sit idle in the pool.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(10));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout((timeout * 3).max(Duration::from_secs(15)));
        }
        if config.get_application_name().is_none() {
            config.application_name("okra-callbacks");
        }
        let pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(timeout))
                .create_timeout(Some(timeout))
                .recycle_timeout(Some(timeout))
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))
        };
        // Connections of their own for storing callbacks (up to a quarter of the pool), so
        // acknowledging Okra never waits behind the dispatcher's work; each carries one insert
        // transaction at a time, holding every callback that arrived while the other was
        // committing.
        let for_inserts = (options.max_connections / 4).clamp(1, IN_FLIGHT_BATCHES);
        let db = Db {
            pool: pool(options.max_connections.saturating_sub(for_inserts))?,
            timeout,
        };
        db.migrate().await?;
        let insert_db = Db {
            pool: pool(for_inserts)?,
            timeout,
        };
        let (inserts, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(insert_db, queue, for_inserts));
        // The dispatcher's writes: outcomes and releases, each a quarter of the pool at most.
        let for_dispatch = (options.max_connections / 4).clamp(1, IN_FLIGHT_BATCHES);
        let (finishes, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        let (releases, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        let alive = Arc::new(());
        tokio::spawn(vacuum::keep_clean(db.clone(), Arc::downgrade(&alive)));
        Ok(Self {
            db,
            inserts,
            waiting: Arc::new(Waiting::new(BURST_DEPTH, BURST_HOLD)),
            finishes,
            releases,
            held: Arc::default(),
            _alive: alive,
        })
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), i64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation of `owner`'s lease on `record`; `-1` (which no lease has) when this
    /// process holds none, so the database refuses the write.
    fn generation(&self, owner: &str, record: &str) -> i64 {
        self.lock_held()
            .get(&(owner.to_owned(), record.to_owned()))
            .copied()
            .unwrap_or(-1)
    }

    fn forget(&self, owner: &str, record: &str) {
        self.lock_held()
            .remove(&(owner.to_owned(), record.to_owned()));
    }
}

impl PostgresStore {
    /// Queues a handler outcome for the next group commit and waits for it; see
    /// [`Db::finish_batch`].
    async fn record_outcome(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
        last: Option<usize>,
    ) -> Result<AfterLast, StoreError> {
        let (reply, answer) = oneshot::channel();
        let generation = self.generation(owner, &cb.record);
        let job = FinishJob {
            owner: owner.to_owned(),
            id: cb.id.clone(),
            record: cb.record.clone(),
            generation,
            outcome,
            attempt: attempt.clone(),
            lease,
            last,
            reply,
        };
        let answer = submit(&self.finishes, job, answer).await;
        if matches!(
            answer,
            Ok(AfterLast::Released) | Err(StoreError::LeaseLost(_))
        ) {
            // Only that lease: a claim of this process may have taken the record again since
            // the release committed.
            let mut held = self.lock_held();
            let key = (owner.to_owned(), cb.record.clone());
            if held.get(&key) == Some(&generation) {
                held.remove(&key);
            }
        }
        answer
    }
}

impl Db {
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            // Every connection busy for the whole timeout: the database is slow, not away.
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                StoreError::Unavailable(format!(
                    "timeout: no database connection was free within {:?}",
                    self.timeout
                ))
            }
            e => StoreError::Unavailable(format!("database unreachable: {e}")),
        })
    }

    /// Bounds one operation by the store's timeout.
    async fn timed<T>(
        &self,
        op: impl Future<Output = Result<T, PgError>>,
    ) -> Result<Result<T, PgError>, Elapsed> {
        tokio::time::timeout(self.timeout, op).await
    }

    /// Turns an operation's result into the store's answer. A connection that did not answer
    /// in time may be half-dead (a network partition leaves it open but silent): it is closed
    /// instead of going back to the pool, where the next request would hang on it too.
    fn result_of<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(query_failed(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "timeout: the database did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // Migrations may wait for another replica's, and may rewrite tables: allow them longer.
        let limit = self.timeout.max(Duration::from_secs(120));
        let result = tokio::time::timeout(limit, async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS okra_schema_migrations (
                     version INTEGER PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
            let current: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM okra_schema_migrations",
                    &[],
                )
                .await?
                .get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                if let Err(e) = tx.batch_execute(sql).await {
                    return Ok(Err(StoreError::Config(format!(
                        "migration {version} failed: {e}"
                    ))));
                }
                tx.execute(
                    "INSERT INTO okra_schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, PgError>(Ok(()))
        })
        .await;
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "migrations did not finish within {limit:?}"
                )))
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert(
        &self,
        cb: NewCallback,
        dedup_window: Duration,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = InsertJob {
            hash: cb.body_hash(),
            cb,
            dedup_window,
            reply,
        };
        let _waiting = self.waiting.enter();
        submit(&self.inserts, job, answer).await
    }

    fn acknowledgements_queued(&self) -> bool {
        self.waiting.busy()
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.db.client().await?;
        // A lease that ran out without being released (`lease_until` still set) belonged to a
        // worker that stopped renewing it: taking it is a takeover.
        let lease_sql = format!(
            "WITH c AS (
               SELECT record, lease_owner AS was_owner, lease_until AS was_until
               FROM okra_record_queue
               WHERE pending > 0 AND due_at <= {NOW_MS}
                 AND (lease_until IS NULL OR lease_until < {NOW_MS})
               ORDER BY due_at LIMIT $1
               FOR UPDATE SKIP LOCKED
             )
             UPDATE okra_record_queue q SET lease_owner = $2, lease_until = {NOW_MS} + $3,
               lease_gen = q.lease_gen + 1
             FROM c WHERE q.record = c.record
             RETURNING q.record, q.lease_gen,
               CASE WHEN c.was_until IS NOT NULL AND c.was_owner <> $2 THEN c.was_owner END"
        );
        let result = self
            .db
            .timed(async {
                // Prepared once per connection: the dispatcher claims every time it is woken.
                let stmt = client.prepare_cached(&lease_sql).await?;
                let leases: Vec<(String, i64, Option<String>)> = client
                    .query(&stmt, &[&(max_records as i64), &owner, &duration_ms(lease)])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                if leases.is_empty() {
                    return Ok((leases, HashMap::new()));
                }
                let records: Vec<&str> = leases.iter().map(|(r, _, _)| r.as_str()).collect();
                let pending = pending_of(&client, &records, per_record).await?;
                Ok((leases, pending))
            })
            .await;
        let (leases, mut pending) = self.db.result_of(client, result)?;
        let mut held = self.lock_held();
        Ok(leases
            .into_iter()
            .map(|(record, generation, taken_over_from)| {
                held.insert((owner.to_owned(), record.clone()), generation);
                Claim {
                    callbacks: pending.remove(&record).unwrap_or_default(),
                    record,
                    taken_over_from,
                }
            })
            .collect())
    }

    async fn finish_attempt(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.record_outcome(owner, cb, outcome, attempt, lease, None)
            .await
            .map(drop)
    }

    async fn finish_last_attempt(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
        per_record: usize,
    ) -> Result<AfterLast, StoreError> {
        self.record_outcome(owner, cb, outcome, attempt, lease, Some(per_record.max(1)))
            .await
    }

    async fn renew(&self, owner: &str, lease: Duration) -> Result<Renewal, StoreError> {
        let (records, generations): (Vec<String>, Vec<i64>) = self
            .lock_held()
            .iter()
            .filter(|((o, _), _)| o == owner)
            .map(|((_, record), generation)| (record.clone(), *generation))
            .unzip();
        if records.is_empty() {
            return Ok(Renewal::default());
        }
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(async {
                let stmt = client
                    .prepare_cached(&statements::renew_statement())
                    .await?;
                let rows = client
                    .query(
                        &stmt,
                        &[&records, &generations, &owner, &duration_ms(lease)],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            })
            .await;
        let renewed: std::collections::HashSet<String> = self.db.result_of(client, result)?;
        // Not renewed: taken over, or given up meanwhile by the worker itself (then no longer
        // held here, and not counted as lost).
        let mut held = self.lock_held();
        let mut lost = Vec::new();
        for (record, generation) in records.into_iter().zip(generations) {
            if renewed.contains(&record) {
                continue;
            }
            let key = (owner.to_owned(), record);
            if held.get(&key) == Some(&generation) {
                held.remove(&key);
                lost.push(key.1);
            }
        }
        Ok(Renewal {
            renewed: renewed.len(),
            lost,
        })
    }

    async fn lease_of(&self, record: &str) -> Result<Option<LeaseInfo>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!(
            "SELECT lease_owner, lease_until, lease_gen FROM okra_record_queue
             WHERE record = $1 AND lease_owner IS NOT NULL AND lease_until >= {NOW_MS}"
        );
        let result = self.db.timed(client.query_opt(&sql, &[&record])).await;
        Ok(self.db.result_of(client, result)?.map(|row| LeaseInfo {
            owner: row.get(0),
            until: from_millis(row.get(1)),
            generation: row.get(2),
        }))
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        self.forget(owner, record);
        let (reply, answer) = oneshot::channel();
        let job = ReleaseJob {
            owner: owner.to_owned(),
            record: record.to_owned(),
            reply,
        };
        submit(&self.releases, job, answer).await
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        self.lock_held().retain(|(o, _), _| o != owner);
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(client.execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1",
                &[&owner],
            ))
            .await;
        self.db.result_of(client, result).map(drop)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM okra_callbacks WHERE id = $1");
        let result = self.db.timed(client.query_opt(&sql, &[&id])).await;
        Ok(self.db.result_of(client, result)?.as_ref().map(from_row))
    }

    async fn list(&self, record: &str, callback_types: &[&str]) -> Result<Listing, StoreError> {
        let client = self.db.client().await?;
        let types: Vec<String> = callback_types.iter().map(|t| t.to_string()).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM okra_callbacks
             WHERE record = $1 AND (cardinality($2::text[]) = 0 OR callback_type = ANY($2))
             ORDER BY seq"
        );
        let result = self
            .db
            .timed(async {
                let exists: bool = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM okra_callbacks WHERE record = $1)",
                        &[&record],
                    )
                    .await?
                    .get(0);
                if !exists {
                    return Ok((false, Vec::new()));
                }
                let rows = client.query(&sql, &[&record, &types]).await?;
                Ok((true, rows))
            })
            .await;
        let (exists, rows) = self.db.result_of(client, result)?;
        Ok(if exists {
            Listing::Callbacks(rows.iter().map(from_row).collect())
        } else {
            Listing::UnknownRecord
        })
    }

    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.db.client().await?;
        let now = millis(Utc::now());
        let queue_sql = format!(
            "INSERT INTO okra_record_queue (record, pending, due_at) VALUES ($1, $2, {NOW_MS})
             ON CONFLICT (record) DO UPDATE SET pending = okra_record_queue.pending + $2,
               due_at = LEAST(okra_record_queue.due_at, EXCLUDED.due_at)"
        );
        let result = self
            .db
            .timed(async {
                let tx = client.transaction().await?;
                // Lock order, as everywhere: the record's queue row, then the callback's row.
                let Some(row) = tx
                    .query_opt(
                        "SELECT record, callback_type FROM okra_callbacks WHERE id = $1",
                        &[&id],
                    )
                    .await?
                else {
                    return Ok(false);
                };
                let record: String = row.get(0);
                let callback_type: String = row.get(1);
                tx.execute(
                    "SELECT 1 FROM okra_record_queue WHERE record = $1 FOR UPDATE",
                    &[&record],
                )
                .await?;
                let Some(row) = tx
                    .query_opt(
                        "SELECT status FROM okra_callbacks WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
                else {
                    return Ok(false);
                };
                let status: i16 = row.get(0);
                tx.execute(
                    "UPDATE okra_callbacks SET status = 0, cycle_attempts = 0, next_attempt_at = $2,
                       finished_at = NULL WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
                let newly_pending = i32::from(status != Status::Pending.code());
                tx.execute(&queue_sql, &[&record, &newly_pending]).await?;
                if status != Status::Pending.code() {
                    tx.execute(COUNT_SQL, &[&callback_type, &status, &-1i64])
                        .await?;
                    tx.execute(COUNT_SQL, &[&callback_type, &Status::Pending.code(), &1i64])
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
            .await;
        self.db.result_of(client, result)
    }

    async fn replay_dead(&self) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(client.query(
                "SELECT id FROM okra_callbacks WHERE status = 2 ORDER BY seq",
                &[],
            ))
            .await;
        let ids: Vec<String> = self
            .db
            .result_of(client, result)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut n = 0;
        for id in ids {
            n += u64::from(self.replay(&id).await?);
        }
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        // Readiness checks give up after 2 s; answer before that, so a silent connection is
        // lease_states (closed) here rather than dropped back into the pool by the caller's timeout.
        let limit = self.db.timeout.min(Duration::from_millis(1500));
        let result = tokio::time::timeout(limit, client.query_one("SELECT 1", &[])).await;
        self.db.result_of(client, result).map(drop)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        Ok(Backlog::from(&self.stats_now().await?))
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let before = millis(before);
        let result = self
            .db
            .timed(async {
                // The history goes with its callback's row; the counts follow in the same
                // statement (so in one transaction).
                let row = client
                    .query_one(
                        "WITH gone AS (
                           DELETE FROM okra_callbacks WHERE status IN (1, 2) AND received_at < $1
                           RETURNING callback_type, status
                         ), c AS (
                           INSERT INTO okra_callback_counts (callback_type, status, shard, n)
                           SELECT callback_type, status, pg_backend_pid(), -count(*) FROM gone
                           GROUP BY callback_type, status ORDER BY callback_type, status
                           ON CONFLICT (callback_type, status, shard)
                             DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n
                         )
                         SELECT count(*) FROM gone",
                        &[&before],
                    )
                    .await?;
                client
                    .execute("DELETE FROM okra_dedup WHERE received_at < $1", &[&before])
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
            .await;
        self.db.result_of(client, result)
    }

    async fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        self.search_page(filter, limit, after).await
    }

    async fn record_page(
        &self,
        record: &str,
        callback_type: &str,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Option<Page>, StoreError> {
        self.record_page_of(record, callback_type, limit, after)
            .await
    }

    async fn history(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        self.history_of(id).await
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, StoreError> {
        self.replay_where(filter).await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.stats_now().await
    }
}
