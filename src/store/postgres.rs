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
//! While the database is unreachable every call fails within the configured timeout with
//! [`StoreError::Unavailable`]: connections that stop answering are closed rather than reused,
//! TCP keepalives find dead ones while idle, and the pool reconnects by itself once the
//! database is back.

use std::{future::Future, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::time::error::Elapsed;
use tokio_postgres::{Error as PgError, NoTls, Row};

use super::{
    duration_ms, from_millis, millis, Backlog, Claim, Inserted, NewCallback, Outcome, Status,
    Store, StoreError, StoreOptions, StoredCallback,
};

/// Schema changes, applied in order, each once, under an advisory lock so replicas starting
/// together do not race.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// The key of the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x006f_6b72_616d_6967;

const COLUMNS: &str = "id, record, callback_type, callback_code, body, received_at, status, \
                       attempts, cycle_attempts, last_error, next_attempt_at, finished_at";

/// The database's clock in unix milliseconds, for every lease and due-time decision.
const NOW_MS: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The PostgreSQL store. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    /// The connections, shared by the HTTP handlers and the dispatcher.
    pool: Pool,
    /// How long one operation may take before the store counts as unavailable.
    timeout: Duration,
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
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self { pool, timeout };
        store.migrate().await?;
        Ok(store)
    }

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
        let body: &[u8] = &cb.body;
        // One statement, so one round trip and one atomic commit: claim the dedup key (unless
        // it is fresh), count the callback in its record's queue — which locks the queue row —
        // and only then store the callback, so its `seq` is drawn under that lock and a
        // record's sequence order is its commit order.
        let sql = format!(
            "WITH d AS (
               INSERT INTO okra_dedup (hash, id, received_at) VALUES ($1, $2, $6)
               ON CONFLICT (hash) DO UPDATE SET id = EXCLUDED.id, received_at = EXCLUDED.received_at
                 WHERE okra_dedup.received_at <= $7
               RETURNING id
             ), q AS (
               INSERT INTO okra_record_queue (record, pending, due_at) SELECT $3, 1, {NOW_MS} FROM d
               ON CONFLICT (record) DO UPDATE SET pending = okra_record_queue.pending + 1,
                 due_at = CASE WHEN okra_record_queue.pending = 0 THEN EXCLUDED.due_at
                               ELSE okra_record_queue.due_at END
               RETURNING record
             ), c AS (
               INSERT INTO okra_callbacks (id, record, callback_type, callback_code, body, received_at, next_attempt_at)
               SELECT $2, q.record, $4, $5, $8, $6, $6 FROM q
               RETURNING 1
             )
             SELECT (SELECT count(*) FROM c)"
        );
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
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
                    .await?
                    .get(0);
                if inserted > 0 {
                    return Ok(None);
                }
                // A fresh key: read it in a new statement, whose snapshot sees the other
                // transaction's commit that the conflict waited for.
                let first = client
                    .query_opt("SELECT id FROM okra_dedup WHERE hash = $1", &[&hash])
                    .await?;
                Ok(Some(first.map(|row| row.get::<_, String>(0))))
            })
            .await;
        match self.settle(client, result)? {
            None => Ok(Inserted {
                id: cb.id,
                duplicate: false,
            }),
            Some(Some(id)) => Ok(Inserted {
                id,
                duplicate: true,
            }),
            Some(None) => Err(StoreError::Unavailable(
                "the dedup key was pruned while this callback was being stored; try again".into(),
            )),
        }
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.client().await?;
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
                    return Ok((records, Vec::new()));
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
                    .await?;
                Ok((records, rows))
            })
            .await;
        let (records, rows) = self.settle(client, result)?;
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
        let now = Utc::now();
        let (status, error, next_at) = match outcome {
            Outcome::Delivered => (Status::Delivered, None, None),
            Outcome::Dead { error } => (Status::Dead, Some(error), None),
            Outcome::Retry { at, error } => (Status::Pending, Some(error), Some(at)),
        };
        let finished = (status != Status::Pending).then_some(millis(now));
        let leaves = status != Status::Pending;
        // The retry is due after the same delay by the database's clock.
        let retry_in = next_at.map(|at| (at - now).num_milliseconds().max(0));
        let next_at = next_at.map(millis);
        // The outcome is recorded whoever holds the lease (the handler did run); the lease and
        // the record's due time are only touched by their owner.
        let sql = format!(
            "WITH u AS (
               UPDATE okra_callbacks SET status = $2, attempts = attempts + 1,
                 cycle_attempts = cycle_attempts + 1, last_error = $3,
                 next_attempt_at = $4, finished_at = $5
               WHERE id = $1 AND status = 0
               RETURNING 1
             )
             UPDATE okra_record_queue SET
               pending = GREATEST(pending - CASE WHEN $6 AND EXISTS (SELECT 1 FROM u) THEN 1 ELSE 0 END, 0),
               due_at = CASE WHEN lease_owner = $7 AND $10::bigint IS NOT NULL
                             THEN {NOW_MS} + $10::bigint ELSE due_at END,
               lease_until = CASE WHEN lease_owner = $7 THEN {NOW_MS} + $8 ELSE lease_until END
             WHERE record = $9
             RETURNING lease_owner IS NOT DISTINCT FROM $7"
        );
        let result = self
            .timed(async {
                let row = client
                    .query_opt(
                        &sql,
                        &[
                            &cb.id,
                            &status.code(),
                            &error,
                            &next_at,
                            &finished,
                            &leaves,
                            &owner,
                            &duration_ms(lease),
                            &cb.record,
                            &retry_in,
                        ],
                    )
                    .await?;
                Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
            })
            .await;
        if self.settle(client, result)? {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(cb.record.clone()))
        }
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let result = self
            .timed(client.execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE record = $1 AND lease_owner = $2",
                &[&record, &owner],
            ))
            .await;
        self.settle(client, result).map(drop)
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let result = self
            .timed(client.execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1",
                &[&owner],
            ))
            .await;
        self.settle(client, result).map(drop)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        let client = self.client().await?;
        let sql = format!("SELECT {COLUMNS} FROM okra_callbacks WHERE id = $1");
        let result = self.timed(client.query_opt(&sql, &[&id])).await;
        Ok(self.settle(client, result)?.as_ref().map(from_row))
    }

    async fn list(
        &self,
        record: &str,
        callback_types: &[&str],
    ) -> Result<(bool, Vec<StoredCallback>), StoreError> {
        let client = self.client().await?;
        let types: Vec<String> = callback_types.iter().map(|t| t.to_string()).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM okra_callbacks
             WHERE record = $1 AND (cardinality($2::text[]) = 0 OR callback_type = ANY($2))
             ORDER BY seq"
        );
        let result = self
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
        let (exists, rows) = self.settle(client, result)?;
        Ok((exists, rows.iter().map(from_row).collect()))
    }

    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let now = millis(Utc::now());
        let queue_sql = format!(
            "INSERT INTO okra_record_queue (record, pending, due_at) VALUES ($1, $2, {NOW_MS})
             ON CONFLICT (record) DO UPDATE SET pending = okra_record_queue.pending + $2,
               due_at = LEAST(okra_record_queue.due_at, EXCLUDED.due_at)"
        );
        let result = self
            .timed(async {
                let tx = client.transaction().await?;
                let Some(row) = tx
                    .query_opt(
                        "SELECT record, status FROM okra_callbacks WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
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
                .await?;
                let newly_pending = i32::from(status != Status::Pending.code());
                tx.execute(&queue_sql, &[&record, &newly_pending]).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await;
        self.settle(client, result)
    }

    async fn replay_dead(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let result = self
            .timed(client.query(
                "SELECT id FROM okra_callbacks WHERE status = 2 ORDER BY seq",
                &[],
            ))
            .await;
        let ids: Vec<String> = self
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
        let client = self.client().await?;
        // Readiness checks give up after 2 s; answer before that, so a silent connection is
        // settled (closed) here rather than dropped back into the pool by the caller's timeout.
        let limit = self.timeout.min(Duration::from_millis(1500));
        let result = tokio::time::timeout(limit, client.query_one("SELECT 1", &[])).await;
        self.settle(client, result).map(drop)
    }

    async fn backlog(&self) -> Result<Backlog, StoreError> {
        let client = self.client().await?;
        let result = self
            .timed(client.query_one(
                "SELECT (SELECT count(*) FROM okra_callbacks WHERE status = 0),
                        (SELECT count(*) FROM okra_callbacks WHERE status = 2),
                        (SELECT min(received_at) FROM okra_callbacks WHERE status = 0)",
                &[],
            ))
            .await;
        let row = self.settle(client, result)?;
        Ok(Backlog {
            pending: row.get::<_, i64>(0).try_into().unwrap_or(0),
            dead: row.get::<_, i64>(1).try_into().unwrap_or(0),
            oldest_pending_at: row.get::<_, Option<i64>>(2).map(from_millis),
        })
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let before = millis(before);
        let result = self
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
        self.settle(client, result)
    }
}
