//! Sources in the store, the same for SQLite and PostgreSQL: dedup per source (by event id, else
//! by body), order and leases per (source, record), and a store of the schema before sources
//! upgraded in place with its rows as Okra's.

use std::time::Duration;

use chrono::Utc;
use okra_callbacks::store::{self, NewCallback, Outcome, Status, Store};

use crate::both_stores;
use crate::store::Shortcuts;
use crate::support::{Backend, TestDb};

const LEASE: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(3600);

/// A callback of `source` about `record`, its body naming `n`.
fn from_source(source: &str, record: &str, event_id: Option<&str>, n: usize) -> NewCallback {
    NewCallback {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.into(),
        record: record.into(),
        callback_type: "charge.success".into(),
        callback_code: None,
        event_id: event_id.map(Into::into),
        body: format!(r#"{{"event":"charge.success","data":{{"reference":"{record}","n":{n}}}}}"#)
            .into_bytes()
            .into(),
        received_at: Utc::now(),
    }
}

async fn open(backend: Backend) -> (TestDb, std::sync::Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.unwrap();
    (db, store)
}

async fn dedup_is_per_source_by_event_id_else_by_body(backend: Backend) {
    let (_db, store) = open(backend).await;
    // By event id: the same id with another body is a duplicate answered with the first id.
    let first = store
        .insert(from_source("stitch", "p1", Some("msg_1"), 1), WINDOW)
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = store
        .insert(from_source("stitch", "p1", Some("msg_1"), 2), WINDOW)
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.duplicate),
        (first.id.as_str(), true)
    );
    // Another id with the very same body is never one.
    let other_id = store
        .insert(from_source("stitch", "p1", Some("msg_2"), 1), WINDOW)
        .await
        .unwrap();
    assert!(!other_id.duplicate, "another event id is another event");
    assert_ne!(other_id.id, first.id);
    // The same event id from another source is that source's own.
    let elsewhere = store
        .insert(from_source("svix-two", "p1", Some("msg_1"), 1), WINDOW)
        .await
        .unwrap();
    assert!(!elsewhere.duplicate, "event ids are per source");

    // By body, for a source without event ids: the same bytes again are a duplicate...
    let paid = store
        .insert(from_source("paystack", "CUS_1", None, 7), WINDOW)
        .await
        .unwrap();
    let repeat = store
        .insert(from_source("paystack", "CUS_1", None, 7), WINDOW)
        .await
        .unwrap();
    assert_eq!(
        (repeat.id.as_str(), repeat.duplicate),
        (paid.id.as_str(), true)
    );
    // ...other bytes are not, and the same bytes from another source (or Okra) are not either.
    let changed = store
        .insert(from_source("paystack", "CUS_1", None, 8), WINDOW)
        .await
        .unwrap();
    assert!(!changed.duplicate);
    for source in ["mono", "okra"] {
        let same_bytes = store
            .insert(from_source(source, "CUS_1", None, 7), WINDOW)
            .await
            .unwrap();
        assert!(
            !same_bytes.duplicate,
            "{source} shares no dedup key with paystack"
        );
    }

    // What was stored is kept with its source and event id.
    let stored = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!(stored.source, "stitch");
    assert_eq!(stored.event_id.as_deref(), Some("msg_1"));
    assert!(
        String::from_utf8_lossy(&stored.body).contains("\"n\":1"),
        "the first body is the one kept"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.by_source,
        [
            ("mono".to_owned(), 1),
            ("okra".to_owned(), 1),
            ("paystack".to_owned(), 2),
            ("stitch".to_owned(), 2),
            ("svix-two".to_owned(), 1),
        ]
    );
    assert_eq!(stats.by_type, [("charge.success".to_owned(), 7)]);
}

async fn order_and_leases_are_per_source_and_record(backend: Backend) {
    let (_db, store) = open(backend).await;
    let mut sent: Vec<(String, String)> = Vec::new();
    for n in 0..20 {
        for source in ["mono", "paystack"] {
            let cb = from_source(source, "shared", None, n);
            sent.push((source.to_owned(), cb.id.clone()));
            store.insert(cb, WINDOW).await.unwrap();
        }
    }
    // One record string, two sources: two queues, each leased on its own.
    let first = store.claim("w1", 1, 100, LEASE).await.unwrap();
    let second = store.claim("w2", 1, 100, LEASE).await.unwrap();
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "each worker leases one"
    );
    assert!(
        store.claim("w3", 10, 100, LEASE).await.unwrap().is_empty(),
        "both queues are leased"
    );
    let mut seen_sources = Vec::new();
    for claim in first.iter().chain(&second) {
        let source = claim.callbacks[0].source.clone();
        let expected: Vec<&str> = sent
            .iter()
            .filter(|(s, _)| *s == source)
            .map(|(_, id)| id.as_str())
            .collect();
        let got: Vec<&str> = claim.callbacks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            got, expected,
            "{source}'s 20, in received order, none of the other's"
        );
        assert!(claim.callbacks.iter().all(|c| c.record == "shared"));
        seen_sources.push(source);
    }
    seen_sources.sort();
    assert_eq!(seen_sources, ["mono", "paystack"]);

    // Delivering one source's record leaves the other's queue as it is.
    let mono = first
        .iter()
        .chain(&second)
        .find(|c| c.callbacks[0].source == "mono")
        .unwrap();
    let owner = if first[0].record == mono.record {
        "w1"
    } else {
        "w2"
    };
    for cb in &mono.callbacks {
        store
            .finish(owner, cb, Outcome::Delivered, LEASE)
            .await
            .unwrap();
    }
    store.release(owner, &mono.record).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivered), (20, 20));
    let delivered = store.get(&mono.callbacks[0].id).await.unwrap().unwrap();
    assert_eq!(delivered.status, Status::Delivered);
}

both_stores!(
    dedup_is_per_source_by_event_id_else_by_body,
    order_and_leases_are_per_source_and_record,
);

/// The SQLite migrations before sources, applied to a new file as that release did.
const SQLITE_BEFORE_SOURCES: [&str; 6] = [
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_fewer_index_writes.sql"),
    include_str!("../../migrations/sqlite/0003_operator_view.sql"),
    include_str!("../../migrations/sqlite/0004_readiness_probe.sql"),
    include_str!("../../migrations/sqlite/0005_history_in_row.sql"),
    include_str!("../../migrations/sqlite/0006_inbox_log.sql"),
];

/// The rows a store of the previous schema holds: record `r1`'s delivered and pending
/// callbacks, its queue row and the pending one's dedup key (the SHA-256 of its body).
const OLD_ROWS: &str = "
    INSERT INTO {callbacks} (id, record, callback_type, callback_code, body, received_at, status, attempts)
    VALUES ('old-done', 'r1', 'AUTH', 'AUTH_SUCCESS', {old}, 1, 1, 1),
           ('old-pending', 'r1', 'AUTH', NULL, {body}, {now}, 0, 0);
    INSERT INTO {queue} (record, pending, due_at) VALUES ('r1', 1, 2);
    INSERT INTO {dedup} (hash, id, received_at) VALUES ({hash}, 'old-pending', {now});";

/// [`OLD_ROWS`] for one store: its table names, and bytes written as `bytes` spells them.
fn old_rows(prefix: &str, body: &str, bytes: fn(&[u8]) -> String) -> String {
    use sha2::Digest;
    OLD_ROWS
        .replace("{callbacks}", &format!("{prefix}callbacks"))
        .replace("{queue}", &format!("{prefix}record_queue"))
        .replace("{dedup}", &format!("{prefix}dedup"))
        .replace("{old}", &bytes(b"{}"))
        .replace("{body}", &bytes(body.as_bytes()))
        .replace("{hash}", &bytes(&sha2::Sha256::digest(body.as_bytes())))
        .replace("{now}", &Utc::now().timestamp_millis().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn a_store_of_the_schema_before_sources_upgrades_with_its_rows_as_okra(backend: Backend) {
    let db = TestDb::new(backend).await;
    let body = r#"{"callback_type":"AUTH","record":"r1"}"#;
    match backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            for sql in SQLITE_BEFORE_SOURCES {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 6).unwrap();
            conn.execute_batch(&old_rows("", body, |b| format!("X'{}'", hex(b))))
                .unwrap();
            conn.execute_batch(
                "INSERT INTO callback_counts (callback_type, status, n) VALUES ('AUTH', 0, 1), ('AUTH', 1, 1);",
            )
            .unwrap();
        }
        Backend::Postgres => {
            let client = crate::support::postgres_client(&db.url).await;
            crate::support::postgres_schema(&client, 5).await;
            client
                .batch_execute(&old_rows("okra_", body, |b| {
                    format!("'\\x{}'::bytea", hex(b))
                }))
                .await
                .unwrap();
            client
                .batch_execute(
                    "INSERT INTO okra_callback_counts (callback_type, status, shard, n)
                     VALUES ('AUTH', 0, 0, 1), ('AUTH', 1, 0, 1);",
                )
                .await
                .unwrap();
        }
    }

    let store = store::open(&db.url).await.unwrap();
    // The old rows are Okra's.
    let listed = store.callbacks_of("r1").await;
    let rows: Vec<_> = listed
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.source.as_str(),
                c.event_id.clone(),
                c.status,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("old-done", "okra", None, Status::Delivered),
            ("old-pending", "okra", None, Status::Pending)
        ]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.by_source, [("okra".to_owned(), 2)]);
    assert_eq!(stats.by_type, [("AUTH".to_owned(), 2)]);
    // The old queue row still serves the old pending callback...
    let claims = store.claim("w", 10, 10, LEASE).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].record, "r1");
    assert_eq!(claims[0].callbacks[0].id, "old-pending");
    store
        .finish("w", &claims[0].callbacks[0], Outcome::Delivered, LEASE)
        .await
        .unwrap();
    store.release("w", "r1").await.unwrap();
    // Okra's dedup keys stay valid: the old body again is a duplicate of the old callback.
    let mut okra = from_source("okra", "r1", None, 1);
    okra.body = body.as_bytes().to_vec().into();
    let again = store.insert(okra.clone(), WINDOW).await.unwrap();
    assert_eq!((again.id.as_str(), again.duplicate), ("old-pending", true));
    // ...and the store takes both Okra's and other sources' callbacks, kept apart.
    okra.body = br#"{"callback_type":"AUTH","record":"r1","n":2}"#.to_vec().into();
    store.insert(okra, WINDOW).await.unwrap();
    store
        .insert(from_source("mono", "r1", None, 1), WINDOW)
        .await
        .unwrap();
    let okra_only = store.callbacks_of("r1").await;
    assert_eq!(
        okra_only.len(),
        3,
        "GET /v1/callback's listing is Okra's only"
    );
    assert!(okra_only.iter().all(|c| c.source == "okra"));
    let claims = store.claim("w", 10, 10, LEASE).await.unwrap();
    let mut sources: Vec<_> = claims
        .iter()
        .map(|c| (c.callbacks[0].source.clone(), c.callbacks.len()))
        .collect();
    sources.sort();
    assert_eq!(sources, [("mono".to_owned(), 1), ("okra".to_owned(), 1)]);
}

both_stores!(a_store_of_the_schema_before_sources_upgrades_with_its_rows_as_okra);

/// Okra's callbacks answer and list as source `okra`: the acknowledgement, one callback, the
/// operator's list and its `source=` filter, the stats and what the handler is given.
async fn okra_s_callbacks_carry_their_source_everywhere(backend: Backend) {
    let mut app = crate::support::app(backend).await.spawn().await;
    let body = r#"{"callback_type":"AUTH","callback_code":"AUTH_SUCCESS","record":"r1"}"#;
    let ack = app.post_ok(body).await;
    assert_eq!(ack["source"], "okra", "{ack}");
    let id = ack["id"].as_str().unwrap().to_owned();
    let seen = app.next_seen().await;
    assert_eq!(
        (seen.id.as_str(), seen.source.as_str()),
        (id.as_str(), "okra")
    );

    let (status, one) = app.get_json(&format!("/v1/callbacks/{id}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["source"], "okra");
    assert_eq!(one["event_id"], serde_json::Value::Null);
    let (_, listed) = app.get_json("/v1/callbacks?source=okra").await;
    assert_eq!(listed["callbacks"][0]["source"], "okra", "{listed}");
    assert_eq!(listed["callbacks"].as_array().unwrap().len(), 1);
    let (_, none) = app.get_json("/v1/callbacks?source=plaid,mono").await;
    assert_eq!(none["callbacks"], serde_json::json!([]), "{none}");
    let (status, bad) = app.get_json("/v1/callbacks?source=Plaid").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_parameter");
    let (_, by_record) = app.get_json("/v1/callback?record=r1&method=AUTH").await;
    assert_eq!(by_record["callbacks"][0]["source"], "okra", "{by_record}");
    let (_, stats) = app.get_json("/v1/stats").await;
    assert_eq!(
        stats["by_source"],
        serde_json::json!({"okra": 1}),
        "{stats}"
    );
    app.stop().await;
}

both_stores!(okra_s_callbacks_carry_their_source_everywhere);

/// `POST /v1/sources/{name}`: a configured source's callback is checked, stored and answered
/// with its source; a failed check is 401 saying which; an unknown name is 404. (Every other
/// preset end to end: `source_routes.rs`.)
async fn a_source_s_callbacks_are_checked_stored_and_answered(backend: Backend) {
    let mut app = crate::support::app(backend)
        .await
        .sources("[sources.mono]\npreset = \"mono\"\nsecret = \"s3cret-mono\"\n")
        .spawn()
        .await;
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/mono/account_updated.json"
    ))
    .unwrap();
    let post = |secret: Option<&'static str>, name: &'static str| {
        let mut request = app
            .client
            .post(app.url(&format!("/v1/sources/{name}")))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = secret {
            request = request.header("mono-webhook-secret", secret);
        }
        request.send()
    };
    let ok = post(Some("s3cret-mono"), "mono").await.unwrap();
    assert_eq!(ok.status(), 200);
    let ack: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(ack["source"], "mono", "{ack}");
    assert_eq!(ack["record"], "5feec8ce95e8dc6a52e53257");
    assert_eq!(ack["callback_type"], "mono.events.account_updated");
    assert_eq!(ack["callback_code"], "AVAILABLE");
    assert_eq!(ack["duplicate"], false);
    let again: serde_json::Value = post(Some("s3cret-mono"), "mono")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&again["id"], &again["duplicate"]),
        (&ack["id"], &serde_json::json!(true))
    );

    let (status, code, message) =
        crate::support::error_body(post(Some("wrong"), "mono").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(!message.contains("s3cret-mono"), "{message}");
    let (status, code, _) = crate::support::error_body(post(None, "nope").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "unknown_source"));

    let seen = app.next_seen().await;
    assert_eq!(
        (seen.source.as_str(), seen.record.as_str()),
        ("mono", "5feec8ce95e8dc6a52e53257")
    );
    let (_, listed) = app.get_json("/v1/callbacks?source=mono").await;
    assert_eq!(listed["callbacks"].as_array().unwrap().len(), 1, "{listed}");
    app.stop().await;
}

both_stores!(a_source_s_callbacks_are_checked_stored_and_answered);
