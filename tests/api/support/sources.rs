//! Sources for route-level tests: a sources file the receiver starts with, requests to
//! `POST /v1/sources/{name}`, the signatures each provider makes (computed here with `ring`, not
//! with the crate's own signing), and a local stand-in of Plaid's key service.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{http::StatusCode, routing::post, Json, Router};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use ring::{
    hmac,
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::app::{Builder, TestApp};

impl Builder {
    /// Starts the receiver with this sources file (`--sources`), written to a temporary file
    /// that lives as long as the start-up needs it.
    pub fn sources(self, toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("sources.toml");
        std::fs::write(&file, toml).expect("sources file written");
        self.keep(dir).config(|c| c.access.sources = Some(file))
    }
}

impl TestApp {
    /// `POST /v1/sources/{name}` with a JSON body and these headers; the raw answer.
    pub async fn post_source(
        &self,
        name: &str,
        headers: &[(String, String)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/sources/{name}")))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send().await.expect("request")
    }

    /// [`TestApp::post_source`], asserting 200; the acknowledgement.
    pub async fn post_source_ok(
        &self,
        name: &str,
        headers: &[(String, String)],
        body: impl Into<reqwest::Body>,
    ) -> Value {
        let response = self.post_source(name, headers, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{name}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn tag(algorithm: hmac::Algorithm, secret: &[u8], message: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(algorithm, secret), message)
}

/// Paystack's header: `x-paystack-signature` = hex HMAC-SHA512 of the body with the secret key.
pub fn paystack_signature(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let sig = hex::encode(tag(hmac::HMAC_SHA512, secret.as_bytes(), body).as_ref());
    vec![("x-paystack-signature".into(), sig)]
}

/// A hex HMAC-SHA256 of the body in `header`, after `prefix` (GitHub's `sha256=`).
pub fn hmac_sha256_hex(
    header: &str,
    prefix: &str,
    secret: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let sig = hex::encode(tag(hmac::HMAC_SHA256, secret.as_bytes(), body).as_ref());
    vec![(header.into(), format!("{prefix}{sig}"))]
}

/// The Standard Webhooks headers for `body` under `prefix` (`webhook` or `svix`): `v1,` and the
/// base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the `whsec_` secret's bytes.
pub fn standard_webhooks(
    prefix: &str,
    whsec: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let key = STANDARD
        .decode(whsec.trim_start_matches("whsec_"))
        .expect("a whsec_ secret is base64");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let sig = STANDARD.encode(tag(hmac::HMAC_SHA256, &key, &signed).as_ref());
    vec![
        (format!("{prefix}-id"), id.to_owned()),
        (format!("{prefix}-timestamp"), timestamp.to_string()),
        (format!("{prefix}-signature"), format!("v1,{sig}")),
    ]
}

/// A stand-in of Plaid's key service (`POST /webhook_verification_key/get`) serving one P-256
/// key this test made, as `kid`; and the JWTs Plaid would sign with it.
pub struct PlaidStandIn {
    /// `http://ADDR`, the source's `api_url`.
    pub url: String,
    /// The key id it serves.
    pub kid: &'static str,
    /// How many questions it was asked.
    pub asked: Arc<AtomicUsize>,
    pair: Arc<EcdsaKeyPair>,
}

/// The Plaid API keys the stand-in expects, as a source's `client_id` and `secret`.
pub const PLAID_CLIENT_ID: &str = "client-1";
/// See [`PLAID_CLIENT_ID`].
pub const PLAID_SECRET: &str = "plaid-secret-1";

impl PlaidStandIn {
    /// Serves a new key on 127.0.0.1 port 0. It answers 400 (Plaid's answer for an unknown key)
    /// to a question with another `kid` or other API keys.
    pub async fn start() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = Arc::new(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        );
        let kid = "6c5516e1-92dc-479e-a8ff-5a51992e0001";
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "alg": "ES256", "crv": "P-256", "kty": "EC", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            "created_at": 1_560_466_150, "expired_at": null,
        });
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let app = Router::new().route(
            "/webhook_verification_key/get",
            post(move |Json(q): Json<Value>| async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let known = q["client_id"] == PLAID_CLIENT_ID
                    && q["secret"] == PLAID_SECRET
                    && q["key_id"] == kid;
                if known {
                    (
                        StatusCode::OK,
                        Json(json!({"key": jwk, "request_id": "req-1"})),
                    )
                } else {
                    let error =
                        json!({"error_type": "INVALID_REQUEST", "error_code": "INVALID_FIELD"});
                    (StatusCode::BAD_REQUEST, Json(error))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            kid,
            asked,
            pair,
        }
    }

    /// The `Plaid-Verification` header Plaid would send with `body`, issued at `iat`.
    pub fn sign(&self, body: &[u8], iat: i64) -> Vec<(String, String)> {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let digest = hex::encode(Sha256::digest(body));
        let input = [
            part(json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"})),
            part(json!({"iat": iat, "request_body_sha256": digest})),
        ]
        .join(".");
        let signature = self.pair.sign(&SystemRandom::new(), input.as_bytes());
        let jwt = format!("{input}.{}", part_bytes(signature.unwrap().as_ref()));
        vec![("plaid-verification".into(), jwt)]
    }

    /// The `[sources.NAME]` table of a plaid source asking this stand-in.
    pub fn source(&self, name: &str) -> String {
        plaid_source(name, &self.url)
    }
}

/// The `[sources.NAME]` table of a plaid source whose key service is at `api_url`.
pub fn plaid_source(name: &str, api_url: &str) -> String {
    format!(
        "[sources.{name}]\npreset = \"plaid\"\nclient_id = \"{PLAID_CLIENT_ID}\"\nsecret = \"{PLAID_SECRET}\"\napi_url = \"{api_url}\"\n"
    )
}

/// Bytes as a JWT part (base64url without padding).
fn part_bytes(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `http://ADDR` of a port nothing listens on (bound, then released).
pub fn nothing_listens() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}
