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
//! - **Ownership.** [`Store::finish`] tells a worker whose lease was taken over
//!   ([`StoreError::LeaseLost`]), so it stops instead of delivering alongside the new owner.
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

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use tokio::{
    sync::{mpsc, oneshot, Semaphore},
    time::error::Elapsed,
};
use tokio_postgres::{types::ToSql, Error as PgError, NoTls, Row};

use super::{
    duration_ms, from_millis, millis, Attempt, Backlog, Claim, Cursor, Filter, Inserted,
    NewCallback, Outcome, Page, Stats, Status, Store, StoreError, StoreOptions, StoredCallback,
};

mod operator;

/// Schema changes, applied in order, each once, under an advisory lock so replicas starting
/// together do not race.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_operator_view.sql"),
    ),
];

/// The key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006f_6b72_616d_6967;

const COLUMNS: &str = "id, record, callback_type, callback_code, body, received_at, status, \
                       attempts, cycle_attempts, last_error, next_attempt_at, finished_at";

/// The database's clock in unix milliseconds, for every lease and due-time decision.
const NOW_MS: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The most writes one group commit carries.
const MAX_BATCH: usize = 512;

/// The PostgreSQL store. Cheap to clone; clones share the connections and the insert queue.
#[derive(Clone)]
pub struct PostgresStore {
    /// Everything but storing callbacks: the dispatcher, reads, replays, health checks.
    db: Db,
    /// Callbacks waiting to be stored; see [`gather`].
    inserts: mpsc::Sender<InsertJob>,
    /// Handler outcomes waiting to be recorded.
    finishes: mpsc::Sender<FinishJob>,
    /// Record leases waiting to be given back.
    releases: mpsc::Sender<ReleaseJob>,
}

/// A connection pool and the bound on each operation. A store has two: one that only stores
/// callbacks, and one for everything else.
#[derive(Clone)]
struct Db {
    /// The connections.
    pool: Pool,
    /// How long one operation may take before the store counts as unavailable.
    timeout: Duration,
}

/// One handler outcome to record, and where the answer goes.
struct FinishJob {
    owner: String,
    id: String,
    record: String,
    outcome: Outcome,
    lease: Duration,
    /// [`Store::finish_last`]: settle the record too, handing over up to this many more of its
    /// callbacks (or giving the lease up).
    last: Option<usize>,
    reply: oneshot::Sender<Result<Option<Vec<StoredCallback>>, StoreError>>,
}

/// One record lease to give back, and where the answer goes.
struct ReleaseJob {
    owner: String,
    record: String,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// One callback to store, and where its answer goes.
struct InsertJob {
    cb: NewCallback,
    hash: [u8; 32],
    dedup_window: Duration,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn from_row(row: &Row) -> StoredCallback {
    StoredCallback {
        id: row.get(0),
        record: row.get(1),
        callback_type: row.get(2),
        callback_code: row.get(3),
        body: row.get::<_, Vec<u8>>(4).into(),
        received_at: from_millis(row.get(5)),
        status: Status::from_code(row.get::<_, i16>(6).into()),
        attempts: row.get::<_, i32>(7).try_into().unwrap_or(0),
        cycle_attempts: row.get::<_, i32>(8).try_into().unwrap_or(0),
        last_error: row.get(9),
        next_attempt_at: row.get::<_, Option<i64>>(10).map(from_millis),
        finished_at: row.get::<_, Option<i64>>(11).map(from_millis),
    }
}

/// Up to `per_record` pending callbacks of each of `records`, by record, oldest first.
async fn pending_of<R: AsRef<str> + ToSql + Sync>(
    client: &Object,
    records: &[R],
    per_record: usize,
) -> Result<HashMap<String, Vec<StoredCallback>>, PgError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM (
                   SELECT *, row_number() OVER (PARTITION BY record ORDER BY seq) AS rn
                   FROM okra_callbacks WHERE record = ANY($1) AND status = 0
                 ) t WHERE rn <= $2 ORDER BY record, seq"
            ),
            &[&records, &(per_record as i64)],
        )
        .await?;
    let mut by_record: HashMap<String, Vec<StoredCallback>> = HashMap::new();
    for cb in rows.iter().map(from_row) {
        by_record.entry(cb.record.clone()).or_default().push(cb);
    }
    Ok(by_record)
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
        // A quarter of the connections belong to storing callbacks, so acknowledging Okra
        // never waits behind the dispatcher's work; each carries one insert transaction at a
        // time, holding every callback that arrived while the others were committing.
        let for_inserts = (options.max_connections / 4).max(1);
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
        let for_dispatch = (options.max_connections / 4).max(1);
        let (finishes, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        let (releases, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(db.clone(), queue, for_dispatch));
        Ok(Self {
            db,
            inserts,
            finishes,
            releases,
        })
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
    ) -> Result<Option<Vec<StoredCallback>>, StoreError> {
        let _ = attempt;
        let (reply, answer) = oneshot::channel();
        let job = FinishJob {
            owner: owner.to_owned(),
            id: cb.id.clone(),
            record: cb.record.clone(),
            outcome,
            lease,
            last,
            reply,
        };
        submit(&self.finishes, job, answer).await
    }
}

/// Hands `job` to its group-commit queue and waits for its answer.
async fn submit<J, T>(
    queue: &mpsc::Sender<J>,
    job: J,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let stopped = || StoreError::Unavailable("the store's write queue has stopped".into());
    queue.send(job).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// A write that can be group-committed with others of its kind.
trait Batched: Sized + Send + 'static {
    /// What the caller hears back.
    type Answer: Send;
    /// What a batch of these does, for logs ("storing callbacks").
    const WHAT: &'static str;

    /// The record whose queue row the write updates as a whole, when two writes of one record
    /// cannot share a statement (the second then waits for the next batch).
    fn exclusive_record(&self) -> Option<&str>;

    /// Runs a batch in one statement, answering in the jobs' order.
    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Self::Answer>>;

    /// Sends the caller its answer.
    fn answer(self, answer: Result<Self::Answer, StoreError>);

    /// Runs a gathered batch and answers every job.
    fn settle_all(db: Db, jobs: Vec<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { answer_batch(&db, jobs).await })
    }
}

/// Each job's answer, or why the whole batch failed.
type BatchResult<T> = Result<Vec<Result<T, StoreError>>, BatchFailed>;

impl Batched for InsertJob {
    type Answer = Inserted;
    const WHAT: &'static str = "storing callbacks";

    fn exclusive_record(&self) -> Option<&str> {
        // Inserts of one record are counted together, and equal bodies answered together.
        None
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Inserted>> {
        Box::pin(db.insert_batch(jobs))
    }

    /// Jobs with different dedup windows (callers of the library may mix them) go in
    /// separate statements.
    fn settle_all(db: Db, jobs: Vec<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut by_window: BTreeMap<Duration, Vec<InsertJob>> = BTreeMap::new();
            for job in jobs {
                by_window.entry(job.dedup_window).or_default().push(job);
            }
            for jobs in by_window.into_values() {
                answer_batch(&db, jobs).await;
            }
        })
    }

    fn answer(self, answer: Result<Inserted, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

impl Batched for FinishJob {
    type Answer = Option<Vec<StoredCallback>>;
    const WHAT: &'static str = "recording outcomes";

    fn exclusive_record(&self) -> Option<&str> {
        Some(&self.record)
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Self::Answer>> {
        Box::pin(db.finish_batch(jobs))
    }

    fn answer(self, answer: Result<Self::Answer, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

impl Batched for ReleaseJob {
    type Answer = ();
    const WHAT: &'static str = "releasing leases";

    fn exclusive_record(&self) -> Option<&str> {
        Some(&self.record)
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(db.release_batch(jobs))
    }

    fn answer(self, answer: Result<(), StoreError>) {
        let _ = self.reply.send(answer);
    }
}

/// Group commit: writes that arrive while earlier batches are being committed go together
/// into the next one — one statement, one round trip, one WAL flush — instead of one
/// transaction each. At most `in_flight` batches run at once; whatever queues up meanwhile
/// goes into the next, so batches grow with the load. Each caller still hears back only once
/// its own batch committed: a record's next callback is never handed over before the previous
/// one's outcome is durable. Ends when every [`PostgresStore`] clone is gone.
async fn gather<J: Batched>(db: Db, mut queue: mpsc::Receiver<J>, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut held: Vec<J> = Vec::new();
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(job) => held.push(job),
                None => return,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut records = HashSet::new();
        let mut batch = Vec::new();
        let mut later = Vec::new();
        let mut place = |job: J| {
            let fits = batch.len() < MAX_BATCH
                && job
                    .exclusive_record()
                    .is_none_or(|record| records.insert(record.to_owned()));
            if fits {
                batch.push(job);
            } else {
                later.push(job);
            }
        };
        for job in std::mem::take(&mut held) {
            place(job);
        }
        // Take what has arrived, up to a batch's worth (jobs held for later count too).
        for _ in 0..MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => place(job),
                Err(_) => break,
            }
        }
        held = later;
        let work = J::settle_all(db.clone(), batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

impl Db {
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable(format!("no database connection: {e}")))
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
    fn settle<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => {
                drop(Object::take(client));
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {:?}",
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

    /// Stores `jobs` in one statement — one round trip, one transaction — answering in their
    /// order.
    ///
    /// Lock order, which keeps concurrent batches (and replicas) free of deadlocks: first every
    /// dedup key, in hash order; then every record's queue row, in record order; only then are
    /// the callbacks inserted, so their `seq` is drawn under the queue-row locks and within a
    /// record sequence order is commit order. (`q` aggregates all of `d`'s output before its
    /// first row; `c` is gated by a one-time filter on `q`, so it inserts nothing until `q` has
    /// run to completion.) The same body always names the same record, so two batches meet on
    /// a dedup key only when both already take the record's row in the same order.
    async fn insert_batch(&self, jobs: &[InsertJob]) -> BatchResult<Inserted> {
        let window = jobs.first().map_or(Duration::ZERO, |job| job.dedup_window);
        // The same body twice in one batch: the first stands for both.
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::with_capacity(jobs.len());
        let mut leaders: Vec<usize> = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            first_of.entry(job.hash).or_insert_with(|| {
                leaders.push(i);
                i
            });
        }
        let column = |f: fn(&NewCallback) -> &str| -> Vec<&str> {
            leaders.iter().map(|&i| f(&jobs[i].cb)).collect()
        };
        let hashes: Vec<&[u8]> = leaders.iter().map(|&i| &jobs[i].hash[..]).collect();
        let ids = column(|cb| &cb.id);
        let records = column(|cb| &cb.record);
        let types = column(|cb| &cb.callback_type);
        let codes: Vec<Option<&str>> = leaders
            .iter()
            .map(|&i| jobs[i].cb.callback_code.as_deref())
            .collect();
        let bodies: Vec<&[u8]> = leaders.iter().map(|&i| &jobs[i].cb.body[..]).collect();
        let times: Vec<i64> = leaders
            .iter()
            .map(|&i| millis(jobs[i].cb.received_at))
            .collect();
        let window = duration_ms(window);
        let params: [&(dyn ToSql + Sync); 8] = [
            &hashes, &ids, &records, &types, &codes, &bodies, &times, &window,
        ];
        let sql = format!(
            "WITH input AS (
               SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::bytea[], $7::bigint[])
                 WITH ORDINALITY AS t(hash, id, record, callback_type, callback_code, body,
                                      received_at, n)
             ), d AS (
               INSERT INTO okra_dedup (hash, id, received_at)
               SELECT hash, id, received_at FROM input ORDER BY hash
               ON CONFLICT (hash) DO UPDATE SET id = EXCLUDED.id, received_at = EXCLUDED.received_at
                 WHERE okra_dedup.received_at <= EXCLUDED.received_at - $8
               RETURNING hash
             ), fresh AS (
               SELECT input.* FROM input JOIN d USING (hash)
             ), q AS (
               INSERT INTO okra_record_queue (record, pending, due_at)
               SELECT record, count(*)::int, {NOW_MS} FROM fresh GROUP BY record ORDER BY record
               ON CONFLICT (record) DO UPDATE
                 SET pending = okra_record_queue.pending + EXCLUDED.pending,
                     due_at = CASE WHEN okra_record_queue.pending = 0 THEN EXCLUDED.due_at
                                   ELSE okra_record_queue.due_at END
               RETURNING 1
             ), c AS (
               INSERT INTO okra_callbacks
                 (id, record, callback_type, callback_code, body, received_at, next_attempt_at)
               SELECT id, record, callback_type, callback_code, body, received_at, received_at
               FROM fresh WHERE (SELECT count(*) FROM q) > 0 ORDER BY n
               RETURNING 1
             )
             SELECT hash FROM d"
        );
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
                let fresh: HashSet<Vec<u8>> = client
                    .query(&stmt, &params)
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let stored: HashSet<usize> = leaders
                    .iter()
                    .copied()
                    .filter(|&i| fresh.contains(&jobs[i].hash[..]))
                    .collect();
                // Duplicates: read the first delivery's id in a new statement, whose snapshot
                // sees a concurrent transaction's commit that the conflict waited for.
                let duplicates: Vec<&[u8]> = leaders
                    .iter()
                    .filter(|&&i| !stored.contains(&i))
                    .map(|&i| &jobs[i].hash[..])
                    .collect();
                let mut first_ids: HashMap<Vec<u8>, String> = HashMap::new();
                if !duplicates.is_empty() {
                    for row in client
                        .query(
                            "SELECT hash, id FROM okra_dedup WHERE hash = ANY($1)",
                            &[&duplicates],
                        )
                        .await?
                    {
                        first_ids.insert(row.get(0), row.get(1));
                    }
                }
                Ok((stored, first_ids))
            })
            .await;
        let (stored, first_ids) = self.settle_batch(client, result)?;
        Ok(jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let leader = first_of[&job.hash];
                if leader == i && stored.contains(&i) {
                    Ok(Inserted {
                        id: job.cb.id.clone(),
                        duplicate: false,
                    })
                } else if stored.contains(&leader) {
                    Ok(Inserted {
                        id: jobs[leader].cb.id.clone(),
                        duplicate: true,
                    })
                } else {
                    match first_ids.get(&job.hash[..]) {
                        Some(id) => Ok(Inserted {
                            id: id.clone(),
                            duplicate: true,
                        }),
                        None => Err(StoreError::Unavailable(
                            "the dedup key was pruned while this callback was being stored; try again"
                                .into(),
                        )),
                    }
                }
            })
            .collect())
    }

    /// Records `jobs`' outcomes in one statement. The outcome is recorded whoever holds the
    /// lease (the handler did run); the lease and the record's due time are only touched by
    /// their owner, and a job whose worker no longer owns the lease hears
    /// [`StoreError::LeaseLost`].
    ///
    /// A [`Store::finish_last`] job also settles the record in the same statement: when it was
    /// not a retry and more of the record's callbacks are due, the lease is extended and they
    /// are read and handed over (after the commit, so the outcome is durable first); otherwise
    /// the lease is given up — `lease_until` cleared, which makes the record claimable, while
    /// `lease_owner` stays, so the answer can still tell the owner apart (a `RETURNING` clause
    /// sees only the new row).
    ///
    /// Lock order, as for inserts: the records' queue rows first, in record order (`lk`; `u` is
    /// gated by a one-time filter on it), then the callbacks' rows.
    async fn finish_batch(&self, jobs: &[FinishJob]) -> BatchResult<Option<Vec<StoredCallback>>> {
        let now = Utc::now();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        let mut owners = Vec::with_capacity(jobs.len());
        let mut statuses = Vec::with_capacity(jobs.len());
        let mut errors = Vec::with_capacity(jobs.len());
        let mut next_ats = Vec::with_capacity(jobs.len());
        let mut finished_ats = Vec::with_capacity(jobs.len());
        let mut leaves = Vec::with_capacity(jobs.len());
        let mut retry_ins = Vec::with_capacity(jobs.len());
        let mut leases = Vec::with_capacity(jobs.len());
        let mut lasts = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (status, error, next_at) = match &job.outcome {
                Outcome::Delivered => (Status::Delivered, None, None),
                Outcome::Dead { error } => (Status::Dead, Some(error.as_str()), None),
                Outcome::Retry { at, error } => (Status::Pending, Some(error.as_str()), Some(*at)),
            };
            ids.push(job.id.as_str());
            records.push(job.record.as_str());
            owners.push(job.owner.as_str());
            statuses.push(status.code());
            errors.push(error);
            // The retry is due after the same delay by the database's clock.
            retry_ins.push(next_at.map(|at| (at - now).num_milliseconds().max(0)));
            next_ats.push(next_at.map(millis));
            finished_ats.push((status != Status::Pending).then_some(millis(now)));
            leaves.push(status != Status::Pending);
            leases.push(duration_ms(job.lease));
            lasts.push(job.last.is_some());
        }
        let params: [&(dyn ToSql + Sync); 11] = [
            &ids,
            &records,
            &owners,
            &statuses,
            &errors,
            &next_ats,
            &finished_ats,
            &leaves,
            &retry_ins,
            &leases,
            &lasts,
        ];
        // Every value of the queue row is read from the row being updated (`r`), never from a
        // copy taken earlier in the statement: the row is re-read after its lock is granted,
        // so a count an insert committed meanwhile is not lost.
        const LEAVES: &str = "CASE WHEN i.leaves AND i.id IN (SELECT id FROM u) THEN 1 ELSE 0 END";
        let sql = format!(
            "WITH input AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[],
                                    $5::text[], $6::bigint[], $7::bigint[], $8::bool[],
                                    $9::bigint[], $10::bigint[], $11::bool[])
                 WITH ORDINALITY AS t(id, record, owner, status, error, next_at, finished_at,
                                      leaves, retry_in, lease, last, n)
             ), lk AS (
               SELECT record FROM okra_record_queue WHERE record IN (SELECT record FROM input)
               ORDER BY record FOR UPDATE
             ), u AS (
               UPDATE okra_callbacks c SET status = i.status, attempts = c.attempts + 1,
                 cycle_attempts = c.cycle_attempts + 1, last_error = i.error,
                 next_attempt_at = i.next_at, finished_at = i.finished_at
               FROM input i
               WHERE c.id = i.id AND c.status = 0 AND (SELECT count(*) FROM lk) >= 0
               RETURNING c.id
             )
             UPDATE okra_record_queue r SET
               pending = GREATEST(r.pending - {LEAVES}, 0),
               due_at = CASE WHEN r.lease_owner = i.owner AND i.retry_in IS NOT NULL
                             THEN {NOW_MS} + i.retry_in ELSE r.due_at END,
               lease_until = CASE
                 WHEN r.lease_owner IS DISTINCT FROM i.owner THEN r.lease_until
                 WHEN i.last AND NOT (i.retry_in IS NULL AND r.due_at <= {NOW_MS}
                                      AND r.pending - {LEAVES} > 0) THEN NULL
                 ELSE {NOW_MS} + i.lease END
             FROM input i WHERE r.record = i.record
             RETURNING i.n, r.lease_owner IS NOT DISTINCT FROM i.owner,
                       i.last AND r.lease_until IS NOT NULL"
        );
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
                let rows = client.query(&stmt, &params).await?;
                let mut settled = vec![(false, false); jobs.len()];
                for row in rows {
                    let n: i64 = row.get(0);
                    if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| settled.get_mut(i))
                    {
                        *slot = (row.get(1), row.get(2));
                    }
                }
                // The callbacks handed over with a kept lease: read after the commit.
                let kept: Vec<&str> = jobs
                    .iter()
                    .zip(&settled)
                    .filter(|(_, (owned, kept))| *owned && *kept)
                    .map(|(job, _)| job.record.as_str())
                    .collect();
                let most = jobs.iter().filter_map(|j| j.last).max().unwrap_or(0);
                let next = if kept.is_empty() {
                    HashMap::new()
                } else {
                    pending_of(&client, &kept, most).await?
                };
                Ok((settled, next))
            })
            .await;
        let (settled, mut next) = self.settle_batch(client, result)?;
        let mut answers = Vec::with_capacity(jobs.len());
        let (mut emptied, mut emptied_owners) = (Vec::new(), Vec::new());
        for (job, (owned, kept)) in jobs.iter().zip(settled) {
            if !owned {
                answers.push(Err(StoreError::LeaseLost(job.record.clone())));
                continue;
            }
            let Some(per_record) = job.last else {
                answers.push(Ok(None));
                continue;
            };
            let mut mine = Vec::new();
            if kept {
                // The batch holds one job per record, so each record's callbacks are its own.
                mine = next.remove(&job.record).unwrap_or_default();
                mine.truncate(per_record);
                if mine.is_empty() {
                    // The count promised more than there was: give the lease up after all.
                    emptied.push(job.record.as_str());
                    emptied_owners.push(job.owner.as_str());
                }
            }
            answers.push(Ok(Some(mine)));
        }
        if !emptied.is_empty() {
            if let Err(e) = self.release_leases(&emptied, &emptied_owners).await {
                tracing::warn!(error = %e.error, "cannot release record leases; they expire by themselves");
            }
        }
        Ok(answers)
    }

    /// Gives back a batch of leases (of distinct records) in one statement, queue rows locked
    /// in record order like every other writer. A lease another worker holds by now is left
    /// alone.
    async fn release_batch(&self, jobs: &[ReleaseJob]) -> BatchResult<()> {
        let records: Vec<&str> = jobs.iter().map(|j| j.record.as_str()).collect();
        let owners: Vec<&str> = jobs.iter().map(|j| j.owner.as_str()).collect();
        self.release_leases(&records, &owners).await?;
        Ok(jobs.iter().map(|_| Ok(())).collect())
    }

    /// Gives up `owners[i]`'s lease on `records[i]`, for each `i`.
    async fn release_leases(&self, records: &[&str], owners: &[&str]) -> Result<(), BatchFailed> {
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client
                    .prepare_cached(
                        "WITH input AS (
                           SELECT * FROM unnest($1::text[], $2::text[]) AS t(record, owner)
                         ), lk AS (
                           SELECT record FROM okra_record_queue
                           WHERE record IN (SELECT record FROM input)
                           ORDER BY record FOR UPDATE
                         )
                         UPDATE okra_record_queue q SET lease_owner = NULL, lease_until = NULL
                         FROM input i
                         WHERE q.record = i.record AND q.lease_owner = i.owner
                           AND (SELECT count(*) FROM lk) >= 0",
                    )
                    .await?;
                client.execute(&stmt, &[&records, &owners]).await
            })
            .await;
        self.settle_batch(client, result).map(drop)
    }

    /// Like [`Db::settle`], telling apart what the database refused (worth trying the jobs one
    /// by one) from a lost connection or a timeout (not worth it: each would wait as long).
    fn settle_batch<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, BatchFailed> {
        let refused = matches!(&result, Ok(Err(e)) if e.code().is_some());
        self.settle(client, result)
            .map_err(|error| BatchFailed { refused, error })
    }
}

/// Runs one batch and answers each of its jobs. When the database refuses the batch (rather
/// than the connection or the clock failing), the jobs are run one by one, so one bad job
/// cannot fail the others; otherwise every job hears the batch's error.
async fn answer_batch<J: Batched>(db: &Db, jobs: Vec<J>) {
    match J::run(db, &jobs).await {
        Ok(answers) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                job.answer(answer);
            }
        }
        Err(BatchFailed {
            refused: true,
            error,
        }) if jobs.len() > 1 => {
            tracing::warn!(%error, jobs = jobs.len(), "the database refused a batch {}; trying its jobs one by one", J::WHAT);
            for job in jobs {
                let answer = match J::run(db, std::slice::from_ref(&job)).await {
                    Ok(mut answers) => answers.pop().expect("one answer per job"),
                    Err(failed) => Err(failed.error),
                };
                job.answer(answer);
            }
        }
        Err(failed) => {
            for job in jobs {
                job.answer(Err(failed.error.clone()));
            }
        }
    }
}

/// Why a batch failed.
struct BatchFailed {
    /// The database refused a statement (a constraint, bad data, a deadlock): the connection
    /// is fine, and the jobs may succeed one by one.
    refused: bool,
    error: StoreError,
}

impl BatchFailed {
    fn connection(error: StoreError) -> Self {
        Self {
            refused: false,
            error,
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
        submit(&self.inserts, job, answer).await
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.db.client().await?;
        let lease_sql = format!(
            "WITH c AS (
               SELECT record FROM okra_record_queue
               WHERE pending > 0 AND due_at <= {NOW_MS}
                 AND (lease_until IS NULL OR lease_until < {NOW_MS})
               ORDER BY due_at LIMIT $1
               FOR UPDATE SKIP LOCKED
             )
             UPDATE okra_record_queue q SET lease_owner = $2, lease_until = {NOW_MS} + $3
             FROM c WHERE q.record = c.record
             RETURNING q.record"
        );
        let result = self
            .db
            .timed(async {
                let records: Vec<String> = client
                    .query(
                        &lease_sql,
                        &[&(max_records as i64), &owner, &duration_ms(lease)],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if records.is_empty() {
                    return Ok((records, HashMap::new()));
                }
                let pending = pending_of(&client, &records, per_record).await?;
                Ok((records, pending))
            })
            .await;
        let (records, mut pending) = self.db.settle(client, result)?;
        Ok(records
            .into_iter()
            .map(|record| Claim {
                callbacks: pending.remove(&record).unwrap_or_default(),
                record,
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
    ) -> Result<Option<Vec<StoredCallback>>, StoreError> {
        self.record_outcome(owner, cb, outcome, attempt, lease, Some(per_record.max(1)))
            .await
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = ReleaseJob {
            owner: owner.to_owned(),
            record: record.to_owned(),
            reply,
        };
        submit(&self.releases, job, answer).await
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(client.execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1",
                &[&owner],
            ))
            .await;
        self.db.settle(client, result).map(drop)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM okra_callbacks WHERE id = $1");
        let result = self.db.timed(client.query_opt(&sql, &[&id])).await;
        Ok(self.db.settle(client, result)?.as_ref().map(from_row))
    }

    async fn list(
        &self,
        record: &str,
        callback_types: &[&str],
    ) -> Result<(bool, Vec<StoredCallback>), StoreError> {
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
        let (exists, rows) = self.db.settle(client, result)?;
        Ok((exists, rows.iter().map(from_row).collect()))
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
                    .query_opt("SELECT record FROM okra_callbacks WHERE id = $1", &[&id])
                    .await?
                else {
                    return Ok(false);
                };
                let record: String = row.get(0);
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
                tx.commit().await?;
                Ok(true)
            })
            .await;
        self.db.settle(client, result)
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
            .settle(client, result)?
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
        // settled (closed) here rather than dropped back into the pool by the caller's timeout.
        let limit = self.db.timeout.min(Duration::from_millis(1500));
        let result = tokio::time::timeout(limit, client.query_one("SELECT 1", &[])).await;
        self.db.settle(client, result).map(drop)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let stats = self.stats_now().await?;
        Ok(Backlog {
            pending: stats.pending,
            dead: stats.dead,
            oldest_pending_at: stats.oldest_pending_at,
        })
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let before = millis(before);
        let result = self
            .db
            .timed(async {
                let n = client
                    .execute(
                        "DELETE FROM okra_callbacks WHERE status IN (1, 2) AND received_at < $1",
                        &[&before],
                    )
                    .await?;
                client
                    .execute("DELETE FROM okra_dedup WHERE received_at < $1", &[&before])
                    .await?;
                Ok(n)
            })
            .await;
        self.db.settle(client, result)
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
