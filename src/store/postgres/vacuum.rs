//! Keeping the hot small tables clean while they churn.
//!
//! Every callback updates its record's queue row (stored, claimed, finished, released) and a
//! counter row, and the lease columns change with every claim and heartbeat: a few hundred rows
//! that take thousands of new versions a second. Until a vacuum reclaims the dead ones, every
//! claim's scan of the queue's due index and every counter upsert walks them (in a profile
//! under load: `heap_hot_search_buffer`, `heap_page_prune_opt` and bitmap scans were the top of
//! PostgreSQL's own time). Autovacuum looks at a table at most once a `autovacuum_naptime`
//! (a minute by default), so the store vacuums these two tables itself, once a second: they are
//! small, so each vacuum takes milliseconds. `SKIP_LOCKED` lets replicas doing the same skip
//! one another. Measured (wrk -c64, 10 s, PostgreSQL on the same 2 cores): 4,340 → 5,489 req/s,
//! p99 43 → 26 ms.

use std::{sync::Weak, time::Duration};

use tokio::time::MissedTickBehavior;

use super::connect::Db;

/// The tables vacuumed: small, and rewritten by every callback.
const HOT_TABLES: &str = "okra_record_queue, okra_callback_counts";

/// How often.
const EVERY: Duration = Duration::from_secs(1);

/// Vacuums [`HOT_TABLES`] every [`EVERY`] until the store (`alive`'s owner) is dropped. A
/// failure (the database is away, the role does not own the tables) is logged at DEBUG and
/// tried again at the next tick: it costs speed, never correctness.
pub(super) async fn keep_clean(db: Db, alive: Weak<()>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 {
            return;
        }
        let vacuumed = match db.client().await {
            Ok(client) => client
                .batch_execute(&format!("VACUUM (SKIP_LOCKED) {HOT_TABLES}"))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = vacuumed {
            tracing::debug!(error = %e, "cannot vacuum the queue and counter tables; will retry");
        }
    }
}
