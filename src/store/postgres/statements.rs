//! The statements behind the group-committed writes: storing callbacks, recording handler
//! outcomes and giving leases back, each for a whole batch at once.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use chrono::Utc;
use deadpool_postgres::Object;
use futures::future::BoxFuture;
use tokio::{sync::oneshot, time::error::Elapsed};
use tokio_postgres::{types::ToSql, Error as PgError, Row};

use super::{
    batch::{answer_batch, BatchFailed, BatchResult, Batched},
    Db, NOW_MS,
};
use crate::store::{
    duration_ms, from_millis, millis, AfterLast, Inserted, NewCallback, Outcome, Status,
    StoreError, StoredCallback, COLUMNS,
};

/// One handler outcome to record, and where the answer goes.
pub(super) struct FinishJob {
    pub(super) owner: String,
    pub(super) id: String,
    pub(super) record: String,
    pub(super) outcome: Outcome,
    pub(super) lease: Duration,
    /// [`Store::finish_last`](crate::store::Store::finish_last): also decide whether the worker
    /// goes on with the record, handing over up to this many more of its callbacks (or giving
    /// the lease up).
    pub(super) last: Option<usize>,
    pub(super) reply: oneshot::Sender<Result<AfterLast, StoreError>>,
}

/// One record lease to give back, and where the answer goes.
pub(super) struct ReleaseJob {
    pub(super) owner: String,
    pub(super) record: String,
    pub(super) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// One callback to store, and where its answer goes.
pub(super) struct InsertJob {
    pub(super) cb: NewCallback,
    pub(super) hash: [u8; 32],
    pub(super) dedup_window: Duration,
    pub(super) reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

pub(super) fn from_row(row: &Row) -> StoredCallback {
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

/// Up to `per_record` pending callbacks of each of `records`, by record, oldest first.
pub(super) async fn pending_of<R: AsRef<str> + ToSql + Sync>(
    client: &Object,
    records: &[R],
    per_record: usize,
) -> Result<HashMap<String, Vec<StoredCallback>>, PgError> {
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
    let mut by_record: HashMap<String, Vec<StoredCallback>> = HashMap::new();
    for cb in rows.iter().map(from_row) {
        by_record.entry(cb.record.clone()).or_default().push(cb);
    }
    Ok(by_record)
}

impl Batched for InsertJob {
    type Db = Db;
    type Answer = Inserted;
    const WHAT: &'static str = "storing callbacks";

    fn exclusive_record(&self) -> Option<&str> {
        // Inserts of one record are counted together, and equal bodies answered together.
        None
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Inserted>> {
        Box::pin(db.insert_batch(jobs))
    }

    /// Jobs with different dedup windows (callers of the library may mix them) go in
    /// separate statements.
    fn run_gathered(db: Db, jobs: Vec<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut by_window: BTreeMap<Duration, Vec<InsertJob>> = BTreeMap::new();
            for job in jobs {
                by_window.entry(job.dedup_window).or_default().push(job);
            }
            for jobs in by_window.into_values() {
                answer_batch(&db, jobs).await;
            }
        })
    }

    fn answer(self, answer: Result<Inserted, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

impl Batched for FinishJob {
    type Db = Db;
    type Answer = AfterLast;
    const WHAT: &'static str = "recording outcomes";

    fn exclusive_record(&self) -> Option<&str> {
        Some(&self.record)
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Self::Answer>> {
        Box::pin(db.finish_batch(jobs))
    }

    fn answer(self, answer: Result<Self::Answer, StoreError>) {
        let _ = self.reply.send(answer);
    }
}

impl Batched for ReleaseJob {
    type Db = Db;
    type Answer = ();
    const WHAT: &'static str = "releasing leases";

    fn exclusive_record(&self) -> Option<&str> {
        Some(&self.record)
    }

    fn run<'a>(db: &'a Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<()>> {
        Box::pin(db.release_batch(jobs))
    }

    fn answer(self, answer: Result<(), StoreError>) {
        let _ = self.reply.send(answer);
    }
}

impl Db {
    /// Stores `jobs` in one statement — one round trip, one transaction — answering in their
    /// order.
    ///
    /// Lock order, which keeps concurrent batches (and replicas) free of deadlocks: first every
    /// dedup key, in hash order; then every record's queue row, in record order; only then are
    /// the callbacks inserted, so their `seq` is drawn under the queue-row locks and within a
    /// record sequence order is commit order. (`q` aggregates all of `d`'s output before its
    /// first row; `c` is gated by a one-time filter on `q`, so it inserts nothing until `q` has
    /// run to completion.) The same body always names the same record, so two batches meet on
    /// a dedup key only when both already take the record's row in the same order.
    async fn insert_batch(&self, jobs: &[InsertJob]) -> BatchResult<Inserted> {
        let window = jobs.first().map_or(Duration::ZERO, |job| job.dedup_window);
        // The same body twice in one batch: the first stands for both.
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::with_capacity(jobs.len());
        let mut leaders: Vec<usize> = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            first_of.entry(job.hash).or_insert_with(|| {
                leaders.push(i);
                i
            });
        }
        let column = |f: fn(&NewCallback) -> &str| -> Vec<&str> {
            leaders.iter().map(|&i| f(&jobs[i].cb)).collect()
        };
        let hashes: Vec<&[u8]> = leaders.iter().map(|&i| &jobs[i].hash[..]).collect();
        let ids = column(|cb| &cb.id);
        let records = column(|cb| &cb.record);
        let types = column(|cb| &cb.callback_type);
        let codes: Vec<Option<&str>> = leaders
            .iter()
            .map(|&i| jobs[i].cb.callback_code.as_deref())
            .collect();
        let bodies: Vec<&[u8]> = leaders.iter().map(|&i| &jobs[i].cb.body[..]).collect();
        let times: Vec<i64> = leaders
            .iter()
            .map(|&i| millis(jobs[i].cb.received_at))
            .collect();
        let window = duration_ms(window);
        let params: [&(dyn ToSql + Sync); 8] = [
            &hashes, &ids, &records, &types, &codes, &bodies, &times, &window,
        ];
        let sql = format!(
            "WITH input AS (
               SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::bytea[], $7::bigint[])
                 WITH ORDINALITY AS t(hash, id, record, callback_type, callback_code, body,
                                      received_at, n)
             ), d AS (
               INSERT INTO okra_dedup (hash, id, received_at)
               SELECT hash, id, received_at FROM input ORDER BY hash
               ON CONFLICT (hash) DO UPDATE SET id = EXCLUDED.id, received_at = EXCLUDED.received_at
                 WHERE okra_dedup.received_at <= EXCLUDED.received_at - $8
               RETURNING hash
             ), fresh AS (
               SELECT input.* FROM input JOIN d USING (hash)
             ), q AS (
               INSERT INTO okra_record_queue (record, pending, due_at)
               SELECT record, count(*)::int, {NOW_MS} FROM fresh GROUP BY record ORDER BY record
               ON CONFLICT (record) DO UPDATE
                 SET pending = okra_record_queue.pending + EXCLUDED.pending,
                     due_at = CASE WHEN okra_record_queue.pending = 0 THEN EXCLUDED.due_at
                                   ELSE okra_record_queue.due_at END
               RETURNING 1
             ), c AS (
               INSERT INTO okra_callbacks
                 (id, record, callback_type, callback_code, body, received_at, next_attempt_at)
               SELECT id, record, callback_type, callback_code, body, received_at, received_at
               FROM fresh WHERE (SELECT count(*) FROM q) > 0 ORDER BY n
               RETURNING 1
             )
             SELECT hash FROM d"
        );
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
                let fresh: HashSet<Vec<u8>> = client
                    .query(&stmt, &params)
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let stored: HashSet<usize> = leaders
                    .iter()
                    .copied()
                    .filter(|&i| fresh.contains(&jobs[i].hash[..]))
                    .collect();
                // Duplicates: read the first delivery's id in a new statement, whose snapshot
                // sees a concurrent transaction's commit that the conflict waited for.
                let duplicates: Vec<&[u8]> = leaders
                    .iter()
                    .filter(|&&i| !stored.contains(&i))
                    .map(|&i| &jobs[i].hash[..])
                    .collect();
                let mut first_ids: HashMap<Vec<u8>, String> = HashMap::new();
                if !duplicates.is_empty() {
                    for row in client
                        .query(
                            "SELECT hash, id FROM okra_dedup WHERE hash = ANY($1)",
                            &[&duplicates],
                        )
                        .await?
                    {
                        first_ids.insert(row.get(0), row.get(1));
                    }
                }
                Ok((stored, first_ids))
            })
            .await;
        let (stored, first_ids) = self.batch_result_of(client, result)?;
        Ok(jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let leader = first_of[&job.hash];
                if leader == i && stored.contains(&i) {
                    Ok(Inserted {
                        id: job.cb.id.clone(),
                        duplicate: false,
                    })
                } else if stored.contains(&leader) {
                    Ok(Inserted {
                        id: jobs[leader].cb.id.clone(),
                        duplicate: true,
                    })
                } else {
                    match first_ids.get(&job.hash[..]) {
                        Some(id) => Ok(Inserted {
                            id: id.clone(),
                            duplicate: true,
                        }),
                        None => Err(StoreError::Unavailable(
                            "the dedup key was pruned while this callback was being stored; try again"
                                .into(),
                        )),
                    }
                }
            })
            .collect())
    }

    /// Records `jobs`' outcomes in one statement. The outcome is recorded whoever holds the
    /// lease (the handler did run); the lease and the record's due time are only touched by
    /// their owner, and a job whose worker no longer owns the lease hears
    /// [`StoreError::LeaseLost`].
    ///
    /// A [`Store::finish_last`] job also decides in the same statement whether its worker goes on
    /// with the record: when it was
    /// not a retry and more of the record's callbacks are due, the lease is extended and they
    /// are read and handed over (after the commit, so the outcome is durable first); otherwise
    /// the lease is given up — `lease_until` cleared, which makes the record claimable, while
    /// `lease_owner` stays, so the answer can still tell the owner apart (a `RETURNING` clause
    /// sees only the new row).
    ///
    /// Lock order, as for inserts: the records' queue rows first, in record order (`lk`; `u` is
    /// gated by a one-time filter on it), then the callbacks' rows.
    async fn finish_batch(&self, jobs: &[FinishJob]) -> BatchResult<AfterLast> {
        let now = Utc::now();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        let mut owners = Vec::with_capacity(jobs.len());
        let mut statuses = Vec::with_capacity(jobs.len());
        let mut errors = Vec::with_capacity(jobs.len());
        let mut next_ats = Vec::with_capacity(jobs.len());
        let mut finished_ats = Vec::with_capacity(jobs.len());
        let mut leaves = Vec::with_capacity(jobs.len());
        let mut retry_ins = Vec::with_capacity(jobs.len());
        let mut leases = Vec::with_capacity(jobs.len());
        let mut lasts = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (status, error, next_at) = job.outcome.as_row();
            ids.push(job.id.as_str());
            records.push(job.record.as_str());
            owners.push(job.owner.as_str());
            statuses.push(status.code());
            errors.push(error);
            // The retry is due after the same delay by the database's clock.
            retry_ins.push(next_at.map(|at| (at - now).num_milliseconds().max(0)));
            next_ats.push(next_at.map(millis));
            finished_ats.push((status != Status::Pending).then_some(millis(now)));
            leaves.push(status != Status::Pending);
            leases.push(duration_ms(job.lease));
            lasts.push(job.last.is_some());
        }
        let params: [&(dyn ToSql + Sync); 11] = [
            &ids,
            &records,
            &owners,
            &statuses,
            &errors,
            &next_ats,
            &finished_ats,
            &leaves,
            &retry_ins,
            &leases,
            &lasts,
        ];
        // Every value of the queue row is read from the row being updated (`r`), never from a
        // copy taken earlier in the statement: the row is re-read after its lock is granted,
        // so a count an insert committed meanwhile is not lost.
        const LEAVES: &str = "CASE WHEN i.leaves AND i.id IN (SELECT id FROM u) THEN 1 ELSE 0 END";
        let sql = format!(
            "WITH input AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[],
                                    $5::text[], $6::bigint[], $7::bigint[], $8::bool[],
                                    $9::bigint[], $10::bigint[], $11::bool[])
                 WITH ORDINALITY AS t(id, record, owner, status, error, next_at, finished_at,
                                      leaves, retry_in, lease, last, n)
             ), lk AS (
               SELECT record FROM okra_record_queue WHERE record IN (SELECT record FROM input)
               ORDER BY record FOR UPDATE
             ), u AS (
               UPDATE okra_callbacks c SET status = i.status, attempts = c.attempts + 1,
                 cycle_attempts = c.cycle_attempts + 1, last_error = i.error,
                 next_attempt_at = i.next_at, finished_at = i.finished_at
               FROM input i
               WHERE c.id = i.id AND c.status = 0 AND (SELECT count(*) FROM lk) >= 0
               RETURNING c.id
             )
             UPDATE okra_record_queue r SET
               pending = GREATEST(r.pending - {LEAVES}, 0),
               due_at = CASE WHEN r.lease_owner = i.owner AND i.retry_in IS NOT NULL
                             THEN {NOW_MS} + i.retry_in ELSE r.due_at END,
               lease_until = CASE
                 WHEN r.lease_owner IS DISTINCT FROM i.owner THEN r.lease_until
                 WHEN i.last AND NOT (i.retry_in IS NULL AND r.due_at <= {NOW_MS}
                                      AND r.pending - {LEAVES} > 0) THEN NULL
                 ELSE {NOW_MS} + i.lease END
             FROM input i WHERE r.record = i.record
             RETURNING i.n, r.lease_owner IS NOT DISTINCT FROM i.owner,
                       i.last AND r.lease_until IS NOT NULL"
        );
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
                let rows = client.query(&stmt, &params).await?;
                let mut lease_states = vec![(false, false); jobs.len()];
                for row in rows {
                    let n: i64 = row.get(0);
                    if let Some(slot) = usize::try_from(n - 1)
                        .ok()
                        .and_then(|i| lease_states.get_mut(i))
                    {
                        *slot = (row.get(1), row.get(2));
                    }
                }
                // The callbacks handed over with a kept lease: read after the commit.
                let kept: Vec<&str> = jobs
                    .iter()
                    .zip(&lease_states)
                    .filter(|(_, (owned, kept))| *owned && *kept)
                    .map(|(job, _)| job.record.as_str())
                    .collect();
                let most = jobs.iter().filter_map(|j| j.last).max().unwrap_or(0);
                let next = if kept.is_empty() {
                    HashMap::new()
                } else {
                    pending_of(&client, &kept, most).await?
                };
                Ok((lease_states, next))
            })
            .await;
        let (lease_states, mut next) = self.batch_result_of(client, result)?;
        let mut answers = Vec::with_capacity(jobs.len());
        let (mut emptied, mut emptied_owners) = (Vec::new(), Vec::new());
        for (job, (owned, kept)) in jobs.iter().zip(lease_states) {
            if !owned {
                answers.push(Err(StoreError::LeaseLost(job.record.clone())));
                continue;
            }
            let Some(per_record) = job.last else {
                answers.push(Ok(AfterLast::StillLeased));
                continue;
            };
            let mut mine = Vec::new();
            if kept {
                // The batch holds one job per record, so each record's callbacks are its own.
                mine = next.remove(&job.record).unwrap_or_default();
                mine.truncate(per_record);
                if mine.is_empty() {
                    // The count promised more than there was: give the lease up after all.
                    emptied.push(job.record.as_str());
                    emptied_owners.push(job.owner.as_str());
                }
            }
            answers.push(Ok(if mine.is_empty() {
                AfterLast::Released
            } else {
                AfterLast::Next(mine)
            }));
        }
        if !emptied.is_empty() {
            if let Err(e) = self.release_leases(&emptied, &emptied_owners).await {
                tracing::warn!(error = %e.error, "cannot release record leases; they expire by themselves");
            }
        }
        Ok(answers)
    }

    /// Gives back a batch of leases (of distinct records) in one statement, queue rows locked
    /// in record order like every other writer. A lease another worker holds by now is left
    /// alone.
    async fn release_batch(&self, jobs: &[ReleaseJob]) -> BatchResult<()> {
        let records: Vec<&str> = jobs.iter().map(|j| j.record.as_str()).collect();
        let owners: Vec<&str> = jobs.iter().map(|j| j.owner.as_str()).collect();
        self.release_leases(&records, &owners).await?;
        Ok(jobs.iter().map(|_| Ok(())).collect())
    }

    /// Gives up `owners[i]`'s lease on `records[i]`, for each `i`.
    async fn release_leases(&self, records: &[&str], owners: &[&str]) -> Result<(), BatchFailed> {
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client
                    .prepare_cached(
                        "WITH input AS (
                           SELECT * FROM unnest($1::text[], $2::text[]) AS t(record, owner)
                         ), lk AS (
                           SELECT record FROM okra_record_queue
                           WHERE record IN (SELECT record FROM input)
                           ORDER BY record FOR UPDATE
                         )
                         UPDATE okra_record_queue q SET lease_owner = NULL, lease_until = NULL
                         FROM input i
                         WHERE q.record = i.record AND q.lease_owner = i.owner
                           AND (SELECT count(*) FROM lk) >= 0",
                    )
                    .await?;
                client.execute(&stmt, &[&records, &owners]).await
            })
            .await;
        self.batch_result_of(client, result).map(drop)
    }

    /// Like [`Db::result_of`], telling apart what the database refused (worth trying the jobs one
    /// by one) from a lost connection or a timeout (not worth it: each would wait as long).
    fn batch_result_of<T>(
        &self,
        client: Object,
        result: Result<Result<T, PgError>, Elapsed>,
    ) -> Result<T, BatchFailed> {
        let refused = matches!(&result, Ok(Err(e)) if e.code().is_some());
        self.result_of(client, result)
            .map_err(|error| BatchFailed { refused, error })
    }
}
