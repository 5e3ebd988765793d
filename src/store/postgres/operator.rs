//! The operator's view on PostgreSQL: filtered pages, attempt history, bulk replay and stats.
//!
//! Counts are kept on write in `okra_callback_counts`, one row per callback type, status and
//! *shard* — the writing connection's backend pid — so concurrent writers never wait for each
//! other's counter rows (two live connections never share a pid), and the stats add the shards
//! up. Rows of connections that have gone are folded into shard 0 now and then, so the table
//! stays a few rows per live connection.

use async_trait::async_trait;
use chrono::Utc;

use super::{
    rows::{from_row, params, COUNT_SQL, NOW_MS},
    PostgresStore,
};
use crate::store::{
    conditions::{Conditions, Dialect},
    from_millis, millis,
    query::{page, stats_of},
    queue_key, Attempt, AttemptOutcome, Cursor, Filter, LeaseInfo, OperatorView, Page, Scope,
    Stats, Status, StoreError, StoredCallback, COLUMNS,
};

/// The columns of a list row: everything but the body (lists show no payloads), then `seq`.
const LIST_COLUMNS: &str = "id, record, callback_type, callback_code, ''::bytea AS body, \
                            received_at, status, attempts, cycle_attempts, last_error, \
                            next_attempt_at, finished_at, source, event_id, seq";

/// The key of the advisory lock under which shards of gone connections are folded.
const FOLD_LOCK: i64 = 0x006f_6b72_6166_6f6c;

/// Every status a callback can have, as stored.
const ALL_STATUSES: [i16; 3] = [0, 1, 2];

/// A statement that reads one record's callbacks in `seq` order (`DESC` or `ASC`), `limit`
/// (a parameter, `$n`) at most: one range of the `(record, status, seq)` index per status in
/// `statuses`, each read in order up to the limit, merged. (A `(record, seq)` index would
/// read one range, at the cost of one more index entry per insert and per outcome.)
/// `conditions` are the rest of the `WHERE` clause, after `AND`, without any on the status.
fn record_ranges(
    columns: &str,
    statuses: &[i16],
    conditions: &str,
    order: &str,
    limit: &str,
) -> String {
    let arms: Vec<String> = statuses
        .iter()
        .map(|s| {
            format!(
                "(SELECT {columns}, seq AS k FROM okra_callbacks WHERE status = {s}{conditions}
                  ORDER BY seq {order} LIMIT {limit})"
            )
        })
        .collect();
    format!(
        "SELECT {columns} FROM ({}) ranges ORDER BY k {order} LIMIT {limit}",
        arms.join(" UNION ALL ")
    )
}

#[async_trait]
impl OperatorView for PostgresStore {
    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let client = self.db.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM okra_callbacks WHERE id = $1");
        let result = self.db.timed(client.query_opt(&sql, &[&id])).await;
        Ok(self.db.result_of(client, result)?.as_ref().map(from_row))
    }

    async fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        // One record's callbacks: its status ranges merged (see `record_ranges`).
        let one_record = filter.record.is_some();
        let mut c = Conditions::of(filter, Dialect::Postgres, !one_record);
        let limit_arg = c.newest_first(after.map(|c| c.seq), limit);
        let sql = if one_record {
            let codes = filter.status_codes();
            let statuses = if codes.is_empty() {
                &ALL_STATUSES[..]
            } else {
                &codes[..]
            };
            record_ranges(LIST_COLUMNS, statuses, &c.sql, "DESC", &limit_arg)
        } else {
            format!(
                "SELECT {LIST_COLUMNS} FROM okra_callbacks WHERE true{} ORDER BY seq DESC LIMIT {limit_arg}",
                c.sql
            )
        };
        let client = self.db.client().await?;
        let result = self.db.timed(client.query(&sql, &params(&c))).await;
        let rows = self.db.result_of(client, result)?;
        let rows: Vec<(StoredCallback, i64)> =
            rows.iter().map(|r| (from_row(r), r.get("seq"))).collect();
        Ok(page(rows, limit, filter, Scope::Search))
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
        let sql = record_ranges(
            &format!("{COLUMNS}, seq"),
            &ALL_STATUSES,
            " AND record = $1 AND source = 'okra' AND callback_type = $2 AND seq > $3",
            "ASC",
            "$4",
        );
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(async {
                let exists: bool = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM okra_callbacks
                                        WHERE record = $1 AND source = 'okra')",
                        &[&record],
                    )
                    .await?
                    .get(0);
                if !exists {
                    return Ok(None);
                }
                let rows = client
                    .query(
                        &sql,
                        &[&record, &callback_type, &after, &(limit as i64 + 1)],
                    )
                    .await?;
                Ok(Some(rows))
            })
            .await;
        let Some(rows) = self.db.result_of(client, result)? else {
            return Ok(None);
        };
        let rows: Vec<(StoredCallback, i64)> =
            rows.iter().map(|r| (from_row(r), r.get("seq"))).collect();
        Ok(Some(page(rows, limit, &filter, Scope::Record)))
    }

    async fn history(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(client.query(
                "SELECT (e->>0)::int, (e->>1)::bigint, (e->>2)::bigint, (e->>3)::smallint, e->>4
                 FROM okra_callbacks c CROSS JOIN LATERAL jsonb_array_elements(c.history) e
                 WHERE c.id = $1 ORDER BY 1",
                &[&id],
            ))
            .await;
        let rows = self.db.result_of(client, result)?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                attempt: r.get::<_, i32>(0).try_into().unwrap_or(0),
                started_at: from_millis(r.get(1)),
                finished_at: from_millis(r.get(2)),
                outcome: AttemptOutcome::from_code(r.get::<_, i16>(3).into()),
                error: r.get(4),
            })
            .collect())
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
                        "SELECT record, callback_type, source FROM okra_callbacks WHERE id = $1",
                        &[&id],
                    )
                    .await?
                else {
                    return Ok(false);
                };
                let (record, callback_type, source): (String, String, String) =
                    (row.get(0), row.get(1), row.get(2));
                let record = queue_key(&source, &record).into_owned();
                let callback_type = queue_key(&source, &callback_type).into_owned();
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

    async fn replay_matching(&self, filter: &Filter) -> Result<u64, StoreError> {
        let Some(filter) = filter.replayable() else {
            return Ok(0);
        };
        let c = Conditions::of(&filter, Dialect::Postgres, true);
        let sql = format!(
            "SELECT id FROM okra_callbacks WHERE true{} ORDER BY seq",
            c.sql
        );
        let client = self.db.client().await?;
        let result = self.db.timed(client.query(&sql, &params(&c))).await;
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

    async fn stats(&self) -> Result<Stats, StoreError> {
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(async {
                let counts = client
                    .query(
                        "SELECT callback_type, status, sum(n)::bigint FROM okra_callback_counts
                         GROUP BY callback_type, status HAVING sum(n) <> 0",
                        &[],
                    )
                    .await?;
                // The first pending callback in received order (`status <> 1`: the partial
                // index of pending and dead callbacks, by seq).
                let oldest = client
                    .query_opt(
                        "SELECT received_at FROM okra_callbacks WHERE status <> 1 AND status = 0
                         ORDER BY seq LIMIT 1",
                        &[],
                    )
                    .await?;
                Ok((counts, oldest))
            })
            .await;
        let (counts, oldest) = self.db.result_of(client, result)?;
        let counts = counts
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    i64::from(r.get::<_, i16>(1)),
                    r.get::<_, i64>(2),
                )
            })
            .collect();
        let stats = stats_of(counts, oldest.map(|r| r.get(0)));
        // Tidy the counters after answering, off the caller's path.
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.fold_counts().await {
                tracing::debug!(error = %e, "cannot fold the counts of gone connections; next time");
            }
        });
        Ok(stats)
    }
}

impl PostgresStore {
    /// Folds the counter shards of connections that have gone into shard 0, under an advisory
    /// lock (skipped when another replica is at it). Nobody else writes those shards.
    async fn fold_counts(&self) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let result = self
            .db
            .timed(async {
                let tx = client.transaction().await?;
                let locked: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
                    .await?
                    .get(0);
                if !locked {
                    return Ok(());
                }
                tx.batch_execute(
                    "WITH gone AS (
                       DELETE FROM okra_callback_counts
                       WHERE shard <> 0
                         AND shard NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
                       RETURNING callback_type, status, n
                     )
                     INSERT INTO okra_callback_counts (callback_type, status, shard, n)
                     SELECT callback_type, status, 0, sum(n) FROM gone
                     GROUP BY callback_type, status ORDER BY callback_type, status
                     ON CONFLICT (callback_type, status, shard)
                       DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n",
                )
                .await?;
                tx.commit().await
            })
            .await;
        self.db.result_of(client, result)
    }
}
