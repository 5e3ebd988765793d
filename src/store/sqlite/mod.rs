//! The embedded store: one SQLite file in WAL mode and its inbox log, owned by one process.
//!
//! A callback is acknowledged once it is in the inbox log ([`inbox`]): one sequential append,
//! `fsync`ed for every callback that arrived meanwhile. The tables the queries and the dispatcher
//! read are built from the log in batches ([`apply`]) by the one database thread ([`thread`]),
//! which runs every other operation too, gathered into group transactions (`synchronous=FULL`:
//! a commit is on disk before any caller hears of it). Whatever was acknowledged survives
//! `kill -9` and power loss: on start-up the log's frames not yet in the tables are applied
//! before anything is served.
//!
//! Opening and recovery are in [`open`], the operator's queries in [`operator`]; this module
//! holds what ingest and the dispatcher call.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{
    duration_ms, millis, queue_key, split_queue_key, AfterLast, Attempt, Claim, Delivery, Ingest,
    Inserted, NewCallback, Outcome, Retention, Status, StoreError, StoredCallback, COLUMNS,
};

mod apply;
mod dedup_filter;
mod inbox;
mod log;
mod open;
mod operator;
mod rows;
mod thread;

pub use dedup_filter::DEFAULT_BYTES as DEDUP_FILTER_BYTES;

use rows::{count, from_row};
use thread::{Call, Job};

/// The embedded SQLite store. See the module docs for its durability.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    inbox: mpsc::Sender<inbox::Append>,
}

impl SqliteStore {
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

/// Up to `limit` of a record's pending callbacks, oldest first; the record named by its queue
/// key.
fn pending_of(
    conn: &Connection,
    queue: &str,
    limit: usize,
) -> rusqlite::Result<Vec<StoredCallback>> {
    let (source, record) = split_queue_key(queue);
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM callbacks WHERE record = ?1 AND source = ?3 AND status = 0
         ORDER BY seq LIMIT ?2"
    ))?
    .query_map(params![record, limit as i64, source], from_row)?
    .collect()
}

/// Records one attempt's outcome, and the attempt in the callback's history, and extends
/// `owner`'s lease on the record (named by its queue key).
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
    let changed: Option<(String, String)> = conn
        .prepare_cached(
            "UPDATE callbacks SET status = ?2, attempts = attempts + 1,
               cycle_attempts = cycle_attempts + 1, last_error = ?3,
               next_attempt_at = ?4, finished_at = ?5,
               history = json_insert(history, '$[#]',
                                     json_array(attempts + 1, ?6, ?7, ?8, ?9))
             WHERE id = ?1 AND status = 0
             RETURNING callback_type, source",
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
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((callback_type, source)) = &changed {
        if status != Status::Pending {
            let counter = queue_key(source, callback_type);
            count(conn, &counter, Status::Pending, -1)?;
            count(conn, &counter, status, 1)?;
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
impl Ingest for SqliteStore {
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
}

#[async_trait]
impl Delivery for SqliteStore {
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
        let (owner, id, record) = (owner.to_owned(), cb.id.clone(), cb.queue_key().into_owned());
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
        let (owner, id, record) = (owner.to_owned(), cb.id.clone(), cb.queue_key().into_owned());
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
}

#[async_trait]
impl Retention for SqliteStore {
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
            let gone: Vec<(String, String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT source, callback_type, status, count(*) FROM callbacks
                     WHERE seq < ?2 AND status IN (1, 2) AND received_at < ?1
                     GROUP BY source, callback_type, status",
                )?
                .query_map(params![before, bound], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            for (source, callback_type, status, n) in &gone {
                let counter = queue_key(source, callback_type);
                count(conn, &counter, Status::from_code(*status), -n)?;
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
}

#[cfg(test)]
mod tests {

    use super::thread::describe;
    use super::*;
    use crate::store::{Filter, OperatorView, Page};

    /// A record's callbacks of every type, oldest first (without their bodies).
    pub(super) async fn callbacks_of(store: &SqliteStore, record: &str) -> Vec<StoredCallback> {
        let filter = Filter {
            record: Some(record.into()),
            ..Filter::default()
        };
        let mut callbacks = store.search(&filter, 1000, None).await.unwrap().callbacks;
        callbacks.reverse();
        callbacks
    }

    pub(super) fn new_cb(id: &str, record: &str, body: &str) -> NewCallback {
        NewCallback {
            callback_type: "TRANSACTIONS".into(),
            callback_code: Some("PERIODIC_TRANSACTIONS".into()),
            ..NewCallback::sample(id, record, body.to_owned())
        }
    }

    /// Inserts `n` callbacks at once, each from its own task: `id{i}` of `record(i)` with the
    /// body `{"n":i}`, in a 60-second dedup window.
    fn insert_concurrently(
        store: &SqliteStore,
        n: usize,
        record: fn(usize) -> String,
    ) -> Vec<tokio::task::JoinHandle<Result<Inserted, StoreError>>> {
        (0..n)
            .map(|i| {
                let store = store.clone();
                let cb = new_cb(&format!("id{i}"), &record(i), &format!("{{\"n\":{i}}}"));
                tokio::spawn(async move { store.insert(cb, Duration::from_secs(60)).await })
            })
            .collect()
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
    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_all_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("okra.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let window = Duration::from_secs(60);
        let tasks = insert_concurrently(&store, 200, |i| format!("r{}", i % 7));
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
        let backlog = store.stats().await.unwrap();
        assert_eq!(backlog.pending, 200);
        let listing = store
            .record_page("r3", "TRANSACTIONS", 1000, None)
            .await
            .unwrap();
        let Some(Page {
            callbacks: list, ..
        }) = listing
        else {
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
        let inserts = insert_concurrently(&store, 40, |_| "r".to_owned());
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
