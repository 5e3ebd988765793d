//! Who may call what: bearer tokens compared in constant time, the loopback rule for the admin
//! API when no admin token is set, and the `--allow-from` networks for callbacks.

use axum::{
    extract::{Request, State},
    http::{header::AUTHORIZATION, HeaderMap},
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error::ApiError, peer, AppState};
use crate::config::Secret;

/// Whether the request carries `Authorization: Bearer <expected>`. Both tokens are hashed first
/// and the digests compared in constant time, so neither where they differ nor the expected
/// token's length shows in the timing.
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
    let given = Sha256::digest(given.trim().as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

/// Checks the `--callback-token` rule for `POST /v1/callback`.
pub fn check_callback_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.callback_token {
        Some(token) if !bearer_matches(headers, token) => {
            metrics::counter!("okra_callbacks_rejected_total", "reason" => "unauthorized")
                .increment(1);
            Err(ApiError::Unauthorized(
                "a valid callback token is required: send `Authorization: Bearer <token>` with the token set in Okra's dashboard (--callback-token)",
            ))
        }
        _ => Ok(()),
    }
}

/// The `--allow-from` rule for `POST /v1/callback`: when networks are listed, the client (as
/// [`peer::client_ip`] finds it) must be in one of them.
pub async fn require_allowed_source(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allow = &state.security.allow_from;
    if !allow.is_empty() {
        let client = peer::socket_peer(request.extensions())
            .map(|p| peer::client_ip(p, request.headers(), &state.security.trusted_proxies));
        if !client.is_some_and(|ip| peer::is_in(ip, allow)) {
            metrics::counter!("okra_callbacks_rejected_total", "reason" => "forbidden")
                .increment(1);
            tracing::debug!(client = ?client, "callback refused: not from --allow-from");
            return Err(ApiError::NotAllowed(
                "callbacks are accepted only from the --allow-from networks (OKRA_ALLOW_FROM): add the sender's egress addresses, or list your proxy in --trusted-proxies so the real client address is used".into(),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// The `--admin-token` rule for every read and admin endpoint: the bearer token when one is set,
/// otherwise loopback clients only. The client is the socket's peer unless that peer is a
/// `--trusted-proxies` proxy; a forwarded header from anyone else is never believed. An untrusted
/// loopback peer whose forwarded headers name a remote client (a local reverse proxy not listed
/// as trusted) is refused too, rather than let its remote clients in as "loopback".
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
            let trusted = &state.security.trusted_proxies;
            let Some(socket_peer) = peer::socket_peer(request.extensions()) else {
                return Err(ApiError::Forbidden);
            };
            if !peer::is_in(socket_peer, trusted)
                && peer::is_loopback(socket_peer)
                && peer::forwards_a_remote_client(request.headers())
            {
                return Err(ApiError::NotAllowed(
                    "this request came through a local proxy that is not in --trusted-proxies, so its client is unknown: list the proxy in --trusted-proxies (OKRA_TRUSTED_PROXIES), or set --admin-token".into(),
                ));
            }
            if !peer::is_loopback(peer::client_ip(socket_peer, request.headers(), trusted)) {
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
    fn tokens_of_other_lengths_never_match() {
        let secret = Secret::new("a-long-admin-token");
        let mut headers = HeaderMap::new();
        for value in ["Bearer ", "Bearer a", "Bearer a-long-admin-token-and-more"] {
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            assert!(!bearer_matches(&headers, &secret), "{value}");
        }
    }
}
