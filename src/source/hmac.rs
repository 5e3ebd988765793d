//! The HMAC scheme: an HMAC of the raw body under a shared secret, in one header.
//!
//! [`HmacHeader`] is the general form a source configures (SHA-256 or SHA-512, hex or base64, an
//! optional prefix such as `sha256=` that the header must carry); [`HmacSha256`] is Okra's
//! `--hmac-secret` rule, hex HMAC-SHA256 bare or as `sha256=<hex>`.

use axum::http::{header::HeaderName, HeaderMap};
use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

use super::{header_str, Key, KeyError, SignatureError};

/// The default header of the HMAC scheme.
pub const DEFAULT_HMAC_HEADER: &str = "X-Okra-Signature";

/// Standard base64, padded or not (senders differ), as HMAC tags are written.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The hash an HMAC is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256: a 32-byte tag.
    Sha256,
    /// HMAC-SHA512: a 64-byte tag (Paystack's).
    Sha512,
}

/// How the tag is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hex digits, either case.
    Hex,
    /// Standard base64.
    Base64,
}

/// Whether the header's value starts with a marker such as `sha256=`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Prefix {
    /// The value is the tag alone.
    None,
    /// The value must start with this (matched case-insensitively).
    Required(String),
    /// The value may start with this (Okra's `sha256=`).
    Optional(&'static str),
}

/// A fresh HMAC under `key` over `body`.
fn mac_of<M: Mac + KeyInit>(key: &Key, body: &[u8]) -> M {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <M as KeyInit>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    m.update(body);
    m
}

/// An HMAC of the raw body in one header. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct HmacHeader {
    /// The shared secret.
    key: Key,
    /// The header carrying the signature, as configured (matched case-insensitively).
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: Prefix,
}

impl HmacHeader {
    /// The scheme with this shared secret, read from `header`; when `prefix` is given the
    /// header must carry it before the tag.
    pub fn new(
        secret: &[u8],
        header: &str,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: Option<&str>,
    ) -> Result<Self, KeyError> {
        let prefix = match prefix {
            Some(p) if !p.is_empty() => Prefix::Required(p.to_owned()),
            _ => Prefix::None,
        };
        Self::build(secret, header, algorithm, encoding, prefix)
    }

    fn build(
        secret: &[u8],
        header: &str,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: Prefix,
    ) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError("the HMAC secret cannot be empty".into()));
        }
        let header_text = header.trim();
        HeaderName::try_from(header_text).map_err(|_| {
            KeyError(format!(
                "`{header}` is not a valid header name: use e.g. {DEFAULT_HMAC_HEADER}"
            ))
        })?;
        Ok(Self {
            key: Key(secret.to_vec()),
            header: header_text.to_owned(),
            algorithm,
            encoding,
            prefix,
        })
    }

    fn tag_len(&self) -> usize {
        match self.algorithm {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    fn format_hint(&self) -> String {
        let digits = match self.encoding {
            Encoding::Hex => format!("{} hex digits", self.tag_len() * 2),
            Encoding::Base64 => format!("{} bytes in base64", self.tag_len()),
        };
        match &self.prefix {
            Prefix::None => format!("expected {digits}"),
            Prefix::Required(p) => format!("expected `{p}` then {digits}"),
            Prefix::Optional(p) => format!("expected {digits} (optionally after `{p}`)"),
        }
    }

    /// Checks the signature of `body` in `headers`, in constant time.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let value = header_str(headers, &self.header)?.trim();
        let malformed = || SignatureError::Malformed {
            header: self.header.clone(),
            why: self.format_hint(),
        };
        let strip = |p: &str| {
            value
                .get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &value[p.len()..])
        };
        let encoded = match &self.prefix {
            Prefix::None => value,
            Prefix::Required(p) => strip(p).ok_or_else(malformed)?,
            Prefix::Optional(p) => strip(p).unwrap_or(value),
        };
        // The length is checked before decoding, so nothing longer than a tag is decoded.
        let tag = match self.encoding {
            Encoding::Hex if encoded.len() == self.tag_len() * 2 => hex::decode(encoded).ok(),
            Encoding::Base64 if encoded.len() <= self.tag_len().div_ceil(3) * 4 => {
                BASE64_ANY_PADDING.decode(encoded).ok()
            }
            _ => None,
        }
        .filter(|tag| tag.len() == self.tag_len())
        .ok_or_else(malformed)?;
        let matched = match self.algorithm {
            Algorithm::Sha256 => mac_of::<Hmac<Sha256>>(&self.key, body).verify_slice(&tag),
            Algorithm::Sha512 => mac_of::<Hmac<Sha512>>(&self.key, body).verify_slice(&tag),
        };
        matched.map_err(|_| SignatureError::Mismatch)
    }

    /// The header a sender would attach to `body`: `(name, prefix + tag)`.
    pub fn sign(&self, body: &[u8]) -> (String, String) {
        let tag = match self.algorithm {
            Algorithm::Sha256 => mac_of::<Hmac<Sha256>>(&self.key, body)
                .finalize()
                .into_bytes()
                .to_vec(),
            Algorithm::Sha512 => mac_of::<Hmac<Sha512>>(&self.key, body)
                .finalize()
                .into_bytes()
                .to_vec(),
        };
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => BASE64_ANY_PADDING.encode(tag),
        };
        let prefix = match &self.prefix {
            Prefix::None => "",
            Prefix::Required(p) => p.as_str(),
            Prefix::Optional(p) => p,
        };
        (self.header.clone(), format!("{prefix}{encoded}"))
    }
}

/// Hex HMAC-SHA256 of the raw body in one header, bare or as `sha256=<hex>`: Okra's
/// `--hmac-secret` rule. `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct HmacSha256(HmacHeader);

impl HmacSha256 {
    /// The scheme with this shared secret, read from `header` (e.g. [`DEFAULT_HMAC_HEADER`]).
    pub fn new(secret: &[u8], header: &str) -> Result<Self, KeyError> {
        HmacHeader::build(
            secret,
            header,
            Algorithm::Sha256,
            Encoding::Hex,
            Prefix::Optional("sha256="),
        )
        .map(Self)
    }

    /// How a sender should sign, for error messages.
    pub(super) fn hint(&self) -> String {
        format!(
            "send `{}: sha256=<hex HMAC-SHA256 of the raw body>` made with the shared secret (--hmac-secret)",
            self.0.header
        )
    }

    /// Checks the signature of `body` in `headers`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        self.0.verify(headers, body)
    }

    /// The header a sender would attach to `body`: `(name, "sha256=<hex>")`.
    pub fn sign(&self, body: &[u8]) -> (String, String) {
        self.0.sign(body)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::headers, Verifier};
    use super::*;

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
}
