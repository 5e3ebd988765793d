//! The inbox log: the acknowledging path of the embedded store.
//!
//! A callback is acknowledged once it is appended to this log and the log is `fsync`ed, shared
//! by every callback that arrived meanwhile (group commit). Nothing else is on that path: the
//! tables that serve the queries and the dispatcher are built from the log afterwards, in
//! batches, by the database thread ([`super::apply`]), which records in the same transaction up
//! to which log sequence number (LSN) it has applied. On start-up whatever the log holds beyond
//! that LSN is applied before anything is served, so an acknowledged callback survives `kill -9`
//! and power loss exactly as before.
//!
//! The log lives in a directory beside the database file (`okra-callbacks.db-inbox/`): segment
//! files named by their first LSN, and a `LOCK` file this process holds (a second receiver on the
//! same database is refused). A segment is deleted once every frame in it has been applied.
//!
//! A frame is `[length u32][crc32 u32][payload]` (little-endian); the payload holds the LSN and
//! the callback (id, record, type, code, received time, body hash, body). A torn or corrupt tail
//! (a crash mid-write) fails its checksum and ends the log: those frames were never acknowledged.
//!
//! Duplicates are decided here, on the writer thread, so that two copies arriving together are
//! told apart in order: first the callbacks appended but not yet applied (in memory), then the
//! applied ones (the `dedup` table, through a read-only connection; WAL lets it read while the
//! database thread writes).

use std::{
    collections::{HashMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{duration_ms, from_millis, millis, Inserted, NewCallback, StoreError};

/// A segment is closed, and a new one started, once it holds this many bytes.
const SEGMENT_BYTES: u64 = 32 << 20;
/// The writer waits for the database thread while more than this many bytes of acknowledged
/// callbacks are not applied yet: it bounds the memory the log's tail holds.
const MAX_UNAPPLIED_BYTES: usize = 32 << 20;
/// The most callbacks one append (one `fsync`) gathers.
const MAX_APPEND: usize = 2048;
/// Bytes of a frame's header: length and checksum.
const HEADER: usize = 8;

/// One callback in the log.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    /// Its place in the log.
    pub lsn: u64,
    /// SHA-256 of the body (the dedup key).
    pub hash: [u8; 32],
    /// The callback.
    pub cb: NewCallback,
}

impl Frame {
    fn encoded_len(&self) -> usize {
        HEADER
            + 8
            + 8
            + 32
            + 4 * 4
            + self.cb.id.len()
            + self.cb.record.len()
            + self.cb.callback_type.len()
            + self.cb.callback_code.as_ref().map_or(0, String::len)
            + 1
            + 4
            + self.cb.body.len()
    }

    /// Appends the frame, header and all, to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&millis(self.cb.received_at).to_le_bytes());
        out.extend_from_slice(&self.hash);
        for s in [&self.cb.id, &self.cb.record, &self.cb.callback_type] {
            put_bytes(out, s.as_bytes());
        }
        match &self.cb.callback_code {
            Some(code) => {
                out.push(1);
                put_bytes(out, code.as_bytes());
            }
            None => {
                out.push(0);
                put_bytes(out, b"");
            }
        }
        put_bytes(out, &self.cb.body);
        let payload = &out[start + HEADER..];
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// The frame at the start of `buf` and its length, or `None` if `buf` does not start with a
    /// whole frame whose checksum holds (the log's end).
    fn decode(buf: &[u8]) -> Option<(Self, usize)> {
        let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(buf.get(4..HEADER)?.try_into().ok()?);
        let payload = buf.get(HEADER..HEADER.checked_add(len)?)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let mut r = Reader(payload);
        let lsn = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let received = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let hash: [u8; 32] = r.take(32)?.try_into().ok()?;
        let id = r.string()?;
        let record = r.string()?;
        let callback_type = r.string()?;
        let has_code = r.take(1)?[0] == 1;
        let code = r.string()?;
        let body = Bytes::copy_from_slice(r.bytes()?);
        let cb = NewCallback {
            id,
            record,
            callback_type,
            callback_code: has_code.then_some(code),
            body,
            received_at: from_millis(received),
        };
        Some((Self { lsn, hash, cb }, HEADER + len))
    }
}

/// [`Frame::encode`], for the store's tests that write a log by hand.
#[cfg(test)]
pub(super) fn encode_for_test(frame: &Frame, out: &mut Vec<u8>) {
    frame.encode(out);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// The log's directory for the database file at `db`: `DB-inbox` beside it.
pub(super) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-inbox");
    db.with_file_name(name)
}

/// Takes the log directory's lock for this process (creating the directory), or explains who
/// holds it.
pub(super) fn lock(dir: &Path, db: &Path) -> Result<File, StoreError> {
    fs::create_dir_all(dir).map_err(|e| {
        StoreError::Config(format!(
            "cannot create the inbox log {}: {e}",
            dir.display()
        ))
    })?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(|e| StoreError::Config(format!("cannot open {}/LOCK: {e}", dir.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Config(format!(
            "the SQLite file {} is in use by another process (it holds {}/LOCK); the embedded store serves one receiver — use PostgreSQL to run several",
            db.display(),
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::Config(format!(
            "cannot lock {}/LOCK: {e}",
            dir.display()
        ))),
    }
}

/// The segment files in `dir`, by first LSN.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            found.push((first, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Every whole frame in `dir` past `applied`, in LSN order, and the highest LSN seen.
pub(super) fn recover(dir: &Path, applied: u64) -> io::Result<(Vec<Frame>, u64)> {
    let mut frames = Vec::new();
    let mut last = applied;
    for (_, path) in segments(dir)? {
        let buf = fs::read(&path)?;
        let mut at = 0;
        while let Some((frame, len)) = Frame::decode(&buf[at..]) {
            at += len;
            last = last.max(frame.lsn);
            if frame.lsn > applied {
                frames.push(frame);
            }
        }
        if at < buf.len() {
            tracing::warn!(
                segment = %path.display(),
                kept_bytes = at,
                dropped_bytes = buf.len() - at,
                "the inbox log ends in a torn or corrupt frame (a crash mid-write); frames after it were never acknowledged"
            );
        }
    }
    frames.sort_by_key(|f| f.lsn);
    frames.dedup_by_key(|f| f.lsn);
    Ok((frames, last))
}

/// Deletes every segment in `dir` (all applied) and fsyncs the directory.
pub(super) fn clear(dir: &Path) -> io::Result<()> {
    for (_, path) in segments(dir)? {
        fs::remove_file(path)?;
    }
    File::open(dir)?.sync_all()
}

/// What the database thread has applied, shared with the writer.
#[derive(Debug, Default)]
pub(super) struct Applied {
    lsn: AtomicU64,
    lock: Mutex<()>,
    moved: Condvar,
}

impl Applied {
    pub fn new(lsn: u64) -> Arc<Self> {
        Arc::new(Self {
            lsn: AtomicU64::new(lsn),
            ..Self::default()
        })
    }

    /// The highest LSN whose callback is in the tables (committed).
    pub fn get(&self) -> u64 {
        self.lsn.load(Ordering::Acquire)
    }

    /// Called by the database thread after a commit that applied frames up to `lsn`.
    pub fn advance(&self, lsn: u64) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.lsn.fetch_max(lsn, Ordering::AcqRel);
        self.moved.notify_all();
    }

    /// Waits until the applied LSN moves past `lsn`, or `timeout` passes.
    fn wait_past(&self, lsn: u64, timeout: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .moved
            .wait_timeout_while(guard, timeout, |()| self.get() <= lsn);
    }
}

/// Frames acknowledged but not yet applied, handed from the writer to the database thread.
#[derive(Debug, Default)]
pub(super) struct ToApply {
    frames: Mutex<VecDeque<Arc<[Frame]>>>,
}

impl ToApply {
    fn push(&self, batch: Arc<[Frame]>) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(batch);
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<Arc<[Frame]>> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Puts back what [`ToApply::take`] took, when it could not be applied.
    pub fn put_back(&self, batches: Vec<Arc<[Frame]>>) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        for batch in batches.into_iter().rev() {
            frames.push_front(batch);
        }
    }
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
    /// Held for the process's life: the lock on the log.
    _lock: File,
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
    unapplied_bytes: usize,
    /// Reads the `dedup` table of applied callbacks.
    reader: Connection,
    applied: Arc<Applied>,
    to_apply: Arc<ToApply>,
    /// Wakes the database thread when frames are waiting to be applied.
    wake: Box<dyn Fn() -> bool + Send>,
}

impl Writer {
    /// Starts a writer on an empty log directory (everything in it was applied and cleared),
    /// numbering from `next_lsn`.
    pub fn start(
        db: &Path,
        dir: PathBuf,
        lock: File,
        next_lsn: u64,
        applied: Arc<Applied>,
        to_apply: Arc<ToApply>,
        wake: Box<dyn Fn() -> bool + Send>,
    ) -> Result<Self, StoreError> {
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
        let segment = new_segment(&dir, next_lsn).map_err(|e| io_error(&e))?;
        Ok(Self {
            dir,
            _lock: lock,
            segment,
            segment_first: next_lsn,
            segment_len: 0,
            closed: VecDeque::new(),
            next_lsn,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            unapplied_bytes: 0,
            reader,
            applied,
            to_apply,
            wake,
        })
    }

    /// The writer thread: gathers waiting callbacks, appends them with one `fsync`, hands them
    /// to the database thread, then answers.
    pub fn run(mut self, mut rx: mpsc::Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::with_capacity(MAX_APPEND);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_APPEND {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            self.forget_applied();
            while self.unapplied_bytes > MAX_UNAPPLIED_BYTES {
                let waiting_for = self.applied.get();
                self.applied
                    .wait_past(waiting_for, Duration::from_millis(100));
                self.forget_applied();
            }
            self.append(&mut batch, &mut buf);
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
            self.unapplied_bytes -= bytes;
            if self.recent.get(&hash).is_some_and(|e| e.2 == lsn) {
                self.recent.remove(&hash);
            }
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

    /// The first id stored for these bytes within `window`, if any.
    fn seen(
        &self,
        hash: &[u8; 32],
        now: i64,
        window: Duration,
    ) -> rusqlite::Result<Option<String>> {
        let since = now.saturating_sub(duration_ms(window));
        if let Some((id, at, _)) = self.recent.get(hash) {
            // The latest copy stored is the one the table would hold too.
            return Ok((*at > since).then(|| id.clone()));
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
        let mut frames = Vec::with_capacity(batch.len());
        // Each caller's answer, decided before the write: a duplicate, or its frame's index.
        let mut answers: Vec<Result<Inserted, StoreError>> = Vec::with_capacity(batch.len());
        for a in batch.iter() {
            let hash = a.cb.body_hash();
            let now = millis(a.cb.received_at);
            match self.seen(&hash, now, a.window) {
                Ok(Some(id)) => answers.push(Ok(Inserted {
                    id,
                    duplicate: true,
                })),
                Ok(None) => {
                    let frame = Frame {
                        lsn: self.next_lsn,
                        hash,
                        cb: a.cb.clone(),
                    };
                    self.next_lsn += 1;
                    let bytes = frame.encoded_len();
                    frame.encode(buf);
                    self.recent
                        .insert(hash, (frame.cb.id.clone(), now, frame.lsn));
                    self.recent_order.push_back((frame.lsn, hash, bytes));
                    self.unapplied_bytes += bytes;
                    answers.push(Ok(Inserted {
                        id: frame.cb.id.clone(),
                        duplicate: false,
                    }));
                    frames.push(frame);
                }
                Err(e) => answers.push(Err(StoreError::Unavailable(format!(
                    "cannot read the dedup keys: {e}"
                )))),
            }
        }
        if !frames.is_empty() {
            if let Err(e) = self.write(buf) {
                // Nothing of this batch is acknowledged; its dedup keys are forgotten, and the
                // log is cut back to its last good frame so later appends follow it.
                let err = io_error(&e);
                tracing::error!(error = %err, "cannot append to the inbox log");
                self.undo(&frames);
                for answer in &mut answers {
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
                self.to_apply.push(frames.into());
                (self.wake)();
            }
        }
        for (a, answer) in batch.drain(..).zip(answers) {
            let _ = a.reply.send(answer);
        }
    }

    /// Appends `buf` to the current segment and makes it durable; rotates a full segment.
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.segment.write_all(buf)?;
        self.segment.sync_data()?;
        self.segment_len += buf.len() as u64;
        if self.segment_len >= SEGMENT_BYTES {
            let last = self.next_lsn - 1;
            let old = segment_path(&self.dir, self.segment_first);
            self.segment = new_segment(&self.dir, self.next_lsn)?;
            self.segment_first = self.next_lsn;
            self.segment_len = 0;
            self.closed.push_back((last, old));
        }
        Ok(())
    }

    /// Forgets frames whose write failed, and cuts the segment back to its last good length.
    fn undo(&mut self, frames: &[Frame]) {
        for frame in frames.iter().rev() {
            if let Some((lsn, hash, bytes)) = self.recent_order.pop_back() {
                debug_assert_eq!(lsn, frame.lsn);
                self.unapplied_bytes -= bytes;
                self.recent.remove(&hash);
            }
        }
        self.next_lsn = frames.first().map_or(self.next_lsn, |f| f.lsn);
        let _ = self.segment.set_len(self.segment_len);
        let _ = self.segment.sync_data();
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Creates the segment whose first LSN is `first`, and makes its name durable.
fn new_segment(dir: &Path, first: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, first))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// An I/O error of the log as the store reports it, its cause named first (see
/// [`StoreError::cause`]).
pub(super) fn io_error(e: &io::Error) -> StoreError {
    StoreError::Unavailable(match e.kind() {
        io::ErrorKind::StorageFull => {
            format!("disk full: the inbox log cannot grow ({e}): free space on its filesystem")
        }
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => format!(
            "read-only: the inbox log cannot be written ({e}): check its permissions and mount"
        ),
        _ => format!("cannot write the inbox log: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn frame(lsn: u64, body: &str, code: Option<&str>) -> Frame {
        let cb = NewCallback {
            id: format!("id-{lsn}"),
            record: "rec".into(),
            callback_type: "BALANCE".into(),
            callback_code: code.map(str::to_owned),
            body: Bytes::from(body.to_owned()),
            received_at: from_millis(millis(Utc::now())),
        };
        Frame {
            lsn,
            hash: cb.body_hash(),
            cb,
        }
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_ends_the_log() {
        let mut buf = Vec::new();
        let a = frame(1, "{\"a\":1}", Some("BALANCE_PULLED"));
        let b = frame(2, "{}", None);
        a.encode(&mut buf);
        assert_eq!(buf.len(), a.encoded_len());
        b.encode(&mut buf);
        let (got, len) = Frame::decode(&buf).unwrap();
        assert_eq!((got.lsn, got.cb.id.as_str()), (1, "id-1"));
        assert_eq!(got.cb.callback_code.as_deref(), Some("BALANCE_PULLED"));
        assert_eq!(got.cb.body, a.cb.body);
        assert_eq!(got.cb.received_at, a.cb.received_at);
        assert_eq!(got.hash, a.hash);
        let (got, _) = Frame::decode(&buf[len..]).unwrap();
        assert_eq!((got.lsn, got.cb.callback_code), (2, None));
        // Cut anywhere inside the second frame: it is gone, the first stays.
        for cut in len..buf.len() {
            assert!(Frame::decode(&buf[len..cut]).is_none(), "cut at {cut}");
        }
        // A flipped bit fails the checksum.
        let mut bad = buf.clone();
        bad[HEADER + 20] ^= 1;
        assert!(Frame::decode(&bad).is_none());
    }
}
