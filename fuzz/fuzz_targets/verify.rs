//! The sources' checks and readers on arbitrary headers, bodies and JWTs: they never panic; a
//! request the fuzzer made up is never accepted by a source that checks (it cannot forge a
//! signature), one signed with the source's secret always is, and stops being so when a byte of
//! its body changes; no refusal ever shows a secret; whatever a reader accepts is within bounds.
//! Plaid's JWT parsing and claim checks run against a fixed P-256 key.

#![no_main]

#[path = "runtime.rs"]
mod runtime;

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use okra_callbacks::{
    source::{PublicKey, Sources, UncheckedJwt, VerifyError},
    MAX_FIELD_CHARS,
};
use runtime::runtime;

/// Every source, one of each scheme. Plaid's key service is a closed port: its questions fail
/// fast, and after ten the limit answers without asking.
const SOURCES: &str = r#"
[sources.mono]
preset = "mono"
secret = "fuzz-mono-secret"

[sources.paystack]
preset = "paystack"
secret = "fuzz-paystack-secret"

[sources.stitch]
preset = "standard-webhooks"
secrets = ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
record = "/data/account"

[sources.github]
preset = "generic"
type = "/action"
record = "/repository/id"
event_id = "header:x-github-delivery"
[sources.github.verify]
scheme = "hmac"
header = "x-hub-signature-256"
algorithm = "sha256"
prefix = "sha256="
secret = "fuzz-github-secret"

[sources.shop]
preset = "generic"
type = "/type"
code = "/code"
event_id = "/id"
[sources.shop.verify]
scheme = "hmac"
header = "x-signature"
algorithm = "sha512"
encoding = "base64"
secret = "fuzz-shop-secret"

[sources.token]
preset = "generic"
type = "/type"
[sources.token.verify]
scheme = "token"
secret = "fuzz-token-secret"

[sources.flutterwave]
preset = "generic"
type = "/event"
[sources.flutterwave.verify]
scheme = "header-secret"
header = "verif-hash"
secret = "fuzz-verif-hash"

[sources.plaid]
preset = "plaid"
client_id = "fuzz-client"
secret = "fuzz-plaid-secret"
api_url = "http://127.0.0.1:9"
"#;

const SECRETS: [&str; 8] = [
    "fuzz-mono-secret",
    "fuzz-paystack-secret",
    "C2FVsBQIhrscChlQIMV",
    "MfKQ9r8GKYqrTwjUPD8IL",
    "fuzz-github-secret",
    "fuzz-shop-secret",
    "fuzz-token-secret",
    "fuzz-verif-hash",
];

const HEADERS: [&str; 14] = [
    "mono-webhook-secret",
    "x-paystack-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-hub-signature-256",
    "x-github-delivery",
    "x-signature",
    "authorization",
    "verif-hash",
    "plaid-verification",
];

/// RFC 7515 appendix A.3's ES256 public key.
const JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

#[derive(Arbitrary, Debug)]
struct Input {
    source: u8,
    /// Sign the body as the source would (the fuzzer cannot forge a signature).
    sign: bool,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
    jwt: String,
    now: i64,
}

fn sources() -> &'static Sources {
    static SET: OnceLock<Sources> = OnceLock::new();
    SET.get_or_init(|| Sources::from_toml(SOURCES).unwrap())
}

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| PublicKey::from_jwk(&serde_json::from_str(JWK).unwrap()).unwrap())
}

fn no_secret_in(text: &str, sent: &str) {
    for secret in SECRETS.iter().filter(|s| !sent.contains(**s)) {
        assert!(!text.contains(secret), "a secret was shown: {text}");
    }
}

fuzz_target!(|input: Input| {
    // Plaid's JWT, parsed and checked against a fixed key: never a panic, never accepted (the
    // fuzzer holds no private key).
    if let Ok(jwt) = UncheckedJwt::parse(&input.jwt) {
        assert!(!jwt.kid.is_empty() && jwt.kid.len() <= 128);
        assert!(jwt.check(key(), &input.body, input.now).is_err());
    }

    let all: Vec<_> = sources().iter().collect();
    let source = all[input.source as usize % all.len()];
    let mut headers = HeaderMap::new();
    for (name, value) in input.headers.iter().take(16) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(HEADERS[*name as usize % HEADERS.len()], value);
        }
    }
    let body = Bytes::from(input.body.clone());
    let signed = input.sign && source.sign(&body).is_ok();
    if signed {
        for (k, v) in source.sign(&body).unwrap() {
            headers.insert(
                HeaderName::try_from(k).unwrap(),
                HeaderValue::try_from(v).unwrap(),
            );
        }
    }
    let sent = format!(
        "{:?} {}",
        input.headers,
        String::from_utf8_lossy(&input.body)
    );
    let verified = runtime().block_on(source.verify(&headers, &body));
    match &verified {
        Ok(()) => assert!(
            signed || source.scheme() == "none",
            "{} accepted an unsigned request",
            source.name()
        ),
        Err(VerifyError::Refused(why)) | Err(VerifyError::Unavailable(why)) => {
            assert!(
                !signed,
                "{} refused its own signature: {why}",
                source.name()
            );
            no_secret_in(why, &sent);
        }
    }
    if signed {
        // Another body under the same headers is refused, whatever the scheme binds.
        let mut other = input.body.clone();
        other.push(b' ');
        let other_verified = runtime().block_on(source.verify(&headers, &Bytes::from(other)));
        let binds_body = !matches!(source.name(), "mono" | "token" | "flutterwave");
        assert_eq!(other_verified.is_err(), binds_body, "{}", source.name());
    }

    if let Ok(event) = source.read(&headers, &body) {
        assert!(!event.callback_type.trim().is_empty());
        for field in [
            Some(&event.callback_type),
            event.record.as_ref(),
            event.callback_code.as_ref(),
            event.event_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(field.chars().count() <= MAX_FIELD_CHARS);
        }
    }
});
