//! The operator's view on SQLite: filtered pages, a record's pages, attempt history, replay
//! and stats.
//!
//! Counts are kept on write in `callback_counts`, one row per callback type and status, so the
//! stats never scan the callbacks.

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    rows::{count, from_row},
    SqliteStore,
};
use crate::store::{
    conditions::{Conditions, Dialect},
    from_millis, millis,
    query::{page, stats_of},
    queue_key, Attempt, AttemptOutcome, Cursor, Filter, OperatorView, Page, Scope, Stats, Status,
    StoreError, StoredCallback, COLUMNS,
};

/// The columns of a list row: everything but the body (lists show no payloads).
const LIST_COLUMNS: &str = "id, record, callback_type, callback_code, X'' AS body, received_at, \
                            status, attempts, cycle_attempts, last_error, next_attempt_at, \
                            finished_at, source, event_id, seq";

/// Makes callback `id` pending again, due at `now`, with a fresh attempt budget; `false` if
/// there is no such callback.
fn replay_one(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    let found: Option<(String, i64, String, String)> = conn
        .prepare_cached(
            "SELECT record, status, callback_type, source FROM callbacks WHERE id = ?1",
        )?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((record, status, callback_type, source)) = found else {
        return Ok(false);
    };
    let status = Status::from_code(status);
    if status != Status::Pending {
        let counter = queue_key(&source, &callback_type);
        count(conn, &counter, status, -1)?;
        count(conn, &counter, Status::Pending, 1)?;
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
    .execute(params![queue_key(&source, &record), newly_pending, now])?;
    Ok(true)
}

#[async_trait]
impl OperatorView for SqliteStore {
    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM callbacks WHERE id = ?1"))?
                .query_row([&id], from_row)
                .optional()
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
            let mut c = Conditions::of(&filter, Dialect::Sqlite, true);
            let limit_arg = c.newest_first(after, limit);
            let sql = format!(
                "SELECT {LIST_COLUMNS} FROM callbacks WHERE 1 = 1{} ORDER BY seq DESC LIMIT {limit_arg}",
                c.sql
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(&c.params), |r| {
                    Ok((from_row(r)?, r.get::<_, i64>("seq")?))
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
        let filter = Filter::of_record(record, callback_type);
        let after = after.map_or(-1, |c| c.seq);
        let (record, callback_type) = (record.to_owned(), callback_type.to_owned());
        self.call(move |conn| {
            let exists: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM callbacks WHERE record = ?1 AND source = 'okra')",
                )?
                .query_row([&record], |r| r.get(0))?;
            if !exists {
                return Ok(None);
            }
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS}, seq FROM callbacks
                     WHERE record = ?1 AND source = 'okra' AND callback_type = ?2 AND seq > ?3
                     ORDER BY seq LIMIT ?4"
                ))?
                .query_map(
                    params![record, callback_type, after, limit as i64 + 1],
                    |r| Ok((from_row(r)?, r.get::<_, i64>("seq")?)),
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

    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| replay_one(conn, &id, millis(Utc::now())))
            .await
    }

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, StoreError> {
        let Some(filter) = filter.replayable() else {
            return Ok(0);
        };
        self.call(move |conn| {
            let now = millis(Utc::now());
            let c = Conditions::of(&filter, Dialect::Sqlite, true);
            let ids: Vec<String> = conn
                .prepare(&format!(
                    "SELECT id FROM callbacks WHERE 1 = 1{} ORDER BY seq",
                    c.sql
                ))?
                .query_map(rusqlite::params_from_iter(&c.params), |r| r.get(0))?
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
