//! The durable inbox: where callbacks are stored before they are acknowledged, and where the
//! dispatcher claims them from.
//!
//! Two implementations share one [`Store`] interface: [`SqliteStore`] (embedded, one process,
//! group commit) and [`PostgresStore`] (shared by several replicas, leases with
//! `FOR UPDATE SKIP LOCKED`).
//!
//! Work is claimed per *record*, not per callback: a record's queue row carries a lease, so one
//! worker in the whole fleet hands a record's callbacks to the handlers, one at a time, in the
//! order they were received.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};

mod conditions;
mod postgres;
mod query;
mod sources;
mod sqlite;

pub use sources::{dedup_key, queue_key, split_queue_key};

pub use postgres::PostgresStore;
pub use query::{Attempt, AttemptOutcome, Cursor, CursorError, Filter, Page, Scope, Stats};
pub use sqlite::{SqliteStore, DEDUP_FILTER_BYTES};

/// The store could not do what was asked. Callers answer 503 and try again later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation (connection lost, disk full, …).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database URL or file cannot be used.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The worker no longer holds the record's lease: another worker (in this replica or
    /// another) claimed the record after the lease expired, or the lease was released. The
    /// outcome was *not* recorded (the lease's holder decides the callback's fate: fencing); the
    /// worker must stop serving the record, or two workers would hand its callbacks to handlers
    /// at once.
    ///
    /// Only [`PostgresStore`] answers this, from [`Delivery::finish_attempt`] and
    /// [`Delivery::finish_last_attempt`]: a
    /// lease that merely expired, with nobody claiming the record since, is still the worker's
    /// and is extended. [`SqliteStore`]'s leases all belong to its one process, so it records
    /// the outcome and never answers this.
    #[error("the lease on record {0} was taken over by another worker")]
    LeaseLost(String),
}

impl StoreError {
    /// Why the store is unavailable, in a few words an operator can act on: `disk full`,
    /// `read-only`, `database unreachable` or `timeout` (`unavailable` when the database did not
    /// say). Named in `store_unavailable` bodies and `/readyz`.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Unavailable(message) => CAUSES
                .iter()
                .find(|cause| message.starts_with(&format!("{cause}:")))
                .copied()
                .unwrap_or("unavailable"),
            Self::Config(_) => "invalid configuration",
            Self::LeaseLost(_) => "lease lost",
        }
    }
}

/// The causes [`StoreError::cause`] names; an [`StoreError::Unavailable`] message starts with
/// one of them and a colon when its cause is known.
const CAUSES: [&str; 4] = ["disk full", "read-only", "database unreachable", "timeout"];

/// How a store talks to its database. The embedded store ignores what does not apply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The most connections one process opens (PostgreSQL). Several replicas together must
    /// stay under the server's `max_connections`.
    pub max_connections: usize,
    /// How long one database operation (waiting for a connection, connecting, one query) may
    /// take before the store counts as unavailable. Bounds how long `POST /v1/callback` waits
    /// before answering 503 while the database cannot be reached.
    pub timeout: Duration,
    /// The dedup window the embedded store's dedup filter is laid out for (`--dedup-window`).
    pub dedup_window: Duration,
    /// The embedded store's dedup filter, in bytes (`--dedup-filter-mb`): a fixed amount of
    /// memory, however many keys the window holds.
    pub dedup_filter_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            timeout: Duration::from_secs(5),
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_filter_bytes: sqlite::DEDUP_FILTER_BYTES,
        }
    }
}

/// Where a stored callback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for (another) handler attempt.
    Pending,
    /// The handlers succeeded.
    Delivered,
    /// The handlers failed `--max-attempts` times in a row; kept for inspection and replay.
    Dead,
}

impl Status {
    /// The API spelling: `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub(crate) fn code(self) -> i16 {
        match self {
            Self::Pending => 0,
            Self::Delivered => 1,
            Self::Dead => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Self {
        match code {
            0 => Self::Pending,
            1 => Self::Delivered,
            _ => Self::Dead,
        }
    }

    /// Every status, in code order.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// The status an API spelling names (`pending`, `delivered`, `dead`; any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// A callback about to be stored.
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// The id to give it (time-ordered, unique).
    pub id: String,
    /// The source that sent it: `okra` for Okra's, else the configured source's name.
    pub source: String,
    /// The record it is about (its own id where the source has no record).
    pub record: String,
    /// Its type, as the model reports it.
    pub callback_type: String,
    /// Its code, as sent.
    pub callback_code: Option<String>,
    /// The provider's id for the event, where the source gives one.
    pub event_id: Option<String>,
    /// The body exactly as received.
    pub body: Bytes,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

#[cfg(test)]
impl NewCallback {
    /// An Okra BALANCE callback without a code for `record`, received now: the stores' unit
    /// tests change the fields they are about.
    pub(crate) fn sample(id: &str, record: &str, body: impl Into<Bytes>) -> Self {
        Self {
            id: id.into(),
            source: "okra".into(),
            record: record.into(),
            callback_type: "BALANCE".into(),
            callback_code: None,
            event_id: None,
            body: body.into(),
            received_at: Utc::now(),
        }
    }
}

/// The answer to [`Ingest::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The callback's id; for a duplicate, the id of the first delivery.
    pub id: String,
    /// Whether the same bytes were stored within the dedup window.
    pub duplicate: bool,
}

/// A callback as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredCallback {
    /// Its id.
    pub id: String,
    /// The source that sent it (`okra` for Okra's).
    pub source: String,
    /// The record it is about.
    pub record: String,
    /// Its type.
    pub callback_type: String,
    /// Its code, if it had one.
    pub callback_code: Option<String>,
    /// The provider's id for the event, where the source gives one.
    pub event_id: Option<String>,
    /// The body exactly as received.
    pub body: Bytes,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Where delivery stands.
    pub status: Status,
    /// Handler calls made so far, the successful one included.
    pub attempts: u32,
    /// Handler calls since it was stored or last replayed; compared with `--max-attempts`.
    pub cycle_attempts: u32,
    /// The last handler error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending callbacks only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was last delivered or declared dead.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A record claimed by one worker: its pending callbacks, oldest first.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The record's queue key ([`queue_key`]: the record itself for Okra's, the source and the
    /// record for another source's), as [`Delivery::release`] takes it.
    pub record: String,
    /// Its pending callbacks in received order (at most the batch size asked for).
    pub callbacks: Vec<StoredCallback>,
    /// The replica whose lease ran out before this claim (it stopped renewing: killed, paused
    /// or cut off), when the record was taken over rather than found free; counted as a
    /// takeover.
    pub taken_over_from: Option<String>,
}

/// What one heartbeat ([`Delivery::renew`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Leases renewed (held by the owner and still its own).
    pub renewed: usize,
    /// Records whose lease the owner held but lost: another worker claimed them after the lease
    /// ran out. The owner must stop serving them.
    pub lost: Vec<String>,
}

/// Who holds a record's lease and until when (PostgreSQL), for debugging a stuck record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The replica (and process) holding it, as `--lease` owners are named: `HOST-PID-…`.
    pub owner: String,
    /// When it runs out unless renewed, by the database's clock.
    pub until: DateTime<Utc>,
    /// How many times the record was claimed: each claim takes the next generation, and writes
    /// naming an older one are refused (fencing).
    pub generation: i64,
}

/// What happened to one handler attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The handlers succeeded.
    Delivered,
    /// They failed; try again at `at`. The record waits until then.
    Retry {
        /// When to try again.
        at: DateTime<Utc>,
        /// Why it failed.
        error: String,
    },
    /// They failed for the last time; the record's later callbacks go on.
    Dead {
        /// Why it failed.
        error: String,
    },
}

/// What a worker does after [`Delivery::finish_last_attempt`] recorded its last outcome.
#[derive(Debug, Clone)]
pub enum AfterLast {
    /// Go on with the record: the lease was kept and extended, and these (never none) are its
    /// next due callbacks, oldest first.
    Next(Vec<StoredCallback>),
    /// Leave the record: the lease was given up (or was not this worker's), and the record is
    /// claimable again once due.
    Released,
    /// Only the outcome was recorded (the trait's default): the worker still holds the lease and
    /// gives it up with [`Delivery::release`].
    StillLeased,
}

impl Outcome {
    /// What the outcome writes into its callback's row: the new status, the last error and when
    /// the next attempt is due.
    fn as_row(&self) -> (Status, Option<&str>, Option<DateTime<Utc>>) {
        match self {
            Self::Delivered => (Status::Delivered, None, None),
            Self::Dead { error } => (Status::Dead, Some(error), None),
            Self::Retry { at, error } => (Status::Pending, Some(error), Some(*at)),
        }
    }
}

/// The durable inbox, whole: every part the receiver uses, each named after who uses it.
/// Implemented for every type that implements the four parts; a receiver runs on an
/// `Arc<dyn Store>`, and each user of the store may be handed only its part
/// (`Arc<dyn Delivery>` from an `Arc<dyn Store>`, by coercion). Every method is safe to call
/// concurrently.
pub trait Store: Ingest + Delivery + OperatorView + Retention {}

impl<T: Ingest + Delivery + OperatorView + Retention + ?Sized> Store for T {}

/// What the acknowledging path needs: storing a callback before it is acknowledged, and
/// whether the store can take one now.
#[async_trait]
pub trait Ingest: Send + Sync + 'static {
    /// Stores a callback durably, unless the same bytes were stored less than `dedup_window`
    /// ago. Returns only once the data is committed.
    async fn insert(&self, cb: NewCallback, dedup_window: Duration)
        -> Result<Inserted, StoreError>;

    /// Checks that the database answers (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// What the dispatcher needs: claiming records with due work under a lease, recording each
/// handler attempt, and giving the leases back.
#[async_trait]
pub trait Delivery: Send + Sync + 'static {
    /// Whether callbacks queue to be stored, now or a moment ago, behind write batches that the
    /// store cannot commit as fast as they arrive: a burst that the acknowledging path meets in
    /// the store. The dispatcher then takes no new work for a while
    /// ([`DispatchConfig::max_delivery_deferral`](crate::DispatchConfig::max_delivery_deferral)),
    /// so the store's time goes to acknowledging. A store whose acknowledging path does not
    /// compete with the dispatcher's work answers `false`, the default.
    fn acknowledgements_queued(&self) -> bool {
        false
    }

    /// Leases up to `max_records` records that have due work and no live lease, for `lease`,
    /// and returns up to `per_record` pending callbacks of each, oldest first.
    async fn claim(
        &self,
        owner: &str,
        max_records: usize,
        per_record: usize,
        lease: Duration,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Records one attempt's outcome, and the attempt in the callback's history (in the same
    /// durable write), and extends `owner`'s lease on the record.
    ///
    /// If `owner` no longer holds the lease (it expired and another worker claimed the record),
    /// nothing is recorded and the answer is [`StoreError::LeaseLost`]: the caller must stop
    /// serving the record.
    async fn finish_attempt(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
    ) -> Result<(), StoreError>;

    /// Records the outcome of the last callback a worker holds of a record, like
    /// [`Delivery::finish_attempt`] (history included), and decides in the same durable write
    /// whether the worker goes on with the record: [`AfterLast::Next`] with up to `per_record`
    /// more due callbacks (oldest first; the lease is kept and extended), or
    /// [`AfterLast::Released`] when none is due — always so after an [`Outcome::Retry`] — and
    /// the record is claimable again.
    ///
    /// A worker that no longer holds the lease hears [`StoreError::LeaseLost`] from
    /// [`PostgresStore`]; [`SqliteStore`] answers [`AfterLast::Released`] and leaves the lease
    /// to its holder; it records the outcome, PostgreSQL does not (fencing).
    ///
    /// The default records the outcome with [`Delivery::finish_attempt`] and answers
    /// [`AfterLast::StillLeased`]: the worker then releases the record itself and the next claim
    /// picks it up again. Both built-in stores do it in one write, which saves a release and a
    /// claim (two waits for a commit) per run of a record's callbacks.
    async fn finish_last_attempt(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        attempt: &Attempt,
        lease: Duration,
        per_record: usize,
    ) -> Result<AfterLast, StoreError> {
        let _ = per_record;
        self.finish_attempt(owner, cb, outcome, attempt, lease)
            .await
            .map(|()| AfterLast::StillLeased)
    }

    /// Renews every lease `owner` holds for another `lease`, in one write (the heartbeat, run
    /// every third of a lease while handlers run). Leases another worker took over meanwhile
    /// are not renewed: they are answered in [`Renewal::lost`].
    ///
    /// The default does nothing: the embedded store has one process, whose leases nobody else
    /// can take.
    async fn renew(&self, owner: &str, lease: Duration) -> Result<Renewal, StoreError> {
        let _ = (owner, lease);
        Ok(Renewal::default())
    }

    /// Gives up `owner`'s lease on a record, named by its queue key ([`Claim::record`]).
    async fn release(&self, owner: &str, record: &str) -> Result<(), StoreError>;

    /// Gives up every lease `owner` holds (on shutdown).
    async fn release_all(&self, owner: &str) -> Result<(), StoreError>;
}

/// What the operator's view needs (the API's callbacks and search, the console, `/metrics`):
/// finding callbacks, their history and their lease, replaying them, and the counts.
#[async_trait]
pub trait OperatorView: Send + Sync + 'static {
    /// One callback by id.
    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError>;

    /// Up to `limit` callbacks matching `filter`, newest first, starting after `after` (a
    /// cursor of a previous page of the same filter, [`Scope::Search`]). Without bodies.
    async fn search(
        &self,
        filter: &Filter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError>;

    /// Up to `limit` of an Okra record's callbacks of `callback_type`, oldest first, starting
    /// after `after` ([`Scope::Record`]), with their bodies; `None` when nothing at all was ever
    /// received from Okra for the record (`GET /v1/callback` answers Okra's callbacks only).
    async fn record_page(
        &self,
        record: &str,
        callback_type: &str,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Option<Page>, StoreError>;

    /// A callback's handler attempts, oldest first (empty for an unknown id).
    async fn history(&self, id: &str) -> Result<Vec<Attempt>, StoreError>;

    /// Who holds the lease of the record whose queue key ([`StoredCallback::queue_key`]) is
    /// `record`, if anyone does (a lease that ran out is nobody's). `None` from the embedded
    /// store, which has no leases to show.
    async fn lease_of(&self, record: &str) -> Result<Option<LeaseInfo>, StoreError> {
        let _ = record;
        Ok(None)
    }

    /// Makes a callback pending again, due now, with a fresh attempt budget. `false` if there
    /// is no such callback.
    async fn replay(&self, id: &str) -> Result<bool, StoreError>;

    /// Replays every dead or delivered callback matching `filter` (as
    /// [`OperatorView::replay`]); returns how many.
    async fn replay_matching(&self, filter: &Filter) -> Result<u64, StoreError>;

    /// Counts per status and per type, and the oldest pending callback — from counters kept
    /// on write and indexes, never a scan of the callbacks.
    async fn stats(&self) -> Result<Stats, StoreError>;
}

/// What the retention task needs: deleting what is finished and old.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Deletes delivered and dead callbacks (with their attempt history), and dedup keys, older
    /// than `before`; returns how many callbacks were deleted.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Opens the store a `--database-url` names: `sqlite://PATH` (the file created if missing, in a directory that exists) or
/// `postgres://…`; runs its migrations. Uses the default [`StoreOptions`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, &StoreOptions::default()).await
}

/// Like [`open`], with explicit connection settings.
pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        return Ok(Arc::new(SqliteStore::open_with(path, options).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::connect_with(url, options).await?));
    }
    Err(StoreError::Config(format!(
        "unsupported database URL `{}`: use sqlite://PATH (e.g. sqlite://okra-callbacks.db) or postgres://USER@HOST/DB",
        crate::telemetry::redact(url)
    )))
}

/// A stored callback's columns, in the order both stores read them into a [`StoredCallback`].
const COLUMNS: &str = "id, record, callback_type, callback_code, body, received_at, status, \
                       attempts, cycle_attempts, last_error, next_attempt_at, finished_at, \
                       source, event_id";

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsupported_urls_are_refused_with_a_hint() {
        let err = open("mysql://root:pw@localhost/x").await.err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("sqlite://PATH"), "{msg}");
        assert!(!msg.contains("pw"), "{msg}");
    }
}
