//! The database thread: every operation on the SQLite file runs here, gathered into group
//! transactions, and each transaction first applies the inbox log's tail ([`super::log`]).
//!
//! Operations that arrive while a commit is in flight are gathered into the next transaction, so
//! under load one `fsync` commits many. `synchronous=FULL`: a commit is on disk before any caller
//! hears of it.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{
    apply::apply,
    log::{Applied, Batch, ToApply},
    StoreError,
};

/// The most operations one transaction gathers.
pub(super) const MAX_BATCH: usize = 1024;

/// One operation of a group transaction. It may run twice: once in the fast pass (no savepoint)
/// and, if some operation of the batch failed there, again in the slow pass after a rollback.
pub(super) trait Op: Send {
    /// Runs the operation on the open transaction, keeping its result for [`Op::answer`].
    fn run(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Fails the operation without running it (the transaction could not begin).
    fn fail(&mut self, error: &str);
    /// Answers the caller once the transaction's fate is known.
    fn answer(self: Box<Self>, commit: Result<(), &str>);
}

/// A queued operation.
pub(super) type Job = Box<dyn Op>;

/// An operation built by [`super::SqliteStore::call`]: the closure, its last result and its caller.
pub(super) struct Call<F, R> {
    pub f: F,
    pub result: Option<Result<R, String>>,
    pub reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Op for Call<F, R>
where
    F: FnMut(&Connection) -> rusqlite::Result<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        match (self.f)(conn) {
            Ok(r) => {
                self.result = Some(Ok(r));
                Ok(())
            }
            Err(e) => {
                self.result = Some(Err(describe(&e)));
                Err(e)
            }
        }
    }

    fn fail(&mut self, error: &str) {
        self.result = Some(Err(error.to_owned()));
    }

    fn answer(self: Box<Self>, commit: Result<(), &str>) {
        let out = match (self.result, commit) {
            (Some(Ok(r)), Ok(())) => Ok(r),
            (Some(Err(e)), _) => Err(StoreError::Unavailable(e)),
            (Some(Ok(_)), Err(e)) => Err(StoreError::Unavailable(e.to_owned())),
            (None, _) => Err(StoreError::Unavailable(
                "the operation did not run".to_owned(),
            )),
        };
        let _ = self.reply.send(out);
    }
}

/// Waits for the next item of `rx` and takes, without waiting, those queued behind it, up to
/// `max` in all, into `batch` (the group commit's gathering). `false` once every sender is gone.
pub(super) fn next_batch<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize) -> bool {
    let Some(first) = rx.blocking_recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    true
}

/// Does nothing: sent by the inbox writer to wake the thread when frames wait to be applied
/// (every transaction applies them first).
pub(super) struct Wake;

impl Op for Wake {
    fn run(&mut self, _: &Connection) -> rusqlite::Result<()> {
        Ok(())
    }

    fn fail(&mut self, _: &str) {}

    fn answer(self: Box<Self>, _: Result<(), &str>) {}
}

/// The inbox's side of the thread: frames to apply, and where to say they were.
pub(super) struct Inbox {
    pub to_apply: Arc<ToApply>,
    pub applied: Arc<Applied>,
    /// The store's lock (`DB-inbox/LOCK`), held until this thread ends — after the writer, which
    /// holds a sender of its jobs — so a store reopened on the same file in this process waits
    /// until nothing of the old one writes.
    pub _lock: std::fs::File,
}

/// The database thread: gathers queued jobs into one transaction, commits, then answers them.
///
/// Each transaction starts by applying the frames the inbox writer has acknowledged since the
/// last one, so an operation queued after a callback was acknowledged sees it (read your
/// writes). Should applying fail, the frames are put back for the next transaction and this one
/// runs without them: the log keeps them on disk meanwhile.
///
/// The jobs first run one after the other without savepoints (a savepoint copies every page a
/// job touches into the sub-journal). Should one fail, its writes may be half done, so the whole
/// transaction is rolled back and the batch runs again, each job in its own savepoint: a failing
/// job then leaves the others of its batch intact, as if it had been alone.
pub(super) fn run(conn: Connection, mut jobs: mpsc::Receiver<Job>, inbox: Inbox) {
    yield_to_the_acknowledging_path();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut jobs, &mut batch, MAX_BATCH) {
        let frames = inbox.to_apply.take();
        let commit = match run_batch(&conn, &mut batch, &frames) {
            Ok(applied) => {
                if let Some(lsn) = applied {
                    inbox.applied.advance(lsn);
                }
                Ok(None)
            }
            Err(failure) => {
                inbox.to_apply.put_back(frames);
                match failure {
                    Failure::Apply(e) => {
                        tracing::error!(error = %e, "cannot apply the inbox log to the database; will retry (the log keeps the callbacks)");
                        run_batch(&conn, &mut batch, &[])
                    }
                    jobs => Err(jobs),
                }
            }
        };
        let commit = commit.as_ref().map(drop).map_err(Failure::message);
        for job in batch.drain(..) {
            job.answer(commit);
        }
    }
    // The store was dropped: apply what is left, so the next start has less to replay.
    let frames = inbox.to_apply.take();
    if !frames.is_empty() {
        if let Ok(Some(lsn)) = run_batch(&conn, &mut [], &frames) {
            inbox.applied.advance(lsn);
        }
    }
}

/// Lowers this thread's scheduling priority (nice 10): under a burst the CPU goes to
/// acknowledging callbacks first (HTTP workers, the inbox writer), and applying them and
/// dispatching catch up when the burst ebbs — the inbox log holds them meanwhile, and the writer
/// waits for this thread once the unapplied tail reaches its bound. Idle or not, the thread still
/// runs whenever a core is free.
pub(super) fn yield_to_the_acknowledging_path() {
    #[cfg(target_os = "linux")]
    // SAFETY: `gettid` and `setpriority` take and return plain integers; on this thread's own
    // id, `setpriority` changes only its scheduling priority.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0 {
            tracing::debug!("cannot lower the database thread's priority; it keeps the default");
        }
    }
}

/// Why a group transaction did not commit.
enum Failure {
    /// Applying the inbox's frames failed (the jobs did not run).
    Apply(String),
    /// The jobs' transaction failed.
    Jobs(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Self::Apply(e) | Self::Jobs(e) => e,
        }
    }
}

/// Runs a batch in one transaction, after applying `frames`, and commits it (see [`run`]);
/// answers the last LSN applied, if any. A transaction that did not commit is rolled back.
fn run_batch(
    conn: &Connection,
    batch: &mut [Job],
    frames: &[Arc<Batch>],
) -> Result<Option<u64>, Failure> {
    let result = try_batch(conn, batch, frames);
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// [`run_batch`] up to its commit, leaving a failed transaction open.
fn try_batch(
    conn: &Connection,
    batch: &mut [Job],
    frames: &[Arc<Batch>],
) -> Result<Option<u64>, Failure> {
    let begin = |batch: &mut [Job]| {
        run_cached(conn, "BEGIN IMMEDIATE").map_err(|e| {
            let e = describe(&e);
            for job in batch.iter_mut() {
                job.fail(&e);
            }
            Failure::Jobs(e)
        })?;
        apply(conn, frames).map_err(|e| Failure::Apply(describe(&e)))
    };
    let applied = begin(batch)?;
    if batch.iter_mut().any(|job| job.run(conn).is_err()) {
        // Some job failed partway: start again, each job in a savepoint.
        if !conn.is_autocommit() {
            run_cached(conn, "ROLLBACK").map_err(|e| Failure::Jobs(describe(&e)))?;
        }
        begin(batch)?;
        for i in 0..batch.len() {
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (e.g. disk full, I/O error).
                let e = "the transaction was rolled back by the database";
                for job in &mut batch[i..] {
                    job.fail(e);
                }
                return Err(Failure::Jobs(e.to_owned()));
            }
            in_savepoint(conn, &mut batch[i]).map_err(|e| Failure::Jobs(describe(&e)))?;
        }
    }
    run_cached(conn, "COMMIT").map_err(|e| Failure::Jobs(describe(&e)))?;
    Ok(applied)
}

/// Runs one statement without parameters through the statement cache: the transaction
/// statements run for every batch, and were parsed anew each time.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs one job in a savepoint, so a failing job leaves the others of its batch intact (none
/// of its writes reaches the group transaction's commit). Fails only if the savepoint
/// statements themselves fail; the job's own error is kept for its answer.
fn in_savepoint(conn: &Connection, job: &mut Job) -> rusqlite::Result<()> {
    run_cached(conn, "SAVEPOINT job")?;
    if job.run(conn).is_err() && !conn.is_autocommit() {
        run_cached(conn, "ROLLBACK TO job")?;
    }
    if !conn.is_autocommit() {
        run_cached(conn, "RELEASE job")?;
    }
    Ok(())
}

/// A SQLite error as the store reports it, its cause named first when an operator can act on
/// it (see [`StoreError::cause`]): a full disk, a file that cannot be written, a lock held too
/// long.
pub(super) fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => format!(
            "disk full: the database file cannot grow ({e}): free space on its filesystem"
        ),
        Some(ErrorCode::ReadOnly) => format!(
            "read-only: the database file cannot be written ({e}): check its permissions and mount (a read-only filesystem?)"
        ),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("timeout: the database file stayed locked ({e})")
        }
        _ => e.to_string(),
    }
}
