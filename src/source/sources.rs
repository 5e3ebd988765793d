//! A configured source — one check and one reader, chosen once — and the set of them.

use std::{collections::BTreeMap, sync::Arc};

use axum::http::{header::AUTHORIZATION, HeaderMap, HeaderName};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::callback::SourceModel;

use super::{
    header_str, plaid::PlaidCheck, unix_now, HmacHeader, Key, ReadError, Reader, SignatureError,
    SourceEvent, StandardWebhooks,
};

/// Why a request was not accepted as its source's. The message says which check failed, never
/// a secret nor the signature that would have matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// 401 `unauthorized`: the request failed its source's check (header missing, signature
    /// wrong, timestamp outside 5 minutes, key unknown or expired).
    #[error("{0}")]
    Refused(String),
    /// 503 `verification_unavailable`: the check cannot be made now (the provider's key service
    /// did not answer, or the receiver's limit on asking it is reached); the provider retries.
    #[error("{0}")]
    Unavailable(String),
}

impl From<SignatureError> for VerifyError {
    fn from(e: SignatureError) -> Self {
        Self::Refused(e.to_string())
    }
}

/// Why [`Source::sign`] cannot sign as this source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SignError(String);

/// The value of the one `name` header as text, refused as a [`VerifyError`] when missing,
/// repeated or not ASCII.
pub(super) fn one_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    Ok(header_str(headers, name)?)
}

/// Whether `given` is the secret, compared in constant time over SHA-256 digests (so neither the
/// secret's length nor where the two differ shows in the time taken). Every secret a request
/// presents — a source's token or header secret, the receiver's bearer tokens — is checked here.
pub(crate) fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    Sha256::digest(given)
        .as_slice()
        .ct_eq(Sha256::digest(secret).as_slice())
        .into()
}

/// How one source's requests are proven genuine.
#[derive(Debug, Clone)]
pub(super) enum Check {
    /// Nothing is checked (warned about at start-up).
    None,
    /// `Authorization: Bearer <secret>`.
    Token(Key),
    /// A header whose value is the secret itself (Mono's `mono-webhook-secret`).
    HeaderSecret { header: HeaderName, secret: Key },
    /// An HMAC of the raw body in one header (Paystack's, GitHub's…).
    Hmac(HmacHeader),
    /// Standard Webhooks, under `webhook-*` or `svix-*` names.
    StandardWebhooks(StandardWebhooks),
    /// Plaid's ES256 JWT, with keys from Plaid's key service.
    Plaid(PlaidCheck),
}

impl Check {
    /// The scheme's name, as the sources file writes it.
    pub(super) fn scheme(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token(_) => "token",
            Self::HeaderSecret { .. } => "header-secret",
            Self::Hmac(_) => "hmac",
            Self::StandardWebhooks(_) => "standard-webhooks",
            Self::Plaid(_) => "plaid",
        }
    }

    async fn verify(&self, headers: &HeaderMap, raw: &[u8], now: i64) -> Result<(), VerifyError> {
        match self {
            Self::None => Ok(()),
            Self::Token(secret) => {
                let value = one_header(headers, AUTHORIZATION.as_str())?;
                let token = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
                    .ok_or_else(|| {
                        VerifyError::Refused(
                            "the `authorization` header is not `Bearer <token>`".into(),
                        )
                    })?;
                if secret_matches(token.trim().as_bytes(), &secret.0) {
                    Ok(())
                } else {
                    Err(VerifyError::Refused(
                        "the bearer token is not this source's".into(),
                    ))
                }
            }
            Self::HeaderSecret { header, secret } => {
                let value = one_header(headers, header.as_str())?;
                if secret_matches(value.trim().as_bytes(), &secret.0) {
                    Ok(())
                } else {
                    Err(VerifyError::Refused(format!(
                        "the `{header}` header is not this source's secret"
                    )))
                }
            }
            Self::Hmac(hmac) => Ok(hmac.verify(headers, raw)?),
            Self::StandardWebhooks(sw) => Ok(sw.verify_at(headers, raw, now)?),
            Self::Plaid(plaid) => plaid.verify(headers, raw, now).await,
        }
    }

    fn sign(&self, raw: &[u8], now: i64) -> Result<Vec<(String, String)>, SignError> {
        Ok(match self {
            Self::None => vec![],
            Self::Token(secret) => vec![(
                AUTHORIZATION.to_string(),
                format!("Bearer {}", String::from_utf8_lossy(&secret.0)),
            )],
            Self::HeaderSecret { header, secret } => vec![(
                header.to_string(),
                String::from_utf8_lossy(&secret.0).into_owned(),
            )],
            Self::Hmac(hmac) => vec![hmac.sign(raw)],
            Self::StandardWebhooks(sw) => {
                let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
                sw.sign(&id, now, raw)
            }
            Self::Plaid(_) => {
                return Err(SignError(
                    "Plaid signs its webhooks with its own private key, which no sources file holds: fire a sandbox webhook from Plaid (/sandbox/item/fire_webhook) to try a plaid source".into(),
                ))
            }
        })
    }
}

/// One configured sender: its name, its check and its reader, chosen from the sources file once.
/// The ingest path calls [`Source::verify`] on the raw body, then [`Source::read`].
#[derive(Debug)]
pub struct Source {
    /// The name in `[sources.NAME]`, served at `POST /v1/sources/NAME`.
    pub(super) name: String,
    /// The preset it was configured with (`plaid`, `mono`, `generic`…).
    pub(super) preset: &'static str,
    /// How its requests are proven genuine.
    pub(super) check: Check,
    /// Where its record, type, code and event id sit.
    pub(super) reader: Reader,
}

impl Source {
    /// The source's name: `[a-z0-9_-]{1,32}`, never `okra`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The preset the source was configured with, as the sources file writes it.
    pub fn preset(&self) -> &'static str {
        self.preset
    }

    /// Which typed view its callbacks get: Plaid's webhooks are typed, every other source's
    /// are generic events.
    pub fn model(&self) -> SourceModel {
        match self.check {
            Check::Plaid(_) => SourceModel::Plaid,
            _ => SourceModel::Generic,
        }
    }

    /// The verification scheme, as the sources file writes it (`plaid`, `hmac`, `none`…).
    pub fn scheme(&self) -> &'static str {
        self.check.scheme()
    }

    /// Checks that the request is genuinely from this source, on the raw body as received.
    /// `Refused` answers 401 `unauthorized`; `Unavailable` answers 503
    /// `verification_unavailable`. Only Plaid's check may wait on the network (at most 5 s).
    pub async fn verify(&self, headers: &HeaderMap, raw: &Bytes) -> Result<(), VerifyError> {
        self.check.verify(headers, raw, unix_now()).await
    }

    /// Reads a verified request's record, type, code and event id. `NotJson` answers 400
    /// `invalid_json`; `Invalid` (no type, a field over 128 characters) 422 `invalid_callback`.
    pub fn read(&self, headers: &HeaderMap, raw: &Bytes) -> Result<SourceEvent, ReadError> {
        self.reader.read(headers, raw)
    }

    /// The headers this source's sender would attach to `raw` now, made with the configured
    /// secret: for `send --source` and tests. A `none` source needs none; a `plaid` source
    /// cannot be signed for (only Plaid holds its key).
    pub fn sign(&self, raw: &[u8]) -> Result<Vec<(String, String)>, SignError> {
        self.check.sign(raw, unix_now())
    }
}

/// Every configured source, by name. Empty when no sources file is given.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The sources by name.
    pub(super) by_name: BTreeMap<String, Arc<Source>>,
    /// What the operator should be told at start-up (e.g. a source without verification).
    pub(super) warnings: Vec<String>,
}

impl Sources {
    /// The source of this name, if configured.
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.by_name.get(name)
    }

    /// Every source, by name in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.by_name.values()
    }

    /// The names of every source, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// How many sources are configured.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no source is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Warnings to log once at start-up, one a line (a source that checks nothing). They name
    /// the source, never a secret.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ring::hmac as reference;

    use super::*;

    fn sources(toml: &str) -> Sources {
        let env = HashMap::from([("HOOK_SECRET", "from-the-env")]);
        Sources::from_toml_with_env(toml, &|name| env.get(name).map(|v| v.to_string())).unwrap()
    }

    fn source(toml: &str) -> Arc<Source> {
        sources(toml).iter().next().unwrap().clone()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn signed(source: &Source, body: &[u8]) -> HeaderMap {
        let pairs = source.sign(body).unwrap();
        headers(
            &pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
    }

    async fn verify(source: &Source, h: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        source.verify(h, &Bytes::copy_from_slice(body)).await
    }

    async fn refusal(source: &Source, h: &HeaderMap, body: &[u8]) -> String {
        match verify(source, h, body).await {
            Err(VerifyError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const BODY: &[u8] = br#"{"event":"charge.success","data":{"reference":"ref-1","customer":{"customer_code":"CUS_1"}}}"#;

    #[tokio::test]
    async fn mono_checks_its_secret_header() {
        let mono = source("[sources.mono]\npreset = \"mono\"\nsecret = \"${HOOK_SECRET}\"\n");
        assert_eq!(mono.preset(), "mono");
        assert_eq!(mono.scheme(), "header-secret");
        let good = headers(&[("mono-webhook-secret", "from-the-env")]);
        assert_eq!(verify(&mono, &good, BODY).await, Ok(()));
        assert_eq!(
            signed(&mono, BODY),
            good,
            "send --source signs as Mono would"
        );
        let why = refusal(
            &mono,
            &headers(&[("mono-webhook-secret", "from-the-en")]),
            BODY,
        )
        .await;
        assert!(
            why.contains("mono-webhook-secret") && !why.contains("from-the-env"),
            "{why}"
        );
        let why = refusal(&mono, &HeaderMap::new(), BODY).await;
        assert!(why.contains("missing"), "{why}");
    }

    #[tokio::test]
    async fn paystack_checks_the_hex_hmac_sha512_of_the_body() {
        let paystack =
            source("[sources.paystack]\npreset = \"paystack\"\nsecret = \"sk_test_1\"\n");
        // The signature as Paystack makes it, by an independent implementation (ring's).
        let tag = reference::sign(
            &reference::Key::new(reference::HMAC_SHA512, b"sk_test_1"),
            BODY,
        );
        let good = headers(&[("x-paystack-signature", &hex::encode(tag.as_ref()))]);
        assert_eq!(verify(&paystack, &good, BODY).await, Ok(()));
        assert_eq!(signed(&paystack, BODY), good);
        let why = refusal(&paystack, &good, b"{\"event\":\"charge.success\"}").await;
        assert!(why.contains("no signature matches"), "{why}");
        let other = reference::sign(
            &reference::Key::new(reference::HMAC_SHA512, b"sk_test_2"),
            BODY,
        );
        let wrong = headers(&[("x-paystack-signature", &hex::encode(other.as_ref()))]);
        assert!(refusal(&paystack, &wrong, BODY)
            .await
            .contains("no signature matches"));
        // A SHA-256-sized tag is malformed, not compared.
        let short = headers(&[("x-paystack-signature", &"ab".repeat(32))]);
        assert!(refusal(&paystack, &short, BODY)
            .await
            .contains("128 hex digits"));
    }

    #[tokio::test]
    async fn generic_hmac_with_a_required_prefix_verifies_githubs_example() {
        // GitHub's documented example ("Validating webhook deliveries"): secret "It's a Secret
        // to Everybody", payload "Hello, World!".
        let github = source(
            r#"[sources.github]
preset = "generic"
type = "/action"
[sources.github.verify]
scheme = "hmac"
header = "X-Hub-Signature-256"
algorithm = "sha256"
prefix = "sha256="
secret = "It's a Secret to Everybody"
"#,
        );
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let good = headers(&[("x-hub-signature-256", expected)]);
        assert_eq!(verify(&github, &good, b"Hello, World!").await, Ok(()));
        assert_eq!(github.sign(b"Hello, World!").unwrap()[0].1, expected);
        // The prefix is required.
        let bare = headers(&[("x-hub-signature-256", &expected["sha256=".len()..])]);
        let why = refusal(&github, &bare, b"Hello, World!").await;
        assert!(why.contains("`sha256=`"), "{why}");
        assert!(refusal(&github, &good, b"Hello, World?")
            .await
            .contains("no signature matches"));
    }

    #[tokio::test]
    async fn generic_hmac_sha512_base64_verifies_and_refuses() {
        let shop = source(
            r#"[sources.shop]
preset = "generic"
type = "/type"
[sources.shop.verify]
scheme = "hmac"
header = "x-signature"
algorithm = "sha512"
encoding = "base64"
secret = "s3"
"#,
        );
        let tag = reference::sign(&reference::Key::new(reference::HMAC_SHA512, b"s3"), BODY);
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        let encoded = STANDARD.encode(tag.as_ref());
        assert_eq!(
            verify(&shop, &headers(&[("x-signature", &encoded)]), BODY).await,
            Ok(())
        );
        let unpadded = encoded.trim_end_matches('=');
        assert_eq!(
            verify(&shop, &headers(&[("x-signature", unpadded)]), BODY).await,
            Ok(())
        );
        assert_eq!(signed(&shop, BODY).get("x-signature").unwrap(), &encoded);
        let mut flipped = encoded.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(refusal(&shop, &headers(&[("x-signature", &flipped)]), BODY)
            .await
            .contains("no signature matches"));
        assert!(refusal(&shop, &headers(&[("x-signature", "!!")]), BODY)
            .await
            .contains("malformed"));
    }

    #[tokio::test]
    async fn generic_token_and_header_secret_verify_and_refuse() {
        let token = source(
            "[sources.t]\npreset = \"generic\"\ntype = \"/type\"\n[sources.t.verify]\nscheme = \"token\"\nsecret = \"tok-1\"\n",
        );
        assert_eq!(
            verify(&token, &headers(&[("authorization", "Bearer tok-1")]), BODY).await,
            Ok(())
        );
        assert_eq!(
            signed(&token, BODY),
            headers(&[("authorization", "Bearer tok-1")])
        );
        for wrong in ["Bearer tok-2", "Bearer tok-", "tok-1", "Basic dG9rLTE="] {
            let why = refusal(&token, &headers(&[("authorization", wrong)]), BODY).await;
            assert!(!why.contains("tok-1"), "{why}");
        }
        assert!(refusal(&token, &HeaderMap::new(), BODY)
            .await
            .contains("authorization"));

        let flutterwave = source(
            "[sources.fw]\npreset = \"generic\"\ntype = \"/event\"\n[sources.fw.verify]\nscheme = \"header-secret\"\nheader = \"verif-hash\"\nsecret = \"hash-1\"\n",
        );
        assert_eq!(
            verify(&flutterwave, &headers(&[("verif-hash", "hash-1")]), BODY).await,
            Ok(())
        );
        assert!(
            refusal(&flutterwave, &headers(&[("verif-hash", "hash-2")]), BODY)
                .await
                .contains("verif-hash")
        );
        assert!(refusal(
            &flutterwave,
            &headers(&[("verif-hash", "hash-1"), ("verif-hash", "hash-1")]),
            BODY
        )
        .await
        .contains("more than once"));
    }

    #[tokio::test]
    async fn standard_webhooks_take_both_header_families_and_rotated_secrets() {
        const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        const NEW: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let old_only = source(&format!(
            "[sources.s]\npreset = \"standard-webhooks\"\nsecret = \"{OLD}\"\n"
        ));
        let rotating = source(&format!(
            "[sources.stitch]\npreset = \"standard-webhooks\"\nsecrets = [\"{NEW}\", \"{OLD}\"]\nrecord = \"/data/account\"\n"
        ));
        let body = br#"{"type":"account.updated","data":{"account":"acc_1"}}"#;
        // Signed with the old secret: both accept it; the rotating source signs with the new.
        let by_old = signed(&old_only, body);
        assert_eq!(verify(&rotating, &by_old, body).await, Ok(()));
        let by_new = signed(&rotating, body);
        assert_eq!(verify(&rotating, &by_new, body).await, Ok(()));
        assert!(refusal(&old_only, &by_new, body)
            .await
            .contains("no signature matches"));
        // The same under Svix's names.
        let svix: HeaderMap = by_old
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(k.as_str().replace("webhook-", "svix-")).unwrap(),
                    v.clone(),
                )
            })
            .collect();
        assert!(svix.contains_key("svix-signature") && !svix.contains_key("webhook-id"));
        assert_eq!(verify(&rotating, &svix, body).await, Ok(()));
        let event = rotating.read(&svix, &Bytes::from_static(body)).unwrap();
        assert_eq!(
            event.event_id.as_deref(),
            svix.get("svix-id").unwrap().to_str().ok()
        );
        assert_eq!(event.record.as_deref(), Some("acc_1"));
        assert_eq!(event.callback_type, "account.updated");
        // An empty `v1,` is refused, alone or beside another empty one.
        for empty in ["v1,", "v1, v1,"] {
            let mut h = by_old.clone();
            h.insert("webhook-signature", empty.parse().unwrap());
            assert!(
                refusal(&rotating, &h, body)
                    .await
                    .contains("no signature matches"),
                "{empty}"
            );
        }
        // A missing svix header is named in Svix's family.
        let mut partial = svix.clone();
        partial.remove("svix-timestamp");
        assert!(refusal(&rotating, &partial, body)
            .await
            .contains("svix-timestamp"));
    }

    #[tokio::test]
    async fn none_accepts_anything_and_is_warned_about() {
        let set = sources("[sources.open]\npreset = \"generic\"\ntype = \"/type\"\n[sources.open.verify]\nscheme = \"none\"\n");
        assert_eq!(set.warnings().len(), 1);
        assert!(set.warnings()[0].contains("`open`"), "{:?}", set.warnings());
        let open = set.get("open").unwrap();
        assert_eq!(verify(open, &HeaderMap::new(), b"anything").await, Ok(()));
        assert_eq!(open.sign(b"x").unwrap(), vec![]);
        let checked = sources("[sources.mono]\npreset = \"mono\"\nsecret = \"s\"\n");
        assert!(checked.warnings().is_empty());
    }

    #[test]
    fn presets_read_their_providers_fields() {
        let plaid =
            source("[sources.plaid]\npreset = \"plaid\"\nclient_id = \"c\"\nsecret = \"s\"\n");
        let body = Bytes::from_static(
            br#"{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-9","error":null}"#,
        );
        let event = plaid.read(&HeaderMap::new(), &body).unwrap();
        assert_eq!(
            event,
            SourceEvent {
                record: Some("item-9".into()),
                callback_type: "ITEM".into(),
                callback_code: Some("ERROR".into()),
                event_id: None,
            }
        );
        assert!(plaid.sign(b"{}").unwrap_err().to_string().contains("Plaid"));
        assert_eq!(plaid.model(), SourceModel::Plaid);
        let paystack = source("[sources.p]\npreset = \"paystack\"\nsecret = \"s\"\n");
        assert_eq!(paystack.model(), SourceModel::Generic);
        let event = paystack
            .read(&HeaderMap::new(), &Bytes::from_static(BODY))
            .unwrap();
        assert_eq!(
            (event.record.as_deref(), event.callback_type.as_str()),
            (Some("CUS_1"), "charge.success")
        );
        let no_customer =
            Bytes::from_static(br#"{"event":"transfer.success","data":{"reference":"ref-2"}}"#);
        assert_eq!(
            paystack
                .read(&HeaderMap::new(), &no_customer)
                .unwrap()
                .record
                .as_deref(),
            Some("ref-2")
        );
        let generic = source(
            "[sources.g]\npreset = \"generic\"\ntype = \"/kind\"\ncode = \"/sub\"\nrecord = \"/acct\"\nevent_id = \"header:X-Event-Id\"\n[sources.g.verify]\nscheme = \"none\"\n",
        );
        let event = generic
            .read(
                &headers(&[("x-event-id", "ev-1")]),
                &Bytes::from_static(br#"{"kind":"k","sub":"s","acct":"a"}"#),
            )
            .unwrap();
        assert_eq!(
            (
                event.record.as_deref(),
                event.callback_type.as_str(),
                event.callback_code.as_deref(),
                event.event_id.as_deref()
            ),
            (Some("a"), "k", Some("s"), Some("ev-1"))
        );
        assert!(matches!(
            generic.read(&HeaderMap::new(), &Bytes::from_static(b"{}")),
            Err(ReadError::Invalid(_))
        ));
        assert!(matches!(
            generic.read(&HeaderMap::new(), &Bytes::from_static(b"<xml/>")),
            Err(ReadError::NotJson(_))
        ));
    }

    #[tokio::test]
    async fn no_refusal_shows_the_signature_that_would_have_matched() {
        let set = sources(
            "[sources.p]\npreset = \"paystack\"\nsecret = \"sk\"\n[sources.s]\npreset = \"standard-webhooks\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n[sources.g]\npreset = \"generic\"\ntype = \"/t\"\n[sources.g.verify]\nscheme = \"hmac\"\nheader = \"x-sig\"\nalgorithm = \"sha256\"\nencoding = \"base64\"\nprefix = \"v0=\"\nsecret = \"gs\"\n",
        );
        for source in set.iter() {
            let genuine = signed(source, BODY);
            // The genuine headers, checked against another body: refused, and the message shows
            // neither the signature sent nor the one that body would need.
            let other = b"{\"t\":\"x\"}";
            let would_match = signed(source, other);
            let why = refusal(source, &genuine, other).await;
            for (_, value) in would_match.iter().chain(genuine.iter()) {
                let value = value.to_str().unwrap();
                let tag = value
                    .rsplit([',', '='])
                    .find(|p| p.len() > 8)
                    .unwrap_or(value);
                assert!(!why.contains(tag), "{}: {why}", source.name());
            }
        }
    }

    #[test]
    fn secrets_never_print() {
        let set = sources(
            "[sources.a]\npreset = \"mono\"\nsecret = \"hunter2-mono\"\n[sources.b]\npreset = \"plaid\"\nclient_id = \"c\"\nsecret = \"hunter2-plaid\"\n[sources.c]\npreset = \"generic\"\ntype = \"/t\"\n[sources.c.verify]\nscheme = \"token\"\nsecret = \"hunter2-token\"\n",
        );
        let shown = format!("{set:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("mono") && shown.contains("production.plaid.com"),
            "{shown}"
        );
    }
}
