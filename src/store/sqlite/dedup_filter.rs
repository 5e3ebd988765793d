//! The dedup filter: which dedup keys the embedded store may have stored within the dedup
//! window, in a fixed amount of memory.
//!
//! It answers "certainly not stored since" for nearly every new key, so only possible duplicates
//! read the `dedup` table; it never answers "stored" (the table decides that), so a false
//! positive costs one index lookup and never a callback.
//!
//! The filter is a ring of [`SLICES`] blocked Bloom filters, each for the keys of one stretch of
//! time (a seventh of the window by default). Keys go into the newest slice; it is replaced by
//! the next once it has covered its stretch or holds its share of keys, and only if that next
//! one (the oldest) holds nothing inside the window any more. So nothing stored inside the
//! window is ever dropped: under more keys than the filter is sized for, slices fill up and
//! answer "maybe" more often (more table reads), and the memory stays what it was given.
//!
//! A store opens with the filter *cold* (every lookup goes to the table) and fills it from the
//! `dedup` table in the background ([`warm`]), so opening does not wait for a scan of every key.
//! The keys stored before the start go into the slices of their time.

use std::{
    path::Path,
    sync::{Mutex, PoisonError, Weak},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

use super::{duration_ms, thread::yield_to_the_acknowledging_path};

/// Slices in the ring: the newest takes keys, the others age out one by one with the window.
const SLICES: usize = 8;
/// 64-bit words in a block: one key sets one bit in each word of its block (a cache line).
const BLOCK_WORDS: usize = 8;
/// Bits per key a slice is sized for (a false-positive rate under 1% when full).
const BITS_PER_KEY: usize = 12;
/// Keys read from the `dedup` table per query while warming.
const WARM_CHUNK: usize = 4096;

/// The filter's size when `--dedup-filter-mb` is not given.
pub const DEFAULT_BYTES: usize = 16 << 20;

/// One slice of the ring.
#[derive(Debug, Clone, Copy)]
struct Slice {
    /// Keys it holds.
    keys: usize,
    /// When it began taking keys (unix ms).
    first_at: i64,
    /// The latest time of a key it holds or may be given (unix ms); `i64::MIN` if none.
    last_at: i64,
    /// How many times it was cleared for reuse.
    generation: u64,
}

impl Slice {
    /// Whether it may be cleared: every key it holds is older than `window` at `now`.
    fn is_free(&self, now: i64, window: i64) -> bool {
        self.last_at <= now.saturating_sub(window)
    }
}

/// The slices set aside for the keys stored before the start, while they are read in.
#[derive(Debug)]
struct Warming {
    /// When the filter started (unix ms): older keys go into the reserved slices.
    start: i64,
    /// The stretch of time each reserved slice covers (ms).
    span: i64,
    /// Each slice's generation at the start: a slice cleared since then takes no old keys.
    generations: [u64; SLICES],
}

/// The filter; see the module docs.
#[derive(Debug)]
pub(super) struct DedupFilter {
    /// `SLICES` × `blocks` blocks of `BLOCK_WORDS` words.
    words: Vec<u64>,
    /// Blocks per slice.
    blocks: usize,
    /// Keys a slice takes before the next one may replace it early.
    capacity: usize,
    slices: [Slice; SLICES],
    /// The slice taking keys.
    current: usize,
    /// `Some` until every key stored before the start is in: until then every lookup answers
    /// "maybe".
    warming: Option<Warming>,
    /// Keys stored up to this time (unix ms) may have been dropped with a slice (possible only
    /// when the window changes between calls): a lookup reaching back to it answers "maybe".
    forgotten_until: i64,
}

impl DedupFilter {
    /// A filter of about `bytes` (at least one block per slice), cold, starting at `now` (unix
    /// ms) for a dedup window of `window`: the slices before the current one are reserved for
    /// the keys of the window's stretches before `now` until [`DedupFilter::warmed`].
    pub(super) fn new(bytes: usize, now: i64, window: Duration) -> Self {
        let blocks = (bytes / (SLICES * BLOCK_WORDS * 8)).max(1);
        let span = (duration_ms(window) / (SLICES as i64 - 1)).max(1);
        let mut slices = [Slice {
            keys: 0,
            first_at: now,
            last_at: i64::MIN,
            generation: 0,
        }; SLICES];
        for (age, slice) in slices[..SLICES - 1].iter_mut().rev().enumerate() {
            let end = now.saturating_sub(span.saturating_mul(age as i64));
            slice.first_at = end.saturating_sub(span);
            slice.last_at = end.saturating_sub(1);
        }
        Self {
            words: vec![0; SLICES * blocks * BLOCK_WORDS],
            blocks,
            capacity: (blocks * BLOCK_WORDS * 64 / BITS_PER_KEY).max(1),
            slices,
            current: SLICES - 1,
            warming: Some(Warming {
                start: now,
                span,
                generations: [0; SLICES],
            }),
            forgotten_until: i64::MIN,
        }
    }

    /// Whether a key may have been stored after `since` (unix ms): `false` only if it certainly
    /// was not.
    pub(super) fn may_contain(&self, key: &[u8; 32], since: i64) -> bool {
        if self.warming.is_some() || since < self.forgotten_until {
            return true;
        }
        let (block, bits) = probe(key, self.blocks);
        self.slices
            .iter()
            .enumerate()
            .any(|(i, slice)| slice.keys > 0 && slice.last_at > since && self.holds(i, block, bits))
    }

    /// Notes a key stored at `at` (unix ms) under a dedup window of `window`.
    pub(super) fn insert(&mut self, key: &[u8; 32], at: i64, window: Duration) {
        let window = duration_ms(window);
        let span = window / (SLICES as i64 - 1);
        let slice = self.slices[self.current];
        if slice.keys > 0 && (at - slice.first_at >= span || slice.keys >= self.capacity) {
            let next = (self.current + 1) % SLICES;
            if self.slices[next].is_free(at, window) {
                self.clear(next);
                self.slices[next].first_at = at;
                self.current = next;
            }
        }
        self.add(self.current, key, at);
    }

    /// Notes a key read from the table while warming: into the reserved slice of its time, or
    /// the current one if that slice was reused meanwhile (all it held had aged out).
    pub(super) fn insert_stored(&mut self, key: &[u8; 32], at: i64) {
        let slice = match &self.warming {
            Some(w) if at < w.start => {
                let age = (w.start - at - 1) / w.span;
                let slice = (SLICES - 2).saturating_sub(usize::try_from(age).unwrap_or(SLICES));
                (self.slices[slice].generation == w.generations[slice]).then_some(slice)
            }
            _ => None,
        };
        self.add(slice.unwrap_or(self.current), key, at);
    }

    /// Every key stored before the start after `since` (unix ms) is in: lookups use the filter
    /// from now on (those reaching back to `since` or before still answer "maybe"), and the
    /// reserved slices that took no keys are free.
    pub(super) fn warmed(&mut self, since: i64) {
        self.forgotten_until = self.forgotten_until.max(since);
        if let Some(w) = self.warming.take() {
            for (i, slice) in self.slices.iter_mut().enumerate() {
                if i != self.current && slice.keys == 0 && slice.generation == w.generations[i] {
                    slice.last_at = i64::MIN;
                }
            }
        }
    }

    fn add(&mut self, i: usize, key: &[u8; 32], at: i64) {
        let (block, bits) = probe(key, self.blocks);
        let at_word = (i * self.blocks + block) * BLOCK_WORDS;
        for (word, bit) in self.words[at_word..at_word + BLOCK_WORDS]
            .iter_mut()
            .zip(bits)
        {
            *word |= bit;
        }
        let slice = &mut self.slices[i];
        slice.keys += 1;
        slice.last_at = slice.last_at.max(at);
    }

    fn holds(&self, i: usize, block: usize, bits: [u64; BLOCK_WORDS]) -> bool {
        let at_word = (i * self.blocks + block) * BLOCK_WORDS;
        self.words[at_word..at_word + BLOCK_WORDS]
            .iter()
            .zip(bits)
            .all(|(word, bit)| word & bit != 0)
    }

    fn clear(&mut self, i: usize) {
        let slice = &mut self.slices[i];
        if slice.keys > 0 {
            self.forgotten_until = self.forgotten_until.max(slice.last_at);
        }
        *slice = Slice {
            keys: 0,
            first_at: slice.first_at,
            last_at: i64::MIN,
            generation: slice.generation + 1,
        };
        let words = i * self.blocks * BLOCK_WORDS..(i + 1) * self.blocks * BLOCK_WORDS;
        self.words[words].fill(0);
    }
}

/// A key's block and the bit it sets in each of the block's words. Keys are SHA-256 digests,
/// but any 32 bytes spread well: all four words are mixed in.
fn probe(key: &[u8; 32], blocks: usize) -> (usize, [u64; BLOCK_WORDS]) {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let low = mix(word(0) ^ word(1).rotate_left(21));
    let high = mix(word(2) ^ word(3).rotate_left(43));
    let h1 = mix(low ^ high.rotate_left(32));
    let h2 = mix(high ^ low.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
    let block = ((u128::from(h1) * blocks as u128) >> 64) as usize;
    let mut bits = [0u64; BLOCK_WORDS];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = 1 << ((h2 >> (i * 6)) & 63);
    }
    (block, bits)
}

/// SplitMix64's finaliser: every input bit moves about half the output bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reads the keys stored in the window before the filter started (`received_at > since`) into
/// it, a chunk per short read transaction in key order, at a low priority; marks it warmed at
/// the end. Stops early if the store is dropped. On an error the filter stays cold (every
/// lookup reads the table), which is slower and still exact.
pub(super) fn warm(filter: Weak<Mutex<DedupFilter>>, db: &Path, since: i64) {
    yield_to_the_acknowledging_path();
    let started = std::time::Instant::now();
    let read = || -> rusqlite::Result<Option<usize>> {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(2))?;
        // A scan needs no cache: each page is read once.
        conn.execute_batch("PRAGMA cache_size = -256")?;
        let mut chunk = conn.prepare(
            "SELECT hash, received_at FROM dedup WHERE hash > ?1 AND received_at > ?2
             ORDER BY hash LIMIT ?3",
        )?;
        let mut after: Vec<u8> = Vec::new();
        let mut total = 0;
        loop {
            let rows: Vec<(Vec<u8>, i64)> = chunk
                .query_map(rusqlite::params![after, since, WARM_CHUNK as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let Some(filter) = filter.upgrade() else {
                return Ok(None);
            };
            let mut filter = filter.lock().unwrap_or_else(PoisonError::into_inner);
            for (hash, at) in &rows {
                // Every key the store writes is 32 bytes; another could never match one.
                if let Ok(key) = <&[u8; 32]>::try_from(hash.as_slice()) {
                    filter.insert_stored(key, *at);
                }
            }
            total += rows.len();
            if let Some((last, _)) = rows.last() {
                after.clone_from(last);
            }
            if rows.len() < WARM_CHUNK {
                filter.warmed(since);
                return Ok(Some(total));
            }
        }
    };
    match read() {
        Ok(Some(keys)) => tracing::info!(
            keys,
            seconds = started.elapsed().as_secs_f64(),
            "dedup filter warmed from the stored keys"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot read the stored dedup keys into the dedup filter; every dedup lookup reads the table instead (exact, slower)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn key(n: u64) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(n.to_le_bytes()).into()
    }

    fn warmed(bytes: usize, now: i64, window: Duration) -> DedupFilter {
        let mut filter = DedupFilter::new(bytes, now, window);
        filter.warmed(i64::MIN);
        filter
    }

    #[test]
    fn cold_answers_maybe_until_warmed_then_knows_old_and_new_keys() {
        let now = 10_000_000;
        let mut filter = DedupFilter::new(1 << 20, now, HOUR);
        assert!(filter.may_contain(&key(1), now - 1));
        // Stored before the start, at several ages inside the window; one after.
        for (n, age) in [(1u64, 1i64), (2, 600_000), (3, 3_000_000), (4, 3_599_000)] {
            filter.insert_stored(&key(n), now - age);
        }
        filter.insert(&key(5), now + 10, HOUR);
        filter.warmed(now - 3_600_000);
        let since = now + 10 - 3_600_000;
        for n in 1..=5 {
            assert!(filter.may_contain(&key(n), since), "key {n}");
        }
        let absent = (100..10_100)
            .filter(|n| filter.may_contain(&key(*n), since))
            .count();
        assert!(absent < 10, "{absent} false positives in 10,000");
    }

    /// Keys inside the window are never dropped, however many arrive and however time moves:
    /// slices are reused only once all they hold has aged out.
    #[test]
    fn no_key_inside_the_window_is_ever_answered_absent() {
        let window = Duration::from_secs(70);
        let mut filter = warmed(8 * 64 * 4, 0, window);
        let mut stored: Vec<(u64, i64)> = Vec::new();
        for n in 0..10_000u64 {
            // Bursts and pauses: 20,000 keys over ~5 windows.
            let at = (n as i64 / 50) * 1_000 + (n as i64 % 7);
            filter.insert(&key(n), at, window);
            stored.push((n, at));
            if n % 97 == 0 {
                let since = at - 70_000;
                for (k, t) in stored.iter().filter(|(_, t)| *t > since) {
                    assert!(
                        filter.may_contain(&key(*k), since),
                        "key {k} stored at {t}, now {at}"
                    );
                }
            }
        }
    }

    /// A slice is replaced once it has its share of keys, if the next one has aged out: a burst
    /// spreads over the free slices instead of saturating one.
    #[test]
    fn a_full_slice_moves_on_to_a_free_one_and_the_rate_stays_low() {
        let bytes = 1 << 20;
        let mut filter = warmed(bytes, 0, HOUR);
        let n = (bytes * 8 / BITS_PER_KEY) as u64 * 7 / 8;
        for i in 0..n {
            filter.insert(&key(i), 1_000, HOUR);
        }
        assert!(filter.slices.iter().filter(|s| s.keys > 0).count() >= 7);
        let false_positives = (n..n + 100_000)
            .filter(|i| filter.may_contain(&key(*i), 0))
            .count();
        // Each of the 7 full slices answers "maybe" for < 1% of absent keys.
        assert!(false_positives < 5_000, "{false_positives} in 100,000");
        for i in (0..n).step_by(101) {
            assert!(filter.may_contain(&key(i), 0));
        }
    }

    /// With every slice holding keys inside the window, the current one keeps taking them: more
    /// "maybe", nothing forgotten.
    #[test]
    fn more_keys_than_its_size_saturate_it_without_forgetting() {
        let mut filter = warmed(SLICES * BLOCK_WORDS * 8, 0, HOUR);
        for i in 0..5_000 {
            filter.insert(&key(i), i as i64, HOUR);
        }
        assert_eq!(filter.forgotten_until, i64::MIN);
        assert!((0..5_000).all(|i| filter.may_contain(&key(i), -1)));
        // Saturated: absent keys are "maybe" too (each costs a table read).
        let maybe = (5_000..6_000)
            .filter(|i| filter.may_contain(&key(*i), -1))
            .count();
        assert!(maybe > 900, "{maybe}");
    }

    /// A key read while warming whose slice was reused meanwhile goes to the current slice.
    #[test]
    fn a_stored_key_whose_slice_was_reused_is_kept_in_the_current_one() {
        let window = Duration::from_secs(7);
        let mut filter = DedupFilter::new(1 << 16, 100_000, window);
        // Slice 0 (reserved for [93 s, 94 s)) ages out at 101 s; a burst then rotates into it.
        filter.insert(&key(1), 101_000, window);
        filter.insert(&key(2), 102_500, window);
        assert_eq!(filter.current, 0);
        // The next rotation goes to slice 1; slice 0's old stretch is gone.
        filter.insert(&key(4), 104_000, window);
        assert_eq!(filter.current, 1);
        filter.insert_stored(&key(3), 93_500);
        assert_eq!(filter.slices[1].keys, 2);
        filter.warmed(93_000);
        assert!(filter.may_contain(&key(3), 93_000));
    }

    #[test]
    fn any_32_bytes_are_spread_over_the_blocks() {
        let blocks = 1024;
        let mut used = vec![0u32; blocks];
        for i in 0..32u8 {
            for j in 0..32u8 {
                let mut k = [0u8; 32];
                k[31] = i;
                k[0] = j;
                used[probe(&k, blocks).0] += 1;
            }
        }
        assert!(used.iter().all(|n| *n < 8), "{:?}", used.iter().max());
    }

    /// Warming reads every key of the window from the table, across chunks, and only those.
    #[test]
    fn warming_reads_the_windows_keys_from_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE dedup (hash BLOB PRIMARY KEY, id TEXT NOT NULL, received_at INTEGER NOT NULL) WITHOUT ROWID",
        )
        .unwrap();
        let now = 50_000_000;
        let n = 2 * WARM_CHUNK as u64 + 17;
        {
            let mut insert = conn
                .prepare("INSERT INTO dedup VALUES (?1, 'id', ?2)")
                .unwrap();
            for i in 0..n {
                // Every tenth key is older than the window.
                let at = if i % 10 == 0 {
                    now - 3_700_000
                } else {
                    now - (i as i64 * 397) % 3_500_000
                };
                insert.execute(rusqlite::params![&key(i)[..], at]).unwrap();
            }
        }
        let filter = std::sync::Arc::new(Mutex::new(DedupFilter::new(1 << 20, now, HOUR)));
        warm(std::sync::Arc::downgrade(&filter), &path, now - 3_600_000);
        let filter = filter.lock().unwrap();
        assert!(filter.warming.is_none(), "warmed");
        assert!(
            filter.may_contain(&key(n + 1), now - 3_600_001),
            "before what was read: maybe"
        );
        let held: usize = filter.slices.iter().map(|s| s.keys).sum();
        assert_eq!(held as u64, n - n.div_ceil(10));
        let since = now - 3_600_000;
        assert!((0..n)
            .filter(|i| i % 10 != 0)
            .all(|i| filter.may_contain(&key(i), since)));
        let absent = (n..n + 10_000)
            .filter(|i| filter.may_contain(&key(*i), since))
            .count();
        assert!(absent < 100, "{absent}");
    }
}
