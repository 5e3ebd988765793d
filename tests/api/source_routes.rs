//! Every preset end to end through `POST /v1/sources/{name}`, on both stores, with the
//! signatures its provider makes computed by the test: Plaid (an ES256 JWT, its key from a
//! local stand-in of Plaid's key service), Standard Webhooks (`webhook-*` and `svix-*`),
//! Paystack (HMAC-SHA512), generic (HMAC-SHA256 hex behind `sha256=`). Mono's is in
//! `sources.rs`. Also: a record-less callback is its own record, and order is per (source,
//! record) as the handler sees it.

use std::{sync::Arc, time::Duration};

use okra_callbacks::output::ForwardHandler;
use serde_json::{json, Value};

use crate::both_stores;
use crate::support::{
    app, callback, error_body, fixture,
    process::Sink,
    sources::{
        hmac_sha256_hex, nothing_listens, paystack_signature, plaid_source, standard_webhooks,
        unix_now, PlaidStandIn,
    },
    Backend, TestApp,
};

/// A receiver serving the sources of this sources file.
async fn serving(backend: Backend, toml: &str) -> TestApp {
    app(backend).await.sources(toml).spawn().await
}

/// The stored callback `id`, as `GET /v1/callbacks/{id}` answers it.
async fn stored(app: &TestApp, id: &Value) -> Value {
    let (status, one) = app
        .get_json(&format!("/v1/callbacks/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{one}");
    one
}

async fn plaid_jwts_are_checked_with_the_key_plaid_serves(backend: Backend) {
    let plaid = PlaidStandIn::start().await;
    let toml = format!(
        "{}{}",
        plaid.source("plaid"),
        plaid_source("plaid-away", &nothing_listens())
    );
    let mut app = serving(backend, &toml).await;
    let body = fixture("plaid/transactions_sync_updates_available");

    let ack = app
        .post_source_ok("plaid", &plaid.sign(&body, unix_now()), body.clone())
        .await;
    assert_eq!(ack["source"], "plaid", "{ack}");
    assert_eq!(ack["record"], "wz666MBjYWTp2PDzzggYhM6oWWmBb");
    assert_eq!(ack["callback_type"], "TRANSACTIONS");
    assert_eq!(ack["callback_code"], "SYNC_UPDATES_AVAILABLE");
    assert_eq!(ack["duplicate"], false);
    let one = stored(&app, &ack["id"]).await;
    assert_eq!(
        (&one["source"], &one["record"], &one["callback_type"]),
        (&json!("plaid"), &ack["record"], &json!("TRANSACTIONS"))
    );
    let seen = app.next_seen().await;
    assert_eq!(
        (seen.source.as_str(), seen.id.as_str(), seen.body),
        ("plaid", ack["id"].as_str().unwrap(), body.clone())
    );

    // Another webhook with a fresh JWT: the key is cached, not asked for again.
    let other = fixture("plaid/item_error");
    let ack = app
        .post_source_ok("plaid", &plaid.sign(&other, unix_now()), other.clone())
        .await;
    assert_eq!(
        (&ack["callback_type"], &ack["callback_code"]),
        (&json!("ITEM"), &json!("ERROR"))
    );
    assert_eq!(plaid.asked.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The JWT of one body on another: refused, and not stored.
    let tampered = String::from_utf8(other.clone())
        .unwrap()
        .replace("ERROR", "LOGIN_REPAIRED");
    let (status, code, message) = error_body(
        app.post_source("plaid", &plaid.sign(&other, unix_now()), tampered)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    assert!(message.contains("request_body_sha256"), "{message}");
    // An `iat` over 5 minutes old: refused.
    let (status, _, message) = error_body(
        app.post_source("plaid", &plaid.sign(&body, unix_now() - 400), body.clone())
            .await,
    )
    .await;
    assert_eq!(status, 401);
    assert!(message.contains("5 minutes"), "{message}");

    // The key service away: 503 so that Plaid retries, with our error body; nothing stored.
    let (status, code, message) = error_body(
        app.post_source("plaid-away", &plaid.sign(&body, unix_now()), body.clone())
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (503, "verification_unavailable"),
        "{message}"
    );
    let (_, listed) = app.get_json("/v1/callbacks?source=plaid,plaid-away").await;
    assert_eq!(listed["callbacks"].as_array().unwrap().len(), 2, "{listed}");
    app.stop().await;
}

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn standard_webhooks_are_checked_and_deduplicated_by_event_id(backend: Backend) {
    let toml = format!(
        "[sources.stitch]\npreset = \"standard-webhooks\"\nsecrets = [\"{WHSEC}\"]\nrecord = \"/data/id\"\n"
    );
    let mut app = serving(backend, &toml).await;
    let payment = fixture("stitch/payment");
    let now = unix_now();

    let ack = app
        .post_source_ok(
            "stitch",
            &standard_webhooks("webhook", WHSEC, "msg_1", now, &payment),
            payment.clone(),
        )
        .await;
    assert_eq!(ack["source"], "stitch", "{ack}");
    assert_eq!(
        ack["record"],
        "cGF5cmVxLzk1YTRkYzYzLTc0ZjQtNDJjMS05ZjFmLTBjNWM1ZTQ3YjA4Yg=="
    );
    assert_eq!(ack["callback_type"], "payment");
    assert_eq!(ack["callback_code"], Value::Null);
    assert_eq!(stored(&app, &ack["id"]).await["event_id"], "msg_1");

    // The same event id with another body (a redelivery the sender re-rendered): a duplicate
    // naming the first id, signed under the svix-* names this time.
    let mut changed: Value = serde_json::from_slice(&payment).unwrap();
    changed["timestamp"] = json!("2026-12-07T08:31:00.000Z");
    let changed = changed.to_string().into_bytes();
    let again = app
        .post_source_ok(
            "stitch",
            &standard_webhooks("svix", WHSEC, "msg_1", now, &changed),
            changed.clone(),
        )
        .await;
    assert_eq!(
        (&again["id"], &again["duplicate"]),
        (&ack["id"], &json!(true))
    );
    // Another id with the very same body is another event.
    let other = app
        .post_source_ok(
            "stitch",
            &standard_webhooks("svix", WHSEC, "msg_2", now, &payment),
            payment.clone(),
        )
        .await;
    assert_eq!(other["duplicate"], false, "{other}");
    assert_ne!(other["id"], ack["id"]);

    // Signed with another secret, or too long ago: refused, saying which check failed.
    let forged = standard_webhooks(
        "webhook",
        "whsec_QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "msg_3",
        now,
        &payment,
    );
    let (status, code, message) =
        error_body(app.post_source("stitch", &forged, payment.clone()).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(message.contains("no signature matches"), "{message}");
    let old = standard_webhooks("webhook", WHSEC, "msg_4", now - 600, &payment);
    let (status, _, message) =
        error_body(app.post_source("stitch", &old, payment.clone()).await).await;
    assert_eq!(status, 401);
    assert!(message.contains("5 minutes old"), "{message}");

    let seen: Vec<_> = app.seen_n(2).await.into_iter().map(|s| s.id).collect();
    assert_eq!(
        seen,
        [&ack["id"], &other["id"]].map(|id| id.as_str().unwrap().to_owned())
    );
    app.stop().await;
}

async fn paystack_signatures_are_checked(backend: Backend) {
    let secret = "sk_test_4f6f1b";
    let toml = format!("[sources.paystack]\npreset = \"paystack\"\nsecret = \"{secret}\"\n");
    let mut app = serving(backend, &toml).await;
    let body = fixture("paystack/charge_success");

    let ack = app
        .post_source_ok("paystack", &paystack_signature(secret, &body), body.clone())
        .await;
    assert_eq!(
        (&ack["source"], &ack["record"], &ack["callback_type"]),
        (
            &json!("paystack"),
            &json!("CUS_qo38as2hpsgk2r0"),
            &json!("charge.success")
        ),
        "{ack}"
    );
    // Another key, another body, no header: refused, saying which check failed.
    for (wrong, why) in [
        (
            paystack_signature("sk_test_other", &body),
            "no signature matches",
        ),
        (paystack_signature(secret, b"{}"), "no signature matches"),
        (vec![], "`x-paystack-signature` header is missing"),
    ] {
        let (status, code, message) =
            error_body(app.post_source("paystack", &wrong, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(!message.contains(secret), "{message}");
    }
    let seen = app.next_seen().await;
    assert_eq!(
        (seen.source.as_str(), seen.id.as_str()),
        ("paystack", ack["id"].as_str().unwrap())
    );
    app.assert_quiet(std::time::Duration::from_millis(300))
        .await;
    app.stop().await;
}

/// The forward output names each callback's source in `X-Okra-Source`, beside its id, so one
/// internal service can tell the providers' callbacks apart.
async fn forwarded_callbacks_name_their_source(backend: Backend) {
    let sink = Sink::default();
    let forward = ForwardHandler::new(sink.start().await, Duration::from_secs(5)).unwrap();
    let secret = "sk_test_4f6f1b";
    let toml = format!("[sources.paystack]\npreset = \"paystack\"\nsecret = \"{secret}\"\n");
    let mut app = app(backend)
        .await
        .sources(&toml)
        .before(Arc::new(forward))
        .spawn()
        .await;
    let body = fixture("paystack/charge_success");
    let paystack = app
        .post_source_ok("paystack", &paystack_signature(secret, &body), body.clone())
        .await;
    let okra = app
        .post_ok(callback("rec-fwd-src", "AUTH", "AUTH_SUCCESS", 1))
        .await;
    app.seen_n(2).await;
    let deliveries = sink.deliveries.lock().unwrap().clone();
    let mut sources: Vec<(String, String)> = deliveries
        .iter()
        .map(|d| (d.id.clone(), d.source.clone()))
        .collect();
    sources.sort();
    let mut expected = vec![
        (
            paystack["id"].as_str().unwrap().to_owned(),
            "paystack".to_owned(),
        ),
        (okra["id"].as_str().unwrap().to_owned(), "okra".to_owned()),
    ];
    expected.sort();
    assert_eq!(sources, expected);
    app.stop().await;
}

/// A generic source checking GitHub-style signatures, with no record pointer: each callback is
/// its own record, and its exact re-delivery is a duplicate naming the first id as both.
async fn generic_hmac_callbacks_are_checked_and_are_their_own_record(backend: Backend) {
    let secret = "It's a Secret to Everybody";
    let toml = format!(
        "[sources.hooks]\npreset = \"generic\"\ntype = \"/action\"\n[sources.hooks.verify]\nscheme = \"hmac\"\nheader = \"X-Hub-Signature-256\"\nalgorithm = \"sha256\"\nencoding = \"hex\"\nprefix = \"sha256=\"\nsecret = \"{secret}\"\n"
    );
    let mut app = serving(backend, &toml).await;
    let body = br#"{"action":"opened","number":7}"#.to_vec();
    let signed = hmac_sha256_hex("x-hub-signature-256", "sha256=", secret, &body);

    let ack = app.post_source_ok("hooks", &signed, body.clone()).await;
    assert_eq!(
        (&ack["source"], &ack["callback_type"]),
        (&json!("hooks"), &json!("opened"))
    );
    assert_eq!(
        ack["record"], ack["id"],
        "a record-less callback is its own record"
    );
    let again = app.post_source_ok("hooks", &signed, body.clone()).await;
    assert_eq!(
        (&again["id"], &again["record"], &again["duplicate"]),
        (&ack["id"], &ack["id"], &json!(true)),
        "the re-delivery names the first"
    );
    let one = stored(&app, &ack["id"]).await;
    assert_eq!(one["record"], ack["id"]);

    // The signature without its prefix, over other bytes, or with another secret: refused.
    let bare = hmac_sha256_hex("x-hub-signature-256", "", secret, &body);
    let (status, _, message) =
        error_body(app.post_source("hooks", &bare, body.clone()).await).await;
    assert_eq!(status, 401);
    assert!(message.contains("`sha256=`"), "{message}");
    for wrong in [
        hmac_sha256_hex(
            "x-hub-signature-256",
            "sha256=",
            secret,
            b"{\"action\":\"closed\"}",
        ),
        hmac_sha256_hex("x-hub-signature-256", "sha256=", "another", &body),
    ] {
        let (status, code, message) =
            error_body(app.post_source("hooks", &wrong, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (401, "unauthorized"));
        assert!(message.contains("no signature matches"), "{message}");
    }
    let seen = app.next_seen().await;
    assert_eq!(
        (seen.id.as_str(), seen.record.as_str()),
        (ack["id"].as_str().unwrap(), ack["id"].as_str().unwrap())
    );
    app.assert_quiet(std::time::Duration::from_millis(300))
        .await;
    app.stop().await;
}

/// Two sources whose records share one string: the handler sees each source's 20 callbacks in
/// the order they were acknowledged, none of the other's among them. (The store-level test of
/// the same, with leases, is `sources::order_and_leases_are_per_source_and_record`.)
async fn the_handler_sees_each_source_s_record_in_order(backend: Backend) {
    let paystack_secret = "sk_test_order";
    let toml = format!(
        "[sources.mono]\npreset = \"mono\"\nsecret = \"mono-s3cret\"\n[sources.paystack]\npreset = \"paystack\"\nsecret = \"{paystack_secret}\"\n"
    );
    let mut app = serving(backend, &toml).await;
    let mono_secret = vec![("mono-webhook-secret".to_owned(), "mono-s3cret".to_owned())];
    let mut acked: Vec<(String, String)> = Vec::new();
    for n in 0..20 {
        let mono = json!({"event": "mono.events.account_updated", "data": {"account": {"_id": "shared"}, "n": n}}).to_string();
        let ack = app.post_source_ok("mono", &mono_secret, mono).await;
        acked.push(("mono".into(), ack["id"].as_str().unwrap().to_owned()));
        let paystack = json!({"event": "charge.success", "data": {"customer": {"customer_code": "shared"}, "n": n}}).to_string();
        let signed = paystack_signature(paystack_secret, paystack.as_bytes());
        let ack = app.post_source_ok("paystack", &signed, paystack).await;
        assert_eq!(ack["record"], "shared");
        acked.push(("paystack".into(), ack["id"].as_str().unwrap().to_owned()));
    }
    let seen = app.seen_n(40).await;
    for source in ["mono", "paystack"] {
        let expected: Vec<&str> = acked
            .iter()
            .filter(|(s, _)| s == source)
            .map(|(_, id)| id.as_str())
            .collect();
        let got: Vec<&str> = seen
            .iter()
            .filter(|s| s.source == source)
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(got, expected, "{source}'s 20, in order, each once");
    }
    assert!(seen.iter().all(|s| s.record == "shared" && s.attempt == 1));
    app.stop().await;
}

both_stores!(
    plaid_jwts_are_checked_with_the_key_plaid_serves,
    standard_webhooks_are_checked_and_deduplicated_by_event_id,
    paystack_signatures_are_checked,
    forwarded_callbacks_name_their_source,
    generic_hmac_callbacks_are_checked_and_are_their_own_record,
    the_handler_sees_each_source_s_record_in_order,
);
