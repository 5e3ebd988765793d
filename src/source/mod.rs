//! Sources: who sends callbacks, how their requests are proven genuine, and how their payloads
//! are read.
//!
//! A source is one sender: one verifier (is this request really from them?) and one reader
//! (where its record, type, code and event id sit), both chosen from the configuration once, at
//! start-up. The ingest path calls the verifier on the raw bytes, then the reader, and never
//! branches on a provider's name.
//!
//! What lives here:
//!
//! - [`Sources`] (`sources.rs`): every source of the sources file (`--sources FILE`), by name,
//!   read once by [`Sources::load`] (`file.rs`); a bad file is a [`SourcesError`] naming the
//!   source and the setting; [`Sources::warnings`] are for the start-up log.
//! - [`Source`]: one of them. [`Source::verify`] checks a request on its raw body
//!   ([`VerifyError`]: `Refused` is 401, `Unavailable` 503); [`Source::read`] finds its record,
//!   type, code and event id ([`SourceEvent`], [`ReadError`]; `read.rs`, by [`Pointer`]s);
//!   [`Source::sign`] makes the headers its sender would (for `send --source` and tests).
//! - The checks a source is built from: a bearer token or a header holding the secret
//!   (`sources.rs`); [`HmacHeader`] (`hmac.rs`: SHA-256/512, hex/base64, an optional prefix);
//!   [`StandardWebhooks`] (`standard_webhooks.rs`: `webhook-*` or `svix-*` headers, several
//!   secrets while rotating, `v1,` signatures of `{id}.{timestamp}.{body}`, 5 minutes either
//!   way); Plaid's ES256 JWT ([`PlaidCheck`], `plaid.rs`) with keys from Plaid's key service
//!   ([`PlaidKeys`], `plaid_keys.rs`: cached by `kid`, asked for within fixed bounds).
//! - [`Verifier`]: Okra's own rule on `POST /v1/callback` (`--hmac-secret`: [`HmacSha256`];
//!   `--webhook-secret`: [`StandardWebhooks`]).
//!
//! Checks run on the bytes as received, before anything parses them; every comparison of a
//! signature or secret is constant-time (the `hmac` crate's `verify_slice`, or `subtle` on
//! digests) and every length is checked before it. A refusal says which check failed, never a
//! secret nor the signature that would have matched.

mod file;
mod hmac;
mod plaid;
mod plaid_keys;
mod read;
mod sources;
pub(crate) use sources::secret_matches;
mod standard_webhooks;

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use ::hmac::{Hmac, KeyInit};
use axum::http::HeaderMap;
use sha2::Sha256;

pub use self::file::{SourcesError, PLAID_API_URL};
pub use self::hmac::{Algorithm, Encoding, HmacHeader, HmacSha256, DEFAULT_HMAC_HEADER};
pub use self::plaid::{PlaidCheck, UncheckedJwt};
pub use self::plaid_keys::{PlaidKeys, PublicKey};
pub use self::read::{EventIdAt, Pointer, ReadError, Reader, SourceEvent};
pub use self::sources::{SignError, Source, Sources, VerifyError};
pub use self::standard_webhooks::{StandardWebhooks, MAX_SECRETS, TOLERANCE};

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
        why: String,
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
struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// The length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// A fresh HMAC-SHA256 under `key`.
fn mac(key: &Key) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    Hmac::new_from_slice(&key.0).expect("HMAC accepts any key length")
}

/// The value of the one `name` header, as text: missing, repeated or non-ASCII is refused.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| SignatureError::Missing(name.to_owned()))?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed {
            header: name.to_owned(),
            why: "it is sent more than once".into(),
        });
    }
    value.to_str().map_err(|_| SignatureError::Malformed {
        header: name.to_owned(),
        why: "it is not ASCII text".into(),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks a request's signature against a configured secret. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub enum Verifier {
    /// Hex HMAC-SHA256 of the raw body in one header.
    HmacSha256(HmacSha256),
    /// Standard Webhooks, symmetric (`v1`) signatures.
    StandardWebhooks(StandardWebhooks),
}

impl Verifier {
    /// The HMAC-SHA256 scheme with this shared secret, read from `header` (e.g.
    /// [`DEFAULT_HMAC_HEADER`]).
    pub fn hmac_sha256(secret: &[u8], header: &str) -> Result<Self, KeyError> {
        HmacSha256::new(secret, header).map(Self::HmacSha256)
    }

    /// The Standard Webhooks scheme with a `whsec_<base64>` secret (the prefix is optional).
    pub fn standard_webhooks(secret: &str) -> Result<Self, KeyError> {
        StandardWebhooks::new(secret).map(Self::StandardWebhooks)
    }

    /// A short name for logs and errors.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::HmacSha256(_) => "hmac-sha256",
            Self::StandardWebhooks(_) => "standard-webhooks",
        }
    }

    /// How a sender should sign, for error messages.
    pub fn hint(&self) -> String {
        match self {
            Self::HmacSha256(v) => v.hint(),
            Self::StandardWebhooks(v) => v.hint(),
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
            Self::HmacSha256(v) => v.verify(headers, body),
            Self::StandardWebhooks(v) => v.verify_at(headers, body, now),
        }
    }

    /// The signature headers a sender would attach to `body`: for clients, tests and the
    /// `send` command. Standard Webhooks uses `id` and `timestamp`; HMAC ignores them.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        match self {
            Self::HmacSha256(v) => vec![v.sign(body)],
            Self::StandardWebhooks(v) => v.sign(id, timestamp, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::HeaderName;

    use super::*;

    /// A header map of these pairs, in order (a name may repeat).
    pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bad_secrets_are_refused_at_start_up() {
        assert!(Verifier::standard_webhooks("whsec_not base64!").is_err());
        assert!(Verifier::standard_webhooks("whsec_").is_err());
        assert!(Verifier::hmac_sha256(b"", DEFAULT_HMAC_HEADER).is_err());
        assert!(Verifier::hmac_sha256(b"k", "bad header").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let shown = format!(
            "{:?} {:?}",
            Verifier::standard_webhooks("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(),
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
