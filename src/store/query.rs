//! What the operator's view asks of a store: finding callbacks by filter a page at a time,
//! each callback's attempt history, bulk replay, and cheap counts.
//!
//! Pages are keyset pages over the received order (`seq`): a [`Cursor`] names the last callback
//! of a page, so walking the pages lists each match exactly once even while callbacks arrive,
//! and no page costs more than its own rows.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Status, StoredCallback};

/// Which callbacks a search (or a bulk replay) is about. Every field narrows it (AND); an
/// empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these statuses; all statuses when empty.
    pub statuses: Vec<Status>,
    /// The callback type, matched case-insensitively.
    pub callback_type: Option<String>,
    /// The callback code, exactly as sent.
    pub callback_code: Option<String>,
    /// The record id.
    pub record: Option<String>,
    /// Received at or after this time.
    pub received_after: Option<DateTime<Utc>>,
    /// Received strictly before this time.
    pub received_before: Option<DateTime<Utc>>,
    /// Any of these sources (`okra` for Okra's); all sources when empty.
    pub sources: Vec<String>,
}

impl Filter {
    /// Whether the filter narrows anything (a bulk replay needs at least one condition).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// What a record's page ([`Scope::Record`]) walks: the record's callbacks of one type.
    pub(crate) fn of_record(record: &str, callback_type: &str) -> Self {
        Self {
            record: Some(record.to_owned()),
            callback_type: Some(callback_type.to_owned()),
            ..Self::default()
        }
    }

    /// The same filter narrowed to what can be replayed (delivered or dead callbacks; pending
    /// ones are on their way already); `None` when it names pending callbacks only.
    pub(crate) fn replayable(&self) -> Option<Self> {
        let mut filter = self.clone();
        filter.statuses.retain(|s| *s != Status::Pending);
        if filter.statuses.is_empty() {
            if !self.statuses.is_empty() {
                return None;
            }
            filter.statuses = vec![Status::Delivered, Status::Dead];
        }
        Some(filter)
    }

    /// The statuses as their stored codes, sorted and without repeats.
    pub(crate) fn status_codes(&self) -> Vec<i16> {
        let mut codes: Vec<i16> = self.statuses.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        codes
    }

    /// The type as matched: upper case (stored known types are upper case; unknown ones are
    /// compared upper-cased too).
    pub(crate) fn type_key(&self) -> Option<String> {
        self.callback_type.as_ref().map(|t| t.to_ascii_uppercase())
    }

    /// The sources as matched: sorted and without repeats.
    pub(crate) fn source_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.sources.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// A stable digest of what the filter selects, so a cursor made for one filter is refused
    /// with another (its position would mean nothing there).
    fn fingerprint(&self, scope: Scope) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update([scope as u8]);
        h.update(
            self.status_codes()
                .iter()
                .map(|c| *c as u8)
                .collect::<Vec<_>>(),
        );
        for part in [
            self.type_key(),
            self.callback_code.clone(),
            self.record.clone(),
            self.received_after
                .map(|t| t.timestamp_millis().to_string()),
            self.received_before
                .map(|t| t.timestamp_millis().to_string()),
        ] {
            match part {
                Some(p) => {
                    h.update([1]);
                    h.update((p.len() as u64).to_be_bytes());
                    h.update(p.as_bytes());
                }
                None => h.update([0]),
            }
        }
        // Only a filter naming sources adds them, so cursors made before sources still fit.
        for name in self.source_names() {
            h.update([2]);
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
        }
        let digest = h.finalize();
        digest[..8].try_into().expect("8 bytes")
    }
}

/// Which walk a cursor belongs to: the newest-first search or a record's oldest-first list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Scope {
    /// [`super::OperatorView::search`]: newest first.
    Search = 1,
    /// [`super::OperatorView::record_page`]: one record's callbacks, oldest first.
    Record = 2,
}

/// Where the next page starts: after the last callback of the previous one. Opaque to
/// clients; it only fits the filter (and walk) it was made for.
#[derive(Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The received-order position (`seq`) of the last callback listed.
    pub(crate) seq: i64,
    /// Which filter and walk it belongs to.
    fingerprint: [u8; 8],
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this server made (garbled, truncated or edited).
    #[error("the cursor is not one this server made: pass `next_cursor` from the previous page exactly as it was answered")]
    Malformed,
    /// A real cursor, but of another filter or listing.
    #[error("the cursor belongs to another filter: keep the filters of the page that answered it, or start again without `cursor`")]
    OtherFilter,
}

/// The format version, first byte of every cursor.
const CURSOR_VERSION: u8 = 1;
/// A fixed key mixed into the check bytes, so a cursor edited by hand fails the check.
const CURSOR_CHECK_KEY: &[u8] = b"okra-callbacks cursor v1";

impl Cursor {
    /// The cursor after the callback at `seq`, for `filter` in `scope`.
    pub(crate) fn after(seq: i64, filter: &Filter, scope: Scope) -> Self {
        Self {
            seq,
            fingerprint: filter.fingerprint(scope),
        }
    }

    fn check(bytes: &[u8]) -> [u8; 4] {
        let digest = Sha256::new()
            .chain_update(CURSOR_CHECK_KEY)
            .chain_update(bytes)
            .finalize();
        digest[..4].try_into().expect("4 bytes")
    }

    /// The opaque text form clients pass back as `cursor`.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(21);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes.extend_from_slice(&self.fingerprint);
        let check = Self::check(&bytes);
        bytes.extend_from_slice(&check);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor made by [`Cursor::encode`]; anything else is [`CursorError::Malformed`].
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CursorError::Malformed)?;
        if bytes.len() != 21 || bytes[0] != CURSOR_VERSION {
            return Err(CursorError::Malformed);
        }
        if Self::check(&bytes[..17]) != bytes[17..] {
            return Err(CursorError::Malformed);
        }
        let seq = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        if seq < 0 {
            return Err(CursorError::Malformed);
        }
        Ok(Self {
            seq,
            fingerprint: bytes[9..17].try_into().expect("8 bytes"),
        })
    }

    /// Checks that the cursor was made for `filter` in `scope`.
    pub fn fits(&self, filter: &Filter, scope: Scope) -> Result<(), CursorError> {
        if self.fingerprint == filter.fingerprint(scope) {
            Ok(())
        } else {
            Err(CursorError::OtherFilter)
        }
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// One page of callbacks and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page {
    /// The callbacks of this page, in the walk's order. Search results carry no body (lists
    /// show no payloads): `body` is empty.
    pub callbacks: Vec<StoredCallback>,
    /// The cursor of the next page; `None` on the last one.
    pub next: Option<Cursor>,
}

/// How one handler attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The handlers succeeded.
    Succeeded,
    /// A handler returned an error.
    Failed,
    /// The handlers ran past `--handler-timeout`.
    TimedOut,
    /// A handler panicked.
    Panicked,
}

impl AttemptOutcome {
    /// The API spelling: `succeeded`, `failed`, `timed_out` or `panicked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Panicked => "panicked",
        }
    }

    pub(crate) fn code(self) -> i16 {
        match self {
            Self::Succeeded => 0,
            Self::Failed => 1,
            Self::TimedOut => 2,
            Self::Panicked => 3,
        }
    }

    pub(crate) fn from_code(code: i64) -> Self {
        match code {
            0 => Self::Succeeded,
            2 => Self::TimedOut,
            3 => Self::Panicked,
            _ => Self::Failed,
        }
    }
}

/// One handler attempt, as the history of a callback keeps it. Never holds payload data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Which attempt of the callback this was, from 1 (counting across replays).
    pub attempt: u32,
    /// When the handlers were called.
    pub started_at: DateTime<Utc>,
    /// When they returned (or were given up on).
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What failed (e.g. the forward target's HTTP status); `None` on success.
    pub error: Option<String>,
}

/// Counts for the operator: how much is pending, delivered and dead, and of which type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Callbacks waiting for a (further) handler attempt.
    pub pending: u64,
    /// Callbacks the handlers took.
    pub delivered: u64,
    /// Callbacks that failed `--max-attempts` times.
    pub dead: u64,
    /// When the oldest pending callback (in received order) was received.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Stored callbacks per callback type, by type name (all sources together).
    pub by_type: Vec<(String, u64)>,
    /// Stored callbacks per source, by source name (`okra` for Okra's).
    pub by_source: Vec<(String, u64)>,
}

/// A page from up to `limit + 1` rows read (each with its `seq`): the extra row only says
/// that there is a next page.
pub(crate) fn page(
    mut rows: Vec<(StoredCallback, i64)>,
    limit: usize,
    filter: &Filter,
    scope: Scope,
) -> Page {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match rows.last() {
        Some((_, seq)) if more => Some(Cursor::after(*seq, filter, scope)),
        _ => None,
    };
    Page {
        callbacks: rows.into_iter().map(|(cb, _)| cb).collect(),
        next,
    }
}

/// Stats from `(counter key, status code, count)` rows and the oldest pending time; a counter
/// key is a source's type as [`super::queue_key`] makes it.
pub(crate) fn stats_of(counts: Vec<(String, i64, i64)>, oldest_pending: Option<i64>) -> Stats {
    let mut stats = Stats {
        oldest_pending_at: oldest_pending.map(super::from_millis),
        ..Stats::default()
    };
    for (key, status, n) in counts {
        let n = u64::try_from(n).unwrap_or(0);
        match Status::from_code(status) {
            Status::Pending => stats.pending += n,
            Status::Delivered => stats.delivered += n,
            Status::Dead => stats.dead += n,
        }
        let (source, callback_type) = super::split_queue_key(&key);
        add(&mut stats.by_type, callback_type, n);
        add(&mut stats.by_source, source, n);
    }
    for counts in [&mut stats.by_type, &mut stats.by_source] {
        counts.retain(|(_, n)| *n > 0);
        counts.sort();
    }
    stats
}

/// Adds `n` to `name`'s count in `counts`.
fn add(counts: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match counts.iter_mut().find(|(t, _)| t == name) {
        Some((_, total)) => *total += n,
        None => counts.push((name.to_owned(), n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_edits_and_other_filters() {
        let filter = Filter {
            statuses: vec![Status::Dead],
            ..Filter::default()
        };
        let cursor = Cursor::after(42, &filter, Scope::Search);
        let text = cursor.encode();
        let back = Cursor::decode(&text).unwrap();
        assert_eq!(back, cursor);
        assert_eq!(back.fits(&filter, Scope::Search), Ok(()));
        assert_eq!(
            back.fits(&Filter::default(), Scope::Search),
            Err(CursorError::OtherFilter)
        );
        assert_eq!(
            back.fits(&filter, Scope::Record),
            Err(CursorError::OtherFilter)
        );
        // Change one character: the check fails.
        let mut edited: Vec<char> = text.chars().collect();
        edited[3] = if edited[3] == 'A' { 'B' } else { 'A' };
        let edited: String = edited.into_iter().collect();
        assert_eq!(Cursor::decode(&edited), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode("abc"), Err(CursorError::Malformed));
        assert_eq!(Cursor::decode("not base64!"), Err(CursorError::Malformed));
    }

    #[test]
    fn stats_count_per_type_and_per_source() {
        use crate::store::queue_key;
        let rows = vec![
            ("TRANSACTIONS".to_owned(), 0, 2),
            (queue_key("plaid", "TRANSACTIONS").into_owned(), 1, 3),
            (
                queue_key("mono", "mono.events.account_updated").into_owned(),
                2,
                1,
            ),
            (queue_key("mono", "gone").into_owned(), 1, 0),
        ];
        let stats = stats_of(rows, None);
        assert_eq!((stats.pending, stats.delivered, stats.dead), (2, 3, 1));
        assert_eq!(
            stats.by_type,
            vec![
                ("TRANSACTIONS".into(), 5),
                ("mono.events.account_updated".into(), 1)
            ]
        );
        assert_eq!(
            stats.by_source,
            vec![("mono".into(), 1), ("okra".into(), 2), ("plaid".into(), 3)]
        );
    }

    #[test]
    fn a_cursor_fits_only_its_sources() {
        let okra = Filter {
            sources: vec!["okra".into()],
            ..Filter::default()
        };
        let both = Filter {
            sources: vec!["plaid".into(), "okra".into(), "plaid".into()],
            ..Filter::default()
        };
        let same = Filter {
            sources: vec!["okra".into(), "plaid".into()],
            ..Filter::default()
        };
        let c = Cursor::after(7, &both, Scope::Search);
        assert_eq!(c.fits(&same, Scope::Search), Ok(()));
        assert_eq!(c.fits(&okra, Scope::Search), Err(CursorError::OtherFilter));
        assert_eq!(
            c.fits(&Filter::default(), Scope::Search),
            Err(CursorError::OtherFilter)
        );
    }

    #[test]
    fn the_type_is_matched_in_any_case() {
        let lower = Filter {
            callback_type: Some("transactions".into()),
            ..Filter::default()
        };
        let upper = Filter {
            callback_type: Some("TRANSACTIONS".into()),
            ..Filter::default()
        };
        assert_eq!(lower.type_key(), upper.type_key());
        let c = Cursor::after(1, &lower, Scope::Search);
        assert_eq!(c.fits(&upper, Scope::Search), Ok(()));
    }
}
