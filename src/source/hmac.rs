//! The HMAC scheme: the hex HMAC-SHA256 of the raw body under a shared secret, in one header.

use axum::http::{header::HeaderName, HeaderMap};
use hmac::Mac;

use super::{header_str, mac, Key, KeyError, SignatureError, TAG_LEN};

/// The default header of the HMAC scheme.
pub const DEFAULT_HMAC_HEADER: &str = "X-Okra-Signature";

/// Hex HMAC-SHA256 of the raw body in one header, bare or as `sha256=<hex>`. `Debug` never
/// shows the secret.
#[derive(Debug, Clone)]
pub struct HmacSha256 {
    /// The shared secret.
    key: Key,
    /// The header carrying the signature, as configured (matched case-insensitively).
    header: String,
}

impl HmacSha256 {
    /// The scheme with this shared secret, read from `header` (e.g. [`DEFAULT_HMAC_HEADER`]).
    pub fn new(secret: &[u8], header: &str) -> Result<Self, KeyError> {
        let header_text = header.trim();
        if secret.is_empty() {
            return Err(KeyError("the HMAC secret cannot be empty".into()));
        }
        HeaderName::try_from(header_text).map_err(|_| {
            KeyError(format!(
                "`{header}` is not a valid header name: use e.g. {DEFAULT_HMAC_HEADER}"
            ))
        })?;
        Ok(Self {
            key: Key(secret.to_vec()),
            header: header_text.to_owned(),
        })
    }

    /// How a sender should sign, for error messages.
    pub(super) fn hint(&self) -> String {
        format!(
            "send `{}: sha256=<hex HMAC-SHA256 of the raw body>` made with the shared secret (--hmac-secret)",
            self.header
        )
    }

    /// Checks the signature of `body` in `headers`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        let value = header_str(headers, &self.header)?.trim();
        let hex_sig = value
            .strip_prefix("sha256=")
            .or_else(|| value.strip_prefix("SHA256="))
            .unwrap_or(value);
        let malformed = |why| SignatureError::Malformed {
            header: self.header.clone(),
            why,
        };
        if hex_sig.len() != TAG_LEN * 2 {
            return Err(malformed(
                "expected 64 hex digits (optionally after `sha256=`)",
            ));
        }
        let tag = hex::decode(hex_sig).map_err(|_| malformed("expected hex digits"))?;
        let mut m = mac(&self.key);
        m.update(body);
        m.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
    }

    /// The header a sender would attach to `body`: `(name, "sha256=<hex>")`.
    pub fn sign(&self, body: &[u8]) -> (String, String) {
        let mut m = mac(&self.key);
        m.update(body);
        (
            self.header.clone(),
            format!("sha256={}", hex::encode(m.finalize().into_bytes())),
        )
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
