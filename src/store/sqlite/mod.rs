//! The embedded store: one SQLite file in WAL mode and its inbox log, owned by one process.
//!
//! A callback is acknowledged once it is in the inbox log ([`inbox`]): one sequential append,
//! `fsync`ed for every callback that arrived meanwhile. The tables the queries and the dispatcher
//! read are built from the log in batches ([`apply`]) by the one database thread ([`thread`]),
//! which runs every other operation too, gathered into group transactions (`synchronous=FULL`:
//! a commit is on disk before any caller hears of it). Whatever was acknowledged survives
//! `kill -9` and power loss: on start-up the log's frames not yet in the tables are applied
//! before anything is served.

use std::{path::Path, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use rusqlite_migration::{Migrations, M};
use tokio::sync::{mpsc, oneshot};

use super::{
    duration_ms, from_millis, millis,
    query::{page, stats_of},
    AfterLast, Attempt, AttemptOutcome, Backlog, Claim, Cursor, Filter, Inserted, Listing,
    NewCallback, Outcome, Page, Scope, Stats, Status, Store, StoreError, StoreOptions,
    StoredCallback, COLUMNS,
};

mod apply;
mod dedup_filter;
mod inbox;
mod log;
mod thread;

pub use dedup_filter::DEFAULT_BYTES as DEDUP_FILTER_BYTES;

use thread::{Call, Job, MAX_BATCH};

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../../migrations/sqlite/0001_init.sql")),
        M::up(include_str!(
            "../../../migrations/sqlite/0002_fewer_index_writes.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0003_operator_view.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0004_readiness_probe.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0005_history_in_row.sql"
        )),
        M::up(include_str!(
            "../../../migrations/sqlite/0006_inbox_log.sql"
        )),
    ])
}

/// The embedded SQLite store. See the module docs for its durability.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    inbox: mpsc::Sender<inbox::Append>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database file at `path`, and applies what
    /// its inbox log holds beyond the tables. The file is locked for this process: a second
    /// receiver on the same file is refused.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default()).await
    }

    /// [`SqliteStore::open`], its dedup filter laid out by `options` (the rest of them are
    /// PostgreSQL's).
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let dedup = inbox::Dedup {
            filter_bytes: options.dedup_filter_bytes,
            window: options.dedup_window,
        };
        let path = path.as_ref().to_owned();
        let (conn, writer_parts) = tokio::task::spawn_blocking(move || recover(&path))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        let (jobs, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        let (inbox_tx, inbox_rx) = mpsc::channel::<inbox::Append>(4 * MAX_BATCH);
        let applied = inbox::Applied::new(writer_parts.applied);
        let to_apply = Arc::new(inbox::ToApply::default());
        let db_inbox = thread::Inbox {
            to_apply: to_apply.clone(),
            applied: applied.clone(),
            _lock: writer_parts.lock,
        };
        std::thread::Builder::new()
            .name("okra-sqlite".into())
            .spawn(move || thread::run(conn, rx, db_inbox))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let wake_jobs = jobs.clone();
        let writer = tokio::task::spawn_blocking(move || {
            inbox::Writer::start(
                &writer_parts.db,
                writer_parts.dir,
                writer_parts.next_lsn,
                (applied, to_apply),
                dedup,
                Box::new(move || {
                    // A full queue wakes the thread anyway.
                    let _ = wake_jobs.try_send(Box::new(thread::Wake));
                }),
            )
        })
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))??;
        std::thread::Builder::new()
            .name("okra-inbox".into())
            .spawn(move || writer.run(inbox_rx))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            jobs,
            inbox: inbox_tx,
        })
    }

    /// Runs `f` inside the next group transaction; answers once that transaction committed.
    /// `f` may run twice (see [`run`]), so it must not consume what it captured.
    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(Call {
            f,
            result: None,
            reply: tx,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the database thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database thread has stopped".into()))?
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create the directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    let config_err = |e: rusqlite::Error| {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::Config(if busy {
            format!(
                "the SQLite file {} is in use by another process ({e}); the embedded store serves one receiver — use PostgreSQL to run several",
                path.display()
            )
        } else {
            format!("cannot open the SQLite file {}: {e}", path.display())
        })
    };
    let mut conn = Connection::open(path).map_err(config_err)?;
    // Every statement the store runs stays prepared (the default cache holds 16, fewer than
    // the store's statements, so a mixed load would re-parse them).
    conn.set_prepared_statement_cache_capacity(64);
    conn.busy_timeout(Duration::from_millis(200))
        .map_err(config_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;
         PRAGMA wal_autocheckpoint = 10000;",
    )
    .map_err(config_err)?;
    // wal_autocheckpoint: the checkpoint runs inside a commit, on the database thread, and
    // copies every page written since the last one back into the file (with an fsync). At the
    // default 1000 pages a group commit of ~100 callbacks (~200 pages) triggered one every ~5
    // commits; at 10000 (a WAL of up to ~40 MB) the same hot pages — index leaves, the record
    // queue — are copied once per many commits. Durability is unchanged: each commit is
    // fsynced to the WAL before it is acknowledged.
    migrations()
        .to_latest(&mut conn)
        .map_err(|e| StoreError::Config(format!("cannot migrate {}: {e}", path.display())))?;
    // One process owns the file, so any lease in it belonged to a previous run of this one.
    conn.execute(
        "UPDATE record_queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        [],
    )
    .map_err(config_err)?;
    Ok(conn)
}

/// What the inbox writer starts from, once [`recover`] has applied the log.
struct WriterParts {
    db: std::path::PathBuf,
    dir: std::path::PathBuf,
    lock: std::fs::File,
    applied: u64,
    next_lsn: u64,
}

/// Locks the store for this process, opens and migrates the database file, and applies the
/// inbox log's frames the tables do not hold yet (callbacks acknowledged before a crash); the
/// log is then empty.
fn recover(path: &Path) -> Result<(Connection, WriterParts), StoreError> {
    let dir = inbox::dir_of(path);
    let lock = inbox::lock(&dir, path, Duration::from_secs(2))?;
    let conn = open_connection(path)?;
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Unavailable(format!(
            "cannot apply the inbox log {} to {}: {what}: {e}",
            dir.display(),
            path.display()
        ))
    };
    let applied = apply::applied_lsn(&conn).map_err(|e| broken("reading its position", &e))?;
    let (batch, last) = inbox::recover(&dir, applied).map_err(|e| broken("reading it", &e))?;
    let applied = if let Some(batch) = batch {
        let batch = Arc::new(batch);
        let tx = conn
            .unchecked_transaction()
            .map_err(|e| broken("starting", &e))?;
        let lsn = apply::apply(&tx, &[batch]).map_err(|e| broken("applying", &e))?;
        tx.commit().map_err(|e| broken("committing", &e))?;
        lsn.unwrap_or(applied)
    } else {
        applied
    };
    inbox::clear(&dir).map_err(|e| broken("clearing it", &e))?;
    Ok((
        conn,
        WriterParts {
            db: path.to_owned(),
            dir,
            lock,
            applied,
            next_lsn: last.max(applied) + 1,
        },
    ))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredCallback> {
    Ok(StoredCallback {
        id: row.get(0)?,
        record: row.get(1)?,
        callback_type: row.get(2)?,
        callback_code: row.get(3)?,
        body: row.get::<_, Vec<u8>>(4)?.into(),
        received_at: from_millis(row.get(5)?),
        status: Status::from_code(row.get(6)?),
        attempts: row.get(7)?,
        cycle_attempts: row.get(8)?,
        last_error: row.get(9)?,
        next_attempt_at: row.get::<_, Option<i64>>(10)?.map(from_millis),
        finished_at: row.get::<_, Option<i64>>(11)?.map(from_millis),
    })
}

fn replay_one(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    let found: Option<(String, i64, String)> = conn
        .prepare_cached("SELECT record, status, callback_type FROM callbacks WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((record, status, callback_type)) = found else {
        return Ok(false);
    };
    let status = Status::from_code(status);
    if status != Status::Pending {
        count(conn, &callback_type, status, -1)?;
        count(conn, &callback_type, Status::Pending, 1)?;
    }
    let status = i64::from(status.code());
    conn.prepare_cached(
        "UPDATE callbacks SET status = 0, cycle_attempts = 0, next_attempt_at = ?2, finished_at = NULL
         WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    let newly_pending = i64::from(status != i64::from(Status::Pending.code()));
    conn.prepare_cached(
        "INSERT INTO record_queue (record, pending, due_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (record) DO UPDATE SET pending = pending + ?2, due_at = MIN(due_at, ?3)",
    )?
    .execute(params![record, newly_pending, now])?;
    Ok(true)
}

/// Adds `delta` to the count of `callback_type` callbacks in `status`.
fn count(
    conn: &Connection,
    callback_type: &str,
    status: Status,
    delta: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO callback_counts (callback_type, status, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (callback_type, status) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![callback_type, status.code(), delta])?;
    Ok(())
}

/// The columns of a list row: everything but the body (lists show no payloads).
const LIST_COLUMNS: &str = "id, record, callback_type, callback_code, X'' AS body, received_at, \
                            status, attempts, cycle_attempts, last_error, next_attempt_at, \
                            finished_at, seq";

/// The `WHERE` conditions of `filter` (after `AND`), with their parameters.
fn filter_sql(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = String::new();
    let mut args: Vec<Value> = Vec::new();
    let codes = filter.status_codes();
    if !codes.is_empty() {
        // `status <> 1` lets the planner use the partial index of pending and dead callbacks.
        if !codes.contains(&Status::Delivered.code()) {
            sql.push_str(" AND status <> 1");
        }
        let list: Vec<String> = codes.iter().map(i16::to_string).collect();
        sql.push_str(&format!(" AND status IN ({})", list.join(", ")));
    }
    if let Some(t) = filter.type_key() {
        args.push(Value::Text(t));
        // With a record, or only pending/dead callbacks, asked for, those indexes hold far
        // fewer rows than one type's: `+` keeps the planner off the type index (it would walk
        // all of a type's callbacks for a few dead ones).
        let narrower = filter.record.is_some()
            || (!codes.is_empty() && !codes.contains(&Status::Delivered.code()));
        let column = if narrower {
            "+callback_type"
        } else {
            "callback_type"
        };
        sql.push_str(&format!(" AND upper({column}) = ?{}", args.len()));
    }
    if let Some(c) = &filter.callback_code {
        args.push(Value::Text(c.clone()));
        sql.push_str(&format!(" AND callback_code = ?{}", args.len()));
    }
    if let Some(r) = &filter.record {
        args.push(Value::Text(r.clone()));
        sql.push_str(&format!(" AND record = ?{}", args.len()));
    }
    if let Some(t) = filter.received_after {
        args.push(Value::Integer(millis(t)));
        sql.push_str(&format!(" AND received_at >= ?{}", args.len()));
    }
    if let Some(t) = filter.received_before {
        args.push(Value::Integer(millis(t)));
        sql.push_str(&format!(" AND received_at < ?{}", args.len()));
    }
    (sql, args)
}

/// Up to `limit` of a record's pending callbacks, oldest first.
fn pending_of(
    conn: &Connection,
    record: &str,
    limit: usize,
) -> rusqlite::Result<Vec<StoredCallback>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM callbacks WHERE record = ?1 AND status = 0 ORDER BY seq LIMIT ?2"
    ))?
    .query_map(params![record, limit as i64], from_row)?
    .collect()
}

/// Records one attempt's outcome, and the attempt in the callback's history, and extends
/// `owner`'s lease on the record.
#[allow(clippy::too_many_arguments)]
fn record_outcome(
    conn: &Connection,
    owner: &str,
    id: &str,
    record: &str,
    outcome: &Outcome,
    attempt: &Attempt,
    lease: Duration,
    now: i64,
) -> rusqlite::Result<()> {
    let (status, error, next_at) = outcome.as_row();
    let next_at = next_at.map(millis);
    let finished = (status != Status::Pending).then_some(now);
    // The attempt joins the history in the same row write (see migration 0005).
    let changed: Option<String> = conn
        .prepare_cached(
            "UPDATE callbacks SET status = ?2, attempts = attempts + 1,
               cycle_attempts = cycle_attempts + 1, last_error = ?3,
               next_attempt_at = ?4, finished_at = ?5,
               history = json_insert(history, '$[#]',
                                     json_array(attempts + 1, ?6, ?7, ?8, ?9))
             WHERE id = ?1 AND status = 0
             RETURNING callback_type",
        )?
        .query_row(
            params![
                id,
                status.code(),
                error,
                next_at,
                finished,
                millis(attempt.started_at),
                millis(attempt.finished_at),
                attempt.outcome.code(),
                attempt.error
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(callback_type) = &changed {
        if status != Status::Pending {
            count(conn, callback_type, Status::Pending, -1)?;
            count(conn, callback_type, status, 1)?;
        }
    }
    let left = i64::from(changed.is_some() && status != Status::Pending);
    conn.prepare_cached(
        "UPDATE record_queue SET pending = MAX(pending - ?2, 0), due_at = COALESCE(?3, due_at),
           lease_until = CASE WHEN lease_owner = ?4 THEN ?5 ELSE lease_until END
         WHERE record = ?1",
    )?
    .execute(params![
        record,
        left,
        next_at,
        owner,
        now + duration_ms(lease)
    ])?;
    Ok(())
}

/// Gives up `owner`'s lease on a record (nothing if another worker holds it).
fn release_lease(conn: &Connection, owner: &str, record: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE record_queue SET lease_owner = NULL, lease_until = NULL
         WHERE record = ?1 AND lease_owner = ?2",
    )?
    .execute(params![record, owner])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(
        &self,
        cb: NewCallback,
        dedup_window: Duration,
    ) -> Result<Inserted, StoreError> {
        let stopped = || StoreError::Unavailable("the inbox log's writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.inbox
            .send(inbox::Append {
                cb,
                window: dedup_window,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let owner = owner.to_owned();
        self.call(move |conn| {
            let now = millis(Utc::now());
            let records: Vec<String> = conn
                .prepare_cached(
                    "SELECT record FROM record_queue
                     WHERE pending > 0 AND due_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1)
                     ORDER BY due_at LIMIT ?2",
                )?
                .query_map(params![now, max_records as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut lease_stmt = conn.prepare_cached(
                "UPDATE record_queue SET lease_owner = ?2, lease_until = ?3 WHERE record = ?1",
            )?;
            let mut claims = Vec::with_capacity(records.len());
            for record in records {
                lease_stmt.execute(params![record, owner, now + duration_ms(lease)])?;
                let callbacks = pending_of(conn, &record, per_record)?;
                claims.push(Claim {
                    record,
                    callbacks,
                    taken_over_from: None,
                });
            }
            Ok(claims)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let (owner, id, record) = (owner.to_owned(), cb.id.clone(), cb.record.clone());
        let attempt = attempt.clone();
        self.call(move |conn| {
            record_outcome(
                conn,
                &owner,
                &id,
                &record,
                &outcome,
                &attempt,
                lease,
                millis(Utc::now()),
            )
        })
        .await
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
        let (owner, id, record) = (owner.to_owned(), cb.id.clone(), cb.record.clone());
        let attempt = attempt.clone();
        self.call(move |conn| {
            let now = millis(Utc::now());
            record_outcome(conn, &owner, &id, &record, &outcome, &attempt, lease, now)?;
            let next = if matches!(outcome, Outcome::Retry { .. }) {
                Vec::new()
            } else {
                // What a claim would hand over: the record is due, so its pending callbacks.
                let due: bool = conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM record_queue
                         WHERE record = ?1 AND pending > 0 AND due_at <= ?2 AND lease_owner = ?3)",
                    )?
                    .query_row(params![record, now, owner], |r| r.get(0))?;
                if due {
                    pending_of(conn, &record, per_record)?
                } else {
                    Vec::new()
                }
            };
            if next.is_empty() {
                release_lease(conn, &owner, &record)?;
                return Ok(AfterLast::Released);
            }
            Ok(AfterLast::Next(next))
        })
        .await
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        let (owner, record) = (owner.to_owned(), record.to_owned());
        self.call(move |conn| release_lease(conn, &owner, &record))
            .await
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_owned();
        self.call(move |conn| {
            conn.execute(
                "UPDATE record_queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1",
                [&owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM callbacks WHERE id = ?1"))?
                .query_row([&id], from_row)
                .optional()
        })
        .await
    }

    async fn list(&self, record: &str, callback_types: &[&str]) -> Result<Listing, StoreError> {
        let record = record.to_owned();
        let types: Vec<String> = callback_types.iter().map(|t| t.to_string()).collect();
        self.call(move |conn| {
            let exists: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM callbacks WHERE record = ?1)")?
                .query_row([&record], |r| r.get(0))?;
            if !exists {
                return Ok(Listing::UnknownRecord);
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM callbacks WHERE record = ?1 ORDER BY seq"
            ))?;
            let rows = stmt
                .query_map([&record], from_row)?
                .filter(|r| {
                    r.as_ref().map_or(true, |cb| {
                        types.is_empty() || types.contains(&cb.callback_type)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Listing::Callbacks(rows))
        })
        .await
    }

    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| replay_one(conn, &id, millis(Utc::now())))
            .await
    }

    async fn replay_dead(&self) -> Result<u64, StoreError> {
        self.call(move |conn| {
            let now = millis(Utc::now());
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM callbacks WHERE status <> 1 AND status = 2 ORDER BY seq",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                replay_one(conn, id, now)?;
            }
            Ok(ids.len() as u64)
        })
        .await
    }

    /// A write, committed like any callback's: a full disk or a read-only file fails it (with
    /// the cause named), where a read would still succeed.
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.prepare_cached(
                "INSERT INTO readiness_probe (id, checked_at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            )?
            .execute([millis(Utc::now())])
            .map(drop)
        })
        .await
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        Ok(Backlog::from(&self.stats().await?))
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = millis(before);
        self.call(move |conn| {
            // `seq` follows the received order, so the callbacks received before `before` are
            // (nearly all) those below the first `seq` received since: found by reading the
            // table from its start, which visits only rows about to be deleted (and pending
            // ones). A straggler received just before `before` but stored after a later one
            // goes at the next prune; nothing received since `before` is deleted.
            let bound: Option<i64> = conn
                .prepare_cached(
                    "SELECT seq FROM callbacks WHERE received_at >= ?1 ORDER BY seq LIMIT 1",
                )?
                .query_row([before], |r| r.get(0))
                .optional()?;
            let bound = bound.unwrap_or(i64::MAX);
            // The history goes with its callback's row; the counts follow.
            let gone: Vec<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT callback_type, status, count(*) FROM callbacks
                     WHERE seq < ?2 AND status IN (1, 2) AND received_at < ?1
                     GROUP BY callback_type, status",
                )?
                .query_map(params![before, bound], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (callback_type, status, n) in &gone {
                count(conn, callback_type, Status::from_code(*status), -n)?;
            }
            let n = conn
                .prepare_cached(
                    "DELETE FROM callbacks WHERE seq < ?2 AND status IN (1, 2) AND received_at < ?1",
                )?
                .execute(params![before, bound])?;
            conn.prepare_cached("DELETE FROM dedup WHERE received_at < ?1")?
                .execute([before])?;
            Ok(n as u64)
        })
        .await
    }

    async fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        let filter = filter.clone();
        let after = after.map(|c| c.seq);
        self.call(move |conn| {
            let (mut sql, mut args) = filter_sql(&filter);
            if let Some(seq) = after {
                args.push(rusqlite::types::Value::Integer(seq));
                sql.push_str(&format!(" AND seq < ?{}", args.len()));
            }
            args.push(rusqlite::types::Value::Integer(limit as i64 + 1));
            let sql = format!(
                "SELECT {LIST_COLUMNS} FROM callbacks WHERE 1 = 1{sql} ORDER BY seq DESC LIMIT ?{}",
                args.len()
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((from_row(r)?, r.get::<_, i64>(12)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page(rows, limit, &filter, Scope::Search))
        })
        .await
    }

    async fn record_page(
        &self,
        record: &str,
        callback_type: &str,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Option<Page>, StoreError> {
        let filter = Filter {
            record: Some(record.to_owned()),
            callback_type: Some(callback_type.to_owned()),
            ..Filter::default()
        };
        let after = after.map_or(-1, |c| c.seq);
        let (record, callback_type) = (record.to_owned(), callback_type.to_owned());
        self.call(move |conn| {
            let exists: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM callbacks WHERE record = ?1)")?
                .query_row([&record], |r| r.get(0))?;
            if !exists {
                return Ok(None);
            }
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, seq FROM callbacks
                     WHERE record = ?1 AND callback_type = ?2 AND seq > ?3
                     ORDER BY seq LIMIT ?4"
                ))?
                .query_map(
                    params![record, callback_type, after, limit as i64 + 1],
                    |r| Ok((from_row(r)?, r.get::<_, i64>(12)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(page(rows, limit, &filter, Scope::Record)))
        })
        .await
    }

    async fn history(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4
                 FROM callbacks c, json_each(c.history) e
                 WHERE c.id = ?1 ORDER BY 1",
            )?
            .query_map([&id], |r| {
                Ok(Attempt {
                    attempt: r.get(0)?,
                    started_at: from_millis(r.get(1)?),
                    finished_at: from_millis(r.get(2)?),
                    outcome: AttemptOutcome::from_code(r.get(3)?),
                    error: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, StoreError> {
        let Some(filter) = filter.replayable() else {
            return Ok(0);
        };
        self.call(move |conn| {
            let now = millis(Utc::now());
            let (sql, args) = filter_sql(&filter);
            let ids: Vec<String> = conn
                .prepare(&format!(
                    "SELECT id FROM callbacks WHERE 1 = 1{sql} ORDER BY seq"
                ))?
                .query_map(rusqlite::params_from_iter(args), |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                replay_one(conn, id, now)?;
            }
            Ok(ids.len() as u64)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        self.call(|conn| {
            let counts: Vec<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT callback_type, status, n FROM callback_counts WHERE n <> 0
                     ORDER BY callback_type, status",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            // The first pending callback in received order (`status <> 1`: the partial index).
            let oldest: Option<i64> = conn
                .prepare_cached(
                    "SELECT received_at FROM callbacks WHERE status <> 1 AND status = 0
                     ORDER BY seq LIMIT 1",
                )?
                .query_row([], |r| r.get(0))
                .optional()?;
            Ok(stats_of(counts, oldest))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::thread::describe;
    use super::*;

    fn new_cb(id: &str, record: &str, body: &str) -> NewCallback {
        NewCallback {
            id: id.into(),
            record: record.into(),
            callback_type: "TRANSACTIONS".into(),
            callback_code: Some("PERIODIC_TRANSACTIONS".into()),
            body: body.as_bytes().to_vec().into(),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    /// The causes an operator can act on are named first, as `StoreError::cause` reads them.
    #[test]
    fn sqlite_errors_name_their_cause() {
        let error = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("boom".into()))
        };
        let cause = |code| StoreError::Unavailable(describe(&error(code))).cause();
        assert_eq!(cause(rusqlite::ffi::SQLITE_FULL), "disk full");
        assert_eq!(cause(rusqlite::ffi::SQLITE_READONLY), "read-only");
        assert_eq!(cause(rusqlite::ffi::SQLITE_BUSY), "timeout");
        assert_eq!(cause(rusqlite::ffi::SQLITE_CORRUPT), "unavailable");
        let message = describe(&error(rusqlite::ffi::SQLITE_FULL));
        assert!(message.contains("free space"), "{message}");
    }

    /// Readiness writes: a database that cannot be written (here `PRAGMA query_only`, which
    /// answers SQLITE_READONLY as a read-only file or mount would, even to root) fails the
    /// check, naming why.
    #[tokio::test]
    async fn ping_fails_with_the_cause_when_the_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("okra.db")).await.unwrap();
        store.ping().await.expect("a writable file is ready");
        store
            .call(|conn| conn.execute_batch("PRAGMA query_only = ON"))
            .await
            .unwrap();
        let err = store.ping().await.unwrap_err();
        assert_eq!(err.cause(), "read-only", "{err}");
        assert!(err.to_string().contains("permissions"), "{err}");
    }

    /// Writes a database file at schema `version` as that release left it: `callbacks_sql`'s
    /// rows (record `r1`, one of them pending), the record's queue row, and `body`'s dedup key
    /// naming `old-pending`.
    fn file_of_schema(path: &Path, version: usize, callbacks_sql: &str, body: &str) {
        let now = millis(Utc::now());
        let mut conn = Connection::open(path).unwrap();
        migrations().to_version(&mut conn, version).unwrap();
        conn.execute_batch(callbacks_sql).unwrap();
        conn.execute(
            "INSERT INTO record_queue (record, pending, due_at) VALUES ('r1', 1, ?1)",
            [now],
        )
        .unwrap();
        let hash = sha2::Sha256::digest(body.as_bytes()).to_vec();
        conn.execute(
            "INSERT INTO dedup (hash, id, received_at) VALUES (?1, 'old-pending', ?2)",
            params![hash, now],
        )
        .unwrap();
    }

    /// A file written by the previous release (migration 0001 only) opens with its callbacks,
    /// their states and the dedup window intact.
    #[tokio::test]
    async fn a_file_of_the_previous_schema_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        let body = r#"{"callback_type":"AUTH","record":"r1","n":1}"#;
        file_of_schema(
            &path,
            1,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('old-done', 'r1', 'AUTH', X'7B7D', {now}, 1, 1, NULL, {now}),
                          ('old-pending', 'r1', 'AUTH', X'7B7D', {now}, 0, 0, {now}, NULL);"
            ),
            body,
        );
        let store = SqliteStore::open(&path).await.unwrap();
        let listed = store.list("r1", &[]).await.unwrap().into_callbacks();
        let states: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            states,
            [
                ("old-done", Status::Delivered),
                ("old-pending", Status::Pending)
            ]
        );
        let again = store
            .insert(new_cb("new", "r1", body), Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((again.id.as_str(), again.duplicate), ("old-pending", true));
        let claims = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let ids: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["old-pending"],
            "the pending callback is still claimed"
        );
        let backlog = store.backlog().await.unwrap();
        assert_eq!((backlog.pending, backlog.dead), (1, 0));
    }

    /// A file of the schema before the inbox log (0005), as the previous release left it:
    /// opens with its callbacks, their counts and dedup keys; new callbacks go through the log
    /// and join them, in order, and all of it is there again after a restart.
    #[tokio::test]
    async fn a_file_of_schema_0005_opens_with_its_data_and_takes_new_callbacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        let body = r#"{"callback_type":"AUTH","record":"r1","n":1}"#;
        file_of_schema(
            &path,
            5,
            &format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at, history)
                   VALUES ('old-done', 'r1', 'AUTH', X'7B7D', {now}, 1, 1, NULL, {now}, '[[1,{now},{now},0,null]]'),
                          ('old-pending', 'r1', 'AUTH', X'7B7D', {now}, 0, 0, {now}, NULL, '[]');
                 INSERT INTO callback_counts (callback_type, status, n) VALUES ('AUTH', 0, 1), ('AUTH', 1, 1);"
            ),
            body,
        );
        let window = Duration::from_secs(3600);
        {
            let store = SqliteStore::open(&path).await.unwrap();
            let again = store
                .insert(new_cb("dup", "r1", body), window)
                .await
                .unwrap();
            assert_eq!((again.id.as_str(), again.duplicate), ("old-pending", true));
            let fresh = store
                .insert(new_cb("new", "r1", r#"{"n":2}"#), window)
                .await
                .unwrap();
            assert_eq!((fresh.id.as_str(), fresh.duplicate), ("new", false));
            let history = store.history("old-done").await.unwrap();
            assert_eq!(history.len(), 1, "{history:?}");
            let stats = store.stats().await.unwrap();
            assert_eq!((stats.pending, stats.delivered), (2, 1), "{stats:?}");
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let listed = store.list("r1", &[]).await.unwrap().into_callbacks();
        let states: Vec<_> = listed.iter().map(|c| (c.id.as_str(), c.status)).collect();
        assert_eq!(
            states,
            [
                ("old-done", Status::Delivered),
                ("old-pending", Status::Pending),
                ("new", Status::Pending)
            ]
        );
        let claims = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        let ids: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["old-pending", "new"], "claimed in received order");
    }

    /// The state `kill -9` leaves between an acknowledgement and its apply: frames in the log
    /// past the applied LSN, and a torn frame after them (a write cut short, never
    /// acknowledged). Opening applies the whole frames once, in order, drops the torn one, and
    /// dedup knows them; a second open applies nothing again.
    #[tokio::test]
    async fn acknowledged_frames_left_in_the_log_are_applied_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let window = Duration::from_secs(3600);
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .insert(new_cb("first", "r", r#"{"n":0}"#), window)
            .await
            .unwrap();
        drop(store);
        // What the crashed process had acknowledged but not applied.
        let applied = loop {
            // The dropped store's threads finish applying and let go of the file.
            let conn = Connection::open(&path).unwrap();
            let lsn = apply::applied_lsn(&conn).unwrap();
            if lsn >= 1 {
                break lsn;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut bytes = Vec::new();
        for (i, (id, body)) in [
            ("a", r#"{"n":1}"#),
            ("b", r#"{"n":2}"#),
            ("torn", r#"{"n":3}"#),
        ]
        .iter()
        .enumerate()
        {
            inbox::encode_for_test(applied + 1 + i as u64, &new_cb(id, "r", body), &mut bytes);
        }
        bytes.truncate(bytes.len() - 5);
        let log = inbox::dir_of(&path);
        std::fs::write(log.join(format!("{:020}.log", applied + 1)), &bytes).unwrap();

        for _ in 0..2 {
            let store = SqliteStore::open(&path).await.unwrap();
            let ids: Vec<String> = store
                .list("r", &[])
                .await
                .unwrap()
                .into_callbacks()
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert_eq!(ids, ["first", "a", "b"]);
            let again = store
                .insert(new_cb("copy", "r", r#"{"n":2}"#), window)
                .await
                .unwrap();
            assert_eq!((again.id.as_str(), again.duplicate), ("b", true));
            let torn = store
                .insert(new_cb("resent", "r", r#"{"n":3}"#), window)
                .await
                .unwrap();
            assert!(!torn.duplicate, "the torn frame was never stored");
            assert_eq!(store.stats().await.unwrap().pending, 4);
            let claims = store
                .claim("w", 10, 10, Duration::from_secs(60))
                .await
                .unwrap();
            let order: Vec<_> = claims[0].callbacks.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(order, ["first", "a", "b", "resent"]);
            // The second round reopens with the resent copy stored: delete it again so the
            // round sees the same state (and proves nothing was applied twice).
            store
                .call(|conn| {
                    conn.execute_batch(
                        "DELETE FROM callbacks WHERE id = 'resent';
                         DELETE FROM dedup WHERE id = 'resent';
                         UPDATE callback_counts SET n = n - 1 WHERE status = 0;
                         UPDATE record_queue SET pending = pending - 1, lease_owner = NULL, lease_until = NULL;",
                    )
                })
                .await
                .unwrap();
        }
    }

    /// A file with a table of attempts (schema 0004) opens with each callback's history, in
    /// attempt order, read from its own row; the table is gone; a new attempt is appended.
    #[tokio::test]
    async fn a_file_with_an_attempts_table_keeps_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        {
            let mut conn = Connection::open(&path).unwrap();
            migrations().to_version(&mut conn, 4).unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO callbacks (id, record, callback_type, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('a', 'r1', 'AUTH', X'7B7D', 1000, 1, 2, NULL, 5000),
                          ('b', 'r2', 'AUTH', X'7B7D', 1001, 0, 1, {now}, NULL);
                 INSERT INTO record_queue (record, pending, due_at) VALUES ('r2', 1, {now});
                 -- Written out of order: the history is read in attempt order.
                 INSERT INTO callback_attempts (seq, attempt, started_at, finished_at, outcome, error)
                   VALUES (1, 2, 3000, 4000, 0, NULL),
                          (1, 1, 1000, 2000, 1, 'the forward target answered 503'),
                          (2, 1, 5000, 6000, 2, 'timed out');"
            ))
            .unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let summary = |id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .history(id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|a| {
                        (
                            a.attempt,
                            millis(a.started_at),
                            millis(a.finished_at),
                            a.outcome,
                            a.error,
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let failed = Some("the forward target answered 503".to_owned());
        assert_eq!(
            summary("a").await,
            [
                (1, 1000, 2000, AttemptOutcome::Failed, failed),
                (2, 3000, 4000, AttemptOutcome::Succeeded, None),
            ]
        );
        let tables: i64 = store
            .call(|conn| {
                conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'callback_attempts'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(
            tables, 0,
            "the attempts table is dropped once its rows moved"
        );
        // The pending one's next attempt joins its moved history.
        let claimed = store
            .claim("w", 10, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(claimed[0].callbacks[0].id, "b");
        let attempt = Attempt {
            attempt: 2,
            started_at: from_millis(7000),
            finished_at: from_millis(8000),
            outcome: AttemptOutcome::Succeeded,
            error: None,
        };
        store
            .finish_attempt(
                "w",
                &claimed[0].callbacks[0],
                Outcome::Delivered,
                &attempt,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            summary("b").await,
            [
                (
                    1,
                    5000,
                    6000,
                    AttemptOutcome::TimedOut,
                    Some("timed out".to_owned())
                ),
                (2, 7000, 8000, AttemptOutcome::Succeeded, None),
            ]
        );
    }

    /// A file of the schema before the operator's view (0002) opens under 0003 with its
    /// callbacks counted per type and status, found by the new queries, with an empty history.
    #[tokio::test]
    async fn a_file_of_schema_0002_gets_counts_and_indexes_for_the_operators_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let now = millis(Utc::now());
        {
            let mut conn = Connection::open(&path).unwrap();
            migrations().to_version(&mut conn, 2).unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO callbacks (id, record, callback_type, callback_code, body, received_at, status, attempts, next_attempt_at, finished_at)
                   VALUES ('a', 'r1', 'AUTH', 'AUTH_SUCCESS', X'7B7D', {now}, 1, 1, NULL, {now}),
                          ('b', 'r1', 'AUTH', 'AUTH_SUCCESS', X'7B7D', {now} + 1, 2, 3, NULL, {now}),
                          ('c', 'r2', 'Custom', NULL, X'7B7D', {now} + 2, 0, 0, {now}, NULL);
                 INSERT INTO record_queue (record, pending, due_at) VALUES ('r2', 1, {now});"
            ))
            .unwrap();
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.pending, stats.delivered, stats.dead), (1, 1, 1));
        assert_eq!(
            stats.by_type,
            [("AUTH".to_owned(), 2), ("Custom".to_owned(), 1)]
        );
        assert_eq!(stats.oldest_pending_at, Some(from_millis(now + 2)));
        let dead = Filter {
            statuses: vec![Status::Dead],
            ..Filter::default()
        };
        let page = store.search(&dead, 10, None).await.unwrap();
        let ids: Vec<_> = page.callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b"]);
        let custom = Filter {
            callback_type: Some("CUSTOM".into()),
            ..Filter::default()
        };
        let page = store.search(&custom, 10, None).await.unwrap();
        assert_eq!(
            page.callbacks.len(),
            1,
            "an unknown type, matched in any case"
        );
        assert!(store.history("b").await.unwrap().is_empty());
        // The counts go on from there.
        assert_eq!(store.replay_matching(&dead).await.unwrap(), 1);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.pending, stats.delivered, stats.dead), (2, 1, 0));
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let _first = SqliteStore::open(&path).await.unwrap();
        let err = recover(&path).err().unwrap();
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_all_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let window = Duration::from_secs(60);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert(
                            new_cb(
                                &format!("id{i}"),
                                &format!("r{}", i % 7),
                                &format!("{{\"n\":{i}}}"),
                            ),
                            window,
                        )
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(!t.await.unwrap().unwrap().duplicate);
        }
        let dup = store
            .insert(new_cb("again", "r0", "{\"n\":0}"), window)
            .await
            .unwrap();
        assert_eq!(
            dup,
            Inserted {
                id: "id0".into(),
                duplicate: true
            }
        );
        drop(store);
        // The database thread lets go of the file once every handle is gone.
        let mut reopened = None;
        for _ in 0..50 {
            if let Ok(s) = SqliteStore::open(&path).await {
                reopened = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let store = reopened.expect("reopen");
        let backlog = store.backlog().await.unwrap();
        assert_eq!(backlog.pending, 200);
        let listing = store.list("r3", &[]).await.unwrap();
        let Listing::Callbacks(list) = listing else {
            panic!("record r3 is known: {listing:?}");
        };
        assert_eq!(list.len(), (0..200).filter(|i| i % 7 == 3).count());
    }

    #[tokio::test]
    async fn dedup_window_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("x.db")).await.unwrap();
        let mut first = new_cb("a", "r", "{}");
        first.received_at = Utc::now() - chrono::Duration::seconds(120);
        store.insert(first, Duration::from_secs(60)).await.unwrap();
        let second = store
            .insert(new_cb("b", "r", "{}"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            second,
            Inserted {
                id: "b".into(),
                duplicate: false
            }
        );
        let third = store
            .insert(new_cb("c", "r", "{}"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            third,
            Inserted {
                id: "b".into(),
                duplicate: true
            }
        );
    }

    #[tokio::test]
    async fn a_failing_job_leaves_the_rest_of_its_batch_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("x.db")).await.unwrap();
        store
            .call(|conn| conn.execute("INSERT INTO dedup VALUES (X'19', 'taken', 0)", []))
            .await
            .unwrap();
        // Sent together, so they share group transactions; one writes a key already stored and
        // fails (the primary key), which sends its batch through the savepoint path.
        let tasks: Vec<_> = (0..50u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .call(move |conn| {
                            conn.execute(
                                "INSERT INTO dedup VALUES (?1, ?2, 0)",
                                params![&[i][..], format!("id{i}")],
                            )
                        })
                        .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let result = t.await.unwrap();
            assert_eq!(result.is_err(), i == 25, "{i}: {result:?}");
        }
        let ids: Vec<String> = store
            .call(|conn| {
                conn.prepare("SELECT id FROM dedup ORDER BY hash")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .unwrap();
        assert_eq!(ids.len(), 50, "{ids:?}");
        assert_eq!(ids[25], "taken");
    }

    /// A job that moved the counters and then failed takes its moves back with its writes
    /// (savepoint pass); its neighbours' moves are kept once (not again after the fast pass
    /// was rolled back).
    #[tokio::test]
    async fn a_failed_jobs_counter_moves_are_rolled_back_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("x.db")).await.unwrap();
        let window = Duration::from_secs(60);
        let inserts: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert(
                            new_cb(&format!("id{i}"), "r", &format!("{{\"n\":{i}}}")),
                            window,
                        )
                        .await
                        .map(drop)
                })
            })
            .collect();
        let ghost = store.call(|conn| {
            count(conn, "GHOST", Status::Pending, 1000)?;
            conn.execute_batch("INSERT INTO callbacks (id) VALUES (NULL)")?;
            Ok(())
        });
        assert!(ghost.await.is_err(), "the failing job fails");
        for insert in inserts {
            insert.await.unwrap().unwrap();
        }
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.pending, 40, "{stats:?}");
        assert_eq!(stats.by_type, [("TRANSACTIONS".to_owned(), 40)]);
    }
}
