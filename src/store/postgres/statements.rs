//! The statements behind the group-committed writes: storing callbacks, recording handler
//! outcomes and giving leases back, each for a whole batch at once.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_postgres::{types::ToSql, Error as PgError};

use super::{
    batch::{BatchFailed, BatchResult, Batched},
    connect::Db,
    rows::{from_row, COUNTER_KEY, IDLE_DUE, NOW_MS},
};
use crate::store::{
    duration_ms, millis, split_queue_key, AfterLast, Attempt, Outcome, Status, StoreError,
    StoredCallback, COLUMNS,
};

/// One handler outcome to record, and where the answer goes.
pub(super) struct FinishJob {
    pub(super) owner: String,
    pub(super) id: String,
    pub(super) record: String,
    /// The generation of the lease the worker holds (fencing): the outcome is recorded only
    /// while the record's lease is still that one.
    pub(super) generation: i64,
    pub(super) outcome: Outcome,
    /// The attempt, for the callback's history.
    pub(super) attempt: Attempt,
    pub(super) lease: Duration,
    /// [`Delivery::finish_last_attempt`](crate::store::Delivery::finish_last_attempt): also decide whether the worker
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

/// Up to `per_record` pending callbacks of each of `records` (queue keys), by queue key, oldest
/// first: for each record, the first `per_record` entries of its pending range of the
/// `(record, status, seq)` index (of its source's callbacks), however long its backlog (a window
/// over all of a record's pending callbacks read the whole backlog at every claim).
pub(super) async fn pending_of<R: AsRef<str>>(
    client: &Object,
    records: &[R],
    per_record: usize,
) -> Result<HashMap<String, Vec<StoredCallback>>, PgError> {
    let (sources, ids): (Vec<&str>, Vec<&str>) = records
        .iter()
        .map(|key| split_queue_key(key.as_ref()))
        .unzip();
    let sql = format!(
        "SELECT {COLUMNS} FROM unnest($1::text[], $3::text[]) AS r(rec, src) CROSS JOIN LATERAL (
           SELECT * FROM okra_callbacks WHERE record = r.rec AND source = r.src AND status = 0
           ORDER BY seq LIMIT $2
         ) c ORDER BY c.source, c.record, c.seq"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&ids, &(per_record as i64), &sources])
        .await?;
    let mut by_record: HashMap<String, Vec<StoredCallback>> = HashMap::new();
    for cb in rows.iter().map(from_row) {
        by_record
            .entry(cb.queue_key().into_owned())
            .or_default()
            .push(cb);
    }
    Ok(by_record)
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

/// The heartbeat's statement: renews, for `$4` ms more, each of `$1` records whose lease `$3`
/// still holds at generation `$2`, and answers those renewed. Queue rows are locked in record
/// order first, like every other writer's.
pub(super) fn renew_statement() -> String {
    format!(
        "WITH input AS (
           SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(record, gen)
         ), lk AS (
           SELECT record FROM okra_record_queue WHERE record IN (SELECT record FROM input)
           ORDER BY record FOR UPDATE
         )
         UPDATE okra_record_queue q SET lease_until = {NOW_MS} + $4
         FROM input i
         WHERE q.record = i.record AND q.lease_owner = $3 AND q.lease_gen = i.gen
           AND q.lease_until IS NOT NULL AND (SELECT count(*) FROM lk) >= 0
         RETURNING q.record"
    )
}

/// `finish_batch`'s statement. Every value of the queue row is read from the row being updated
/// (`r`), never from a copy taken earlier in the statement: the row is re-read after its lock is
/// granted, so a count an insert committed meanwhile is not lost. Lock order, as for inserts:
/// the records' queue rows first, in record order (`lk`; `u` is gated by a one-time filter on
/// it), then the callbacks' rows; the queue rows are updated last (gated by a one-time filter
/// on `u`), since `lk` cannot lock a row this statement already updated.
///
/// Fencing: the callback's row is only written while its worker's lease (owner *and*
/// generation, read from the locked queue row) is still the record's lease; a worker whose
/// lease another claimed since records nothing and hears that it lost the lease.
fn finish_statement() -> String {
    const LEAVES: &str = "CASE WHEN i.leaves AND i.id IN (SELECT id FROM u) THEN 1 ELSE 0 END";
    format!(
        "WITH input AS (
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[],
                                $5::text[], $6::bigint[], $7::bigint[], $8::bool[],
                                $9::bigint[], $10::bigint[], $11::bool[], $12::bigint[],
                                $13::bigint[], $14::smallint[], $15::text[], $16::bigint[])
             WITH ORDINALITY AS t(id, record, owner, status, error, next_at, finished_at,
                                  leaves, retry_in, lease, last, att_started, att_finished,
                                  att_outcome, att_error, gen, n)
         ), lk AS (
           SELECT record, lease_owner, lease_gen FROM okra_record_queue
           WHERE record IN (SELECT record FROM input)
           ORDER BY record FOR UPDATE
         ), u AS (
           UPDATE okra_callbacks c SET status = i.status, attempts = c.attempts + 1,
             cycle_attempts = c.cycle_attempts + 1, last_error = i.error,
             next_attempt_at = i.next_at, finished_at = i.finished_at,
             history = c.history || jsonb_build_array(jsonb_build_array(
               c.attempts + 1, i.att_started, i.att_finished, i.att_outcome, i.att_error))
           FROM input i
           WHERE c.id = i.id AND c.status = 0 AND (SELECT count(*) FROM lk) >= 0
             AND EXISTS (SELECT 1 FROM lk WHERE lk.record = i.record
                         AND lk.lease_owner = i.owner AND lk.lease_gen = i.gen)
           RETURNING c.id, {COUNTER_KEY} AS callback_type, c.status
         ), k AS (
           INSERT INTO okra_callback_counts (callback_type, status, shard, n)
           SELECT callback_type, status, pg_backend_pid(), sum(d) FROM (
             SELECT callback_type, 0::smallint AS status, -1 AS d FROM u WHERE status <> 0
             UNION ALL
             SELECT callback_type, status, 1 FROM u WHERE status <> 0
           ) moved
           GROUP BY callback_type, status ORDER BY callback_type, status
           ON CONFLICT (callback_type, status, shard)
             DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n
         )
         UPDATE okra_record_queue r SET
           pending = GREATEST(r.pending - {LEAVES}, 0),
           due_at = CASE WHEN r.pending - {LEAVES} <= 0 THEN {IDLE_DUE}
                         WHEN r.lease_owner = i.owner AND r.lease_gen = i.gen
                           AND i.retry_in IS NOT NULL
                         THEN {NOW_MS} + i.retry_in ELSE r.due_at END,
           lease_until = CASE
             WHEN r.lease_owner IS DISTINCT FROM i.owner OR r.lease_gen <> i.gen
               THEN r.lease_until
             WHEN i.last AND NOT (i.retry_in IS NULL AND r.due_at <= {NOW_MS}
                                  AND r.pending - {LEAVES} > 0) THEN NULL
             ELSE {NOW_MS} + i.lease END
         FROM input i WHERE r.record = i.record AND (SELECT count(*) FROM u) >= 0
         RETURNING i.n, r.lease_owner IS NOT DISTINCT FROM i.owner AND r.lease_gen = i.gen,
                   i.last AND r.lease_until IS NOT NULL"
    )
}

/// `finish_batch`'s parameters: one array per input column of [`finish_statement`].
struct FinishColumns<'a> {
    ids: Vec<&'a str>,
    records: Vec<&'a str>,
    owners: Vec<&'a str>,
    statuses: Vec<i16>,
    errors: Vec<Option<&'a str>>,
    next_ats: Vec<Option<i64>>,
    finished_ats: Vec<Option<i64>>,
    /// Whether the callback leaves the pending count (delivered or dead).
    leaves: Vec<bool>,
    /// How long until a retry is due, so it is due after the same delay by the database's clock.
    retry_ins: Vec<Option<i64>>,
    leases: Vec<i64>,
    /// Whether the job is a [`Delivery::finish_last_attempt`](crate::store::Delivery::finish_last_attempt).
    lasts: Vec<bool>,
    /// The attempts, for the history: when each started and finished, how it ended, what
    /// failed.
    started: Vec<i64>,
    ended: Vec<i64>,
    kinds: Vec<i16>,
    failures: Vec<Option<&'a str>>,
    /// The lease generation each worker holds.
    generations: Vec<i64>,
}

impl<'a> FinishColumns<'a> {
    fn new(jobs: &'a [FinishJob], now: DateTime<Utc>) -> Self {
        let mut columns = Self {
            ids: Vec::with_capacity(jobs.len()),
            records: Vec::with_capacity(jobs.len()),
            owners: Vec::with_capacity(jobs.len()),
            statuses: Vec::with_capacity(jobs.len()),
            errors: Vec::with_capacity(jobs.len()),
            next_ats: Vec::with_capacity(jobs.len()),
            finished_ats: Vec::with_capacity(jobs.len()),
            leaves: Vec::with_capacity(jobs.len()),
            retry_ins: Vec::with_capacity(jobs.len()),
            leases: Vec::with_capacity(jobs.len()),
            lasts: Vec::with_capacity(jobs.len()),
            started: Vec::with_capacity(jobs.len()),
            ended: Vec::with_capacity(jobs.len()),
            kinds: Vec::with_capacity(jobs.len()),
            failures: Vec::with_capacity(jobs.len()),
            generations: Vec::with_capacity(jobs.len()),
        };
        for job in jobs {
            let (status, error, next_at) = job.outcome.as_row();
            columns.ids.push(job.id.as_str());
            columns.records.push(job.record.as_str());
            columns.owners.push(job.owner.as_str());
            columns.statuses.push(status.code());
            columns.errors.push(error);
            columns
                .retry_ins
                .push(next_at.map(|at| (at - now).num_milliseconds().max(0)));
            columns.next_ats.push(next_at.map(millis));
            columns
                .finished_ats
                .push((status != Status::Pending).then_some(millis(now)));
            columns.leaves.push(status != Status::Pending);
            columns.leases.push(duration_ms(job.lease));
            columns.lasts.push(job.last.is_some());
            columns.started.push(millis(job.attempt.started_at));
            columns.ended.push(millis(job.attempt.finished_at));
            columns.kinds.push(job.attempt.outcome.code());
            columns.failures.push(job.attempt.error.as_deref());
            columns.generations.push(job.generation);
        }
        columns
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 16] {
        [
            &self.ids,
            &self.records,
            &self.owners,
            &self.statuses,
            &self.errors,
            &self.next_ats,
            &self.finished_ats,
            &self.leaves,
            &self.retry_ins,
            &self.leases,
            &self.lasts,
            &self.started,
            &self.ended,
            &self.kinds,
            &self.failures,
            &self.generations,
        ]
    }
}

/// Where a finish job's worker stands after [`finish_statement`].
#[derive(Clone, Copy, Default)]
struct LeaseState {
    /// The worker still owns the record's lease.
    owned: bool,
    /// A `finish_last` job keeps the lease: more callbacks are due.
    kept: bool,
}

impl Db {
    /// Records `jobs`' outcomes in one statement ([`finish_statement`]). An outcome, the lease
    /// and the record's due time are only written by the lease's holder (owner and
    /// generation); a job whose worker no longer holds it records nothing and hears
    /// [`StoreError::LeaseLost`].
    ///
    /// A [`Delivery::finish_last_attempt`](crate::store::Delivery::finish_last_attempt) job also decides in the same
    /// statement whether its worker goes on with the record: when it was not a retry and more of
    /// the record's callbacks are due, the lease is extended and they are read and handed over
    /// (after the commit, so the outcome is durable first); otherwise the lease is given up —
    /// `lease_until` cleared, which makes the record claimable, while `lease_owner` stays, so the
    /// answer can still tell the owner apart (a `RETURNING` clause sees only the new row).
    async fn finish_batch(&self, jobs: &[FinishJob]) -> BatchResult<AfterLast> {
        let columns = FinishColumns::new(jobs, Utc::now());
        let params = columns.params();
        let sql = finish_statement();
        let client = self.client().await.map_err(BatchFailed::connection)?;
        let result = self
            .timed(async {
                let stmt = client.prepare_cached(&sql).await?;
                let rows = client.query(&stmt, &params).await?;
                let mut lease_states = vec![LeaseState::default(); jobs.len()];
                for row in rows {
                    let n: i64 = row.get(0);
                    if let Some(slot) = usize::try_from(n - 1)
                        .ok()
                        .and_then(|i| lease_states.get_mut(i))
                    {
                        *slot = LeaseState {
                            owned: row.get(1),
                            kept: row.get(2),
                        };
                    }
                }
                // The callbacks handed over with a kept lease: read after the commit.
                let kept: Vec<&str> = jobs
                    .iter()
                    .zip(&lease_states)
                    .filter(|(_, state)| state.owned && state.kept)
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
        let (lease_states, next) = self.batch_result_of(client, result)?;
        let (answers, emptied) = finish_answers(jobs, &lease_states, next);
        if !emptied.is_empty() {
            let (records, owners): (Vec<&str>, Vec<&str>) = emptied.into_iter().unzip();
            if let Err(e) = self.release_leases(&records, &owners).await {
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
}

/// A record's lease and its owner.
type Lease<'a> = (&'a str, &'a str);

/// Each finish job's answer, and the (record, owner) leases to give up after all: a record
/// whose kept lease found no callback to hand over (the count promised more than there was).
fn finish_answers<'a>(
    jobs: &'a [FinishJob],
    lease_states: &[LeaseState],
    mut next: HashMap<String, Vec<StoredCallback>>,
) -> (Vec<Result<AfterLast, StoreError>>, Vec<Lease<'a>>) {
    let mut answers = Vec::with_capacity(jobs.len());
    let mut emptied = Vec::new();
    for (job, state) in jobs.iter().zip(lease_states) {
        if !state.owned {
            answers.push(Err(StoreError::LeaseLost(job.record.clone())));
            continue;
        }
        let Some(per_record) = job.last else {
            answers.push(Ok(AfterLast::StillLeased));
            continue;
        };
        let mut mine = Vec::new();
        if state.kept {
            // The batch holds one job per record, so each record's callbacks are its own.
            mine = next.remove(&job.record).unwrap_or_default();
            mine.truncate(per_record);
            if mine.is_empty() {
                emptied.push((job.record.as_str(), job.owner.as_str()));
            }
        }
        answers.push(Ok(if mine.is_empty() {
            AfterLast::Released
        } else {
            AfterLast::Next(mine)
        }));
    }
    (answers, emptied)
}
