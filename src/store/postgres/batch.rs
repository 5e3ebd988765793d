//! The group-commit engine: writes of one kind that queue up while earlier batches commit go
//! to the database together, and every caller hears back its own answer.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

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

/// How many writes of a kind wait for their answer, and whether that has lately reached a
/// burst's depth: the dispatcher's cue to leave the database to the acknowledging path
/// ([`Delivery::acknowledgements_queued`](crate::store::Delivery::acknowledgements_queued)).
pub(super) struct Waiting {
    count: AtomicUsize,
    /// Until when (nanoseconds after `origin`) the depth counts as a burst's after it last was.
    busy_until: AtomicU64,
    origin: Instant,
    /// How many waiting writes make a burst.
    depth: usize,
    /// How long a burst's depth counts after it was last seen, so the cue does not flicker
    /// between one batch and the next.
    hold: Duration,
}

impl Waiting {
    pub(super) fn new(depth: usize, hold: Duration) -> Self {
        Self {
            count: AtomicUsize::new(0),
            busy_until: AtomicU64::new(0),
            origin: Instant::now(),
            depth,
            hold,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts one write until the guard is dropped — when its answer came, or when its caller
    /// went away.
    pub(super) fn enter(&self) -> WaitingGuard<'_> {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 >= self.depth {
            let until = self.now().saturating_add(self.hold.as_nanos() as u64);
            self.busy_until.fetch_max(until, Ordering::Relaxed);
        }
        WaitingGuard(self)
    }

    /// Whether a burst's depth of writes waits now, or did within the hold.
    pub(super) fn busy(&self) -> bool {
        self.count.load(Ordering::Relaxed) >= self.depth
            || self.now() < self.busy_until.load(Ordering::Relaxed)
    }
}

/// One write counted by [`Waiting::enter`].
pub(super) struct WaitingGuard<'a>(&'a Waiting);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A database that records every batch it is asked to run (by job number) and answers each
    /// job with ten times its number, after taking a permit from `gate`.
    #[derive(Clone)]
    struct FakeDb {
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        /// Batches wait here; tests hold one in flight by leaving no permit.
        gate: Arc<Semaphore>,
        /// How a batch fails: `None` never; `Some(true)` refused when it holds a job numbered 13
        /// (as a constraint would); `Some(false)` always, as a lost connection would.
        refuse: Option<bool>,
    }

    impl FakeDb {
        fn new(refuse: Option<bool>, permits: usize) -> Self {
            Self {
                batches: Arc::default(),
                gate: Arc::new(Semaphore::new(permits)),
                refuse,
            }
        }

        fn batches(&self) -> Vec<Vec<u32>> {
            self.batches.lock().unwrap().clone()
        }
    }

    struct FakeJob {
        n: u32,
        record: Option<&'static str>,
        reply: oneshot::Sender<Result<u32, StoreError>>,
    }

    impl Batched for FakeJob {
        type Db = FakeDb;
        type Answer = u32;
        const WHAT: &'static str = "testing";

        fn exclusive_record(&self) -> Option<&str> {
            self.record
        }

        fn run<'a>(db: &'a FakeDb, jobs: &'a [Self]) -> BoxFuture<'a, BatchResult<u32>> {
            Box::pin(async move {
                db.batches
                    .lock()
                    .unwrap()
                    .push(jobs.iter().map(|j| j.n).collect());
                db.gate.acquire().await.unwrap().forget();
                let failed = |refused| BatchFailed {
                    refused,
                    error: StoreError::Unavailable(format!("refused: {refused}")),
                };
                match db.refuse {
                    Some(false) => Err(failed(false)),
                    Some(true) if jobs.iter().any(|j| j.n == 13) => Err(failed(true)),
                    _ => Ok(jobs.iter().map(|j| Ok(j.n * 10)).collect()),
                }
            })
        }

        fn answer(self, answer: Result<u32, StoreError>) {
            let _ = self.reply.send(answer);
        }
    }

    /// Queues job `n` without yielding, so the test decides what the engine finds queued.
    fn queue_job(
        queue: &mpsc::Sender<FakeJob>,
        n: u32,
        record: Option<&'static str>,
    ) -> oneshot::Receiver<Result<u32, StoreError>> {
        let (reply, answer) = oneshot::channel();
        if queue.try_send(FakeJob { n, record, reply }).is_err() {
            panic!("the test queue is full");
        }
        answer
    }

    /// Lets the engine's tasks run until `db` has seen `count` batches.
    async fn until_batches(db: &FakeDb, count: usize) {
        for _ in 0..1000 {
            if db.batches().len() >= count {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("expected {count} batches, saw {:?}", db.batches());
    }

    #[test]
    fn a_burst_is_a_depth_of_waiting_writes_and_counts_for_a_hold_after_it() {
        // A hold long enough that no pause of a loaded machine between two lines outlasts it.
        let waiting = Waiting::new(3, Duration::from_millis(300));
        let (a, b) = (waiting.enter(), waiting.enter());
        assert!(
            !waiting.busy(),
            "two waiting writes are not a burst of three"
        );
        let c = waiting.enter();
        assert!(waiting.busy(), "three are");
        drop((a, b, c));
        assert!(waiting.busy(), "the burst counts for the hold after it");
        std::thread::sleep(Duration::from_millis(400));
        assert!(!waiting.busy(), "and no longer once the hold has passed");
        let guards: Vec<_> = (0..3).map(|_| waiting.enter()).collect();
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            waiting.busy(),
            "writes still waiting are a burst however old"
        );
        drop(guards);
    }

    #[tokio::test]
    async fn every_caller_hears_its_own_answer_after_one_shared_batch() {
        let db = FakeDb::new(None, 100);
        let (queue, jobs) = mpsc::channel(100);
        let answers: Vec<_> = (0..20).map(|n| queue_job(&queue, n, None)).collect();
        tokio::spawn(gather(db.clone(), jobs, 1));
        for (n, answer) in (0..20).zip(answers) {
            assert_eq!(answer.await.unwrap().unwrap(), n * 10, "job {n}");
        }
        assert_eq!(db.batches(), [(0..20).collect::<Vec<_>>()], "one batch");
    }

    #[tokio::test]
    async fn jobs_queued_while_a_batch_is_in_flight_go_together_into_the_next() {
        let db = FakeDb::new(None, 0);
        let (queue, jobs) = mpsc::channel(100);
        let first = queue_job(&queue, 0, None);
        tokio::spawn(gather(db.clone(), jobs, 1));
        until_batches(&db, 1).await;
        let rest: Vec<_> = (1..6).map(|n| queue_job(&queue, n, None)).collect();
        db.gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), 0);
        for (n, answer) in (1..6).zip(rest) {
            assert_eq!(answer.await.unwrap().unwrap(), n * 10);
        }
        assert_eq!(db.batches(), [vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn no_batch_holds_two_writes_of_one_record_and_each_record_keeps_its_order() {
        let db = FakeDb::new(None, 100);
        let (queue, jobs) = mpsc::channel(100);
        let records = [Some("a"), Some("a"), Some("b"), None, None, Some("a")];
        let answers: Vec<_> = (0u32..)
            .zip(records)
            .map(|(n, record)| queue_job(&queue, n, record))
            .collect();
        tokio::spawn(gather(db.clone(), jobs, 1));
        for (n, answer) in (0u32..).zip(answers) {
            assert_eq!(answer.await.unwrap().unwrap(), n * 10);
        }
        // Record a's writes (0, 1, 5) go one per batch, in the order they were queued; the
        // others fill the first batch.
        assert_eq!(db.batches(), [vec![0, 2, 3, 4], vec![1], vec![5]]);
    }

    #[tokio::test]
    async fn a_batch_is_never_larger_than_max_batch() {
        let db = FakeDb::new(None, 100);
        let total = MAX_BATCH as u32 + 10;
        let (queue, jobs) = mpsc::channel(2 * MAX_BATCH);
        let answers: Vec<_> = (0..total).map(|n| queue_job(&queue, n, None)).collect();
        tokio::spawn(gather(db.clone(), jobs, 1));
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let sizes: Vec<_> = db.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_BATCH, 10]);
    }

    #[tokio::test]
    async fn a_refused_batch_is_retried_one_by_one_so_only_the_bad_job_fails() {
        let db = FakeDb::new(Some(true), 100);
        let (queue, jobs) = mpsc::channel(100);
        let answers: Vec<_> = (11..16).map(|n| queue_job(&queue, n, None)).collect();
        tokio::spawn(gather(db.clone(), jobs, 1));
        for (n, answer) in (11..16).zip(answers) {
            let answer = answer.await.unwrap();
            if n == 13 {
                assert!(
                    matches!(&answer, Err(StoreError::Unavailable(e)) if e.contains("refused")),
                    "{answer:?}"
                );
            } else {
                assert_eq!(answer.unwrap(), n * 10, "job {n}");
            }
        }
        assert_eq!(
            db.batches(),
            [
                vec![11, 12, 13, 14, 15],
                vec![11],
                vec![12],
                vec![13],
                vec![14],
                vec![15]
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_that_fails_otherwise_answers_every_caller_with_its_error_at_once() {
        let db = FakeDb::new(Some(false), 100);
        let (queue, jobs) = mpsc::channel(100);
        let answers: Vec<_> = (0..5).map(|n| queue_job(&queue, n, None)).collect();
        tokio::spawn(gather(db.clone(), jobs, 1));
        for answer in answers {
            let answer = answer.await.unwrap();
            assert!(
                matches!(&answer, Err(StoreError::Unavailable(e)) if e == "refused: false"),
                "{answer:?}"
            );
        }
        assert_eq!(
            db.batches(),
            [vec![0, 1, 2, 3, 4]],
            "not retried one by one: each would wait as long"
        );
    }

    #[tokio::test]
    async fn at_most_in_flight_batches_run_at_once() {
        let db = FakeDb::new(None, 0);
        let (queue, jobs) = mpsc::channel(100);
        // Record a's three writes need three batches; two may run at once.
        let answers: Vec<_> = (0..3).map(|n| queue_job(&queue, n, Some("a"))).collect();
        tokio::spawn(gather(db.clone(), jobs, 2));
        until_batches(&db, 2).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            db.batches(),
            [vec![0], vec![1]],
            "the third waits for a slot"
        );
        db.gate.add_permits(3);
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(db.batches().len(), 3);
    }

    #[tokio::test]
    async fn the_engine_stops_when_every_sender_is_gone_and_callers_hear_why() {
        let db = FakeDb::new(None, 100);
        let (queue, jobs) = mpsc::channel::<FakeJob>(100);
        let engine = tokio::spawn(gather(db, jobs, 1));
        let stopped = queue.clone();
        drop(queue);
        // One sender is left: submitting still works.
        let (reply, answer) = oneshot::channel();
        let job = FakeJob {
            n: 4,
            record: None,
            reply,
        };
        assert_eq!(submit(&stopped, job, answer).await.unwrap(), 40);
        drop(stopped);
        tokio::time::timeout(std::time::Duration::from_secs(5), engine)
            .await
            .expect("the engine ends once its queue has no sender")
            .unwrap();

        let (closed, receiver) = mpsc::channel::<FakeJob>(1);
        drop(receiver);
        let (reply, answer) = oneshot::channel();
        let job = FakeJob {
            n: 1,
            record: None,
            reply,
        };
        let err = submit(&closed, job, answer).await.unwrap_err();
        assert!(err.to_string().contains("write queue has stopped"), "{err}");
    }
}
