//! How a callback's row reads and how the counts move: shared by the log's apply, the
//! dispatcher's writes and the operator's queries.

use rusqlite::{params, types::ToSqlOutput, Connection, Row, ToSql};

use crate::store::{conditions::Param, from_millis, Status, StoredCallback};

/// A callback read from its row's [`COLUMNS`](crate::store::COLUMNS), in order.
pub(super) fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredCallback> {
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
        source: row.get(12)?,
        event_id: row.get(13)?,
    })
}

/// Adds `delta` to the count of callbacks in `status` under `callback_type`, a counter key (a
/// source's type as [`queue_key`](crate::store::queue_key) makes it).
pub(super) fn count(
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

/// A filter's parameter binds as the value it holds. SQLite's dialect binds each member of a
/// set on its own, so a set never reaches here; one that did is refused, not bound.
impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Status(v) => v.to_sql(),
            Param::Int(v) => v.to_sql(),
            Param::Text(v) => v.to_sql(),
            Param::Statuses(_) | Param::Texts(_) => Err(rusqlite::Error::ToSqlConversionFailure(
                "a set binds as one parameter in PostgreSQL only: SQLite's conditions bind each member".into(),
            )),
        }
    }
}
