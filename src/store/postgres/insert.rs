//! Storing callbacks: the statement behind the group-committed inserts, for a whole batch at
//! once, with dedup and the record's order decided by the database.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use deadpool_postgres::Object;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio_postgres::{types::ToSql, Error as PgError};

use super::{
    batch::{answer_batch, BatchFailed, BatchResult, Batched},
    connect::Db,
    rows::NOW_MS,
};
use crate::store::{duration_ms, millis, queue_key, Inserted, NewCallback, StoreError};

/// One callback to store, and where its answer goes.
pub(super) struct InsertJob {
    pub(super) cb: NewCallback,
    pub(super) hash: [u8; 32],
    pub(super) dedup_window: Duration,
    pub(super) reply: oneshot::Sender<Result<Inserted, StoreError>>,
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

/// `insert_batch`'s statement. Lock order, which keeps concurrent batches (and replicas) free of
/// deadlocks: first every dedup key, in hash order; then every record's queue row, in record
/// order; only then are the callbacks inserted, so their `seq` is drawn under the queue-row
/// locks and within a record sequence order is commit order. (`q` aggregates all of `d`'s
/// output before its first row; `c` is gated by a one-time filter on `q`, so it inserts nothing
/// until `q` has run to completion.) Every batch takes its locks in that one order, whatever
/// records its dedup keys name — and one key may name different records in two batches (a
/// source's event id sent again with another body) — so no batch holds a lock that a batch
/// it waits for still has to take.
fn insert_statement() -> String {
    format!(
        "WITH input AS (
           SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::bytea[], $7::bigint[], $9::text[], $10::text[],
                                $11::text[], $12::text[])
             WITH ORDINALITY AS t(hash, id, record, callback_type, callback_code, body,
                                  received_at, source, event_id, queue, counter, n)
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
           SELECT queue, count(*)::int, {NOW_MS} FROM fresh GROUP BY queue ORDER BY queue
           ON CONFLICT (record) DO UPDATE
             SET pending = okra_record_queue.pending + EXCLUDED.pending,
                 due_at = CASE WHEN okra_record_queue.pending = 0 THEN EXCLUDED.due_at
                               ELSE okra_record_queue.due_at END
           RETURNING 1
         ), c AS (
           INSERT INTO okra_callbacks
             (id, record, callback_type, callback_code, body, received_at, next_attempt_at,
              source, event_id)
           SELECT id, record, callback_type, callback_code, body, received_at, received_at,
                  source, event_id
           FROM fresh WHERE (SELECT count(*) FROM q) > 0 ORDER BY n
           RETURNING 1
         ), k AS (
           INSERT INTO okra_callback_counts (callback_type, status, shard, n)
           SELECT counter, 0, pg_backend_pid(), count(*) FROM fresh
           WHERE (SELECT count(*) FROM q) > 0
           GROUP BY counter ORDER BY counter
           ON CONFLICT (callback_type, status, shard)
             DO UPDATE SET n = okra_callback_counts.n + EXCLUDED.n
         )
         SELECT hash FROM d"
    )
}

/// A batch of callbacks to store, each dedup key once: two jobs of one key in one batch (the
/// same body, or the same event id of one source) are stored by the first (its leader), which
/// answers for both.
struct InsertBatch<'a> {
    jobs: &'a [InsertJob],
    /// For each dedup key, the job that stores it.
    leader_of: HashMap<[u8; 32], usize>,
    /// The leaders, in the jobs' order.
    leaders: Vec<usize>,
}

impl<'a> InsertBatch<'a> {
    fn new(jobs: &'a [InsertJob]) -> Self {
        let mut leader_of = HashMap::with_capacity(jobs.len());
        let mut leaders = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            leader_of.entry(job.hash).or_insert_with(|| {
                leaders.push(i);
                i
            });
        }
        Self {
            jobs,
            leader_of,
            leaders,
        }
    }

    /// One of the leaders' fields, as a column for `unnest`.
    fn column<T: ?Sized>(&self, field: impl Fn(&'a InsertJob) -> &'a T) -> Vec<&'a T> {
        self.leaders.iter().map(|&i| field(&self.jobs[i])).collect()
    }

    /// Each job's answer, given which leaders were stored (`stored`) and the first delivery's
    /// id for the bodies that were duplicates already (`first_ids`).
    fn answers(
        &self,
        stored: &HashSet<usize>,
        first_ids: &HashMap<Vec<u8>, String>,
    ) -> Vec<Result<Inserted, StoreError>> {
        let jobs = self.jobs;
        let inserted = |id: &String, duplicate| {
            Ok(Inserted {
                id: id.clone(),
                duplicate,
            })
        };
        jobs.iter()
            .enumerate()
            .map(|(i, job)| {
                let leader = self.leader_of[&job.hash];
                if leader == i && stored.contains(&i) {
                    inserted(&job.cb.id, false)
                } else if stored.contains(&leader) {
                    inserted(&jobs[leader].cb.id, true)
                } else {
                    match first_ids.get(&job.hash[..]) {
                        Some(id) => inserted(id, true),
                        None => Err(StoreError::Unavailable(
                            "the dedup key was pruned while this callback was being stored; try again"
                                .into(),
                        )),
                    }
                }
            })
            .collect()
    }
}

impl Db {
    /// Stores `jobs` in one statement — one round trip, one transaction — answering in their
    /// order; see [`insert_statement`] for its lock order.
    async fn insert_batch(&self, jobs: &[InsertJob]) -> BatchResult<Inserted> {
        let batch = InsertBatch::new(jobs);
        let hashes = batch.column(|job| &job.hash[..]);
        let ids = batch.column(|job| job.cb.id.as_str());
        let records = batch.column(|job| job.cb.record.as_str());
        let types = batch.column(|job| job.cb.callback_type.as_str());
        let sources = batch.column(|job| job.cb.source.as_str());
        let event_ids: Vec<Option<&str>> = batch
            .leaders
            .iter()
            .map(|&i| jobs[i].cb.event_id.as_deref())
            .collect();
        let queues: Vec<String> = batch
            .leaders
            .iter()
            .map(|&i| jobs[i].cb.queue_key().into_owned())
            .collect();
        let counters: Vec<String> = batch
            .leaders
            .iter()
            .map(|&i| queue_key(&jobs[i].cb.source, &jobs[i].cb.callback_type).into_owned())
            .collect();
        let codes: Vec<Option<&str>> = batch
            .leaders
            .iter()
            .map(|&i| jobs[i].cb.callback_code.as_deref())
            .collect();
        let bodies = batch.column(|job| &job.cb.body[..]);
        let times: Vec<i64> = batch
            .leaders
            .iter()
            .map(|&i| millis(jobs[i].cb.received_at))
            .collect();
        let window = duration_ms(jobs.first().map_or(Duration::ZERO, |job| job.dedup_window));
        let params: [&(dyn ToSql + Sync); 12] = [
            &hashes, &ids, &records, &types, &codes, &bodies, &times, &window, &sources,
            &event_ids, &queues, &counters,
        ];
        let sql = insert_statement();
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
                let stored: HashSet<usize> = batch
                    .leaders
                    .iter()
                    .copied()
                    .filter(|&i| fresh.contains(&jobs[i].hash[..]))
                    .collect();
                let duplicates: Vec<&[u8]> = batch
                    .leaders
                    .iter()
                    .filter(|&&i| !stored.contains(&i))
                    .map(|&i| &jobs[i].hash[..])
                    .collect();
                let first_ids = first_ids(&client, &duplicates).await?;
                Ok((stored, first_ids))
            })
            .await;
        let (stored, first_ids) = self.batch_result_of(client, result)?;
        Ok(batch.answers(&stored, &first_ids))
    }
}

/// The first delivery's id of each of `hashes`, read in a new statement, whose snapshot sees a
/// concurrent transaction's commit that the insert's conflict waited for.
async fn first_ids(client: &Object, hashes: &[&[u8]]) -> Result<HashMap<Vec<u8>, String>, PgError> {
    let mut first_ids = HashMap::new();
    if hashes.is_empty() {
        return Ok(first_ids);
    }
    for row in client
        .query(
            "SELECT hash, id FROM okra_dedup WHERE hash = ANY($1)",
            &[&hashes],
        )
        .await?
    {
        first_ids.insert(row.get(0), row.get(1));
    }
    Ok(first_ids)
}
