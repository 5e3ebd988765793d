//! The [Standard Webhooks](https://www.standardwebhooks.com/) scheme, symmetric (`v1`)
//! signatures: `webhook-id`, `webhook-timestamp` and `webhook-signature` headers; the signature
//! is the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the `whsec_` secret, prefixed
//! `v1,`; several space-separated signatures may be sent (key rotation) and one valid is enough;
//! the timestamp must be within 5 minutes of now, either way (replay protection).

use std::time::Duration;

use axum::http::HeaderMap;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::Mac;

use super::{header_str, mac, Key, KeyError, SignatureError, TAG_LEN};

/// How far a Standard Webhooks timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The most signatures one `webhook-signature` header may list; more is refused unread.
const MAX_SIGNATURES: usize = 16;
/// The longest `webhook-id` accepted (it is part of the signed content).
const MAX_ID_LEN: usize = 256;

/// The most secrets one source may hold at once (a rotation needs two).
pub const MAX_SECRETS: usize = 8;

/// The names of the three headers, in each family a sender may use: the specification's
/// `webhook-*`, and `svix-*` from Svix-based senders (Stitch among them).
const FAMILIES: [[&str; 3]; 2] = [
    ["webhook-id", "webhook-timestamp", "webhook-signature"],
    ["svix-id", "svix-timestamp", "svix-signature"],
];

/// Standard Webhooks, symmetric (`v1`) signatures, with one or several secrets (while a sender
/// rotates its secret, a signature under any of them is accepted). `Debug` never shows them.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    /// The decoded `whsec_` secrets; the first signs.
    keys: Vec<Key>,
}

/// Decodes a `whsec_<base64>` secret (the prefix is optional).
fn decode_secret(secret: &str) -> Result<Key, KeyError> {
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
    Ok(Key(key))
}

impl StandardWebhooks {
    /// The scheme with a `whsec_<base64>` secret (the prefix is optional).
    pub fn new(secret: &str) -> Result<Self, KeyError> {
        Self::with_secrets(&[secret])
    }

    /// The scheme with several secrets, e.g. the new and the old one during a rotation: a
    /// signature under any of them is accepted; the first is the one [`Self::sign`] uses.
    pub fn with_secrets(secrets: &[&str]) -> Result<Self, KeyError> {
        if secrets.is_empty() || secrets.len() > MAX_SECRETS {
            return Err(KeyError(format!(
                "give 1 to {MAX_SECRETS} secrets (the current one, and the old one while rotating)"
            )));
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(n, s)| {
                decode_secret(s).map_err(|KeyError(why)| {
                    KeyError(if secrets.len() > 1 {
                        format!("secret {} of {}: {why}", n + 1, secrets.len())
                    } else {
                        why
                    })
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// How a sender should sign, for error messages.
    pub(super) fn hint(&self) -> String {
        "send webhook-id, webhook-timestamp (unix seconds, within 5 minutes) and webhook-signature `v1,<base64 HMAC-SHA256 of id.timestamp.body>` made with the whsec_ secret (--webhook-secret)".into()
    }

    /// The headers a sender would attach to `body`, sent as `id` at `timestamp` (unix seconds),
    /// signed with the first secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        vec![
            ("webhook-id".into(), id.to_owned()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            (
                "webhook-signature".into(),
                self.signature(id, timestamp, body),
            ),
        ]
    }

    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut m = mac(&self.keys[0]);
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        format!("v1,{}", BASE64.encode(m.finalize().into_bytes()))
    }

    /// Checks the signature of `body` in `headers` as if the time were `now` (unix seconds).
    /// The headers are read under `webhook-*` names, or `svix-*` when `webhook-id` is absent.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        // The family whose id is present; else the one with any header present, so that what
        // is reported missing is in the family the sender used.
        let [id_name, ts_name, sig_name] = FAMILIES
            .into_iter()
            .find(|[id, _, _]| headers.contains_key(*id))
            .or_else(|| {
                FAMILIES
                    .into_iter()
                    .find(|names| names.iter().any(|n| headers.contains_key(*n)))
            })
            .unwrap_or(FAMILIES[0]);
        let id = header_str(headers, id_name)?;
        if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('.') {
            return Err(SignatureError::Malformed {
                header: id_name.into(),
                why: "it must be 1 to 256 characters without `.`".into(),
            });
        }
        let ts_text = header_str(headers, ts_name)?;
        let timestamp: i64 = ts_text
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed {
                header: ts_name.into(),
                why: "it must be an integer of unix seconds".into(),
            })?;
        let tolerance = TOLERANCE.as_secs() as i64;
        if now.saturating_sub(timestamp) > tolerance {
            return Err(SignatureError::TooOld);
        }
        if timestamp.saturating_sub(now) > tolerance {
            return Err(SignatureError::InFuture);
        }
        let signatures = header_str(headers, sig_name)?;
        // The signed content's timestamp is the header's text, as the sender wrote it.
        let bases: Vec<_> = self
            .keys
            .iter()
            .map(|key| {
                let mut base = mac(key);
                base.update(id.as_bytes());
                base.update(b".");
                base.update(ts_text.as_bytes());
                base.update(b".");
                base.update(body);
                base
            })
            .collect();

        let mut candidates = 0;
        for entry in signatures.split(' ').filter(|s| !s.is_empty()) {
            candidates += 1;
            if candidates > MAX_SIGNATURES {
                return Err(SignatureError::Malformed {
                    header: sig_name.into(),
                    why: "it lists too many signatures".into(),
                });
            }
            // Other versions (e.g. `v1a`, asymmetric) are not ours to check; skip them.
            let Some(encoded) = entry.strip_prefix("v1,") else {
                continue;
            };
            // A base64 HMAC-SHA256 tag is exactly 44 characters; anything else (an empty `v1,`
            // among them) cannot match and is not decoded, let alone compared.
            if encoded.len() != 44 {
                continue;
            }
            let Ok(tag) = BASE64.decode(encoded) else {
                continue;
            };
            if tag.len() == TAG_LEN && bases.iter().any(|b| b.clone().verify_slice(&tag).is_ok()) {
                return Ok(());
            }
        }
        if candidates == 0 {
            return Err(SignatureError::Malformed {
                header: sig_name.into(),
                why: "it lists no signature".into(),
            });
        }
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::headers, unix_now, Verifier};
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

    // The JavaScript reference library's vector: standard-webhooks/standard-webhooks,
    // libraries/javascript/src/webhook.test.ts (commit 10d3e46d), "sign function works" and
    // "partial signature throws error".
    const JS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const JS_MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const JS_TIMESTAMP: i64 = 1614265330;
    const JS_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const JS_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn family(prefix: &str, id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        headers(&[
            (&format!("{prefix}-id"), id),
            (&format!("{prefix}-timestamp"), &timestamp.to_string()),
            (&format!("{prefix}-signature"), signature),
        ])
    }

    #[test]
    fn the_javascript_vector_signs_and_verifies_under_both_header_families() {
        let js = StandardWebhooks::new(JS_SECRET).unwrap();
        assert_eq!(
            js.sign(JS_MSG_ID, JS_TIMESTAMP, JS_PAYLOAD)[2].1,
            JS_SIGNATURE
        );
        for prefix in ["webhook", "svix"] {
            let h = family(prefix, JS_MSG_ID, JS_TIMESTAMP, JS_SIGNATURE);
            assert_eq!(
                js.verify_at(&h, JS_PAYLOAD, JS_TIMESTAMP),
                Ok(()),
                "{prefix}"
            );
            for partial in ["v1,", &JS_SIGNATURE[..8]] {
                let h = family(prefix, JS_MSG_ID, JS_TIMESTAMP, partial);
                assert_eq!(
                    js.verify_at(&h, JS_PAYLOAD, JS_TIMESTAMP),
                    Err(SignatureError::Mismatch),
                    "{prefix} {partial}"
                );
            }
        }
        // `webhook-*` is read when both families are sent.
        let mut both = family("svix", JS_MSG_ID, JS_TIMESTAMP, "v1,");
        both.extend(family("webhook", JS_MSG_ID, JS_TIMESTAMP, JS_SIGNATURE));
        assert_eq!(js.verify_at(&both, JS_PAYLOAD, JS_TIMESTAMP), Ok(()));
    }

    #[test]
    fn while_rotating_a_signature_under_any_secret_verifies() {
        let rotating = StandardWebhooks::with_secrets(&[SECRET, JS_SECRET]).unwrap();
        let rust = standard(SIGNATURE, TIMESTAMP);
        assert_eq!(rotating.verify_at(&rust, PAYLOAD, TIMESTAMP), Ok(()));
        let js = family("webhook", JS_MSG_ID, JS_TIMESTAMP, JS_SIGNATURE);
        assert_eq!(rotating.verify_at(&js, JS_PAYLOAD, JS_TIMESTAMP), Ok(()));
        // The first secret signs.
        assert_eq!(rotating.sign(MSG_ID, TIMESTAMP, PAYLOAD)[2].1, SIGNATURE);
        // Neither secret's signature verifies another message.
        assert_eq!(
            rotating.verify_at(&js, PAYLOAD, JS_TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert!(StandardWebhooks::with_secrets(&[]).is_err());
        assert!(StandardWebhooks::with_secrets(&[SECRET; MAX_SECRETS + 1]).is_err());
        let bad = StandardWebhooks::with_secrets(&[SECRET, "whsec_!!"]).unwrap_err();
        assert!(bad.to_string().contains("secret 2 of 2"), "{bad}");
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
}
