//! The whole request path: arbitrary methods, paths, peers, headers and bodies through the real
//! `Router` (auth, network rules, signatures, body limits, parsing, storing in SQLite), under three
//! configurations. Besides "never panics", every answer must be one of ours: no 500, every error
//! a JSON `{"error": {"code", "message"}}` body, and no secret ever echoed back.

#![no_main]

#[path = "runtime.rs"]
mod runtime;

use std::{net::SocketAddr, sync::OnceLock};

use arbitrary::Arbitrary;
use axum::{body::Body, extract::ConnectInfo, http::Request, Router};
use libfuzzer_sys::fuzz_target;
use okra_callbacks::{source::Verifier, Config, LogHandler, Receiver, Secret};
use runtime::runtime;
use tower::ServiceExt;

const CALLBACK_TOKEN: &str = "fuzz-callback-token";
const ADMIN_TOKEN: &str = "fuzz-admin-token";
const HMAC_SECRET: &str = "fuzz-hmac-secret";
const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SECRETS: [&str; 4] = [
    CALLBACK_TOKEN,
    ADMIN_TOKEN,
    HMAC_SECRET,
    "C2FVsBQIhrscChlQIMV",
];

const PATHS: [&str; 13] = [
    "/v1/callback",
    "/v1/callback?record=r1&method=auth",
    "/v1/callback?record=&method=NOPE",
    "/v1/callbacks/00000000-0000-0000-0000-000000000000",
    "/v1/callbacks/x/replay",
    "/v1/callbacks/%FF",
    "/v1/callbacks/%FF/replay",
    "/v1/callback?record=r1&method=AUTH&method=AUTH",
    "/v1/callbacks?status=dead&status=dead&limit=x",
    "/v1/callbacks/replay?status=dead",
    "/metrics",
    "/healthz",
    "/readyz",
];
const METHODS: [&str; 5] = ["POST", "GET", "PUT", "DELETE", "HEAD"];
const HEADERS: [&str; 10] = [
    "authorization",
    "content-type",
    "content-length",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-okra-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];
const PEERS: [&str; 5] = [
    "127.0.0.1:1",
    "[::1]:1",
    "10.0.0.2:1",
    "198.51.100.7:1",
    "203.0.113.9:1",
];

#[derive(Arbitrary, Debug)]
struct Input {
    setup: u8,
    method: u8,
    path: u8,
    raw_path: Option<String>,
    peer: u8,
    /// Send the right token for the route (the fuzzer cannot guess it).
    good_token: bool,
    /// Sign the body correctly (the fuzzer cannot forge a signature).
    good_signature: bool,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
}

struct Setup {
    router: Router,
    signer: Option<Verifier>,
    _dir: tempfile::TempDir,
}

fn setups() -> &'static [Setup] {
    static SETUPS: OnceLock<Vec<Setup>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        (0..3)
            .map(|n| {
                // tmpfs when there is one: the store's fsyncs would slow the fuzzer down.
                let dir = tempfile::tempdir_in("/dev/shm")
                    .or_else(|_| tempfile::tempdir())
                    .unwrap();
                let mut config = Config::default();
                config.store.database_url =
                    format!("sqlite://{}", dir.path().join("fuzz.db").display());
                let signer = match n {
                    0 => None,
                    1 => {
                        config.access.callback_token = Some(Secret::new(CALLBACK_TOKEN));
                        config.access.admin_token = Some(Secret::new(ADMIN_TOKEN));
                        config.access.hmac_secret = Some(Secret::new(HMAC_SECRET));
                        config.access.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
                        config.access.allow_from = vec![
                            "198.51.100.0/24".parse().unwrap(),
                            "127.0.0.0/8".parse().unwrap(),
                        ];
                        Some(
                            Verifier::hmac_sha256(HMAC_SECRET.as_bytes(), "X-Okra-Signature")
                                .unwrap(),
                        )
                    }
                    _ => {
                        config.access.callback_token = Some(Secret::new(CALLBACK_TOKEN));
                        config.access.webhook_secret = Some(Secret::new(WHSEC));
                        config.limits.max_body_bytes = 1024;
                        Some(Verifier::standard_webhooks(WHSEC).unwrap())
                    }
                };
                let receiver = runtime()
                    .block_on(Receiver::new(config, LogHandler::new()))
                    .unwrap();
                Setup {
                    router: receiver.router(),
                    signer,
                    _dir: dir,
                }
            })
            .collect()
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fuzz_target!(|input: Input| {
    let setup = &setups()[input.setup as usize % 3];
    let method = METHODS[input.method as usize % METHODS.len()];
    let path = match &input.raw_path {
        Some(p) if input.path % 4 == 0 => p.as_str(),
        _ => PATHS[input.path as usize % PATHS.len()],
    };
    let peer: SocketAddr = PEERS[input.peer as usize % PEERS.len()].parse().unwrap();
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .extension(ConnectInfo(peer));
    for (name, value) in input.headers.iter().take(16) {
        request = request.header(HEADERS[*name as usize % HEADERS.len()], value.as_str());
    }
    if input.good_token {
        let token = if path.starts_with("/v1/callback") && method == "POST" && !path.contains('?') {
            CALLBACK_TOKEN
        } else {
            ADMIN_TOKEN
        };
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let (true, Some(signer)) = (input.good_signature, &setup.signer) {
        for (k, v) in signer.sign("msg_fuzz", unix_now(), &input.body) {
            request = request.header(k, v);
        }
    }
    // Header names and values the fuzzer made up may be invalid: the server never sees those.
    let Ok(request) = request.body(Body::from(input.body.clone())) else {
        return;
    };
    let response = runtime().block_on(async {
        let response = setup.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes)
    });
    let (status, bytes) = response;
    assert_ne!(status.as_u16(), 500, "no internal errors");
    let text = String::from_utf8_lossy(&bytes);
    // Echoing what the client sent is fine (e.g. an unsupported content type); a secret the
    // client did not send must never come back.
    let sent = format!(
        "{:?} {:?} {}",
        input.raw_path,
        input.headers,
        String::from_utf8_lossy(&input.body)
    );
    for secret in SECRETS.iter().filter(|s| !sent.contains(**s)) {
        assert!(!text.contains(secret), "a secret was echoed: {text}");
    }
    // The console's pages answer errors as HTML pages (the same code and message); every other
    // route answers our JSON error body, whatever the request.
    if !status.is_success() && method != "HEAD" && !path.starts_with("/console") {
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        assert!(body["error"]["code"].is_string(), "{status}: {text}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{status}: {text}"
        );
    }
});
