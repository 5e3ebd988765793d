//! The group-commit engine: writes of one kind that queue up while earlier batches commit go
//! to the database together, and every caller hears back its own answer.

use std::{collections::HashSet, sync::Arc};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::StoreError;

/// The most writes one group commit carries.
pub(super) const MAX_BATCH: usize = 512;

/// Hands `job` to its group-commit queue and waits for its answer.
pub(super) async fn submit<J, T>(
    queue: &mpsc::Sender<J>,
    job: J,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let stopped = || StoreError::Unavailable("the store's write queue has stopped".into());
    queue.send(job).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// A write that can be group-committed with others of its kind.
pub(super) trait Batched: Sized + Send + 'static {
    /// What a batch runs against (the connection pool; a fake in tests).
    type Db: Clone + Send + Sync + 'static;
    /// What the caller hears back.
    type Answer: Send;
    /// What a batch of these does, for logs ("storing callbacks").
    const WHAT: &'static str;

    /// The record whose queue row the write updates as a whole, when two writes of one record
    /// cannot share a statement (the second then waits for the next batch).
    fn exclusive_record(&self) -> Option<&str>;

    /// Runs a batch in one statement, answering in the jobs' order.
    fn run<'a>(db: &'a Self::Db, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<Self::Answer>>;

    /// Sends the caller its answer.
    fn answer(self, answer: Result<Self::Answer, StoreError>);

    /// Runs a gathered batch and answers every job. A kind whose jobs cannot all share one
    /// statement splits the batch here.
    fn run_gathered(db: Self::Db, jobs: Vec<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { answer_batch(&db, jobs).await })
    }
}

/// Each job's answer, or why the whole batch failed.
pub(super) type BatchResult<T> = Result<Vec<Result<T, StoreError>>, BatchFailed>;

/// Group commit: writes that arrive while earlier batches are being committed go together
/// into the next one — one statement, one round trip, one WAL flush — instead of one
/// transaction each. At most `in_flight` batches run at once; whatever queues up meanwhile
/// goes into the next, so batches grow with the load. Each caller still hears back only once
/// its own batch committed: a record's next callback is never handed over before the previous
/// one's outcome is durable. Ends when every sender of `queue` (every
/// [`PostgresStore`](super::PostgresStore) clone) is gone.
pub(super) async fn gather<J: Batched>(db: J::Db, mut queue: mpsc::Receiver<J>, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut held: Vec<J> = Vec::new();
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(job) => held.push(job),
                None => return,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut records = HashSet::new();
        let mut batch = Vec::new();
        let mut later = Vec::new();
        let mut place = |job: J| {
            let fits = batch.len() < MAX_BATCH
                && job
                    .exclusive_record()
                    .is_none_or(|record| records.insert(record.to_owned()));
            if fits {
                batch.push(job);
            } else {
                later.push(job);
            }
        };
        for job in std::mem::take(&mut held) {
            place(job);
        }
        // Take what has arrived, up to a batch's worth (jobs held for later count too).
        for _ in 0..MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => place(job),
                Err(_) => break,
            }
        }
        held = later;
        let work = J::run_gathered(db.clone(), batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

/// Runs one batch and answers each of its jobs. When the database refuses the batch (rather
/// than the connection or the clock failing), the jobs are run one by one, so one bad job
/// cannot fail the others; otherwise every job hears the batch's error.
pub(super) async fn answer_batch<J: Batched>(db: &J::Db, jobs: Vec<J>) {
    match J::run(db, &jobs).await {
        Ok(answers) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                job.answer(answer);
            }
        }
        Err(BatchFailed {
            refused: true,
            error,
        }) if jobs.len() > 1 => {
            tracing::warn!(%error, jobs = jobs.len(), "the database refused a batch {}; trying its jobs one by one", J::WHAT);
            for job in jobs {
                let answer = match J::run(db, std::slice::from_ref(&job)).await {
                    Ok(mut answers) => answers.pop().expect("one answer per job"),
                    Err(failed) => Err(failed.error),
                };
                job.answer(answer);
            }
        }
        Err(failed) => {
            for job in jobs {
                job.answer(Err(failed.error.clone()));
            }
        }
    }
}

/// Why a batch failed.
pub(super) struct BatchFailed {
    /// The database refused a statement (a constraint, bad data, a deadlock): the connection
    /// is fine, and the jobs may succeed one by one.
    pub(super) refused: bool,
    pub(super) error: StoreError,
}

impl BatchFailed {
    pub(super) fn connection(error: StoreError) -> Self {
        Self {
            refused: false,
            error,
        }
    }
}
