//! Who may call what: bearer tokens compared in constant time, and the loopback rule for the
//! admin API when no admin token is set.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header::AUTHORIZATION, HeaderMap},
    middleware::Next,
    response::Response,
};
use subtle::ConstantTimeEq;

use super::{error::ApiError, AppState};
use crate::config::Secret;

/// Whether the request carries `Authorization: Bearer <expected>`. The comparison takes the same
/// time wherever the tokens differ.
pub fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    given
        .trim()
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into()
}

/// Checks the `--callback-token` rule for `POST /v1/callback`.
pub fn check_callback_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.callback_token {
        Some(token) if !bearer_matches(headers, token) => Err(ApiError::Unauthorized(
            "a valid callback token is required: send `Authorization: Bearer <token>` with the token set in Okra's dashboard (--callback-token)",
        )),
        _ => Ok(()),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The `--admin-token` rule for every read and admin endpoint: the bearer token when one is set,
/// otherwise loopback peers only. The peer is the socket's address; forwarded headers are not
/// believed.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.admin_token {
        Some(token) => {
            if !bearer_matches(request.headers(), token) {
                return Err(ApiError::Unauthorized(
                    "a valid admin token is required: send `Authorization: Bearer <token>` with the --admin-token value",
                ));
            }
        }
        None => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            if !peer.is_some_and(is_loopback) {
                return Err(ApiError::Forbidden);
            }
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let secret = Secret::new("s3cret");
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, &secret));
        for (value, ok) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("Bearer s3cre", false),
            ("Bearer s3cret2", false),
            ("Basic s3cret", false),
            ("s3cret", false),
        ] {
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_matches(&headers, &secret), ok, "{value}");
        }
    }

    #[test]
    fn loopback_includes_mapped_v4() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }
}
