//! The console's browser session and its CSRF protection.
//!
//! With `--admin-token`, the operator types the token once into the login form; the answer sets
//! a session cookie whose value is **not** the token but `nonce.expiry.MAC`, the MAC an
//! HMAC-SHA256 under the token. Any replica that knows the same token accepts it (nothing is
//! stored), it lapses at `expiry` or when the browser closes (no `Max-Age`), and changing the
//! token ends every session. The cookie is `HttpOnly; SameSite=Strict; Path=/console`.
//!
//! Every POST carries a CSRF token (an HMAC of the session, under the same key) in a hidden form
//! field, and must come from the console's own origin (`Sec-Fetch-Site` / `Origin`). Without an
//! admin token the console answers loopback clients only; its CSRF key is then a random key of
//! this process, so a page from another site that a local browser opens still cannot post.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The session cookie's name.
pub(super) const COOKIE: &str = "okra_console";

/// How long a session lasts at most, even in a browser that is never closed.
pub(super) const LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// The key sessions and CSRF tokens are signed with.
#[derive(Clone)]
pub(super) enum Key {
    /// `--admin-token` is set: sessions are signed with it.
    Token(Secret),
    /// No admin token: loopback clients only, CSRF tokens signed with this process's own key.
    Loopback,
}

impl Key {
    /// The key for the receiver's admin-token setting.
    pub(super) fn new(admin_token: Option<&Secret>) -> Self {
        admin_token.map_or(Self::Loopback, |t| Self::Token(t.clone()))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Token(token) => token.expose().as_bytes(),
            Self::Loopback => process_key(),
        }
    }

    /// HMAC-SHA256 of `parts` (each length-prefixed, so no two lists collide) under this key.
    fn mac(&self, purpose: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.bytes()).expect("HMAC accepts any key length");
        for part in std::iter::once(purpose).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// A fresh session cookie value: `nonce.expiry.MAC`.
    pub(super) fn issue(&self, now: DateTime<Utc>) -> String {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let expiry = (now + LIFETIME).timestamp().to_string();
        let mac = hex::encode(self.mac("session", &[&nonce, &expiry]));
        format!("{nonce}.{expiry}.{mac}")
    }

    /// Whether `value` is a session this key issued and that has not expired.
    pub(super) fn verify(&self, value: &str, now: DateTime<Utc>) -> bool {
        let mut parts = value.split('.');
        let (Some(nonce), Some(expiry), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expires) = expiry.parse::<i64>() else {
            return false;
        };
        if expires <= now.timestamp() {
            return false;
        }
        let Ok(given) = hex::decode(mac) else {
            return false;
        };
        let expected = self.mac("session", &[nonce, expiry]);
        given.ct_eq(&expected).into()
    }

    /// The CSRF token of a session (`session` is the cookie value, or `""` without a token).
    pub(super) fn csrf(&self, session: &str) -> String {
        hex::encode(self.mac("csrf", &[session]))
    }

    /// Whether `given` is the CSRF token of `session`, compared in constant time.
    pub(super) fn csrf_matches(&self, session: &str, given: &str) -> bool {
        let expected = self.csrf(session);
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// Whether `given` is the admin token, compared in constant time (over digests, so the
    /// token's length does not show either). Always false without a token.
    pub(super) fn token_matches(&self, given: &str) -> bool {
        use sha2::Digest;
        match self {
            Self::Token(token) => {
                let given = Sha256::digest(given.trim().as_bytes());
                let expected = Sha256::digest(token.expose().as_bytes());
                given.as_slice().ct_eq(expected.as_slice()).into()
            }
            Self::Loopback => false,
        }
    }
}

/// This process's random key for CSRF tokens when no admin token is set.
fn process_key() -> &'static [u8] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    })
}

/// The value of the session cookie in a request, if any.
pub(super) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value that starts a session. `Secure` when the page was served over HTTPS
/// (as the browser's `Origin` says), so it also works on `http://127.0.0.1`.
pub(super) fn set_cookie(value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/console{secure}")
}

/// The `Set-Cookie` value that ends a session.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

/// Whether a POST comes from the console's own pages: `Sec-Fetch-Site: same-origin` when the
/// browser sends it, else an `Origin` whose host is the request's `Host`. A request with neither
/// (not a browser, or a very old one) is left to the CSRF token.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Whether the page was loaded over HTTPS, as far as the browser tells.
pub(super) fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Whether the `Host` a browser asked for can be a loopback console: an IP literal or
/// `localhost`. A DNS name that resolves to 127.0.0.1 (DNS rebinding) would otherwise let a
/// remote page read and post to a loopback-only console as if it were its own origin.
pub(super) fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_and_expire() {
        let key = Key::Token(Secret::new("admin-s3cret"));
        let now = Utc::now();
        let session = key.issue(now);
        assert!(!session.contains("admin-s3cret"));
        assert!(key.verify(&session, now));
        assert!(!key.verify(&session, now + LIFETIME + chrono::Duration::seconds(1)));
        // Another token's sessions, a forged MAC, a pushed-back expiry: refused.
        assert!(!Key::Token(Secret::new("other")).verify(&session, now));
        let (rest, mac) = session.rsplit_once('.').unwrap();
        let flipped = if mac.starts_with('0') { "1" } else { "0" };
        assert!(!key.verify(&format!("{rest}.{flipped}{}", &mac[1..]), now));
        let (nonce, _) = rest.split_once('.').unwrap();
        let later = (now + LIFETIME * 10).timestamp();
        assert!(!key.verify(&format!("{nonce}.{later}.{mac}"), now));
        assert!(!key.verify("", now) && !key.verify("a.b.c.d", now));
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = Key::Token(Secret::new("admin-s3cret"));
        let a = key.issue(Utc::now());
        let b = key.issue(Utc::now());
        assert!(key.csrf_matches(&a, &key.csrf(&a)));
        assert!(!key.csrf_matches(&b, &key.csrf(&a)));
        assert!(!key.csrf_matches(&a, ""));
        assert!(!Key::Loopback.csrf_matches("", &key.csrf("")));
        assert!(Key::Loopback.csrf_matches("", &Key::Loopback.csrf("")));
    }

    #[test]
    fn origins_and_hosts() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(host_is_local(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(host_is_local(&headers(&[("host", "localhost:8080")])));
        assert!(host_is_local(&headers(&[("host", "[::1]:8080")])));
        assert!(!host_is_local(&headers(&[(
            "host",
            "rebind.evil.example:8080"
        )])));
        assert_eq!(
            cookie(&headers(&[("cookie", "a=1; okra_console=n.1.m; b=2")])),
            Some("n.1.m")
        );
    }
}
