//! The `Store` contract, the same for SQLite and PostgreSQL: leases, ordering, retries, replay,
//! backlog and retention; and, on PostgreSQL, two stores on one database as two replicas.

use std::time::{Duration, Instant};

use chrono::Utc;
use okra_callbacks::{
    async_trait,
    store::{
        self, AfterLast, Attempt, AttemptOutcome, Delivery, Filter, NewCallback, OperatorView,
        Outcome, PostgresStore, Status, Store, StoreError, StoredCallback,
    },
};

use crate::both_stores;
use crate::support::{
    callback, eventually, fresh_postgres_database, postgres_url, Backend, TestDb,
};

/// What these tests ask of a store beyond its parts, written with them: recording an outcome
/// whose attempt the test did not time, and reading all of a record's callbacks.
#[async_trait]
pub(crate) trait Shortcuts: Delivery + OperatorView {
    /// [`Delivery::finish_attempt`] with an attempt that started and ended now.
    async fn finish(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let attempt = untimed(cb, &outcome);
        self.finish_attempt(owner, cb, outcome, &attempt, lease)
            .await
    }

    /// [`Delivery::finish_last_attempt`] with an attempt that started and ended now.
    async fn finish_last(
        &self,
        owner: &str,
        cb: &StoredCallback,
        outcome: Outcome,
        lease: Duration,
        per_record: usize,
    ) -> Result<AfterLast, StoreError> {
        let attempt = untimed(cb, &outcome);
        self.finish_last_attempt(owner, cb, outcome, &attempt, lease, per_record)
            .await
    }

    /// An Okra record's callbacks of every type, oldest first (without their bodies).
    async fn callbacks_of(&self, record: &str) -> Vec<StoredCallback> {
        let filter = Filter {
            record: Some(record.to_owned()),
            sources: vec!["okra".to_owned()],
            ..Filter::default()
        };
        let mut callbacks = self.search(&filter, 10_000, None).await.unwrap().callbacks;
        callbacks.reverse();
        callbacks
    }
}

impl<S: Delivery + OperatorView + ?Sized> Shortcuts for S {}

/// The history entry of an attempt that ended in `outcome`, started and finished now.
fn untimed(cb: &StoredCallback, outcome: &Outcome) -> Attempt {
    let now = Utc::now();
    let (outcome, error) = match outcome {
        Outcome::Delivered => (AttemptOutcome::Succeeded, None),
        Outcome::Retry { error, .. } | Outcome::Dead { error } => {
            (AttemptOutcome::Failed, Some(error.clone()))
        }
    };
    Attempt {
        attempt: cb.attempts + 1,
        started_at: now,
        finished_at: now,
        outcome,
        error,
    }
}

const LEASE: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(3600);

fn new_cb(id: &str, record: &str, age: chrono::Duration) -> NewCallback {
    NewCallback {
        id: id.into(),
        source: "okra".into(),
        event_id: None,
        record: record.into(),
        callback_type: "BALANCE".into(),
        callback_code: Some("BALANCE_SUCCESS".into()),
        body: format!(r#"{{"callback_type":"BALANCE","record":"{record}","id":"{id}"}}"#)
            .into_bytes()
            .into(),
        received_at: Utc::now() - age,
    }
}

async fn open(backend: Backend) -> (TestDb, std::sync::Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.unwrap();
    (db, store)
}

async fn a_leased_record_is_not_claimed_again_until_released_or_expired(backend: Backend) {
    let (_db, store) = open(backend).await;
    for (i, record) in ["a", "a", "b"].iter().enumerate() {
        store
            .insert(
                new_cb(&format!("cb{i}"), record, chrono::Duration::zero()),
                WINDOW,
            )
            .await
            .unwrap();
    }
    let first = store.claim("w1", 10, 10, LEASE).await.unwrap();
    let mut records: Vec<_> = first
        .iter()
        .map(|c| (c.record.clone(), c.callbacks.len()))
        .collect();
    records.sort();
    assert_eq!(records, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    let a = first.iter().find(|c| c.record == "a").unwrap();
    assert_eq!(
        a.callbacks
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["cb0", "cb1"],
        "oldest first"
    );
    assert!(
        store.claim("w2", 10, 10, LEASE).await.unwrap().is_empty(),
        "leased records are not claimed twice"
    );

    // Releasing without finishing makes the record claimable again, with the same work.
    store.release("w1", "b").await.unwrap();
    let again = store.claim("w2", 10, 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].callbacks[0].id, "cb2");

    // An expired lease returns the record to the pool.
    let (_db2, store) = open(backend).await;
    store
        .insert(new_cb("x", "c", chrono::Duration::zero()), WINDOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim("w1", 10, 10, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = store.claim("w2", 10, 10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1, "a crashed worker's lease expires");
    // The late worker's release does not drop the new owner's lease.
    store.release("w1", "c").await.unwrap();
    assert!(store.claim("w3", 10, 10, LEASE).await.unwrap().is_empty());
}

async fn a_retry_holds_the_record_until_due_and_counts_attempts(backend: Backend) {
    let (_db, store) = open(backend).await;
    store
        .insert(new_cb("r0", "rec", chrono::Duration::zero()), WINDOW)
        .await
        .unwrap();
    store
        .insert(new_cb("r1", "rec", chrono::Duration::zero()), WINDOW)
        .await
        .unwrap();
    let claim = store.claim("w", 10, 10, LEASE).await.unwrap().remove(0);
    // Far enough out that the "not due yet" claim below is never late for it on a busy
    // machine; the claim after polls until it is due instead of sleeping a fixed time.
    let due = Utc::now() + chrono::Duration::milliseconds(1000);
    store
        .finish(
            "w",
            &claim.callbacks[0],
            Outcome::Retry {
                at: due,
                error: "boom".into(),
            },
            LEASE,
        )
        .await
        .unwrap();
    store.release("w", "rec").await.unwrap();
    assert!(
        store.claim("w", 10, 10, LEASE).await.unwrap().is_empty(),
        "not due yet"
    );
    let cb = store.get("r0").await.unwrap().unwrap();
    assert_eq!(
        (cb.status, cb.attempts, cb.last_error.as_deref()),
        (Status::Pending, 1, Some("boom"))
    );
    let claim = eventually(Duration::from_secs(10), "the retry fell due", || async {
        store.claim("w", 10, 10, LEASE).await.unwrap().pop()
    })
    .await;
    assert!(Utc::now() >= due, "claimed before it was due");
    assert_eq!(
        claim.callbacks[0].id, "r0",
        "the failed callback is still first"
    );
    store
        .finish("w", &claim.callbacks[0], Outcome::Delivered, LEASE)
        .await
        .unwrap();
    store
        .finish(
            "w",
            &claim.callbacks[1],
            Outcome::Dead {
                error: "bad".into(),
            },
            LEASE,
        )
        .await
        .unwrap();
    // Finishing twice (a redelivery after a lost lease) changes nothing.
    store
        .finish(
            "w",
            &claim.callbacks[0],
            Outcome::Dead {
                error: "late".into(),
            },
            LEASE,
        )
        .await
        .unwrap();
    store.release("w", "rec").await.unwrap();
    let r0 = store.get("r0").await.unwrap().unwrap();
    assert_eq!(
        (r0.status, r0.attempts, r0.last_error),
        (Status::Delivered, 2, None)
    );
    let backlog = store.stats().await.unwrap();
    assert_eq!((backlog.pending, backlog.dead), (0, 1));
    assert!(
        store.claim("w", 10, 10, LEASE).await.unwrap().is_empty(),
        "nothing left"
    );

    assert!(store.replay("r1").await.unwrap());
    assert!(!store.replay("nope").await.unwrap());
    let claim = store.claim("w", 10, 10, LEASE).await.unwrap().remove(0);
    assert_eq!(claim.callbacks.len(), 1);
    assert_eq!(
        (
            claim.callbacks[0].id.as_str(),
            claim.callbacks[0].cycle_attempts
        ),
        ("r1", 0)
    );
    assert_eq!(store.stats().await.unwrap().pending, 1);
}

async fn the_backlog_and_retention(backend: Backend) {
    let (_db, store) = open(backend).await;
    store
        .insert(new_cb("old-done", "p", chrono::Duration::days(100)), WINDOW)
        .await
        .unwrap();
    store
        .insert(
            new_cb("old-pending", "q", chrono::Duration::days(100)),
            WINDOW,
        )
        .await
        .unwrap();
    store
        .insert(new_cb("new-done", "p", chrono::Duration::zero()), WINDOW)
        .await
        .unwrap();
    let backlog = store.stats().await.unwrap();
    assert_eq!(backlog.pending, 3);
    let age = Utc::now() - backlog.oldest_pending_at.unwrap();
    assert!(age > chrono::Duration::days(99), "{age}");
    let claims = store.claim("w", 10, 10, LEASE).await.unwrap();
    let p = claims.iter().find(|c| c.record == "p").unwrap();
    for cb in &p.callbacks {
        store
            .finish("w", cb, Outcome::Delivered, LEASE)
            .await
            .unwrap();
    }
    let deleted = store
        .prune(Utc::now() - chrono::Duration::days(90))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store.get("old-done").await.unwrap().is_none());
    assert!(
        store.get("old-pending").await.unwrap().is_some(),
        "pending work is never pruned"
    );
    assert!(store.get("new-done").await.unwrap().is_some());
    let listing = store.record_page("p", "BALANCE", 100, None).await.unwrap();
    assert!(
        matches!(&listing, Some(page) if page.callbacks.len() == 1),
        "{listing:?}"
    );
    let listing = store.record_page("p", "AUTH", 100, None).await.unwrap();
    assert!(
        matches!(&listing, Some(page) if page.callbacks.is_empty()),
        "{listing:?}"
    );
    assert!(store
        .record_page("nobody", "AUTH", 100, None)
        .await
        .unwrap()
        .is_none());
}

/// Many callbacks stored at once — the same body several times among them — come out as one
/// stored callback per body, every copy answered with that callback's id, and each record's
/// queue counting exactly its callbacks. PostgreSQL stores concurrent callbacks together in one
/// transaction; this is what that must not change.
async fn concurrent_inserts_store_each_body_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut calls = Vec::new();
    for copy in 0..3 {
        for record in 0..40 {
            for n in 0..5 {
                let mut cb = new_cb(
                    &format!("c{copy}-r{record}-n{n}"),
                    &format!("r{record}"),
                    chrono::Duration::zero(),
                );
                cb.body = format!(r#"{{"callback_type":"BALANCE","record":"r{record}","n":{n}}}"#)
                    .into_bytes()
                    .into();
                let store = store.clone();
                calls.push(async move {
                    (
                        cb.body.clone(),
                        cb.id.clone(),
                        store.insert(cb, WINDOW).await.unwrap(),
                    )
                });
            }
        }
    }
    let answers = futures::future::join_all(calls).await;
    let mut by_body: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for (body, own_id, inserted) in answers {
        by_body.entry(body).or_default().push((own_id, inserted));
    }
    assert_eq!(by_body.len(), 200);
    for (body, copies) in &by_body {
        let firsts: Vec<_> = copies.iter().filter(|(_, i)| !i.duplicate).collect();
        assert_eq!(
            firsts.len(),
            1,
            "one first delivery of {body:?}: {copies:?}"
        );
        let (own_id, first) = firsts[0];
        assert_eq!(&first.id, own_id);
        for (_, copy) in copies {
            assert_eq!(copy.id, first.id, "every copy names the stored callback");
        }
    }
    assert_eq!(store.stats().await.unwrap().pending, 200);
    let claims = store.claim("w", 100, 100, LEASE).await.unwrap();
    assert_eq!(claims.len(), 40);
    for claim in &claims {
        assert_eq!(claim.callbacks.len(), 5, "record {}", claim.record);
        let listed = store.callbacks_of(&claim.record).await;
        let claimed: Vec<_> = claim.callbacks.iter().map(|c| &c.id).collect();
        let listed: Vec<_> = listed.iter().map(|c| &c.id).collect();
        assert_eq!(claimed, listed, "claims and the listing agree on the order");
    }
}

/// A callback the database refuses (PostgreSQL cannot store a NUL in text; the HTTP layer
/// rejects such ids, but the library can be handed one) fails alone: the callbacks stored
/// alongside it succeed.
async fn a_refused_callback_does_not_fail_its_neighbours(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut calls = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let record = if i == 25 {
            "bad\0record".to_owned()
        } else {
            format!("ok{i}")
        };
        let cb = new_cb(&format!("n{i}"), &record, chrono::Duration::zero());
        calls.push(async move { (i, store.insert(cb, WINDOW).await) });
    }
    for (i, result) in futures::future::join_all(calls).await {
        if i != 25 {
            let inserted = result.unwrap_or_else(|e| panic!("callback {i} failed: {e}"));
            assert!(!inserted.duplicate);
            assert!(store.get(&format!("n{i}")).await.unwrap().is_some());
        }
    }
}

/// `finish_last` records the last outcome of a worker's run and, in the same write, either
/// hands over the record's next callbacks (keeping the lease) or gives the lease up — always
/// after a retry; a worker whose lease was taken over hears so.
async fn finish_last_hands_over_the_next_callbacks_or_releases(backend: Backend) {
    let (_db, store) = open(backend).await;
    let now = chrono::Duration::zero();
    for i in 0..3 {
        store
            .insert(new_cb(&format!("a{i}"), "a", now), WINDOW)
            .await
            .unwrap();
    }
    let claim = store.claim("w1", 10, 1, LEASE).await.unwrap();
    let a0 = claim[0].callbacks[0].clone();
    assert_eq!(a0.id, "a0");
    // More are pending: they come with the outcome, and the lease is kept.
    let after = store
        .finish_last("w1", &a0, Outcome::Delivered, LEASE, 5)
        .await
        .unwrap();
    let AfterLast::Next(more) = after else {
        panic!("more are pending, so they come with the outcome: {after:?}");
    };
    let ids: Vec<_> = more.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert!(
        store.claim("w2", 10, 5, LEASE).await.unwrap().is_empty(),
        "still leased"
    );
    store
        .finish("w1", &more[0], Outcome::Delivered, LEASE)
        .await
        .unwrap();
    // Nothing left: the lease is given up, so the next callback is claimable at once.
    let none = store
        .finish_last("w1", &more[1], Outcome::Delivered, LEASE, 5)
        .await
        .unwrap();
    assert!(matches!(none, AfterLast::Released), "{none:?}");
    store.insert(new_cb("a3", "a", now), WINDOW).await.unwrap();
    let claim = store.claim("w2", 10, 5, LEASE).await.unwrap();
    let a3 = claim[0].callbacks[0].clone();
    assert_eq!(a3.id, "a3");
    store.insert(new_cb("b0", "b", now), WINDOW).await.unwrap();
    if backend == Backend::Postgres {
        // Shared by replicas: an old owner's outcome is refused (fencing), and it hears it lost
        // the lease. (The embedded store has one owner, its own process.)
        let lost = store
            .finish_last("w1", &a3, Outcome::Delivered, LEASE, 5)
            .await;
        assert!(
            matches!(lost, Err(store::StoreError::LeaseLost(_))),
            "{lost:?}"
        );
        assert_eq!(
            store.get("a3").await.unwrap().unwrap().status,
            store::Status::Pending,
            "the stale owner's outcome is not recorded"
        );
    }
    // A retry releases the record too, and it waits until the retry is due.
    let retry = Outcome::Retry {
        at: Utc::now() + chrono::Duration::hours(1),
        error: "later".into(),
    };
    let none = store.finish_last("w2", &a3, retry, LEASE, 5).await.unwrap();
    assert!(matches!(none, AfterLast::Released), "{none:?}");
    let claims = store.claim("w3", 10, 5, LEASE).await.unwrap();
    assert_eq!(
        claims.iter().map(|c| c.record.as_str()).collect::<Vec<_>>(),
        ["b"],
        "record a waits for its retry"
    );
    let a3 = store.get("a3").await.unwrap().unwrap();
    // One attempt on both stores: PostgreSQL refused the stale owner's (fencing).
    assert_eq!((a3.status, a3.attempts), (Status::Pending, 1));
    assert_eq!(
        store.get("a2").await.unwrap().unwrap().status,
        Status::Delivered
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: two stores on one database behave like two replicas.

/// A `TRANSACTIONS` callback of `record`, numbered `n` (its body differs for each `n`).
pub(crate) fn new_callback(record: &str, n: usize) -> NewCallback {
    NewCallback {
        id: uuid::Uuid::now_v7().to_string(),
        source: "okra".into(),
        event_id: None,
        record: record.to_owned(),
        callback_type: "TRANSACTIONS".into(),
        callback_code: Some("PERIODIC_TRANSACTIONS".into()),
        body: callback(record, "TRANSACTIONS", "PERIODIC_TRANSACTIONS", n).into(),
        received_at: chrono::Utc::now(),
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_when_replicas_start_together() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every replica starts");
    }
    let client = crate::support::postgres_client(&url).await;
    let versions: Vec<i32> = crate::support::first_column(
        &client,
        "SELECT version FROM okra_schema_migrations ORDER BY version",
        &[],
    )
    .await;
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6],
        "each migration applied exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_callback_on_two_replicas_at_once_is_stored_once() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let replicas = [
        store::open(&url).await.unwrap(),
        store::open(&url).await.unwrap(),
    ];
    let body = new_callback("rec-dedup", 1);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = replicas[i % 2].clone();
            let mut cb = body.clone();
            cb.id = uuid::Uuid::now_v7().to_string();
            tokio::spawn(async move { store.insert(cb, DAY).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let fresh: Vec<_> = answers.iter().filter(|a| !a.duplicate).collect();
    assert_eq!(fresh.len(), 1, "exactly one replica stores it: {answers:?}");
    assert!(
        answers.iter().all(|a| a.id == fresh[0].id),
        "every duplicate answers with the first id: {answers:?}"
    );
    let stored = replicas[1].callbacks_of("rec-dedup").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(replicas[0].stats().await.unwrap().pending, 1);
}

/// Callbacks of one record inserted concurrently through two replicas are claimed in the order
/// the read API lists them: a record's sequence order is its commit order, so a worker never
/// delivers a callback while an earlier one of the same record is still being committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_of_one_record_are_delivered_in_listed_order() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let replicas = [
        store::open(&url).await.unwrap(),
        store::open(&url).await.unwrap(),
    ];
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = replicas[w % 2].clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    store
                        .insert(new_callback("rec-hot", w * 1000 + i), DAY)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let worker = replicas[0].clone();
    let mut delivered: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.len() < WRITERS * EACH {
        assert!(
            Instant::now() < deadline,
            "only {} delivered",
            delivered.len()
        );
        let lease = Duration::from_secs(30);
        let claims = worker.claim("worker", 1, 1000, lease).await.unwrap();
        if claims.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for claim in claims {
            for cb in &claim.callbacks {
                worker
                    .finish("worker", cb, Outcome::Delivered, lease)
                    .await
                    .unwrap();
                delivered.push(cb.id.clone());
            }
            worker.release("worker", &claim.record).await.unwrap();
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    let listed = replicas[1].callbacks_of("rec-hot").await;
    let listed: Vec<String> = listed.into_iter().map(|cb| cb.id).collect();
    let out_of_order = delivered
        .iter()
        .zip(&listed)
        .filter(|(d, l)| d != l)
        .count();
    assert_eq!(
        out_of_order, 0,
        "delivery order differs from the listed (received) order at {out_of_order} places"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_without_the_lease_reports_lease_lost() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let store = store::open(&url).await.unwrap();
    store
        .insert(new_callback("rec-lost", 0), DAY)
        .await
        .unwrap();
    // Long enough that the second claim below always comes while it is live; the claim after
    // polls until it lapses instead of sleeping a fixed time.
    let short = Duration::from_millis(1000);
    let claimed_at = Instant::now();
    let claim_a = store.claim("a", 10, 10, short).await.unwrap();
    assert_eq!(claim_a.len(), 1);
    assert!(
        store.claim("b", 10, 10, short).await.unwrap().is_empty(),
        "a live lease is not handed out twice"
    );
    let claim_b = eventually(
        Duration::from_secs(10),
        "an expired lease returned to the pool",
        || async {
            let claim = store.claim("b", 10, 10, DAY).await.unwrap();
            (!claim.is_empty()).then_some(claim)
        },
    )
    .await;
    assert!(
        claimed_at.elapsed() >= short,
        "handed out while still leased"
    );
    assert_eq!(claim_b.len(), 1, "an expired lease returns to the pool");
    let cb = &claim_a[0].callbacks[0];
    let err = store
        .finish("a", cb, Outcome::Delivered, short)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err}");
    // Fencing: the stale owner's outcome is refused; the callback waits for b, whose lease is
    // untouched.
    let stored = store.get(&cb.id).await.unwrap().unwrap();
    assert_eq!(stored.status, store::Status::Pending);
    assert_eq!(stored.attempts, 0, "no attempt recorded by the stale owner");
    store
        .finish("b", &claim_b[0].callbacks[0], Outcome::Delivered, DAY)
        .await
        .expect("the owner keeps its lease");
}

both_stores!(
    finish_last_hands_over_the_next_callbacks_or_releases,
    concurrent_inserts_store_each_body_once,
    a_refused_callback_does_not_fail_its_neighbours,
    a_leased_record_is_not_claimed_again_until_released_or_expired,
    a_retry_holds_the_record_until_due_and_counts_attempts,
    the_backlog_and_retention,
);

/// The store vacuums its hot small tables (the record queue, the counters) about once a second
/// while it lives — autovacuum would look at them once a minute, while every callback leaves
/// dead row versions there — and stops when it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_counter_tables_are_vacuumed_while_the_store_lives() {
    use std::collections::HashMap;
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let client = crate::support::postgres_client(&url).await;
    let vacuums = || async {
        let rows = client
            .query(
                "SELECT relname::text, vacuum_count FROM pg_stat_user_tables
                 WHERE relname IN ('okra_record_queue', 'okra_callback_counts')",
                &[],
            )
            .await
            .unwrap();
        let counts: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        (counts.get("okra_record_queue").copied().unwrap_or(0))
            .min(counts.get("okra_callback_counts").copied().unwrap_or(0))
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    let mut seen = 0;
    for _ in 0..100 {
        seen = vacuums().await;
        if seen >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen >= 2, "both tables vacuumed twice within 10 s: {seen}");
    drop(store);
    // A vacuum in flight when the store was dropped may still finish and be counted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_drop = vacuums().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        vacuums().await,
        after_drop,
        "no vacuum once the store is gone"
    );
}

/// A store of schema 4 — an idle record's queue row still due in the past, left out of the due
/// index by its predicate — opens upgraded: the idle record is due never, the busy one is
/// claimed with its callback, the idle one again once a callback comes; and the queue row's
/// updates that change only the count or the lease are HOT (no new index entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_4_queue_is_upgraded_and_its_count_updates_are_hot() {
    let Some(base) = postgres_url() else { return };
    let url = fresh_postgres_database(&base).await;
    let client = crate::support::postgres_client(&url).await;
    crate::support::postgres_schema(&client, 4).await;
    client
        .batch_execute(
            "INSERT INTO okra_callbacks (id, record, callback_type, body, received_at, status)
             VALUES ('cb-busy', 'busy', 'BALANCE', '\\x7b7d', 1, 0),
                    ('cb-idle', 'idle', 'BALANCE', '\\x7b7d', 1, 1);
             INSERT INTO okra_record_queue (record, pending, due_at)
             VALUES ('busy', 1, 1), ('idle', 0, 1);",
        )
        .await
        .unwrap();

    let store = store::open(&url).await.unwrap();
    let due = |record: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT due_at FROM okra_record_queue WHERE record = $1",
                    &[&record],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(due("idle").await, i64::MAX, "an idle record is due never");
    assert_eq!(due("busy").await, 1, "a busy record keeps its due time");
    let claims = store.claim("w", 10, 10, LEASE).await.unwrap();
    assert_eq!(claims.len(), 1, "only the busy record is claimed");
    assert_eq!(claims[0].record, "busy");
    assert_eq!(claims[0].callbacks[0].id, "cb-busy");
    store
        .finish("w", &claims[0].callbacks[0], Outcome::Delivered, LEASE)
        .await
        .unwrap();
    store.release("w", "busy").await.unwrap();
    assert_eq!(due("busy").await, i64::MAX, "emptied, the record is idle");

    // Callbacks for the idle record: the first makes it due now, the rest only count.
    let before = hot_updates(&client).await;
    for n in 0..10 {
        store.insert(new_callback("idle", n), DAY).await.unwrap();
    }
    assert!(due("idle").await <= Utc::now().timestamp_millis());
    let claims = store.claim("w", 10, 100, LEASE).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].record, "idle");
    assert_eq!(
        claims[0].callbacks.len(),
        10,
        "every new callback is claimed"
    );
    let (updates, hot) = eventually(
        // A backend flushes its counts when idle, at most every 10 s (PostgreSQL 15).
        Duration::from_secs(30),
        "the queue's update counts reach the statistics",
        || async {
            let now = hot_updates(&client).await;
            (now.0 - before.0 >= 10).then_some((now.0 - before.0, now.1 - before.1))
        },
    )
    .await;
    assert!(
        hot * 10 >= updates * 7,
        "most queue-row updates are HOT: {hot} of {updates}"
    );
}

/// `okra_record_queue`'s (updates, HOT updates) so far.
async fn hot_updates(client: &tokio_postgres::Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE relname = 'okra_record_queue'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}
