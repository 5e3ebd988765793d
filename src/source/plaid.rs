//! Plaid's webhook check: the `Plaid-Verification` header is a JWT signed with ES256 by one of
//! Plaid's keys, whose claims bind it to this body (`request_body_sha256`) and this moment
//! (`iat`, within 5 minutes).
//!
//! The order of the checks is the point: the header's `alg` must be `ES256` (so `none`, `HS256`
//! and every other algorithm are refused before any key is looked up); then the key is found by
//! `kid` ([`PlaidKeys`]); then the signature; only a signed token's claims are read.
//!
//! Once the key is cached, a request costs one ECDSA P-256 verification (`ring`), which
//! dominates, plus a SHA-256 of the body and two base64url decodes and JSON parses of a few
//! hundred bytes; no network.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    plaid_keys::{PlaidKeys, PublicKey},
    VerifyError,
};

/// The header carrying the JWT.
pub(super) const HEADER: &str = "plaid-verification";
/// How far `iat` may be from now, either way.
pub(super) const TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The longest JWT read (Plaid's are about 300 characters).
const MAX_JWT_LEN: usize = 4096;
/// The longest `kid` asked for.
const MAX_KID_LEN: usize = 128;

fn refused(why: &str) -> VerifyError {
    VerifyError::Refused(format!("the Plaid-Verification header {why}"))
}

/// A JWT whose header has passed: `alg` is ES256 and there is a `kid`. Its signature and claims
/// are not yet checked.
#[derive(Debug)]
pub struct UncheckedJwt<'a> {
    /// The key id to verify with.
    pub kid: String,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
    /// The payload part, base64url.
    claims: &'a str,
    /// `r || s`, 64 bytes.
    signature: Vec<u8>,
}

impl<'a> UncheckedJwt<'a> {
    /// Splits and checks a token's header. Refuses anything but three base64url parts, a JSON
    /// header with `alg` `ES256` and a `kid` of 1 to 128 characters, and a 64-byte signature.
    pub fn parse(token: &'a str) -> Result<Self, VerifyError> {
        let token = token.trim();
        if token.len() > MAX_JWT_LEN {
            return Err(refused("is too long to be Plaid's JWT"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused(
                "is not a JWT (three base64url parts joined by `.`)",
            ));
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| refused("is not a JWT: its header is not base64url JSON"))?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(refused(
                "is not signed with ES256: Plaid signs with ES256 only, and every other `alg` is refused",
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|kid| !kid.trim().is_empty() && kid.len() <= MAX_KID_LEN)
            .ok_or_else(|| refused("has no usable `kid` (key id) in its JWT header"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .filter(|s| s.len() == 64)
            .ok_or_else(|| {
                refused("is not an ES256 JWT: its signature is not 64 bytes of base64url")
            })?;
        let signing_input =
            &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        Ok(Self {
            kid: kid.to_owned(),
            signing_input,
            claims,
            signature,
        })
    }

    /// Checks the signature with `key`, then the claims against `raw` and `now` (unix seconds).
    pub fn check(&self, key: &PublicKey, raw: &[u8], now: i64) -> Result<(), VerifyError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.0[..])
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| refused("is not signed by the key its `kid` names"))?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(self.claims)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| refused("has claims that are not base64url JSON"))?;
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| refused("has no `iat` claim (unix seconds)"))?;
        let tolerance = TOLERANCE.as_secs() as i64;
        if now.saturating_sub(iat) > tolerance {
            return Err(refused(
                "was issued more than 5 minutes ago (`iat`): a replay, or a clock out of sync",
            ));
        }
        if iat.saturating_sub(now) > tolerance {
            return Err(refused(
                "was issued more than 5 minutes in the future (`iat`): a clock out of sync",
            ));
        }
        let claimed = claims
            .get("request_body_sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("has no `request_body_sha256` claim"))?;
        let actual = hex::encode(Sha256::digest(raw));
        if !bool::from(claimed.as_bytes().ct_eq(actual.as_bytes())) {
            return Err(refused(
                "does not match the body: its `request_body_sha256` is not the SHA-256 of the body received (send the body unchanged)",
            ));
        }
        Ok(())
    }
}

/// Plaid's verification: the JWT, a key from [`PlaidKeys`], the claims.
#[derive(Debug, Clone)]
pub struct PlaidCheck {
    keys: PlaidKeys,
}

impl PlaidCheck {
    /// Checks with keys from this client.
    pub fn new(keys: PlaidKeys) -> Self {
        Self { keys }
    }

    /// Checks one request as of `now` (unix seconds).
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        raw: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let token = super::sources::one_header(headers, HEADER)?;
        let jwt = UncheckedJwt::parse(token)?;
        let key = self.keys.key(&jwt.kid).await?;
        jwt.check(&key, raw, now)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
    use ring::{
        rand::SystemRandom,
        signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
    };
    use serde_json::json;

    use super::*;

    /// A P-256 key the test makes, and its JWK.
    struct TestKey {
        pair: EcdsaKeyPair,
    }

    impl TestKey {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Self { pair }
        }

        fn jwk(&self, kid: &str, expired_at: Option<i64>) -> Value {
            let point = self.pair.public_key().as_ref();
            json!({
                "alg": "ES256", "crv": "P-256", "kty": "EC", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                "created_at": 1560466150, "expired_at": expired_at,
            })
        }

        fn jwt(&self, header: Value, claims: Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        /// The JWT Plaid would send for `body`, issued at `iat`.
        fn plaid_jwt(&self, kid: &str, body: &[u8], iat: i64) -> String {
            self.jwt(
                json!({"alg": "ES256", "kid": kid, "typ": "JWT"}),
                json!({"iat": iat, "request_body_sha256": hex::encode(Sha256::digest(body))}),
            )
        }
    }

    /// A local stand-in of Plaid's key endpoint, counting the questions it is asked.
    struct StandIn {
        url: String,
        calls: Arc<AtomicUsize>,
        /// The JWKs it serves, by `kid`; a test may change them (e.g. expire one).
        keys: Keys,
    }

    type Keys = Arc<std::sync::Mutex<HashMap<String, Value>>>;

    async fn stand_in(keys: HashMap<String, Value>, status: StatusCode) -> StandIn {
        let calls = Arc::new(AtomicUsize::new(0));
        let keys: Keys = Arc::new(std::sync::Mutex::new(keys));
        let state = (keys.clone(), calls.clone());
        let app = Router::new()
            .route(
                "/webhook_verification_key/get",
                post(
                    move |State((keys, calls)): State<(Keys, Arc<AtomicUsize>)>,
                     Json(q): Json<Value>| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(q["client_id"], "client");
                        assert_eq!(q["secret"], "plaid-secret");
                        if !status.is_success() {
                            return (status, Json(json!({"error_code": "INTERNAL_SERVER_ERROR"})));
                        }
                        // Plaid's answers take a moment: requests arriving together overlap.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let jwk = keys.lock().unwrap().get(q["key_id"].as_str().unwrap_or("")).cloned();
                        match jwk {
                            Some(jwk) => (StatusCode::OK, Json(json!({"key": jwk, "request_id": "r"}))),
                            None => (
                                StatusCode::BAD_REQUEST,
                                Json(json!({"error_code": "INVALID_FIELD", "error_type": "INVALID_REQUEST"})),
                            ),
                        }
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { url, calls, keys }
    }

    /// A stand-in serving `key` as `k1`, and a check asking it.
    async fn serving(key: &TestKey) -> (StandIn, PlaidCheck) {
        let plaid = stand_in(
            HashMap::from([("k1".into(), key.jwk("k1", None))]),
            StatusCode::OK,
        )
        .await;
        let check = check_at(&plaid.url);
        (plaid, check)
    }

    fn check_at(url: &str) -> PlaidCheck {
        PlaidCheck::new(PlaidKeys::for_tests(
            url,
            Duration::from_secs(5),
            super::super::plaid_keys::KEY_RECHECK,
            10,
        ))
    }

    fn with_jwt(jwt: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Plaid-Verification", jwt.parse().unwrap());
        h
    }

    const BODY: &[u8] = br#"{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE","item_id":"item-1"}"#;

    fn now() -> i64 {
        super::super::unix_now()
    }

    fn refusal(result: Result<(), VerifyError>) -> String {
        match result {
            Err(VerifyError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_valid_jwt_verifies_and_its_key_is_cached() {
        let key = TestKey::new();
        let (plaid, check) = serving(&key).await;
        for _ in 0..3 {
            let h = with_jwt(&key.plaid_jwt("k1", BODY, now()));
            assert_eq!(check.verify(&h, BODY, now()).await, Ok(()));
        }
        assert_eq!(
            plaid.calls.load(Ordering::SeqCst),
            1,
            "the key is asked for once"
        );
    }

    #[tokio::test]
    async fn tampered_body_old_iat_and_wrong_key_are_refused() {
        let key = TestKey::new();
        let (_plaid, check) = serving(&key).await;
        let h = with_jwt(&key.plaid_jwt("k1", BODY, now()));
        let why = refusal(
            check
                .verify(&h, b"{\"webhook_type\":\"ITEM\"}", now())
                .await,
        );
        assert!(why.contains("request_body_sha256"), "{why}");

        let old = with_jwt(&key.plaid_jwt("k1", BODY, now() - 301));
        assert!(refusal(check.verify(&old, BODY, now()).await).contains("more than 5 minutes ago"));
        let ahead = with_jwt(&key.plaid_jwt("k1", BODY, now() + 330));
        assert!(refusal(check.verify(&ahead, BODY, now()).await).contains("future"));

        // Signed by another key under the same kid.
        let other = TestKey::new();
        let forged = with_jwt(&other.plaid_jwt("k1", BODY, now()));
        assert!(refusal(check.verify(&forged, BODY, now()).await).contains("not signed by the key"));
        // A signature moved onto other claims.
        let genuine = key.plaid_jwt("k1", BODY, now());
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iat": now(), "request_body_sha256": hex::encode(Sha256::digest(b"{}"))})
                .to_string(),
        );
        parts[1] = &claims;
        assert!(refusal(
            check
                .verify(&with_jwt(&parts.join(".")), b"{}", now())
                .await
        )
        .contains("not signed by the key"));
        // Whatever the refusal, the expected digest never shows.
        let digest = hex::encode(Sha256::digest(b"other"));
        assert!(!why.contains(&digest));
    }

    #[tokio::test]
    async fn hs256_none_and_other_algs_are_refused_before_any_key_lookup() {
        let key = TestKey::new();
        let (plaid, check) = serving(&key).await;
        let claims =
            json!({"iat": now(), "request_body_sha256": hex::encode(Sha256::digest(BODY))});
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        // HS256 with the public key's bytes as the HMAC secret: the classic confusion.
        let hs_input = format!(
            "{}.{}",
            part(&json!({"alg": "HS256", "kid": "k1"})),
            part(&claims)
        );
        let hs_sig = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.pair.public_key().as_ref()),
            hs_input.as_bytes(),
        );
        let hs256 = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(hs_sig.as_ref()));
        let none = format!(
            "{}.{}.",
            part(&json!({"alg": "none", "kid": "k1"})),
            part(&claims)
        );
        let es384 = key.jwt(json!({"alg": "ES384", "kid": "k1"}), claims.clone());
        let lower = key.jwt(json!({"alg": "es256", "kid": "k1"}), claims.clone());
        let no_alg = key.jwt(json!({"kid": "k1"}), claims.clone());
        for token in [hs256, none, es384, lower, no_alg] {
            let why = refusal(check.verify(&with_jwt(&token), BODY, now()).await);
            assert!(why.contains("ES256"), "{why}");
        }
        let no_kid = key.jwt(json!({"alg": "ES256"}), claims.clone());
        assert!(refusal(check.verify(&with_jwt(&no_kid), BODY, now()).await).contains("kid"));
        assert_eq!(
            plaid.calls.load(Ordering::SeqCst),
            0,
            "no key was looked up"
        );
        for malformed in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"a".repeat(5000)] {
            let mut h = HeaderMap::new();
            h.insert(HEADER, malformed.parse().unwrap());
            assert!(
                matches!(
                    check.verify(&h, BODY, now()).await,
                    Err(VerifyError::Refused(_))
                ),
                "{malformed}"
            );
        }
        let why = refusal(check.verify(&HeaderMap::new(), BODY, now()).await);
        assert!(why.contains("plaid-verification"), "{why}");
    }

    #[tokio::test]
    async fn unknown_and_expired_keys_are_refused() {
        let key = TestKey::new();
        let plaid = stand_in(
            HashMap::from([("old".into(), key.jwk("old", Some(1_700_000_000)))]),
            StatusCode::OK,
        )
        .await;
        let check = check_at(&plaid.url);
        let expired = with_jwt(&key.plaid_jwt("old", BODY, now()));
        assert!(refusal(check.verify(&expired, BODY, now()).await).contains("expired"));
        let unknown = with_jwt(&key.plaid_jwt("nope", BODY, now()));
        assert!(refusal(check.verify(&unknown, BODY, now()).await).contains("does not know"));
        // Both answers are remembered: no second question.
        assert!(check.verify(&expired, BODY, now()).await.is_err());
        assert!(check.verify(&unknown, BODY, now()).await.is_err());
        assert_eq!(plaid.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cached_key_is_rechecked_and_refused_once_plaid_expires_it() {
        let key = TestKey::new();
        let (plaid, _) = serving(&key).await;
        // Re-checked at every use, to see the expiry without waiting an hour.
        let check = PlaidCheck::new(PlaidKeys::for_tests(
            &plaid.url,
            Duration::from_secs(5),
            Duration::ZERO,
            10,
        ));
        let h = with_jwt(&key.plaid_jwt("k1", BODY, now()));
        assert_eq!(check.verify(&h, BODY, now()).await, Ok(()));
        plaid
            .keys
            .lock()
            .unwrap()
            .insert("k1".into(), key.jwk("k1", Some(1_700_000_000)));
        // The cached key serves while the re-check is out.
        assert_eq!(check.verify(&h, BODY, now()).await, Ok(()));
        let mut refused = None;
        // Within 5 s, however loaded the machine.
        for _ in 0..250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = check.verify(&h, BODY, now()).await {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(&refused, Some(VerifyError::Refused(why)) if why.contains("expired")),
            "{refused:?}"
        );
        assert_eq!(plaid.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_key_service_that_is_down_or_failing_is_unavailable() {
        // Nothing listens on a port just released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let down = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let key = TestKey::new();
        let h = with_jwt(&key.plaid_jwt("k1", BODY, now()));
        let got = check_at(&down).verify(&h, BODY, now()).await;
        assert!(matches!(got, Err(VerifyError::Unavailable(_))), "{got:?}");

        let failing = stand_in(HashMap::new(), StatusCode::BAD_GATEWAY).await;
        let check = check_at(&failing.url);
        let got = check.verify(&h, BODY, now()).await;
        assert!(
            matches!(&got, Err(VerifyError::Unavailable(why)) if why.contains("502")),
            "{got:?}"
        );
        // Not asked again within the minute.
        assert!(matches!(
            check.verify(&h, BODY, now()).await,
            Err(VerifyError::Unavailable(_))
        ));
        assert_eq!(failing.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_key_service_that_does_not_answer_in_time_is_unavailable() {
        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let keeper = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });
        let check = PlaidCheck::new(PlaidKeys::for_tests(
            &url,
            Duration::from_millis(300),
            Duration::from_secs(60),
            10,
        ));
        let key = TestKey::new();
        let h = with_jwt(&key.plaid_jwt("k1", BODY, now()));
        let got = check.verify(&h, BODY, now()).await;
        assert!(
            matches!(&got, Err(VerifyError::Unavailable(why)) if why.contains("no answer within")),
            "{got:?}"
        );
        keeper.abort();
    }

    #[tokio::test]
    async fn a_flood_of_forged_kids_asks_the_key_service_a_bounded_number_of_times() {
        let key = TestKey::new();
        let (plaid, check) = serving(&key).await;
        // 20 requests at once for one unknown kid share one question.
        let same = with_jwt(&key.plaid_jwt("forged", BODY, now()));
        let together =
            futures::future::join_all((0..20).map(|_| check.verify(&same, BODY, now()))).await;
        assert!(together
            .iter()
            .all(|r| matches!(r, Err(VerifyError::Refused(_)))));
        assert_eq!(plaid.calls.load(Ordering::SeqCst), 1);
        // 200 forged kids, in waves: at most 10 questions in the minute, counting the first.
        let mut unavailable = 0;
        for wave in 0..10 {
            let jwts: Vec<HeaderMap> = (0..20)
                .map(|i| with_jwt(&key.plaid_jwt(&format!("forged-{wave}-{i}"), BODY, now())))
                .collect();
            for r in
                futures::future::join_all(jwts.iter().map(|h| check.verify(h, BODY, now()))).await
            {
                if matches!(r, Err(VerifyError::Unavailable(_))) {
                    unavailable += 1;
                }
            }
        }
        assert_eq!(
            plaid.calls.load(Ordering::SeqCst),
            10,
            "the limit of questions a minute holds"
        );
        assert_eq!(
            unavailable,
            200 - 9,
            "past the limit, requests are told to come back"
        );
        // The genuine key is asked for after the minute; meanwhile it is unavailable, not refused.
        let genuine = with_jwt(&key.plaid_jwt("k1", BODY, now()));
        assert!(matches!(
            check.verify(&genuine, BODY, now()).await,
            Err(VerifyError::Unavailable(_))
        ));
        assert_eq!(plaid.calls.load(Ordering::SeqCst), 10);
    }
}
