//! Signature checks on the raw body, for senders that sign their callbacks.
//!
//! Two schemes, chosen by which secret is configured:
//!
//! - **HMAC-SHA256** ([`Verifier::hmac_sha256`]): the hex HMAC of the raw body under a shared
//!   secret, in one header (`X-Okra-Signature` by default), bare or as `sha256=<hex>`.
//! - **[Standard Webhooks](https://www.standardwebhooks.com/)** ([`Verifier::standard_webhooks`]):
//!   `webhook-id`, `webhook-timestamp` and `webhook-signature` headers; the signature is the
//!   base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the `whsec_` secret, prefixed `v1,`;
//!   several space-separated signatures may be sent (key rotation) and one valid is enough; the
//!   timestamp must be within 5 minutes of now, either way (replay protection).
//!
//! Checks run on the bytes as received, before anything parses them; every comparison is
//! constant-time (the `hmac` crate's `verify_slice`) and every length is checked before it.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{header::HeaderName, HeaderMap};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// How far a Standard Webhooks timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The most signatures one `webhook-signature` header may list; more is refused unread.
const MAX_SIGNATURES: usize = 16;
/// The longest `webhook-id` accepted (it is part of the signed content).
const MAX_ID_LEN: usize = 256;

/// The default header of the HMAC scheme.
pub const DEFAULT_HMAC_HEADER: &str = "X-Okra-Signature";

/// Why a signature setting cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Why a request's signature was refused. The message says what was wrong, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is missing.
    #[error("the `{0}` header is missing")]
    Missing(String),
    /// A header is present but not in the scheme's format.
    #[error("the `{header}` header is malformed: {why}")]
    Malformed {
        /// Which header.
        header: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The Standard Webhooks timestamp is more than 5 minutes old.
    #[error("the webhook-timestamp is more than 5 minutes old (a replay, or a clock out of sync)")]
    TooOld,
    /// The Standard Webhooks timestamp is more than 5 minutes ahead.
    #[error("the webhook-timestamp is more than 5 minutes in the future (a clock out of sync)")]
    InFuture,
    /// Well-formed, but no signature matches the body.
    #[error("no signature matches the body")]
    Mismatch,
}

/// Secret key bytes; `Debug` never shows them.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// Checks a request's signature against a configured secret. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// Hex HMAC-SHA256 of the raw body in one header.
    HmacSha256 {
        /// The shared secret.
        key: Key,
        /// The header carrying the signature, as configured (matched case-insensitively).
        header: String,
    },
    /// Standard Webhooks, symmetric (`v1`) signatures.
    StandardWebhooks {
        /// The decoded `whsec_` secret.
        key: Key,
    },
}

fn mac(key: &Key) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    HmacSha256::new_from_slice(&key.0).expect("HMAC accepts any key length")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| SignatureError::Missing(name.to_owned()))?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed {
            header: name.to_owned(),
            why: "it is sent more than once",
        });
    }
    value.to_str().map_err(|_| SignatureError::Malformed {
        header: name.to_owned(),
        why: "it is not ASCII text",
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Verifier {
    /// The HMAC-SHA256 scheme with this shared secret, read from `header` (e.g.
    /// [`DEFAULT_HMAC_HEADER`]).
    pub fn hmac_sha256(secret: &[u8], header: &str) -> Result<Self, KeyError> {
        let header_text = header.trim();
        if secret.is_empty() {
            return Err(KeyError("the HMAC secret cannot be empty".into()));
        }
        HeaderName::try_from(header_text).map_err(|_| {
            KeyError(format!(
                "`{header}` is not a valid header name: use e.g. {DEFAULT_HMAC_HEADER}"
            ))
        })?;
        Ok(Self::HmacSha256 {
            key: Key(secret.to_vec()),
            header: header_text.to_owned(),
        })
    }

    /// The Standard Webhooks scheme with a `whsec_<base64>` secret (the prefix is optional).
    pub fn standard_webhooks(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = BASE64.decode(encoded).map_err(|_| {
            KeyError(
                "the webhook secret is not valid: use the `whsec_…` value your sender shows (base64 after the prefix)"
                    .into(),
            )
        })?;
        if key.is_empty() {
            return Err(KeyError("the webhook secret cannot be empty".into()));
        }
        Ok(Self::StandardWebhooks { key: Key(key) })
    }

    /// A short name for logs and errors.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::HmacSha256 { .. } => "hmac-sha256",
            Self::StandardWebhooks { .. } => "standard-webhooks",
        }
    }

    /// How a sender should sign, for error messages.
    pub fn hint(&self) -> String {
        match self {
            Self::HmacSha256 { header, .. } => format!(
                "send `{header}: sha256=<hex HMAC-SHA256 of the raw body>` made with the shared secret (--hmac-secret)"
            ),
            Self::StandardWebhooks { .. } => "send webhook-id, webhook-timestamp (unix seconds, within 5 minutes) and webhook-signature `v1,<base64 HMAC-SHA256 of id.timestamp.body>` made with the whsec_ secret (--webhook-secret)".into(),
        }
    }

    /// Checks the signature of `body` in `headers`, now.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        self.verify_at(headers, body, unix_now())
    }

    /// Checks the signature as if the time were `now` (unix seconds).
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        match self {
            Self::HmacSha256 { key, header } => verify_hmac(key, header, headers, body),
            Self::StandardWebhooks { key } => verify_standard(key, headers, body, now),
        }
    }

    /// The signature headers a sender would attach to `body`: for clients, tests and the
    /// `send` command. Standard Webhooks uses `id` and `timestamp`; HMAC ignores them.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        match self {
            Self::HmacSha256 { key, header } => {
                let mut m = mac(key);
                m.update(body);
                vec![(
                    header.clone(),
                    format!("sha256={}", hex::encode(m.finalize().into_bytes())),
                )]
            }
            Self::StandardWebhooks { key } => vec![
                ("webhook-id".into(), id.to_owned()),
                ("webhook-timestamp".into(), timestamp.to_string()),
                (
                    "webhook-signature".into(),
                    standard_signature(key, id, timestamp, body),
                ),
            ],
        }
    }
}

fn verify_hmac(
    key: &Key,
    header: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = header_str(headers, header)?.trim();
    let hex_sig = value
        .strip_prefix("sha256=")
        .or_else(|| value.strip_prefix("SHA256="))
        .unwrap_or(value);
    let malformed = |why| SignatureError::Malformed {
        header: header.to_owned(),
        why,
    };
    if hex_sig.len() != TAG_LEN * 2 {
        return Err(malformed(
            "expected 64 hex digits (optionally after `sha256=`)",
        ));
    }
    let tag = hex::decode(hex_sig).map_err(|_| malformed("expected hex digits"))?;
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

fn standard_signature(key: &Key, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1,{}", BASE64.encode(m.finalize().into_bytes()))
}

fn verify_standard(
    key: &Key,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let id = header_str(headers, "webhook-id")?;
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('.') {
        return Err(SignatureError::Malformed {
            header: "webhook-id".into(),
            why: "it must be 1 to 256 characters without `.`",
        });
    }
    let ts_text = header_str(headers, "webhook-timestamp")?;
    let timestamp: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed {
            header: "webhook-timestamp".into(),
            why: "it must be an integer of unix seconds",
        })?;
    let tolerance = TOLERANCE.as_secs() as i64;
    if now.saturating_sub(timestamp) > tolerance {
        return Err(SignatureError::TooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(SignatureError::InFuture);
    }
    let signatures = header_str(headers, "webhook-signature")?;
    // The signed content's timestamp is the header's text, as the sender wrote it.
    let mut base = mac(key);
    base.update(id.as_bytes());
    base.update(b".");
    base.update(ts_text.as_bytes());
    base.update(b".");
    base.update(body);

    let mut candidates = 0;
    for entry in signatures.split(' ').filter(|s| !s.is_empty()) {
        candidates += 1;
        if candidates > MAX_SIGNATURES {
            return Err(SignatureError::Malformed {
                header: "webhook-signature".into(),
                why: "it lists too many signatures",
            });
        }
        // Other versions (e.g. `v1a`, asymmetric) are not ours to check; skip them.
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        // A base64 HMAC-SHA256 tag is exactly 44 characters; anything else cannot match and is
        // not decoded, let alone compared.
        if encoded.len() != 44 {
            continue;
        }
        let Ok(tag) = BASE64.decode(encoded) else {
            continue;
        };
        if tag.len() == TAG_LEN && base.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    if candidates == 0 {
        return Err(SignatureError::Malformed {
            header: "webhook-signature".into(),
            why: "it lists no signature",
        });
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from the Standard Webhooks reference library's tests:
    // standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs (commit 1e88c9ce),
    // `test_sign`, `test_no_verify`, `test_verify_with_multiple_signatures`,
    // `test_no_verify_with_multiple_signatures`, `test_verify_incorrect_timestamp`,
    // `test_missing_headers`. The spec (spec/standard-webhooks.md) fixes the scheme:
    // `{msg_id}.{timestamp}.{payload}`, `v1,` + base64, space-separated list.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const PAYLOAD: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const OTHER_SIGNATURES: [&str; 3] = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn standard(signature: &str, timestamp: i64) -> HeaderMap {
        headers(&[
            ("webhook-id", MSG_ID),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", signature),
        ])
    }

    fn wh() -> Verifier {
        Verifier::standard_webhooks(SECRET).unwrap()
    }

    #[test]
    fn signs_the_reference_vector() {
        let signed = wh().sign(MSG_ID, TIMESTAMP, PAYLOAD);
        assert_eq!(signed[2], ("webhook-signature".into(), SIGNATURE.into()));
        // The prefix is optional.
        let bare = Verifier::standard_webhooks(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(bare.sign(MSG_ID, TIMESTAMP, PAYLOAD)[2].1, SIGNATURE);
    }

    #[test]
    fn verifies_the_reference_vector_at_its_time() {
        let h = standard(SIGNATURE, TIMESTAMP);
        assert_eq!(wh().verify_at(&h, PAYLOAD, TIMESTAMP), Ok(()));
        // The wrong body, or another id, does not verify.
        assert_eq!(
            wh().verify_at(&h, b"{}", TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        let mut other_id = h.clone();
        other_id.insert("webhook-id", "msg_other".parse().unwrap());
        assert_eq!(
            wh().verify_at(&other_id, PAYLOAD, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_the_reference_wrong_signature() {
        let h = standard("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=", TIMESTAMP);
        assert_eq!(
            wh().verify_at(&h, PAYLOAD, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_valid_among_several_invalid_is_enough() {
        let list = format!(
            "{} {} {SIGNATURE} {}",
            OTHER_SIGNATURES[0], OTHER_SIGNATURES[1], OTHER_SIGNATURES[2]
        );
        assert_eq!(
            wh().verify_at(&standard(&list, TIMESTAMP), PAYLOAD, TIMESTAMP),
            Ok(())
        );
        // Other schemes' entries are skipped, not fatal.
        let mixed = format!("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== {SIGNATURE}");
        assert_eq!(
            wh().verify_at(&standard(&mixed, TIMESTAMP), PAYLOAD, TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn several_invalid_signatures_are_refused() {
        let list = OTHER_SIGNATURES.join(" ");
        assert_eq!(
            wh().verify_at(&standard(&list, TIMESTAMP), PAYLOAD, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_bare_prefix_or_a_truncated_signature_is_refused() {
        let truncated = &SIGNATURE[..SIGNATURE.len() - 4];
        let unpadded = SIGNATURE.trim_end_matches('=');
        let no_version = SIGNATURE.strip_prefix("v1,").unwrap();
        let wrong_version = SIGNATURE.replacen("v1,", "v2,", 1);
        for bad in ["v1,", "v1", truncated, unpadded, no_version, &wrong_version] {
            assert_eq!(
                wh().verify_at(&standard(bad, TIMESTAMP), PAYLOAD, TIMESTAMP),
                Err(SignatureError::Mismatch),
                "{bad}"
            );
        }
        // A signature that decodes to the right length but is cut and re-padded.
        let short = format!("v1,{}", BASE64.encode([0u8; 31]));
        assert!(wh()
            .verify_at(&standard(&short, TIMESTAMP), PAYLOAD, TIMESTAMP)
            .is_err());
        // An empty list.
        assert!(matches!(
            wh().verify_at(&standard(" ", TIMESTAMP), PAYLOAD, TIMESTAMP),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn timestamps_past_five_minutes_either_way_are_refused() {
        let h = standard(SIGNATURE, TIMESTAMP);
        assert_eq!(
            wh().verify_at(&h, PAYLOAD, TIMESTAMP + 301),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            wh().verify_at(&h, PAYLOAD, TIMESTAMP - 301),
            Err(SignatureError::InFuture)
        );
        // Exactly at the tolerance is still accepted.
        assert_eq!(wh().verify_at(&h, PAYLOAD, TIMESTAMP + 300), Ok(()));
        assert_eq!(wh().verify_at(&h, PAYLOAD, TIMESTAMP - 300), Ok(()));
        // Freshly signed messages verify against the real clock; well outside the tolerance
        // does not. (The exact boundary is checked above with a fixed clock: against the real
        // clock, `now + 301` turns into 300 s ahead when a second passes before `verify`.)
        let now = unix_now();
        for (ts, ok) in [(now, true), (now - 330, false), (now + 330, false)] {
            let signed = wh().sign(MSG_ID, ts, PAYLOAD);
            let h = headers(
                &signed
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(wh().verify(&h, PAYLOAD).is_ok(), ok, "{ts} vs {now}");
        }
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = standard(SIGNATURE, TIMESTAMP);
            h.remove(missing);
            assert_eq!(
                wh().verify_at(&h, PAYLOAD, TIMESTAMP),
                Err(SignatureError::Missing(missing.into()))
            );
        }
        let mut h = standard(SIGNATURE, TIMESTAMP);
        h.insert("webhook-timestamp", "yesterday".parse().unwrap());
        assert!(matches!(
            wh().verify_at(&h, PAYLOAD, TIMESTAMP),
            Err(SignatureError::Malformed { .. })
        ));
        let mut h = standard(SIGNATURE, TIMESTAMP);
        h.insert("webhook-id", "a.b".parse().unwrap());
        assert!(matches!(
            wh().verify_at(&h, PAYLOAD, TIMESTAMP),
            Err(SignatureError::Malformed { .. })
        ));
        let many = vec![OTHER_SIGNATURES[0]; MAX_SIGNATURES + 1].join(" ");
        assert!(matches!(
            wh().verify_at(&standard(&many, TIMESTAMP), PAYLOAD, TIMESTAMP),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn bad_secrets_are_refused_at_start_up() {
        assert!(Verifier::standard_webhooks("whsec_not base64!").is_err());
        assert!(Verifier::standard_webhooks("whsec_").is_err());
        assert!(Verifier::hmac_sha256(b"", DEFAULT_HMAC_HEADER).is_err());
        assert!(Verifier::hmac_sha256(b"k", "bad header").is_err());
    }

    // HMAC-SHA256 test case 2 of RFC 4231: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_KEY: &[u8] = b"Jefe";
    const RFC4231_DATA: &[u8] = b"what do ya want for nothing?";
    const RFC4231_MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    fn hmac_headers(value: &str) -> HeaderMap {
        headers(&[("x-okra-signature", value)])
    }

    #[test]
    fn hmac_good_signatures_verify() {
        let v = Verifier::hmac_sha256(RFC4231_KEY, DEFAULT_HMAC_HEADER).unwrap();
        for value in [
            RFC4231_MAC.to_owned(),
            format!("sha256={RFC4231_MAC}"),
            RFC4231_MAC.to_uppercase(),
        ] {
            assert_eq!(
                v.verify(&hmac_headers(&value), RFC4231_DATA),
                Ok(()),
                "{value}"
            );
        }
        let signed = v.sign("", 0, RFC4231_DATA);
        assert_eq!(signed[0].1, format!("sha256={RFC4231_MAC}"));
        // A configured header name is honoured.
        let custom = Verifier::hmac_sha256(RFC4231_KEY, "X-Signature").unwrap();
        let h = headers(&[("x-signature", RFC4231_MAC)]);
        assert_eq!(custom.verify(&h, RFC4231_DATA), Ok(()));
    }

    #[test]
    fn hmac_bad_signatures_are_refused() {
        let v = Verifier::hmac_sha256(RFC4231_KEY, DEFAULT_HMAC_HEADER).unwrap();
        let mut flipped = RFC4231_MAC.to_owned();
        flipped.replace_range(0..1, "6");
        assert_eq!(
            v.verify(&hmac_headers(&flipped), RFC4231_DATA),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(&hmac_headers(RFC4231_MAC), b"what do ya want for nothing!"),
            Err(SignatureError::Mismatch)
        );
        let other_key = Verifier::hmac_sha256(b"jefe", DEFAULT_HMAC_HEADER).unwrap();
        assert_eq!(
            other_key.verify(&hmac_headers(RFC4231_MAC), RFC4231_DATA),
            Err(SignatureError::Mismatch)
        );
        for malformed in [
            &RFC4231_MAC[..62],
            "sha256=",
            "zz",
            &format!("{RFC4231_MAC}00"),
        ] {
            assert!(
                matches!(
                    v.verify(&hmac_headers(malformed), RFC4231_DATA),
                    Err(SignatureError::Malformed { .. })
                ),
                "{malformed}"
            );
        }
        assert_eq!(
            v.verify(&HeaderMap::new(), RFC4231_DATA),
            Err(SignatureError::Missing("X-Okra-Signature".into()))
        );
        // Sent twice: refused rather than guessing which one counts.
        let mut twice = hmac_headers(RFC4231_MAC);
        twice.append("x-okra-signature", RFC4231_MAC.parse().unwrap());
        assert!(v.verify(&twice, RFC4231_DATA).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let shown = format!(
            "{:?} {:?}",
            wh(),
            Verifier::hmac_sha256(b"hunter2", "x-sig").unwrap()
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("C2FV"),
            "{shown}"
        );
        // The decoded key bytes do not print either.
        assert!(!shown.contains("11, 97"), "{shown}");
    }
}
