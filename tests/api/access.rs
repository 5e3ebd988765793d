//! Who may do what: the callback token on the sink, the admin token on the read and replay API
//! (from flags or files), the loopback rule without one, forwarded headers and trusted proxies,
//! and `--allow-from`.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode},
    Router,
};
use okra_callbacks::{Config, LogHandler, Receiver, Secret};
use serde_json::Value;
use tower::ServiceExt;

use crate::both_stores;
use crate::support::{app, callback, error_body, paths, test_config, Backend, TestDb};

const CALLBACK_TOKEN: &str = "cb-token-4f1c9a";
const ADMIN_TOKEN: &str = "admin-token-7d2e0b";

// ---------------------------------------------------------------------------------------------
// Tokens

async fn admin_token_is_required_on_every_read_and_replay_endpoint(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| {
            c.access.callback_token = Some(Secret::new(CALLBACK_TOKEN));
            c.access.admin_token = Some(Secret::new(ADMIN_TOKEN));
        })
        .spawn()
        .await;
    let stored = app
        .callback_request()
        .bearer_auth(CALLBACK_TOKEN)
        .body(callback("r-admin", "AUTH", "AUTH_SUCCESS", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let id = stored.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let endpoints = [
        ("GET", paths::record_query("r-admin", "AUTH"), 200),
        ("GET", paths::callback(&id), 200),
        ("POST", paths::replay(&id), 202),
        ("POST", paths::REPLAY_DEAD.to_owned(), 202),
        ("GET", "/metrics".to_owned(), 200),
    ];
    for (method, path, ok_status) in &endpoints {
        let request = |auth: Option<String>| {
            let mut r = app.client.request(method.parse().unwrap(), app.url(path));
            if let Some(value) = auth {
                r = r.header("authorization", value);
            }
            r
        };
        for auth in [
            None,
            Some("Bearer wrong-token".to_owned()),
            Some(format!("Bearer {CALLBACK_TOKEN}")),
            Some(ADMIN_TOKEN.to_owned()),
            Some(format!("Basic {ADMIN_TOKEN}")),
            Some(format!("Bearer {ADMIN_TOKEN}x")),
        ] {
            let response = request(auth.clone()).send().await.unwrap();
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let (status, code, message) = error_body(response).await;
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "{method} {path} with {auth:?}"
            );
            assert!(message.contains("--admin-token"), "{message}");
        }
        let response = request(Some(format!("Bearer {ADMIN_TOKEN}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), *ok_status, "{method} {path}");
    }
    // Health checks stay open to load balancers.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.get_json(path).await.0, 200, "{path}");
    }
}

/// Tokens read from files, their line end trimmed: the callback token guards the sink, and the
/// admin token the HTTP API, where loopback alone is then not enough.
async fn tokens_from_files_guard_the_sink_and_the_http_api(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = dir.path().join("admin-token");
    std::fs::write(&admin_token, "token-from-a-file\n").unwrap();
    let callback_token = dir.path().join("callback-token");
    std::fs::write(&callback_token, "okra-from-file\r\n").unwrap();
    let app = app(backend)
        .await
        .config(|c| {
            c.access.admin_token_file = Some(admin_token.clone());
            c.access.callback_token_file = Some(callback_token.clone());
        })
        .spawn()
        .await;

    let body = callback("r-file", "AUTH", "AUTH_SUCCESS", 0);
    assert_eq!(app.post(body.clone()).await.status(), 401);
    let ok = app
        .callback_request()
        .bearer_auth("okra-from-file")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let url = app.url(&paths::record_query("nothing", "AUTH"));
    let without = app.client.get(&url).send().await.unwrap();
    assert_eq!(
        without.status(),
        401,
        "loopback alone is not enough once a token is set"
    );
    let with_file_token = app
        .client
        .get(&url)
        .bearer_auth("token-from-a-file")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_body(with_file_token).await;
    assert_eq!((status, code.as_str()), (404, "record_not_found"));
}

// ---------------------------------------------------------------------------------------------
// Who is calling: the loopback rule, forwarded headers, --allow-from. These drive the router with
// `oneshot` and a chosen socket peer, since every real test socket is on loopback.

async fn router_with(f: impl FnOnce(&mut Config)) -> (Router, TestDb) {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    f(&mut config);
    let receiver = Receiver::new(config, LogHandler::new()).await.unwrap();
    (receiver.router(), db)
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    peer: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The admin read every peer test tries.
fn list() -> String {
    paths::record_query("r-peer", "AUTH")
}

#[tokio::test]
async fn without_an_admin_token_only_loopback_clients_read() {
    let (router, _db) = router_with(|_| {}).await;
    for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
        let (status, body) = call(&router, "GET", &list(), peer, &[], "").await;
        assert_eq!(status, 404, "{peer}: {body}"); // allowed through; nothing stored yet
        assert_eq!(body["error"]["code"], "record_not_found");
    }
    for peer in ["203.0.113.5:5000", "10.0.0.2:5000", "[2001:db8::1]:5000"] {
        for path in [
            list(),
            "/metrics".to_owned(),
            paths::callback("x"),
            paths::replay("x"),
        ] {
            let path = path.as_str();
            let method = if path.ends_with("replay") {
                "POST"
            } else {
                "GET"
            };
            let (status, body) = call(&router, method, path, peer, &[], "").await;
            assert_eq!(status, 403, "{peer} {path}");
            assert_eq!(body["error"]["code"], "forbidden");
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--admin-token"));
        }
    }
    // Health checks are open to all.
    let (status, _) = call(&router, "GET", "/healthz", "203.0.113.5:1", &[], "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_spoofed_forwarded_header_from_an_untrusted_peer_is_refused() {
    let (router, _db) = router_with(|c| {
        c.access.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let spoofs: [&[(&str, &str)]; 4] = [
        &[("x-forwarded-for", "127.0.0.1")],
        &[("x-forwarded-for", "127.0.0.1, 127.0.0.1")],
        &[("x-real-ip", "127.0.0.1")],
        &[("forwarded", "for=127.0.0.1")],
    ];
    for headers in spoofs {
        let (status, body) = call(&router, "GET", &list(), "203.0.113.5:4000", headers, "").await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // Through a trusted proxy, the client's own spoofed entry at the left does not count.
    let (status, _) = call(
        &router,
        "GET",
        &list(),
        "10.0.0.2:4000",
        &[("x-forwarded-for", "127.0.0.1, 198.51.100.7")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // A trusted proxy relaying a loopback client is believed.
    let (status, _) = call(
        &router,
        "GET",
        &list(),
        "10.0.0.2:4000",
        &[("x-forwarded-for", "127.0.0.1")],
        "",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_local_proxy_not_listed_as_trusted_does_not_open_the_admin_api() {
    // nginx on the same host, not in --trusted-proxies: the real client behind it is unknown.
    let (router, _db) = router_with(|_| {}).await;
    let (status, body) = call(
        &router,
        "GET",
        &list(),
        "127.0.0.1:4000",
        &[("x-forwarded-for", "198.51.100.7")],
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--trusted-proxies"));
    // Listed as trusted, it names the client, and a remote one is refused, a local one served.
    let (router, _db) = router_with(|c| {
        c.access.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let remote = [("x-forwarded-for", "198.51.100.7")];
    assert_eq!(
        call(&router, "GET", &list(), "127.0.0.1:4000", &remote, "")
            .await
            .0,
        403
    );
    let local = [("x-forwarded-for", "127.0.0.1")];
    assert_eq!(
        call(&router, "GET", &list(), "127.0.0.1:4000", &local, "")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn allow_from_limits_who_may_post_callbacks() {
    let (router, _db) = router_with(|c| {
        c.access.allow_from = vec!["198.51.100.0/24".parse().unwrap()];
        c.access.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let body = callback("r-allow", "AUTH", "AUTH_SUCCESS", 0);
    let (status, answer) = call(
        &router,
        "POST",
        paths::CALLBACK,
        "198.51.100.7:1",
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for (peer, headers) in [
        ("203.0.113.5:1", vec![]),
        ("127.0.0.1:1", vec![]),
        // A spoofed header from an untrusted peer is ignored.
        ("203.0.113.5:1", vec![("x-forwarded-for", "198.51.100.7")]),
        // Through a trusted proxy, the real client counts.
        ("10.0.0.2:1", vec![("x-forwarded-for", "203.0.113.5")]),
    ] {
        let (status, answer) = call(&router, "POST", paths::CALLBACK, peer, &headers, &body).await;
        assert_eq!(status, 403, "{peer} {headers:?}");
        assert_eq!(answer["error"]["code"], "forbidden");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--allow-from"));
    }
    let (status, _) = call(
        &router,
        "POST",
        paths::CALLBACK,
        "10.0.0.2:1",
        &[("x-forwarded-for", "198.51.100.7")],
        &body,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn allow_from_applies_to_real_sockets() {
    let body = callback("r-allow-socket", "AUTH", "AUTH_SUCCESS", 0);
    let refused = app(Backend::Sqlite)
        .await
        .config(|c| c.access.allow_from = vec!["10.0.0.0/8".parse().unwrap()])
        .spawn()
        .await;
    let (status, code, _) = error_body(refused.post(body.clone()).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let allowed = app(Backend::Sqlite)
        .await
        .config(|c| c.access.allow_from = vec!["127.0.0.1/32".parse().unwrap()])
        .spawn()
        .await;
    allowed.post_ok(body).await;
}

both_stores!(
    admin_token_is_required_on_every_read_and_replay_endpoint,
    tokens_from_files_guard_the_sink_and_the_http_api,
);
