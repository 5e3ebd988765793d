//! The inbox log's file format and its hand-off to the database thread.
//!
//! The log lives in a directory beside the database file (`okra-callbacks.db-inbox/`): segment
//! files named by their first log sequence number (LSN), and a `LOCK` file this process holds (a
//! second receiver on the same database is refused). A segment is deleted once every frame in it
//! has been applied.
//!
//! A frame is `[length u32][crc32 u32][payload]` (little-endian); the payload holds the LSN and
//! the callback (id, record, type, code, received time, dedup key, body), then — for a source
//! other than Okra only — its source and event id (a frame without them is Okra's, as every
//! frame written before sources existed is). A torn or corrupt tail (a crash mid-write) fails
//! its checksum and ends the log: those frames were never acknowledged.
//!
//! [`ToApply`] carries acknowledged frames from the writer to the database thread, and
//! [`Applied`] tells the writer how far the database thread has committed them.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use super::{millis, NewCallback, StoreError};
use crate::callback::OKRA;

/// A segment is closed, and a new one started, once it holds this many bytes.
pub(super) const SEGMENT_BYTES: u64 = 32 << 20;
/// Bytes of a frame's header: length and checksum.
const HEADER: usize = 8;

/// Frames as they are in the log: one append's worth (whole frames, in LSN order), handed from
/// the writer to the database thread, which reads them with [`Batch::frames`]. Holding the
/// encoded bytes, not the requests' buffers, bounds the memory of the unapplied tail by what it
/// takes on disk.
#[derive(Debug)]
pub(super) struct Batch {
    bytes: Vec<u8>,
    last_lsn: u64,
}

impl Batch {
    /// Whole frames, the last of which has LSN `last_lsn`.
    pub(super) fn new(bytes: Vec<u8>, last_lsn: u64) -> Self {
        Self { bytes, last_lsn }
    }

    /// The frames, in order.
    pub(super) fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (frame, len) = Frame::decode(&self.bytes[at..])?;
            at += len;
            Some(frame)
        })
    }

    /// The LSN of its last frame.
    pub(super) fn last_lsn(&self) -> u64 {
        self.last_lsn
    }
}

/// One callback in the log, read in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<'a> {
    /// Its place in the log.
    pub lsn: u64,
    /// The dedup key (`NewCallback::dedup_key`).
    pub hash: &'a [u8],
    /// When it arrived (unix ms).
    pub received_at: i64,
    pub id: &'a str,
    pub record: &'a str,
    pub callback_type: &'a str,
    pub callback_code: Option<&'a str>,
    pub body: &'a [u8],
    /// The source (`okra` when the frame names none).
    pub source: &'a str,
    pub event_id: Option<&'a str>,
}

/// Appends `cb`'s frame, header and all, to `out`; answers its length.
pub(super) fn encode(lsn: u64, hash: &[u8; 32], cb: &NewCallback, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&millis(cb.received_at).to_le_bytes());
    out.extend_from_slice(hash);
    for s in [&cb.id, &cb.record, &cb.callback_type] {
        put_bytes(out, s.as_bytes());
    }
    out.push(u8::from(cb.callback_code.is_some()));
    put_bytes(out, cb.callback_code.as_deref().unwrap_or("").as_bytes());
    put_bytes(out, &cb.body);
    if cb.source != OKRA || cb.event_id.is_some() {
        put_bytes(out, cb.source.as_bytes());
        out.push(u8::from(cb.event_id.is_some()));
        put_bytes(out, cb.event_id.as_deref().unwrap_or("").as_bytes());
    }
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

impl<'a> Frame<'a> {
    /// The frame at the start of `buf` and its length, or `None` if `buf` does not start with a
    /// whole frame whose checksum holds (the log's end).
    fn decode(buf: &'a [u8]) -> Option<(Self, usize)> {
        let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(buf.get(4..HEADER)?.try_into().ok()?);
        let payload = buf.get(HEADER..HEADER.checked_add(len)?)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let mut r = Reader(payload);
        let lsn = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let received_at = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let hash = r.take(32)?;
        let id = r.str()?;
        let record = r.str()?;
        let callback_type = r.str()?;
        let has_code = r.take(1)?[0] == 1;
        let code = r.str()?;
        let body = r.bytes()?;
        let (source, event_id) = if r.0.is_empty() {
            (OKRA, None)
        } else {
            let source = r.str()?;
            let has_event_id = r.take(1)?[0] == 1;
            let event_id = r.str()?;
            (source, has_event_id.then_some(event_id))
        };
        let frame = Self {
            lsn,
            hash,
            received_at,
            id,
            record,
            callback_type,
            callback_code: has_code.then_some(code),
            body,
            source,
            event_id,
        };
        Some((frame, HEADER + len))
    }
}

/// [`encode`], for the store's tests that write a log by hand.
#[cfg(test)]
pub(super) fn encode_for_test(lsn: u64, cb: &NewCallback, out: &mut Vec<u8>) {
    encode(lsn, &cb.dedup_key(), cb, out);
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

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

/// The log's directory for the database file at `db`: `DB-inbox` beside it.
pub(super) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-inbox");
    db.with_file_name(name)
}

/// Takes the log directory's lock for this process (creating the directory), or explains who
/// holds it. A holder that lets go within `wait` (a store dropped a moment ago in this process,
/// its threads still closing) is waited for.
pub(super) fn lock(dir: &Path, db: &Path, wait: Duration) -> Result<File, StoreError> {
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
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => break result,
        }
    }
    .map(|()| file)
    .map_err(|e| match e {
        fs::TryLockError::WouldBlock => StoreError::Config(format!(
            "the SQLite file {} is in use by another process (it holds {}/LOCK); the embedded store serves one receiver — use PostgreSQL to run several",
            db.display(),
            dir.display()
        )),
        fs::TryLockError::Error(e) => {
            StoreError::Config(format!("cannot lock {}/LOCK: {e}", dir.display()))
        }
    })
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

/// The whole frames in `dir` past `applied`, in LSN order, as one batch (`None` if there are
/// none), and the highest LSN seen.
pub(super) fn recover(dir: &Path, applied: u64) -> io::Result<(Option<Batch>, u64)> {
    let mut bytes = Vec::new();
    let mut frames = 0;
    let mut last = applied;
    let mut last_applied = applied;
    for (_, path) in segments(dir)? {
        let buf = fs::read(&path)?;
        let mut at = 0;
        while let Some((frame, len)) = Frame::decode(&buf[at..]) {
            last = last.max(frame.lsn);
            // Segments are read in LSN order and frames are in LSN order within them.
            if frame.lsn > last_applied {
                bytes.extend_from_slice(&buf[at..at + len]);
                last_applied = frame.lsn;
                frames += 1;
            }
            at += len;
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
    if frames > 0 {
        tracing::info!(
            callbacks = frames,
            "applying callbacks acknowledged before the last stop"
        );
    }
    let batch = (!bytes.is_empty()).then_some(Batch {
        bytes,
        last_lsn: last_applied,
    });
    Ok((batch, last))
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
    pub(super) fn new(lsn: u64) -> Arc<Self> {
        Arc::new(Self {
            lsn: AtomicU64::new(lsn),
            ..Self::default()
        })
    }

    /// The highest LSN whose callback is in the tables (committed).
    pub(super) fn get(&self) -> u64 {
        self.lsn.load(Ordering::Acquire)
    }

    /// Called by the database thread after a commit that applied frames up to `lsn`.
    pub(super) fn advance(&self, lsn: u64) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.lsn.fetch_max(lsn, Ordering::AcqRel);
        self.moved.notify_all();
    }

    /// Waits until the applied LSN moves past `lsn`, or `timeout` passes.
    pub(super) fn wait_past(&self, lsn: u64, timeout: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .moved
            .wait_timeout_while(guard, timeout, |()| self.get() <= lsn);
    }
}

/// Frames acknowledged but not yet applied, handed from the writer to the database thread.
#[derive(Debug, Default)]
pub(super) struct ToApply {
    frames: Mutex<VecDeque<Arc<Batch>>>,
}

impl ToApply {
    pub(super) fn push(&self, batch: Arc<Batch>) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(batch);
    }

    /// Everything waiting, oldest first.
    pub(super) fn take(&self) -> Vec<Arc<Batch>> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Puts back what [`ToApply::take`] took, when it could not be applied.
    pub(super) fn put_back(&self, batches: Vec<Arc<Batch>>) {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        for batch in batches.into_iter().rev() {
            frames.push_front(batch);
        }
    }
}

pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

/// Creates the segment whose first LSN is `first`, and makes its name durable.
pub(super) fn new_segment(dir: &Path, first: u64) -> io::Result<File> {
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
    use crate::store::from_millis;
    use chrono::Utc;

    fn callback(id: &str, body: &str, code: Option<&str>) -> NewCallback {
        NewCallback {
            callback_code: code.map(str::to_owned),
            received_at: from_millis(millis(Utc::now())),
            ..NewCallback::sample(id, "rec", body.to_owned())
        }
    }

    #[test]
    fn a_source_s_frame_carries_its_source_and_an_okra_frame_is_as_before() {
        let okra = callback("id-1", "{}", None);
        let mut before = Vec::new();
        encode(1, &okra.dedup_key(), &okra, &mut before);
        // The frame format before sources: no bytes after the body.
        let body_end = HEADER + 8 + 8 + 32 + 3 * 4 + "id-1recBALANCE".len() + 1 + 4 + 4 + 2;
        assert_eq!(
            before.len(),
            body_end,
            "an Okra frame has nothing after its body"
        );
        let (got, _) = Frame::decode(&before).unwrap();
        assert_eq!((got.source, got.event_id), (OKRA, None));

        let mut plaid = callback("id-2", "{\"webhook_type\":\"ITEM\"}", Some("ERROR"));
        plaid.source = "plaid".into();
        let mut stitch = callback("id-3", "{}", None);
        stitch.source = "stitch".into();
        stitch.event_id = Some("msg_2".into());
        let mut buf = Vec::new();
        let len = encode(2, &plaid.dedup_key(), &plaid, &mut buf);
        encode(3, &stitch.dedup_key(), &stitch, &mut buf);
        let (got, at) = Frame::decode(&buf).unwrap();
        assert_eq!(at, len);
        assert_eq!((got.id, got.source, got.event_id), ("id-2", "plaid", None));
        assert_eq!(got.body, &plaid.body[..]);
        assert_eq!(got.hash, &plaid.dedup_key()[..]);
        let (got, _) = Frame::decode(&buf[len..]).unwrap();
        assert_eq!(
            (got.id, got.source, got.event_id),
            ("id-3", "stitch", Some("msg_2"))
        );
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_ends_the_log() {
        let mut buf = Vec::new();
        let a = callback("id-1", "{\"a\":1}", Some("BALANCE_PULLED"));
        let b = callback("id-2", "{}", None);
        let len = encode(1, &a.dedup_key(), &a, &mut buf);
        assert_eq!(buf.len(), len);
        encode(2, &b.dedup_key(), &b, &mut buf);
        let (got, at) = Frame::decode(&buf).unwrap();
        assert_eq!(at, len);
        assert_eq!((got.lsn, got.id, got.record), (1, "id-1", "rec"));
        assert_eq!(got.callback_code, Some("BALANCE_PULLED"));
        assert_eq!(got.body, &a.body[..]);
        assert_eq!(got.received_at, millis(a.received_at));
        assert_eq!(got.hash, &a.dedup_key()[..]);
        let (got, _) = Frame::decode(&buf[len..]).unwrap();
        assert_eq!((got.lsn, got.callback_code), (2, None));
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
