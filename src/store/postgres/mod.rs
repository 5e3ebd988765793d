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
//! - **Ownership.** Each claim of a record takes the next *generation* of its lease; the
//!   heartbeat ([`Delivery::renew`], one statement for all of a replica's leases) and every outcome
//!   write name the generation they hold, and the database refuses stale ones. A replica that was
//!   paused or cut off while another took its record over records nothing for it: it hears
//!   [`StoreError::LeaseLost`] and stops, whatever its own clock says.
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

mod batch;
mod connect;
mod insert;
mod operator;
mod refusal;
mod rows;
mod statements;
mod vacuum;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::{
    duration_ms, millis, AfterLast, Attempt, Claim, Delivery, Ingest, Inserted, NewCallback,
    Outcome, Renewal, Retention, StoreError, StoredCallback,
};
use batch::{submit, Waiting};
use connect::Db;
use insert::InsertJob;
use rows::{COUNTER_KEY, NOW_MS};
use statements::{pending_of, FinishJob, ReleaseJob};

/// The PostgreSQL store. Cheap to clone; clones share the connections and the insert queue.
#[derive(Clone)]
pub struct PostgresStore {
    /// Everything but storing callbacks: the dispatcher, reads, replays, health checks.
    db: Db,
    /// Callbacks waiting to be stored; see [`gather`].
    inserts: mpsc::Sender<InsertJob>,
    /// How many callbacks wait to be stored, for [`Delivery::acknowledgements_queued`].
    waiting: Arc<Waiting>,
    /// Handler outcomes waiting to be recorded.
    finishes: mpsc::Sender<FinishJob>,
    /// Record leases waiting to be given back.
    releases: mpsc::Sender<ReleaseJob>,
    /// The leases this process holds: (owner, record) → the generation its claim took. Outcome
    /// writes and renewals name it, so the database can refuse them once the lease is another's.
    held: Arc<Mutex<HashMap<(String, String), i64>>>,
    /// Dropped with the last clone of the store: stops the vacuum task.
    _alive: Arc<()>,
}
impl PostgresStore {
    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), i64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation of `owner`'s lease on `record`; `-1` (which no lease has) when this
    /// process holds none, so the database refuses the write.
    fn generation(&self, owner: &str, record: &str) -> i64 {
        self.lock_held()
            .get(&(owner.to_owned(), record.to_owned()))
            .copied()
            .unwrap_or(-1)
    }

    fn forget(&self, owner: &str, record: &str) {
        self.lock_held()
            .remove(&(owner.to_owned(), record.to_owned()));
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
    ) -> Result<AfterLast, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queue = cb.queue_key().into_owned();
        let generation = self.generation(owner, &queue);
        let job = FinishJob {
            owner: owner.to_owned(),
            id: cb.id.clone(),
            record: queue.clone(),
            generation,
            outcome,
            attempt: attempt.clone(),
            lease,
            last,
            reply,
        };
        let answer = submit(&self.finishes, job, answer).await;
        if matches!(
            answer,
            Ok(AfterLast::Released) | Err(StoreError::LeaseLost(_))
        ) {
            // Only that lease: a claim of this process may have taken the record again since
            // the release committed.
            let mut held = self.lock_held();
            let key = (owner.to_owned(), queue);
            if held.get(&key) == Some(&generation) {
                held.remove(&key);
            }
        }
        answer
    }
}
#[async_trait]
impl Ingest for PostgresStore {
    async fn insert(
        &self,
        cb: NewCallback,
        dedup_window: Duration,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = InsertJob {
            hash: cb.dedup_key(),
            cb,
            dedup_window,
            reply,
        };
        let _waiting = self.waiting.enter();
        submit(&self.inserts, job, answer).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        // Readiness checks give up after 2 s; answer before that, so a silent connection is
        // lease_states (closed) here rather than dropped back into the pool by the caller's timeout.
        let limit = self.db.timeout.min(Duration::from_millis(1500));
        let result = tokio::time::timeout(limit, client.query_one("SELECT 1", &[])).await;
        self.db.result_of(client, result).map(drop)
    }
}

#[async_trait]
impl Delivery for PostgresStore {
    fn acknowledgements_queued(&self) -> bool {
        self.waiting.busy()
    }

    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.db.client().await?;
        // A lease that ran out without being released (`lease_until` still set) belonged to a
        // worker that stopped renewing it: taking it is a takeover.
        let lease_sql = format!(
            "WITH c AS (
               SELECT record, lease_owner AS was_owner, lease_until AS was_until
               FROM okra_record_queue
               WHERE pending > 0 AND due_at <= {NOW_MS}
                 AND (lease_until IS NULL OR lease_until < {NOW_MS})
               ORDER BY due_at LIMIT $1
               FOR UPDATE SKIP LOCKED
             )
             UPDATE okra_record_queue q SET lease_owner = $2, lease_until = {NOW_MS} + $3,
               lease_gen = q.lease_gen + 1
             FROM c WHERE q.record = c.record
             RETURNING q.record, q.lease_gen,
               CASE WHEN c.was_until IS NOT NULL AND c.was_owner <> $2 THEN c.was_owner END"
        );
        let result = self
            .db
            .timed(async {
                // Prepared once per connection: the dispatcher claims every time it is woken.
                let stmt = client.prepare_cached(&lease_sql).await?;
                let leases: Vec<(String, i64, Option<String>)> = client
                    .query(&stmt, &[&(max_records as i64), &owner, &duration_ms(lease)])
                    .await?
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                if leases.is_empty() {
                    return Ok((leases, HashMap::new()));
                }
                let records: Vec<&str> = leases.iter().map(|(r, _, _)| r.as_str()).collect();
                let pending = pending_of(&client, &records, per_record).await?;
                Ok((leases, pending))
            })
            .await;
        let (leases, mut pending) = self.db.result_of(client, result)?;
        let mut held = self.lock_held();
        Ok(leases
            .into_iter()
            .map(|(record, generation, taken_over_from)| {
                held.insert((owner.to_owned(), record.clone()), generation);
                Claim {
                    callbacks: pending.remove(&record).unwrap_or_default(),
                    record,
                    taken_over_from,
                }
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
    ) -> Result<AfterLast, StoreError> {
        self.record_outcome(owner, cb, outcome, attempt, lease, Some(per_record.max(1)))
            .await
    }

    async fn renew(&self, owner: &str, lease: Duration) -> Result<Renewal, StoreError> {
        let (records, generations): (Vec<String>, Vec<i64>) = self
            .lock_held()
            .iter()
            .filter(|((o, _), _)| o == owner)
            .map(|((_, record), generation)| (record.clone(), *generation))
            .unzip();
        if records.is_empty() {
            return Ok(Renewal::default());
        }
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(async {
                let stmt = client
                    .prepare_cached(&statements::renew_statement())
                    .await?;
                let rows = client
                    .query(
                        &stmt,
                        &[&records, &generations, &owner, &duration_ms(lease)],
                    )
                    .await?;
                Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
            })
            .await;
        let renewed: std::collections::HashSet<String> = self.db.result_of(client, result)?;
        // Not renewed: taken over, or given up meanwhile by the worker itself (then no longer
        // held here, and not counted as lost).
        let mut held = self.lock_held();
        let mut lost = Vec::new();
        for (record, generation) in records.into_iter().zip(generations) {
            if renewed.contains(&record) {
                continue;
            }
            let key = (owner.to_owned(), record);
            if held.get(&key) == Some(&generation) {
                held.remove(&key);
                lost.push(key.1);
            }
        }
        Ok(Renewal {
            renewed: renewed.len(),
            lost,
        })
    }

    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError> {
        self.forget(owner, record);
        let (reply, answer) = oneshot::channel();
        let job = ReleaseJob {
            owner: owner.to_owned(),
            record: record.to_owned(),
            reply,
        };
        submit(&self.releases, job, answer).await
    }

    async fn release_all(&self, owner: &str) -> Result<(), StoreError> {
        self.lock_held().retain(|(o, _), _| o != owner);
        let client = self.db.client().await?;
        let result = self
            .db
            .timed(client.execute(
                "UPDATE okra_record_queue SET lease_owner = NULL, lease_until = NULL
                 WHERE lease_owner = $1",
                &[&owner],
            ))
            .await;
        self.db.result_of(client, result).map(drop)
    }
}

#[async_trait]
impl Retention for PostgresStore {
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let before = millis(before);
        let result = self
            .db
            .timed(async {
                // The history goes with its callback's row; the counts follow in the same
                // statement (so in one transaction).
                let row = client
                    .query_one(
                        &format!(
                            "WITH gone AS (
                           DELETE FROM okra_callbacks c WHERE status IN (1, 2) AND received_at < $1
                           RETURNING {COUNTER_KEY} AS callback_type, status
                         ), c AS (
                           INSERT INTO okra_callback_counts (callback_type, status, shard, n)
                           SELECT callback_type, status, pg_backend_pid(), -count(*) FROM gone
                           GROUP BY callback_type, status ORDER BY callback_type, status
                           ON CONFLICT (callback_type, status, shard)
                             DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n
                         )
                         SELECT count(*) FROM gone"
                        ),
                        &[&before],
                    )
                    .await?;
                client
                    .execute("DELETE FROM okra_dedup WHERE received_at < $1", &[&before])
                    .await?;
                Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
            })
            .await;
        self.db.result_of(client, result)
    }
}
