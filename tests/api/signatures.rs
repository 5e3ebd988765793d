//! Signatures over real HTTP: HMAC-SHA256 and Standard Webhooks, checked on the raw body before
//! parsing; and `okra-callbacks send`, which signs as the receiver expects.

use okra_callbacks::{source::Verifier, Secret};

use crate::both_stores;
use crate::support::{app, callback, error_body, paths, Backend};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post_with(
    app: &crate::support::TestApp,
    body: &str,
    headers: &[(String, String)],
) -> reqwest::Response {
    let mut request = app
        .callback_request()
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.send().await.unwrap()
}

async fn assert_invalid_signature(response: reqwest::Response, why: &str) {
    let (status, code, message) = error_body(response).await;
    assert_eq!(
        (status, code.as_str()),
        (401, "invalid_signature"),
        "{why}: {message}"
    );
}

async fn hmac_signatures_are_checked_on_the_raw_body(backend: Backend) {
    let secret = "hmac-shared-secret-1";
    let app = app(backend)
        .await
        .config(|c| c.access.hmac_secret = Some(Secret::new(secret)))
        .spawn()
        .await;
    let signer = Verifier::hmac_sha256(secret.as_bytes(), "X-Okra-Signature").unwrap();
    let body = callback("r-hmac", "AUTH", "AUTH_SUCCESS", 0);
    let good = signer.sign("", 0, body.as_bytes());
    assert_eq!(post_with(&app, &body, &good).await.status(), 200);
    // Bare hex is accepted as well as `sha256=<hex>`.
    let body2 = callback("r-hmac", "AUTH", "AUTH_SUCCESS", 1);
    let bare: Vec<_> = signer
        .sign("", 0, body2.as_bytes())
        .into_iter()
        .map(|(k, v)| (k, v.trim_start_matches("sha256=").to_owned()))
        .collect();
    assert_eq!(post_with(&app, &body2, &bare).await.status(), 200);

    // Missing, wrong key, another body's signature, truncated.
    let other_key = Verifier::hmac_sha256(b"not-the-secret", "X-Okra-Signature").unwrap();
    let tampered = format!(" {body}");
    let mut truncated = good.clone();
    truncated[0].1.truncate(40);
    for (why, b, headers) in [
        ("missing", body.clone(), vec![]),
        (
            "wrong key",
            body.clone(),
            other_key.sign("", 0, body.as_bytes()),
        ),
        ("tampered body", tampered, good.clone()),
        ("truncated", body.clone(), truncated),
    ] {
        let response = post_with(&app, &b, &headers).await;
        let (status, code, message) = error_body(response).await;
        assert_eq!((status, code.as_str()), (401, "invalid_signature"), "{why}");
        assert!(
            message.contains("X-Okra-Signature"),
            "says how to sign: {message}"
        );
    }
    // The check runs on the raw bytes before parsing: unsigned garbage is 401, not 400 ...
    assert_invalid_signature(post_with(&app, "{not json", &[]).await, "garbage").await;
    // ... and signed garbage reaches the parser.
    let signed_garbage = signer.sign("", 0, b"{not json");
    let (status, code, _) = error_body(post_with(&app, "{not json", &signed_garbage).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
}

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn standard_webhooks_signatures_are_checked(backend: Backend) {
    let app = app(backend)
        .await
        .config(|c| c.access.webhook_secret = Some(Secret::new(WHSEC)))
        .spawn()
        .await;
    let signer = Verifier::standard_webhooks(WHSEC).unwrap();
    let body = callback("r-swh", "AUTH", "AUTH_SUCCESS", 0);
    let now = unix_now();
    let good = signer.sign("msg_1", now, body.as_bytes());
    assert_eq!(post_with(&app, &body, &good).await.status(), 200);

    let with_signature = |sig: &str| {
        let mut h = good.clone();
        h[2].1 = sig.to_owned();
        h
    };
    let valid = good[2].1.clone();
    let invalid = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];
    // One valid among several invalid is accepted.
    let body2 = callback("r-swh", "AUTH", "AUTH_SUCCESS", 1);
    let mut several = signer.sign("msg_2", now, body2.as_bytes());
    several[2].1 = format!(
        "{} {} {} {}",
        invalid[0], invalid[1], several[2].1, invalid[2]
    );
    assert_eq!(post_with(&app, &body2, &several).await.status(), 200);

    let cases = [
        ("bare v1,", with_signature("v1,")),
        ("truncated", with_signature(&valid[..valid.len() - 6])),
        ("only invalid ones", with_signature(&invalid.join(" "))),
        (
            // Well outside the 300 s tolerance: `now` was read before the earlier requests, so
            // on a busy machine a boundary case (301 s ahead) could be 300 s ahead by the time
            // the server checks it — and rightly accepted. The exact boundary is a unit test in
            // src/source/standard_webhooks.rs with a fixed clock.
            "330 s old",
            signer.sign("msg_1", now - 330, body.as_bytes()),
        ),
        (
            "330 s ahead",
            signer.sign("msg_1", now + 330, body.as_bytes()),
        ),
        (
            "the reference vector, signed in 2022",
            signer.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                body.as_bytes(),
            ),
        ),
        ("no headers", vec![]),
    ];
    for (why, headers) in cases {
        assert_invalid_signature(post_with(&app, &body, &headers).await, why).await;
    }
    // Another id than the one signed.
    let mut other_id = good.clone();
    other_id[0].1 = "msg_other".into();
    assert_invalid_signature(post_with(&app, &body, &other_id).await, "other id").await;
}

/// `okra-callbacks send` signs as the receiver expects, with either scheme, so a deployment
/// that checks signatures can be tried end to end; a wrong secret is refused.
#[tokio::test]
async fn the_send_client_signs_callbacks_both_ways() {
    let hmac = "hmac-shared-secret-2";
    let other_whsec = "whsec_QW5vdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhISE=";
    for (secret, flag, good, wrong) in [
        ((Some(hmac), None), "--hmac-secret", hmac, "another-secret"),
        ((None, Some(WHSEC)), "--webhook-secret", WHSEC, other_whsec),
    ] {
        let app = app(Backend::Sqlite)
            .await
            .config(|c| {
                c.access.hmac_secret = secret.0.map(Secret::new);
                c.access.webhook_secret = secret.1.map(Secret::new);
            })
            .spawn()
            .await;
        let url = app.url(paths::CALLBACK);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("callback.json");
        std::fs::write(&file, callback("r-send-signed", "AUTH", "AUTH_SUCCESS", 0)).unwrap();
        let send = |signing: Option<[&str; 2]>| {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"));
            command
                .arg("send")
                .arg(&file)
                .args(["--url", &url])
                .env_remove("OKRA_HMAC_SECRET")
                .env_remove("OKRA_WEBHOOK_SECRET")
                .env_remove("OKRA_CALLBACK_TOKEN")
                .env_remove("OKRA_HMAC_HEADER");
            if let Some(flag_and_secret) = signing {
                command.args(flag_and_secret);
            }
            async move { command.output().await.unwrap() }
        };
        let answer = send(Some([flag, good])).await;
        let stdout = String::from_utf8_lossy(&answer.stdout);
        assert!(
            answer.status.success() && stdout.contains("\"duplicate\":false"),
            "{flag} signature refused: {stdout} {}",
            String::from_utf8_lossy(&answer.stderr)
        );
        for refused in [None, Some([flag, wrong])] {
            let answer = send(refused).await;
            let err = String::from_utf8_lossy(&answer.stderr);
            assert!(
                !answer.status.success() && err.contains("invalid_signature"),
                "{flag}: {err}"
            );
        }
    }
}

both_stores!(
    hmac_signatures_are_checked_on_the_raw_body,
    standard_webhooks_signatures_are_checked,
);
