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
    from_millis, millis,
    query::{page, stats_of},
    queue_key, Attempt, AttemptOutcome, Cursor, Filter, OperatorView, Page, Scope, Stats, Status,
    StoreError, StoredCallback, COLUMNS,
};

/// The columns of a list row: everything but the body (lists show no payloads).
const LIST_COLUMNS: &str = "id, record, callback_type, callback_code, X'' AS body, received_at, \
                            status, attempts, cycle_attempts, last_error, next_attempt_at, \
                            finished_at, source, event_id, seq";

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
    let sources = filter.source_names();
    if !sources.is_empty() {
        let mut marks = Vec::with_capacity(sources.len());
        for name in sources {
            args.push(Value::Text(name.to_owned()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND source IN ({})", marks.join(", ")));
    }
    (sql, args)
}

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
        let filter = Filter {
            record: Some(record.to_owned()),
            callback_type: Some(callback_type.to_owned()),
            ..Filter::default()
        };
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
