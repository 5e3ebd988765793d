//! The shared store: PostgreSQL, for several replicas behind a load balancer.
//!
//! Dedup is a unique key every replica shares; work is claimed per record with a lease taken
//! under `FOR UPDATE SKIP LOCKED`, so no two replicas hand one record's callbacks to handlers at
//! once, and a crashed replica's leases return to the pool when they expire. While the database
//! is unreachable every call fails fast with [`StoreError::Unavailable`]; the pool reconnects by
//! itself once it is back.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::{
    duration_ms, from_millis, millis, Backlog, Claim, Inserted, NewCallback, Outcome, Status,
    Store, StoreError, StoredCallback,
};

/// Schema changes, applied in order, each once, under an advisory lock so replicas starting
/// together do not race.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// The key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006f_6b72_616d_6967;

const COLUMNS: &str = "id, record, callback_type, callback_code, body, received_at, status, \
                       attempts, cycle_attempts, last_error, next_attempt_at, finished_at";

/// The PostgreSQL store. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
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

impl PostgresStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`) and runs migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, 16).await
    }

    /// Like [`PostgresStore::connect`], with at most `max_connections` connections.
    pub async fn connect_with(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "cannot read the PostgreSQL URL ({e}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(unavailable)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS okra_schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(unavailable)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM okra_schema_migrations",
                &[],
            )
            .await
            .map_err(unavailable)?
            .get(0);
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Config(format!("migration {version} failed: {e}")))?;
            tx.execute(
                "INSERT INTO okra_schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert(
        &self,
        cb: NewCallback,
        dedup_window: Duration,
    ) -> Result<Inserted, StoreError> {
        let client = self.client().await?;
        let hash = cb.body_hash().to_vec();
        let now = millis(cb.received_at);
        let cutoff = now.saturating_sub(duration_ms(dedup_window));
        // One statement, so one round trip and one atomic commit: claim the dedup key (unless
        // it is fresh), then store the callback and count it in its record's queue.
        let stmt = client
            .prepare_cached(
                "WITH d AS (
                   INSERT INTO okra_dedup (hash, id, received_at) VALUES ($1, $2, $6)
                   ON CONFLICT (hash) DO UPDATE SET id = EXCLUDED.id, received_at = EXCLUDED.received_at
                     WHERE okra_dedup.received_at <= $7
                   RETURNING id
                 ), c AS (
                   INSERT INTO okra_callbacks (id, record, callback_type, callback_code, body, received_at, next_attempt_at)
                   SELECT $2, $3, $4, $5, $8, $6, $6 FROM d
                   RETURNING record
                 ), q AS (
                   INSERT INTO okra_record_queue (record, pending, due_at) SELECT record, 1, $6 FROM c
                   ON CONFLICT (record) DO UPDATE SET pending = okra_record_queue.pending + 1,
                     due_at = CASE WHEN okra_record_queue.pending = 0 THEN EXCLUDED.due_at
                                   ELSE okra_record_queue.due_at END
                   RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM q)",
            )
            .await
            .map_err(unavailable)?;
        let body: &[u8] = &cb.body;
        let inserted: i64 = client
            .query_one(
                &stmt,
                &[
                    &hash,
                    &cb.id,
                    &cb.record,
                    &cb.callback_type,
                    &cb.callback_code,
                    &now,
                    &cutoff,
                    &body,
                ],
            )
            .await
            .map_err(unavailable)?
            .get(0);
        if inserted > 0 {
            return Ok(Inserted {
                id: cb.id,
                duplicate: false,
            });
        }
        let id: String = client
            .query_one("SELECT id FROM okra_dedup WHERE hash = $1", &[&hash])
            .await
            .map_err(unavailable)?
            .get(0);
        Ok(Inserted {
            id,
            duplicate: true,
        })
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.client().await?;
        let now = millis(Utc::now());
        let until = now + duration_ms(lease);
        let records: Vec<String> = client
            .query(
                "WITH c AS (
                   SELECT record FROM okra_record_queue
                   WHERE pending > 0 AND due_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
                   ORDER BY due_at LIMIT $2
                   FOR UPDATE SKIP LOCKED
                 )
                 UPDATE okra_record_queue q SET lease_owner = $3, lease_until = $4
                 FROM c WHERE q.record = c.record
                 RETURNING q.record",
                &[&now, &(max_records as i64), &owner, &until],
            )
            .await
            .map_err(unavailable)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if records.is_empty() {
            return Ok(Vec::new());
        }
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
            .await
            .map_err(unavailable)?;
        let mut claims: Vec<Claim> = records
            .into_iter()
            .map(|record| Claim {
                record,
                callbacks: Vec::new(),
            })
            .collect();
        for row in &rows {
            let cb = from_row(row);
            if let Some(claim) = claims.iter_mut().find(|c| c.record == cb.record) {
                claim.callbacks.push(cb);
            }
        }
        Ok(claims)
    }

    async fn finish(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let now = millis(Utc::now());
        let (status, error, next_at) = match outcome {
            Outcome::Delivered => (Status::Delivered, None, None),
            Outcome::Dead { error } => (Status::Dead, Some(error), None),
            Outcome::Retry { at, error } => (Status::Pending, Some(error), Some(millis(at))),
        };
        let finished = (status != Status::Pending).then_some(now);
        let leaves = status != Status::Pending;
        client
            .execute(
                "WITH u AS (
                   UPDATE okra_callbacks SET status = $2, attempts = attempts + 1,
                     cycle_attempts = cycle_attempts + 1, last_error = $3,
                     next_attempt_at = $4, finished_at = $5
                   WHERE id = $1 AND status = 0
                   RETURNING 1
                 )
                 UPDATE okra_record_queue SET
                   pending = GREATEST(pending - CASE WHEN $6 AND EXISTS (SELECT 1 FROM u) THEN 1 ELSE 0 END, 0),
                   due_at = COALESCE($4, due_at),
                   lease_until = CASE WHEN lease_owner = $7 THEN $8 ELSE lease_until END
                 WHERE record = $9",
                &[
                    &cb.id,
                    &status.code(),
                    &error,
                    &next_at,
                    &finished,
                    &leaves,
                    &owner,
                    &(now + duration_ms(lease)),
                    &cb.record,
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE record = $1 AND lease_owner = $2",
                &[&record, &owner],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1",
                &[&owner],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM okra_callbacks WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.as_ref().map(from_row))
    }

    async fn list(
        &self,
        record: &str,
        callback_types: &[&str],
    ) -> Result<(bool, Vec<StoredCallback>), StoreError> {
        let client = self.client().await?;
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM okra_callbacks WHERE record = $1)",
                &[&record],
            )
            .await
            .map_err(unavailable)?
            .get(0);
        if !exists {
            return Ok((false, Vec::new()));
        }
        let types: Vec<String> = callback_types.iter().map(|t| t.to_string()).collect();
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM okra_callbacks
                     WHERE record = $1 AND (cardinality($2::text[]) = 0 OR callback_type = ANY($2))
                     ORDER BY seq"
                ),
                &[&record, &types],
            )
            .await
            .map_err(unavailable)?;
        Ok((true, rows.iter().map(from_row).collect()))
    }

    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let now = millis(Utc::now());
        let Some(row) = tx
            .query_opt(
                "SELECT record, status FROM okra_callbacks WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(unavailable)?
        else {
            return Ok(false);
        };
        let record: String = row.get(0);
        let status: i16 = row.get(1);
        tx.execute(
            "UPDATE okra_callbacks SET status = 0, cycle_attempts = 0, next_attempt_at = $2,
               finished_at = NULL WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(unavailable)?;
        let newly_pending = i32::from(status != Status::Pending.code());
        tx.execute(
            "INSERT INTO okra_record_queue (record, pending, due_at) VALUES ($1, $2, $3)
             ON CONFLICT (record) DO UPDATE SET pending = okra_record_queue.pending + $2,
               due_at = LEAST(okra_record_queue.due_at, $3)",
            &[&record, &newly_pending, &now],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn replay_dead(&self) -> Result<u64, StoreError> {
        let ids: Vec<String> = self
            .client()
            .await?
            .query(
                "SELECT id FROM okra_callbacks WHERE status = 2 ORDER BY seq",
                &[],
            )
            .await
            .map_err(unavailable)?
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
        self.client()
            .await?
            .query_one("SELECT 1", &[])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM okra_callbacks WHERE status = 0),
                        (SELECT count(*) FROM okra_callbacks WHERE status = 2),
                        (SELECT min(received_at) FROM okra_callbacks WHERE status = 0)",
                &[],
            )
            .await
            .map_err(unavailable)?;
        Ok(Backlog {
            pending: row.get::<_, i64>(0).try_into().unwrap_or(0),
            dead: row.get::<_, i64>(1).try_into().unwrap_or(0),
            oldest_pending_at: row.get::<_, Option<i64>>(2).map(from_millis),
        })
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let before = millis(before);
        let n = client
            .execute(
                "DELETE FROM okra_callbacks WHERE status <> 0 AND received_at < $1",
                &[&before],
            )
            .await
            .map_err(unavailable)?;
        client
            .execute("DELETE FROM okra_dedup WHERE received_at < $1", &[&before])
            .await
            .map_err(unavailable)?;
        Ok(n)
    }
}
