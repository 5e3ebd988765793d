//! The web console in a real browser (see `support/browser.rs`: headless Chromium, skipped with
//! a message when it is not installed, except under `CI=true`), against the real receiver on
//! port 0. With `OKRA_SCREENSHOTS=DIR` the tests also save
//! `DIR/console-list.png`, `DIR/console-callback.png` and `DIR/console-phone.png` (the README's
//! screenshots come from `OKRA_SCREENSHOTS=docs`).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::both_stores;
use crate::support::browser::{click, text, type_into, wait_text, with_browser, BROWSER_ZONE};
use crate::support::{app, fixture, Action, Backend, TestApp};

const XSS: &str = "<script>alert(1)</script>";

async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("OKRA_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

/// A receiver whose handler fails for `rec_dead…` records and the XSS one until `ok` is set.
async fn failing_until(ok: Arc<AtomicBool>, admin_token: Option<&'static str>) -> TestApp {
    app(Backend::Sqlite)
        .await
        .config(move |c| {
            c.delivery.max_attempts = 2;
            c.access.admin_token = admin_token.map(okra_callbacks::Secret::new);
        })
        .script(move |cx| {
            let record = cx.record().to_string();
            let flaky = record.starts_with("rec_dead") || record == XSS;
            if flaky && !ok.load(Ordering::SeqCst) {
                Action::Fail("forward target answered 502 Bad Gateway")
            } else {
                Action::Succeed
            }
        })
        .spawn()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_dead_callback_sees_its_history_and_replays_it() {
    let ok = Arc::new(AtomicBool::new(false));
    let app = failing_until(ok.clone(), None).await;
    // Some delivered traffic around the dead one, as in a real list.
    for name in [
        "transactions_periodic",
        "balance_success",
        "identity_is_ready",
        "auth_success",
    ] {
        app.post_ok(fixture(name)).await;
    }
    let dead = app
        .post_ok(
            json!({
                "callback_type": "IDENTITY", "callback_code": "IDENTITY_IS_READY",
                "record": "rec_dead_browser", "bankName": "Example Bank", "env": "production",
                "identity": {"bvn": "22222222222", "fullname": "Ada N Obi", "dob": "1990-01-31",
                             "phone": ["+2348000000000"], "email": ["ada@example.com"],
                             "address": ["1 Example Street, Lagos"], "gender": "female"},
            })
            .to_string(),
        )
        .await;
    let dead_id = dead["id"].as_str().unwrap().to_owned();
    let xss = app
        .post_ok(
            json!({"callback_type": "RECORD", "callback_code": "ERROR", "record": XSS}).to_string(),
        )
        .await;
    app.wait_status(&dead_id, "dead").await;
    app.wait_status(xss["id"].as_str().unwrap(), "dead").await;

    let base = app.base.clone();
    let shown_id = dead_id.clone();
    let ran = with_browser(|client| async move {
        let dead_id = shown_id;
        // The first view: the latest callbacks with their status.
        client.goto(&format!("{base}/console")).await.unwrap();
        assert_eq!(text(&client, "h1").await, "Callbacks");
        screenshot(&client, "console-list.png").await;
        let rows = client
            .find_all(Locator::Css("table.callbacks tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 6, "every stored callback is listed");

        // Find the dead one by filter: status dead and its record.
        click(&client, "input[name=status][value=dead]").await;
        type_into(&client, "input[name=record]", "rec_dead_browser").await;
        click(&client, "form.filters button[type=submit]").await;
        wait_text(&client, "table.callbacks tbody", &dead_id).await;
        let rows = client
            .find_all(Locator::Css("table.callbacks tbody tr"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "only the dead callback of that record");
        assert_eq!(text(&client, "tbody td[data-label=Status]").await, "dead");

        // Open it: its fields and both failed attempts on the timeline.
        client
            .find(Locator::LinkText(&dead_id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&client, "h1", &dead_id).await;
        assert_eq!(text(&client, "#status").await, "dead");
        let attempts = client
            .find_all(Locator::Css("ol.timeline li.attempt.failed"))
            .await
            .unwrap();
        assert_eq!(attempts.len(), 2, "two failed attempts in the history");
        assert!(text(&client, "ol.timeline")
            .await
            .contains("502 Bad Gateway"));
        let payload = text(&client, "#payload").await;
        assert!(payload.contains("Example Bank"), "{payload}");
        assert!(
            !payload.contains("22222222222") && !payload.contains("Ada N Obi"),
            "{payload}"
        );
        client.set_window_size(1280, 1450).await.unwrap();
        screenshot(&client, "console-callback.png").await;
        client.set_window_size(1280, 900).await.unwrap();

        // Replay it once the target is back: the page follows it to delivered.
        ok.store(true, Ordering::SeqCst);
        click(&client, "#replay").await;
        wait_text(&client, "#status", "delivered").await;
        let succeeded = client
            .find_all(Locator::Css("ol.timeline li.attempt.succeeded"))
            .await
            .unwrap();
        assert_eq!(succeeded.len(), 1, "the replayed attempt succeeded");

        // A record id with markup renders as text: no script runs, no element is made.
        let url = format!("{base}/console?record={}", urlencode(XSS));
        client.goto(&url).await.unwrap();
        assert_eq!(text(&client, "td.record a").await, XSS);
        let injected = client
            .execute(
                "return document.querySelectorAll('main script').length",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(injected, json!(0));
        assert!(client.get_alert_text().await.is_err(), "an alert opened");

        // Usable on a phone: the table turns into cards.
        let thead =
            "return getComputedStyle(document.querySelector('table.callbacks thead')).display";
        assert_ne!(client.execute(thead, vec![]).await.unwrap(), json!("none"));
        client.set_window_size(390, 844).await.unwrap();
        assert_eq!(client.execute(thead, vec![]).await.unwrap(), json!("none"));
        client.goto(&format!("{base}/console")).await.unwrap();
        screenshot(&client, "console-phone.png").await;
    })
    .await;
    if ran {
        // The API agrees with what the page showed.
        let body = app.wait_status(&dead_id, "delivered").await;
        assert_eq!(body["attempts"], 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_operator_logs_in_through_the_form() {
    let ok = Arc::new(AtomicBool::new(true));
    let app = failing_until(ok, Some("browser-admin-token")).await;
    let stored = app.post_ok(fixture("identity_is_ready")).await;
    let id = stored["id"].as_str().unwrap().to_owned();
    let base = app.base.clone();
    with_browser(|client| async move {
        client.goto(&format!("{base}/console")).await.unwrap();
        assert!(client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/console/login"));

        type_into(&client, "#token", "not-the-token").await;
        click(&client, "#login").await;
        wait_text(&client, "p.error", "That is not the admin token").await;

        type_into(&client, "#token", "browser-admin-token").await;
        click(&client, "#login").await;
        wait_text(&client, "h1", "Callbacks").await;
        assert!(text(&client, "table.callbacks").await.contains(&id));
        // The session cookie is out of the page's reach, and the token is in no URL.
        let cookies = client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert_eq!(cookies, json!(""));
        assert!(!client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("browser-admin-token"));

        // Masked until revealed.
        client
            .find(Locator::LinkText(&id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&client, "h1", &id).await;
        assert!(!text(&client, "#payload").await.contains("22222222222"));
        click(&client, "#reveal").await;
        wait_text(&client, "#payload", "22222222222").await;

        // Log out: back to the form, and the list is closed again.
        click(&client, "header button.link").await;
        wait_text(&client, "h1", "Log in").await;
        client.goto(&format!("{base}/console")).await.unwrap();
        assert!(client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/console/login"));
    })
    .await;
}

/// The ids in the list's rows, top to bottom.
async fn listed_ids(client: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for cell in client
        .find_all(Locator::Css("table.callbacks tbody td.id"))
        .await
        .unwrap()
    {
        ids.push(cell.text().await.unwrap());
    }
    ids
}

/// A receiver with a Mono source gets a callback from Okra, then (a second later) one from
/// Mono. In a browser whose zone is not UTC, the operator filters by source and sees Mono's
/// only, with its source; its time shows as the stored UTC time, labelled, and typed into
/// "received after" / "received before" it means that same instant.
async fn an_operator_filters_by_source_and_copies_a_time_into_the_filters(backend: Backend) {
    let app = app(backend)
        .await
        .sources("[sources.mono]\npreset = \"mono\"\nsecret = \"s3cret-mono\"\n")
        .spawn()
        .await;
    let okra = app.post_ok(fixture("identity_is_ready")).await;
    let okra_id = okra["id"].as_str().unwrap().to_owned();
    // A later second than Okra's, so that a time to the second tells them apart.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/mono/account_updated.json"
    );
    let secret = [("mono-webhook-secret".to_owned(), "s3cret-mono".to_owned())];
    let mono = app
        .post_source_ok("mono", &secret, std::fs::read(sample).unwrap())
        .await;
    let mono_id = mono["id"].as_str().unwrap().to_owned();
    let (_, stored) = app.get_callback(&mono_id).await;
    let received = chrono::DateTime::parse_from_rfc3339(stored["received_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let shown_utc = received.format("%Y-%m-%d %H:%M:%S UTC").to_string();

    let base = app.base.clone();
    with_browser(|client| async move {
        client.goto(&format!("{base}/console")).await.unwrap();
        // The browser is not in UTC: a time in its zone would read an hour later.
        let zone = "return [Intl.DateTimeFormat().resolvedOptions().timeZone, new Date(0).getTimezoneOffset()]";
        let zone = client.execute(zone, vec![]).await.unwrap();
        assert_eq!(zone, json!([BROWSER_ZONE, -60]));
        assert_eq!(listed_ids(&client).await, [mono_id.as_str(), okra_id.as_str()]);

        // Filter by source: Mono's only, with its source.
        click(&client, "input[name=source][value=mono]").await;
        click(&client, "form.filters button[type=submit]").await;
        wait_text(&client, "table.callbacks tbody", &mono_id).await;
        assert_eq!(listed_ids(&client).await, [mono_id.as_str()]);
        assert_eq!(text(&client, "tbody td[data-label=Source]").await, "mono");
        let source_ticked = client
            .find(Locator::Css("input[name=source][value=mono]"))
            .await
            .unwrap()
            .prop("checked")
            .await
            .unwrap();
        assert_eq!(source_ticked.as_deref(), Some("true"));
        // Its time is the stored UTC time, labelled, whatever the browser's zone.
        let copied = text(&client, "tbody td[data-label=Received]").await;
        assert_eq!(copied, shown_utc);

        // Typed into the filters as copied, it is the same instant: Mono's is received at or
        // after it, Okra's (a second earlier) before it.
        client.goto(&format!("{base}/console")).await.unwrap();
        type_into(&client, "input[name=received_after]", &copied).await;
        click(&client, "form.filters button[type=submit]").await;
        wait_text(&client, "table.callbacks tbody", &mono_id).await;
        assert_eq!(listed_ids(&client).await, [mono_id.as_str()]);
        client.goto(&format!("{base}/console")).await.unwrap();
        type_into(&client, "input[name=received_before]", &copied).await;
        click(&client, "form.filters button[type=submit]").await;
        wait_text(&client, "table.callbacks tbody", &okra_id).await;
        assert_eq!(listed_ids(&client).await, [okra_id.as_str()]);

        // Its page names the source and shows the same time.
        client
            .goto(&format!("{base}/console/callbacks/{mono_id}"))
            .await
            .unwrap();
        wait_text(&client, "h1", &mono_id).await;
        assert_eq!(text(&client, "#source").await, "mono");
        let received = client
            .find(Locator::XPath("//dt[.='Received']/following-sibling::dd[1]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(received, shown_utc);
    })
    .await;
}

both_stores!(an_operator_filters_by_source_and_copies_a_time_into_the_filters);

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
