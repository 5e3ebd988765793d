//! Building the tables from the inbox log: what the database thread does with acknowledged
//! callbacks, in batches, off the acknowledging path.
//!
//! One batch (every frame acknowledged since the last transaction) costs one insert per
//! callback into `callbacks` (and its indexes) and `dedup`, but one upsert per *record* into
//! `record_queue` and one per *type* into `callback_counts`, and the applied LSN is recorded in
//! the same transaction, so a frame is applied exactly once however the process stops.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use rusqlite::{params, Connection};

use super::{count, log::Batch, queue_key, Status};

/// Applies `batches` (in LSN order) to the open transaction; answers the last LSN applied, or
/// `None` when there was nothing to apply.
pub(super) fn apply(conn: &Connection, batches: &[Arc<Batch>]) -> rusqlite::Result<Option<u64>> {
    let Some(last) = batches.last().map(|b| b.last_lsn()) else {
        return Ok(None);
    };
    // Per record: callbacks added and when the first of them arrived; per type: callbacks added
    // (both per source: by queue key and counter key).
    let mut records: HashMap<Cow<'_, str>, (i64, i64)> = HashMap::new();
    let mut types: HashMap<Cow<'_, str>, i64> = HashMap::new();
    {
        let mut insert = conn.prepare_cached(
            "INSERT INTO callbacks (id, record, callback_type, callback_code, body, received_at,
                                    next_attempt_at, source, event_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let mut dedup = conn.prepare_cached(
            "INSERT INTO dedup (hash, id, received_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (hash) DO UPDATE SET id = excluded.id, received_at = excluded.received_at",
        )?;
        for cb in batches.iter().flat_map(|b| b.frames()) {
            let at = cb.received_at;
            let added = insert.execute(params![
                cb.id,
                cb.record,
                cb.callback_type,
                cb.callback_code,
                cb.body,
                at,
                cb.source,
                cb.event_id
            ])?;
            if added == 0 {
                // Ids are unique by construction (time-ordered, random), and the applied LSN,
                // committed with the rows, keeps a frame from being applied twice.
                tracing::error!(id = %cb.id, "a callback id already stored was given to another callback; the later one is not stored");
                continue;
            }
            dedup.execute(params![cb.hash, cb.id, at])?;
            records
                .entry(queue_key(cb.source, cb.record))
                .or_insert((0, at))
                .0 += 1;
            *types
                .entry(queue_key(cb.source, cb.callback_type))
                .or_default() += 1;
        }
    }
    let mut queue = conn.prepare_cached(
        "INSERT INTO record_queue (record, pending, due_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (record) DO UPDATE SET pending = pending + excluded.pending,
           due_at = CASE WHEN pending = 0 THEN excluded.due_at ELSE due_at END",
    )?;
    for (record, (n, first_at)) in &records {
        queue.execute(params![record.as_ref(), n, first_at])?;
    }
    for (callback_type, n) in &types {
        count(conn, callback_type.as_ref(), Status::Pending, *n)?;
    }
    conn.prepare_cached("UPDATE inbox_state SET applied_lsn = ?1 WHERE id = 1")?
        .execute([i64::try_from(last).unwrap_or(i64::MAX)])?;
    Ok(Some(last))
}

/// The last LSN applied to the database file.
pub(super) fn applied_lsn(conn: &Connection) -> rusqlite::Result<u64> {
    let lsn: i64 = conn.query_row(
        "SELECT applied_lsn FROM inbox_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(lsn).unwrap_or(0))
}
