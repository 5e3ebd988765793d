//! The metric names this crate emits (Prometheus conventions: `_total` counters, `_seconds`
//! histograms in base units, gauges named after what they measure).

/// Counter `{callback_type, callback_code, outcome=stored|duplicate}`: callbacks accepted by
/// `POST /v1/callback`. Types and codes this crate does not know are counted as `other`, so
/// a sender cannot grow the label set without bound.
pub const RECEIVED: &str = "okra_callbacks_received_total";
/// Counter `{reason, source}`: `POST /v1/callback` (source `okra`) and `POST /v1/sources/{name}`
/// requests refused; `reason` is the error body's code (`invalid_json`, `unauthorized`,
/// `too_many_requests`, `store_unavailable`, …); `source` is `unknown` for a name not configured.
pub const REJECTED: &str = "okra_callbacks_rejected_total";
/// Counter: requests answered 408 because they took longer than `--request-timeout`.
pub const REQUESTS_TIMED_OUT: &str = "okra_requests_timed_out_total";
/// Counter `{source}`: deliveries answered `"duplicate": true`.
pub const DUPLICATES: &str = "okra_duplicates_total";
/// Histogram `{source}`: from the request reaching the handler to the 2xx (the store commit
/// included).
pub const ACK_DURATION: &str = "okra_ack_duration_seconds";
/// Histogram `{operation=insert}`: how long the durable store write took.
pub const STORE_WRITE_DURATION: &str = "okra_store_write_duration_seconds";
/// Counter `{handler, source, outcome=ok|error|panic|timeout}`: handler calls. The dispatcher
/// counts the handler it was given; [`crate::AllOf`] also counts each of its members by name.
pub const HANDLER_ATTEMPTS: &str = "okra_handler_attempts_total";
/// Histogram `{handler, source}`: how long handler calls took.
pub const HANDLER_DURATION: &str = "okra_handler_duration_seconds";
/// Counter `{source, outcome=delivered|retry|dead}`: what the dispatcher decided after each
/// attempt.
pub const DELIVERY_OUTCOMES: &str = "okra_delivery_outcomes_total";
/// Counter `{source}`: attempts that failed and were scheduled again.
pub const RETRIES: &str = "okra_retries_total";
/// Counter `{source}`: callbacks declared dead after `--max-attempts` failures.
pub const DEAD_LETTERS: &str = "okra_dead_letters_total";
/// Gauge: callbacks waiting for a (further) handler attempt, read from the store when
/// `/metrics` is scraped — the name the alert rules use (`deploy/prometheus-alerts.yml`).
pub const CALLBACKS_PENDING: &str = "okra_callbacks_pending";
/// Gauge: dead callbacks kept for inspection and replay, read at each scrape (alert on `> 0`).
pub const CALLBACKS_DEAD: &str = "okra_callbacks_dead";
/// Gauge: seconds the oldest pending callback has waited (0 when none is pending), read at
/// each scrape.
pub const CALLBACKS_OLDEST_PENDING_AGE: &str = "okra_callbacks_oldest_pending_age_seconds";
/// Gauge: record leases this replica holds (PostgreSQL), as of its last heartbeat.
pub const LEASES_HELD: &str = "okra_leases_held";
/// Gauge: 1 while deliveries give way to a burst of callbacks being stored, else 0.
pub const DELIVERY_DEFERRED: &str = "okra_delivery_deferred";
/// Counter: leases renewed by the heartbeat (each lease each beat).
pub const LEASE_RENEWALS: &str = "okra_lease_renewals_total";
/// Counter: heartbeats that could not renew this replica's leases (database unreachable or
/// too slow); once none succeeds for a whole `--lease`, workers stop before their next call.
pub const LEASE_RENEWAL_FAILURES: &str = "okra_lease_renewal_failures_total";
/// Counter: records claimed from a replica whose lease ran out (it was killed, paused or cut
/// off); each is a failover.
pub const LEASE_TAKEOVERS: &str = "okra_lease_takeovers_total";
/// Counter: records this replica stopped serving because another took its lease over (its
/// outcome was refused, or a heartbeat found the lease gone).
pub const LEASES_LOST: &str = "okra_leases_lost_total";
/// Gauge `{version}`: always 1; tells dashboards which version runs.
pub const BUILD_INFO: &str = "okra_build_info";
