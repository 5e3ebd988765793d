//! The inbox writer: the acknowledging path of the embedded store.
//!
//! A callback is acknowledged once it is appended to the inbox log ([`super::log`]) and the log
//! is `fsync`ed, shared by every callback that arrived meanwhile (group commit). Nothing else is
//! on that path: the tables that serve the queries and the dispatcher are built from the log
//! afterwards, in batches, by the database thread, which records in the same transaction up to
//! which log sequence number (LSN) it has applied. On start-up whatever the log holds beyond that
//! LSN is applied before anything is served, so an acknowledged callback survives `kill -9` and
//! power loss.
//!
//! Duplicates are decided here, on the writer thread, so that two copies arriving together are
//! told apart in order: first the callbacks appended but not yet applied (in memory), then the
//! dedup filter ([`DedupFilter`]), which answers "certainly new" for nearly every new key in a
//! fixed amount of memory, and only for a possible duplicate the `dedup` table, through a
//! read-only connection (WAL lets it read while the database thread writes).

use std::{
    collections::{HashMap, VecDeque},
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

#[cfg(test)]
pub(super) use super::log::encode_for_test;
pub(super) use super::log::{clear, dir_of, lock, recover, Applied, ToApply};
use super::{
    dedup_filter::{self, DedupFilter},
    duration_ms,
    log::{encode, io_error, new_segment, segment_path, Batch, SEGMENT_BYTES},
    millis,
    thread::next_batch,
    Inserted, NewCallback, StoreError,
};

/// The writer waits for the database thread while more than this many bytes of acknowledged
/// callbacks are not applied yet: it bounds the memory the log's tail holds.
const MAX_UNAPPLIED_BYTES: usize = 16 << 20;
/// The most callbacks one append (one `fsync`) gathers.
const MAX_APPEND: usize = 2048;

/// The append buffer's size between appends (a larger append grows it for its duration).
const APPEND_BUFFER: usize = 1 << 20;
/// The page cache of the connection that reads the `dedup` table for possible duplicates.
const READER_CACHE_BYTES: usize = 2 << 20;

/// How the dedup filter is laid out: its size and the window it keeps keys for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dedup {
    pub filter_bytes: usize,
    pub window: Duration,
}

/// One callback to append, and who waits for the answer.
pub(super) struct Append {
    pub cb: NewCallback,
    pub window: Duration,
    pub reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    segment: File,
    /// The current segment's first LSN (its name).
    segment_first: u64,
    segment_len: u64,
    /// Closed segments and their last LSN, deleted once applied.
    closed: VecDeque<(u64, PathBuf)>,
    next_lsn: u64,
    /// Dedup keys of frames not yet applied: hash → (id, received ms, LSN).
    recent: HashMap<[u8; 32], (String, i64, u64)>,
    recent_order: VecDeque<(u64, [u8; 32], usize)>,
    /// Every dedup key stored in the window (applied or not), in a fixed-size filter: a new key
    /// is found absent there without reading the table. Shared with the thread that warms it.
    filter: Arc<Mutex<DedupFilter>>,
    unapplied_bytes: usize,
    /// Reads the `dedup` table of applied callbacks.
    reader: Connection,
    applied: Arc<Applied>,
    to_apply: Arc<ToApply>,
    /// Wakes the database thread when frames are waiting to be applied.
    wake: Box<dyn Fn() + Send>,
}

impl Writer {
    /// Starts a writer on an empty log directory (everything in it was applied and cleared),
    /// numbering from `next_lsn`, and the thread that warms its dedup filter from the table.
    pub(super) fn start(
        db: &Path,
        dir: PathBuf,
        next_lsn: u64,
        handoff: (Arc<Applied>, Arc<ToApply>),
        dedup: Dedup,
        wake: Box<dyn Fn() + Send>,
    ) -> Result<Self, StoreError> {
        let (applied, to_apply) = handoff;
        let unavailable = |e: rusqlite::Error| {
            StoreError::Config(format!(
                "cannot open {} for dedup lookups: {e}",
                db.display()
            ))
        };
        let reader = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        reader
            .busy_timeout(Duration::from_secs(2))
            .map_err(unavailable)?;
        // Possible duplicates only: the index's upper levels are what stays cached.
        reader
            .execute_batch(&format!(
                "PRAGMA cache_size = -{}",
                READER_CACHE_BYTES >> 10
            ))
            .map_err(unavailable)?;
        let now = millis(chrono::Utc::now());
        let filter = Arc::new(Mutex::new(DedupFilter::new(
            dedup.filter_bytes,
            now,
            dedup.window,
        )));
        let warming = Arc::downgrade(&filter);
        let since = now.saturating_sub(duration_ms(dedup.window));
        let db_path = db.to_owned();
        std::thread::Builder::new()
            .name("okra-dedup-warm".into())
            .spawn(move || dedup_filter::warm(warming, &db_path, since))
            .map_err(|e| StoreError::Unavailable(format!("cannot start a thread: {e}")))?;
        let segment = new_segment(&dir, next_lsn).map_err(|e| io_error(&e))?;
        Ok(Self {
            dir,
            segment,
            segment_first: next_lsn,
            segment_len: 0,
            closed: VecDeque::new(),
            next_lsn,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            filter,
            unapplied_bytes: 0,
            reader,
            applied,
            to_apply,
            wake,
        })
    }

    /// The writer thread: gathers waiting callbacks, appends them with one `fsync`, hands them
    /// to the database thread, then answers.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::with_capacity(MAX_APPEND);
        let mut buf: Vec<u8> = Vec::with_capacity(APPEND_BUFFER);
        while next_batch(&mut rx, &mut batch, MAX_APPEND) {
            self.forget_applied();
            while self.unapplied_bytes > MAX_UNAPPLIED_BYTES {
                let waiting_for = self.applied.get();
                self.applied
                    .wait_past(waiting_for, Duration::from_millis(100));
                self.forget_applied();
            }
            self.append(&mut batch, &mut buf);
            buf.shrink_to(APPEND_BUFFER);
        }
    }

    /// Drops what the database thread has applied: dedup keys now in its table, and segments.
    fn forget_applied(&mut self) {
        let applied = self.applied.get();
        while let Some(&(lsn, hash, bytes)) = self.recent_order.front() {
            if lsn > applied {
                break;
            }
            self.recent_order.pop_front();
            self.unapplied_bytes = self.unapplied_bytes.saturating_sub(bytes);
            if self.recent.get(&hash).is_some_and(|e| e.2 == lsn) {
                self.recent.remove(&hash);
            }
        }
        if self.recent.is_empty() && self.recent.capacity() > 1024 {
            // The tail is applied: give back what a burst grew the maps to.
            self.recent.shrink_to_fit();
            self.recent_order.shrink_to_fit();
        }
        while self
            .closed
            .front()
            .is_some_and(|(last, _)| *last <= applied)
        {
            if let Some((_, path)) = self.closed.pop_front() {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(segment = %path.display(), error = %e, "cannot delete an applied inbox segment");
                }
            }
        }
    }

    /// The first id stored for this key within `window`, if any.
    fn seen(
        &self,
        filter: &DedupFilter,
        hash: &[u8; 32],
        now: i64,
        window: Duration,
    ) -> rusqlite::Result<Option<String>> {
        let since = now.saturating_sub(duration_ms(window));
        if let Some((id, at, _)) = self.recent.get(hash) {
            // The latest copy stored is the one the table would hold too.
            return Ok((*at > since).then(|| id.clone()));
        }
        if !filter.may_contain(hash, since) {
            return Ok(None);
        }
        let found: Option<(String, i64)> = self
            .reader
            .prepare_cached("SELECT id, received_at FROM dedup WHERE hash = ?1")?
            .query_row([&hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(found.and_then(|(id, at)| (at > since).then_some(id)))
    }

    fn append(&mut self, batch: &mut Vec<Append>, buf: &mut Vec<u8>) {
        buf.clear();
        let first_lsn = self.next_lsn;
        // Each caller and its answer, decided before the write: a duplicate, or stored.
        let mut answers: Vec<(oneshot::Sender<_>, Result<Inserted, StoreError>)> =
            Vec::with_capacity(batch.len());
        let filter = Arc::clone(&self.filter);
        let mut filter = filter.lock().unwrap_or_else(PoisonError::into_inner);
        for a in batch.drain(..) {
            let hash = a.cb.dedup_key();
            let now = millis(a.cb.received_at);
            let answer = match self.seen(&filter, &hash, now, a.window) {
                Ok(Some(id)) => Ok(Inserted {
                    id,
                    duplicate: true,
                }),
                Ok(None) => {
                    let lsn = self.next_lsn;
                    self.next_lsn += 1;
                    let bytes = encode(lsn, &hash, &a.cb, buf);
                    self.recent.insert(hash, (a.cb.id.clone(), now, lsn));
                    filter.insert(&hash, now, a.window);
                    self.recent_order.push_back((lsn, hash, bytes));
                    self.unapplied_bytes += bytes;
                    Ok(Inserted {
                        id: a.cb.id,
                        duplicate: false,
                    })
                }
                Err(e) => Err(StoreError::Unavailable(format!(
                    "cannot read the dedup keys: {e}"
                ))),
            };
            answers.push((a.reply, answer));
        }
        if self.next_lsn > first_lsn {
            if let Err(e) = self.write(buf) {
                // Nothing of this batch is acknowledged; its dedup keys are forgotten, and the
                // log is cut back to its last good frame so later appends follow it.
                let err = io_error(&e);
                tracing::error!(error = %err, "cannot append to the inbox log");
                self.undo(first_lsn);
                for (_, answer) in &mut answers {
                    if matches!(
                        answer,
                        Ok(Inserted {
                            duplicate: false,
                            ..
                        })
                    ) {
                        *answer = Err(err.clone());
                    }
                }
            } else {
                let batch = Batch::new(buf.clone(), self.next_lsn - 1);
                self.to_apply.push(Arc::new(batch));
                (self.wake)();
            }
        }
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }

    /// Appends `buf` to the current segment and makes it durable; rotates a full segment.
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.segment.write_all(buf)?;
        self.segment.sync_data()?;
        self.segment_len += buf.len() as u64;
        if self.segment_len >= SEGMENT_BYTES {
            // The batch is durable whatever happens here: a segment that cannot be started is
            // tried again after the next append, and the current one grows meanwhile.
            match new_segment(&self.dir, self.next_lsn) {
                Ok(segment) => {
                    let old = segment_path(&self.dir, self.segment_first);
                    self.closed.push_back((self.next_lsn - 1, old));
                    self.segment = segment;
                    self.segment_first = self.next_lsn;
                    self.segment_len = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a new inbox segment; the current one grows")
                }
            }
        }
        Ok(())
    }

    /// Forgets the frames from `first_lsn` on (their write failed), and cuts the segment back to its last good length.
    fn undo(&mut self, first_lsn: u64) {
        while self
            .recent_order
            .back()
            .is_some_and(|(lsn, _, _)| *lsn >= first_lsn)
        {
            if let Some((_, hash, bytes)) = self.recent_order.pop_back() {
                self.unapplied_bytes = self.unapplied_bytes.saturating_sub(bytes);
                self.recent.remove(&hash);
            }
        }
        self.next_lsn = first_lsn;
        let _ = self.segment.set_len(self.segment_len);
        let _ = self.segment.sync_data();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::super::SqliteStore;
    use super::*;
    use crate::store::{Ingest, OperatorView, StoreOptions};

    const WINDOW: Duration = Duration::from_secs(3600);

    fn callback(id: &str, body: &[u8], at: DateTime<Utc>) -> NewCallback {
        NewCallback {
            received_at: at,
            ..NewCallback::sample(id, "rec", body.to_vec())
        }
    }

    /// A filter of one block per slice: after a few dozen keys it answers "maybe" for nearly
    /// every key, so lookups go through its false positives to the table.
    fn tiny() -> StoreOptions {
        StoreOptions {
            dedup_filter_bytes: 512,
            dedup_window: WINDOW,
            ..StoreOptions::default()
        }
    }

    async fn insert(store: &SqliteStore, id: &str, body: &[u8]) -> Inserted {
        store
            .insert(callback(id, body, Utc::now()), WINDOW)
            .await
            .unwrap()
    }

    /// Copies sent after a restart are duplicates of the callbacks stored before it, whether
    /// the filter is still cold (the table answers) or warmed from the table; new bodies are not.
    #[tokio::test]
    async fn a_duplicate_is_found_after_a_restart() {
        for options in [StoreOptions::default(), tiny()] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.db");
            let store = SqliteStore::open_with(&path, &options).await.unwrap();
            for i in 0..300 {
                let stored = insert(&store, &format!("first-{i}"), format!("{i}").as_bytes()).await;
                assert!(!stored.duplicate);
            }
            drop(store);
            let store = SqliteStore::open_with(&path, &options).await.unwrap();
            for i in 0..300 {
                if i == 150 {
                    // Long enough, on an idle machine, for the filter to be warmed.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let copy = insert(&store, &format!("copy-{i}"), format!("{i}").as_bytes()).await;
                assert_eq!((copy.id, copy.duplicate), (format!("first-{i}"), true));
                let new = insert(&store, &format!("new-{i}"), format!("new {i}").as_bytes()).await;
                assert_eq!((new.id, new.duplicate), (format!("new-{i}"), false));
            }
            drop(store);
        }
    }

    /// A copy of a callback stored just inside the window is a duplicate; of one stored just
    /// outside it, new — through a filter of the default size and through a saturated one,
    /// with and without a restart in between.
    #[tokio::test]
    async fn the_window_edge_is_exact() {
        let window = chrono::Duration::from_std(WINDOW).unwrap();
        let ms = chrono::Duration::milliseconds(1);
        for options in [StoreOptions::default(), tiny()] {
            for restart in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("x.db");
                let mut store = SqliteStore::open_with(&path, &options).await.unwrap();
                let now = Utc::now();
                let cases = [
                    ("inside", now - window + ms, true),
                    ("outside", now - window, false),
                ];
                for (name, first_at, _) in cases {
                    let first = callback(name, name.as_bytes(), first_at);
                    store.insert(first, WINDOW).await.unwrap();
                }
                if restart {
                    drop(store);
                    store = SqliteStore::open_with(&path, &options).await.unwrap();
                }
                for (name, _, duplicate) in cases {
                    let copy = callback(&format!("copy-{name}"), name.as_bytes(), now);
                    let answer = store.insert(copy, WINDOW).await.unwrap();
                    assert_eq!(answer.duplicate, duplicate, "{name}, restart {restart}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// No new callback is ever answered as a duplicate (that would lose it), and every copy
        /// sent again is one, with the first's id — through a saturated filter whose "maybe"
        /// is nearly always a false positive.
        #[test]
        fn only_copies_are_duplicates(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..400),
            tiny_filter in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let options = if tiny_filter { tiny() } else { StoreOptions::default() };
                let store = SqliteStore::open_with(dir.path().join("x.db"), &options).await.unwrap();
                let mut first: HashMap<&[u8], String> = HashMap::new();
                for (i, body) in bodies.iter().enumerate() {
                    let id = format!("id-{i}");
                    let answer = insert(&store, &id, body).await;
                    match first.get(body.as_slice()) {
                        Some(original) => prop_assert_eq!((&answer.id, answer.duplicate), (original, true)),
                        None => {
                            prop_assert_eq!((&answer.id, answer.duplicate), (&id, false));
                            first.insert(body, id);
                        }
                    }
                }
                let distinct: HashSet<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                prop_assert_eq!(store.stats().await.unwrap().pending as usize, distinct.len());
                Ok(())
            })?;
        }
    }
}
