//! The console's pages through the whole router (`oneshot`, no socket): status, escaping, the
//! security headers, the admin rule, login, CSRF and masking. (Here rather than beside the code:
//! in the library's unit-test binary, their requests through the router's trace layer raced the
//! test that captures that layer's span with a thread-local subscriber.)

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use chrono::{DateTime, Utc};
use tower::ServiceExt;

use crate::both_stores;
use crate::store::Shortcuts;
use crate::support::{Backend, TestDb};
use okra_callbacks::{
    store::{self, NewCallback, Outcome, SqliteStore, Status, Store},
    AllOf, Config, Receiver, Secret,
};
/// The console's page size.
const PAGE_SIZE: usize = 50;

const XSS: &str = "<script>alert(1)</script>";

/// A router over a fresh SQLite store, and the store.
async fn console(admin_token: Option<&str>) -> (Router, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("c.db")).await.unwrap());
    let mut config = Config::default();
    config.access.admin_token = admin_token.map(Secret::new);
    let receiver = Receiver::with_store(config, store.clone(), Arc::new(AllOf::new())).unwrap();
    (receiver.router(), store, dir)
}

/// Stores an Okra callback of `record`, received now; returns its id.
async fn seed(store: &Arc<dyn Store>, record: &str, body: serde_json::Value) -> String {
    seed_as(store, "okra", record, body, Utc::now()).await
}

/// Stores a callback of `source` about `record`, received at `received_at`; returns its id.
async fn seed_as(
    store: &Arc<dyn Store>,
    source: &str,
    record: &str,
    body: serde_json::Value,
    received_at: DateTime<Utc>,
) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert(
            NewCallback {
                id: id.clone(),
                source: source.into(),
                event_id: None,
                record: record.to_owned(),
                callback_type: "IDENTITY".into(),
                callback_code: Some("IDENTITY_IS_READY".into()),
                body: body.to_string().into(),
                received_at,
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    id
}

/// Makes every pending callback dead after one failed attempt.
async fn kill_all(store: &Arc<dyn Store>) {
    let lease = Duration::from_secs(30);
    for claim in store.claim("test", 100, 100, lease).await.unwrap() {
        for cb in &claim.callbacks {
            let error = "forward target answered 502".to_owned();
            store
                .finish("test", cb, Outcome::Dead { error }, lease)
                .await
                .unwrap();
        }
        store.release("test", &claim.record).await.unwrap();
    }
}

fn identity(record: &str) -> serde_json::Value {
    serde_json::json!({
        "callback_type": "IDENTITY", "callback_code": "IDENTITY_IS_READY", "record": record,
        "bankName": "Example Bank",
        "identity": {"bvn": "22222222222", "fullname": "Ada N Obi", "phone": ["+2348000000000"],
                     "email": ["ada@example.com"], "address": ["1 Example Street, Lagos"]},
    })
}

/// A request from `peer` (the socket's address, as the server records it).
fn from(peer: &str, request: axum::http::request::Builder, body: Body) -> Request<Body> {
    let mut request = request.body(body).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn local(request: axum::http::request::Builder) -> Request<Body> {
    from("127.0.0.1:50000", request, Body::empty())
}

fn post_form(uri: &str, form: &str) -> Request<Body> {
    from(
        "127.0.0.1:50000",
        Request::post(uri)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "http://127.0.0.1:8080")
            .header("sec-fetch-site", "same-origin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        Body::from(form.to_owned()),
    )
}

async fn send(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_list_shows_callbacks_with_status_and_strict_headers() {
    let (router, store, _dir) = console(None).await;
    let id = seed(&store, "rec_list", identity("rec_list")).await;
    let (status, headers, page) = send(&router, local(Request::get("/console"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&id), "{page}");
    assert!(page.contains("rec_list"));
    assert!(
        page.contains(r#"<span class="badge pending">pending</span>"#),
        "{page}"
    );
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    // No inline script or style anywhere: the policy would block it.
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains(" style="));

    // The embedded script and stylesheet are served by the binary.
    for (path, kind) in [
        ("/console/static/console.js", "text/javascript"),
        ("/console/static/console.css", "text/css"),
    ] {
        let (status, headers, text) = send(&router, local(Request::get(path))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(text.len() > 100, "{path}");
    }
}

#[tokio::test]
async fn filters_narrow_the_list_and_bad_ones_say_what_is_wrong() {
    let (router, store, _dir) = console(None).await;
    let dead = seed(&store, "rec_dead", identity("rec_dead")).await;
    kill_all(&store).await;
    let pending = seed(&store, "rec_pending", identity("rec_pending")).await;

    let (status, _, page) = send(&router, local(Request::get("/console?status=dead"))).await;
    assert_eq!(status, StatusCode::OK);
    // The counts above the list, from the store's stats.
    let stats = page
        .split(r#"id="stats""#)
        .nth(1)
        .expect("the counts")
        .split("</p>")
        .next()
        .unwrap();
    assert!(
        stats.contains(r#"<span class="badge pending">pending</span> 1"#),
        "{stats}"
    );
    assert!(
        stats.contains(r#"<span class="badge dead">dead</span> 1"#),
        "{stats}"
    );
    assert!(page.contains(&dead) && !page.contains(&pending), "{page}");
    // The checkbox stays ticked.
    assert!(page.contains(r#"value="dead" checked"#), "{page}");

    let (_, _, page) = send(&router, local(Request::get("/console?record=rec_pending"))).await;
    assert!(page.contains(&pending) && !page.contains(&dead), "{page}");

    // Times: RFC 3339 in a link, shown back as typed; a window before both.
    let (status, _, page) = send(
        &router,
        local(Request::get("/console?received_after=2000-01-01T00:00:00Z")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&dead) && page.contains(&pending), "{page}");
    assert!(page.contains(r#"value="2000-01-01T00:00:00Z""#), "{page}");
    let (_, _, page) = send(
        &router,
        local(Request::get("/console?received_before=2000-01-01T00:00")),
    )
    .await;
    assert!(!page.contains(&dead) && !page.contains(&pending), "{page}");
    assert!(
        page.contains("No callback matches these filters."),
        "{page}"
    );

    let (status, _, page) = send(&router, local(Request::get("/console?status=bogus"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("`bogus` is not a status: use pending, delivered or dead"),
        "{page}"
    );

    let (status, _, page) = send(
        &router,
        local(Request::get("/console?received_after=yesterday")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("received after"), "{page}");

    let (status, _, page) = send(&router, local(Request::get("/console?cursor=forged"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("out of date or was altered"), "{page}");
}

#[tokio::test]
async fn pages_walk_every_callback_once() {
    let (router, store, _dir) = console(None).await;
    let mut ids = Vec::new();
    for n in 0..(PAGE_SIZE + 5) {
        ids.push(
            seed(
                &store,
                "rec_pages",
                serde_json::json!({"record": "rec_pages", "n": n}),
            )
            .await,
        );
    }
    let (_, _, first) = send(&router, local(Request::get("/console"))).await;
    let next = first
        .split(r#"rel="next" href=""#)
        .nth(1)
        .expect("a link to the next page")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (status, _, second) = send(&router, local(Request::get(next.as_str()))).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    for id in &ids {
        let shown =
            usize::from(first.contains(id.as_str())) + usize::from(second.contains(id.as_str()));
        assert_eq!(shown, 1, "{id} shown {shown} times");
    }
    assert!(!second.contains(r#"rel="next""#));
}

#[tokio::test]
async fn payload_values_are_escaped() {
    let (router, store, _dir) = console(None).await;
    let id = seed(
        &store,
        XSS,
        serde_json::json!({"record": XSS, "note": "</pre><img src=x onerror=alert(2)>"}),
    )
    .await;
    let (_, _, list) = send(&router, local(Request::get("/console"))).await;
    let (status, _, detail) = send(
        &router,
        local(Request::get(format!("/console/callbacks/{id}"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    for page in [&list, &detail] {
        assert!(!page.contains(XSS), "raw markup in {page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(!page.contains("<img src=x"), "{page}");
    }
}

#[tokio::test]
async fn personal_data_is_masked_until_revealed() {
    let (router, store, _dir) = console(None).await;
    let id = seed(&store, "rec_pii", identity("rec_pii")).await;
    let path = format!("/console/callbacks/{id}");
    let (status, _, page) = send(&router, local(Request::get(path.as_str()))).await;
    assert_eq!(status, StatusCode::OK);
    for secret in [
        "22222222222",
        "Ada N Obi",
        "+2348000000000",
        "ada@example.com",
        "Example Street",
    ] {
        assert!(!page.contains(secret), "{secret} shows before reveal");
    }
    assert!(
        page.contains("Example Bank"),
        "non-personal fields stay visible"
    );
    assert!(
        page.contains("Personal data is masked (5 fields)"),
        "{page}"
    );

    // Reveal is a POST with the page's CSRF token.
    let csrf = csrf_of(&page);
    let (status, _, shown) = send(
        &router,
        post_form(&format!("{path}/reveal"), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(
        shown.contains("22222222222") && shown.contains("ada@example.com"),
        "{shown}"
    );

    // Not without it.
    let (status, _, refused) = send(&router, post_form(&format!("{path}/reveal"), "csrf=")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!refused.contains("22222222222"));
}

#[tokio::test]
async fn history_and_replay_from_the_detail_page() {
    let (router, store, _dir) = console(None).await;
    let id = seed(&store, "rec_hist", identity("rec_hist")).await;
    kill_all(&store).await;
    let path = format!("/console/callbacks/{id}");
    let (_, _, page) = send(&router, local(Request::get(path.as_str()))).await;
    assert!(
        page.contains(r#"<span class="badge dead">dead</span>"#),
        "{page}"
    );
    assert!(page.contains("Attempt 1"), "{page}");
    assert!(page.contains("forward target answered 502"), "{page}");

    let csrf = csrf_of(&page);
    let (status, headers, _) = send(
        &router,
        post_form(&format!("{path}/replay"), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], format!("{path}?replayed=1"));
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        Status::Pending
    );
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_site_are_refused() {
    let (router, store, _dir) = console(None).await;
    let id = seed(&store, "rec_csrf", identity("rec_csrf")).await;
    kill_all(&store).await;
    let path = format!("/console/callbacks/{id}/replay");
    let (_, _, page) = send(
        &router,
        local(Request::get(format!("/console/callbacks/{id}"))),
    )
    .await;
    let csrf = csrf_of(&page);

    // A wrong token.
    let (status, _, body) = send(&router, post_form(&path, "csrf=00ff")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("reload the page and try again"), "{body}");
    // The right token, but sent by another site's page.
    let cross = from(
        "127.0.0.1:50000",
        Request::post(path.as_str())
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "https://evil.example")
            .header("sec-fetch-site", "cross-site"),
        Body::from(format!("csrf={csrf}")),
    );
    let (status, _, body) = send(&router, cross).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("not sent from the console"), "{body}");
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, Status::Dead);

    // Bulk replay needs it too; with it, only dead callbacks matching the filter are replayed.
    let other = seed(&store, "rec_other", identity("rec_other")).await;
    kill_all(&store).await;
    let (status, _, _) = send(&router, post_form("/console/replay", "record=rec_csrf")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, confirm) = send(
        &router,
        local(Request::get("/console/replay?record=rec_csrf")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("<strong>1</strong> dead callback match"),
        "{confirm}"
    );
    let (status, _, done) = send(
        &router,
        post_form("/console/replay", &format!("csrf={csrf}&record=rec_csrf")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(
        done.contains("<strong>1</strong> dead callback handed"),
        "{done}"
    );
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        Status::Pending
    );
    assert_eq!(
        store.get(&other).await.unwrap().unwrap().status,
        Status::Dead
    );
}

#[tokio::test]
async fn without_an_admin_token_only_loopback_clients_by_a_local_name() {
    let (router, _store, _dir) = console(None).await;
    let (status, _, page) = send(
        &router,
        from("203.0.113.7:40000", Request::get("/console"), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("loopback clients only"), "{page}");
    assert!(page.contains("<html"), "an HTML page, not JSON: {page}");

    // DNS rebinding: a loopback peer, but a foreign host name.
    let (status, _, page) = send(
        &router,
        local(Request::get("/console").header(header::HOST, "rebind.evil.example:8080")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("--admin-token"), "{page}");

    let (status, _, _) = send(
        &router,
        local(Request::get("/console").header(header::HOST, "localhost:8080")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn with_an_admin_token_the_operator_logs_in_once() {
    let (router, store, _dir) = console(Some("admin-s3cret")).await;
    let id = seed(&store, "rec_login", identity("rec_login")).await;
    kill_all(&store).await;

    // No session: the list sends to the login form, a POST is refused, from anywhere.
    let (status, headers, _) = send(&router, local(Request::get("/console"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/console/login");
    let (status, _, _) = send(
        &router,
        post_form(&format!("/console/callbacks/{id}/replay"), ""),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A bearer token is not a session: the token never travels but through the login form.
    let bearer =
        local(Request::get("/console").header(header::AUTHORIZATION, "Bearer admin-s3cret"));
    assert_eq!(send(&router, bearer).await.0, StatusCode::SEE_OTHER);

    let (status, _, page) = send(&router, post_form("/console/login", "token=wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("That is not the admin token"), "{page}");

    let (status, headers, _) =
        send(&router, post_form("/console/login", "token=admin-s3cret")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/console");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(!cookie.contains("admin-s3cret"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(
        !cookie.to_ascii_lowercase().contains("max-age"),
        "a session cookie: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();

    // A remote client with the session gets in (the token replaces the loopback rule).
    let with_session = |uri: &str| {
        from(
            "203.0.113.7:40000",
            Request::get(uri).header(header::COOKIE, session.as_str()),
            Body::empty(),
        )
    };
    let (status, _, page) = send(&router, with_session("/console")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&id) && page.contains("Log out"), "{page}");

    // Its CSRF token works with its session only.
    let csrf = csrf_of(&page);
    let replay = |cookie: Option<&str>, csrf: &str| {
        let mut request = Request::post(format!("/console/callbacks/{id}/replay"))
            .header("sec-fetch-site", "same-origin");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        from(
            "203.0.113.7:40000",
            request,
            Body::from(format!("csrf={csrf}")),
        )
    };
    let (status, _, _) = send(&router, replay(Some(&session), "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&router, replay(None, &csrf)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, Status::Dead);
    let (status, _, _) = send(&router, replay(Some(&session), &csrf)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().status,
        Status::Pending
    );

    // A session signed with another token is refused.
    let (other_router, _s, _d) = console(Some("another-token")).await;
    let (status, _, _) = send(&other_router, with_session("/console")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Log out clears the cookie.
    let logout = from(
        "203.0.113.7:40000",
        Request::post("/console/logout")
            .header(header::COOKIE, session.as_str())
            .header("sec-fetch-site", "same-origin"),
        Body::from(format!("csrf={csrf}")),
    );
    let (status, headers, _) = send(&router, logout).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

/// The part of `page` from `from` to the next `to`.
fn between<'a>(page: &'a str, from: &str, to: &str) -> &'a str {
    let rest = page
        .split_once(from)
        .unwrap_or_else(|| panic!("no {from} in {page}"))
        .1;
    rest.split_once(to).map_or(rest, |(part, _)| part)
}

/// Sources in the console, on both stores: a Source column and a source on the detail page; a
/// source filter (several at once) offering `okra`, the configured sources and those the store
/// holds; an unknown or malformed name answered with what to choose; bulk replay carries the
/// source; and times shown in UTC read back by the filters as the same instant.
async fn sources_and_times_in_the_console(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sources.toml");
    let toml = "[sources.mono]\npreset = \"mono\"\nsecret = \"s3cret-mono\"\n";
    std::fs::write(&file, toml).unwrap();
    let mut config = Config::default();
    config.access.sources = Some(file);
    let receiver = Receiver::with_store(config, store.clone(), Arc::new(AllOf::new())).unwrap();
    let router = receiver.router();

    let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    let body = |n: u32| serde_json::json!({"n": n});
    let okra = seed_as(
        &store,
        "okra",
        "rec_o",
        body(1),
        at("2026-12-07T11:42:03.900Z"),
    )
    .await;
    let mono = seed_as(
        &store,
        "mono",
        "acc_m",
        body(2),
        at("2026-12-07T11:42:05.300Z"),
    )
    .await;
    // A source no longer in the sources file still has callbacks to find.
    let gone = seed_as(
        &store,
        "gone",
        "rec_g",
        body(3),
        at("2026-12-07T11:42:07.000Z"),
    )
    .await;

    let (status, _, page) = send(&router, local(Request::get("/console"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<th>Source</th>"), "{page}");
    let mono_row = page
        .split("<tr>")
        .find(|row| row.contains(&mono))
        .expect("mono's row");
    assert!(
        mono_row.contains(
            r#"<td class="source" data-label="Source"><a href="/console?source=mono">mono</a></td>"#
        ),
        "{mono_row}"
    );
    // Its record links to that source's record.
    assert!(
        mono_row.contains(r#"<a href="/console?source=mono&amp;record=acc_m">acc_m</a>"#),
        "{mono_row}"
    );
    // Every time in UTC, labelled, as the server wrote it.
    assert!(
        mono_row.contains(
            r#"<time datetime="2026-12-07T11:42:05.300Z">2026-12-07 11:42:05 UTC</time>"#
        ),
        "{mono_row}"
    );
    let offered = between(&page, r#"<fieldset class="sources">"#, "</fieldset>");
    for name in ["gone", "mono", "okra"] {
        assert!(
            offered.contains(&format!(r#"name="source" value="{name}""#)),
            "{name} is offered: {offered}"
        );
    }

    let list = |query: &'static str| {
        let router = router.clone();
        async move { send(&router, local(Request::get(format!("/console?{query}")))).await }
    };
    let (_, _, page) = list("source=mono").await;
    assert!(
        page.contains(&mono) && !page.contains(&okra) && !page.contains(&gone),
        "{page}"
    );
    assert!(page.contains(r#"value="mono" checked"#), "{page}");
    for query in ["source=mono&source=okra", "source=okra,mono"] {
        let (status, _, page) = list(query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert!(
            page.contains(&mono) && page.contains(&okra),
            "{query}: {page}"
        );
        assert!(!page.contains(&gone), "{query}: {page}");
    }
    let (_, _, page) = list("source=gone").await;
    assert!(page.contains(&gone) && !page.contains(&mono), "{page}");

    let (status, _, page) = list("source=mono,plaid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("`plaid` is not a source of this receiver: choose among gone, mono, okra"),
        "{page}"
    );
    assert!(
        page.contains(r#"class="sources""#),
        "the form stays: {page}"
    );
    let (status, _, page) = list("source=Mono").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("`Mono` is not a source's name"), "{page}");

    // A time copied from the list means that instant: mono's is after okra's, not after mono's.
    let (status, _, page) = list("received_after=2026-12-07+11%3A42%3A05+UTC").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&mono) && !page.contains(&okra), "{page}");
    assert!(
        page.contains(r#"value="2026-12-07 11:42:05 UTC""#),
        "shown as typed: {page}"
    );
    let (_, _, page) = list("received_before=2026-12-07+11%3A42%3A05+UTC").await;
    assert!(page.contains(&okra) && !page.contains(&mono), "{page}");

    // One callback's page names its source.
    let path = format!("/console/callbacks/{mono}");
    let (_, _, page) = send(&router, local(Request::get(path.as_str()))).await;
    assert!(
        page.contains(r#"<dd id="source"><a href="/console?source=mono">mono</a></dd>"#),
        "{page}"
    );

    // Bulk replay carries the source: only mono's dead callback goes back.
    kill_all(&store).await;
    let (status, _, page) = send(&router, local(Request::get("/console/replay?source=mono"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        between(&page, r#"id="matching""#, "</p>").contains("<strong>1</strong>"),
        "{page}"
    );
    assert!(
        page.contains(r#"<input type="hidden" name="source" value="mono">"#),
        "{page}"
    );
    assert!(page.contains("<dt>Source</dt><dd>mono</dd>"), "{page}");
    let csrf = csrf_of(&page);
    let (status, _, page) = send(
        &router,
        post_form("/console/replay", &format!("csrf={csrf}&source=mono")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains(r#"id="replayed""#) && page.contains("<strong>1</strong>"),
        "{page}"
    );
    let status_of = |id: String| {
        let store = store.clone();
        async move { store.get(&id).await.unwrap().unwrap().status }
    };
    assert_eq!(status_of(mono.clone()).await, Status::Pending);
    assert_eq!(status_of(okra.clone()).await, Status::Dead);
    assert_eq!(status_of(gone.clone()).await, Status::Dead);
    let (status, _, page) =
        send(&router, local(Request::get("/console/replay?source=plaid"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(
        page.contains("`plaid` is not a source of this receiver"),
        "{page}"
    );
}

both_stores!(sources_and_times_in_the_console);
