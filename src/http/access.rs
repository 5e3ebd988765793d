//! Who may call what, in one place: the bearer tokens (`--callback-token`, `--admin-token`), the
//! networks (`--allow-from`, `--trusted-proxies`, the loopback rule of the admin API) and the
//! signature on a callback's raw body.
//!
//! The client's address is the socket's peer unless that peer is listed in `--trusted-proxies`.
//! Then `X-Forwarded-For` is walked from the right (the hop the trusted proxy appended) past
//! every trusted address; the first untrusted one is the client. A client can put anything at
//! the left of that header, so nothing left of the first untrusted hop is ever believed.
//!
//! How much a caller may send or take (sizes, time, slots) is not decided here but in
//! `limits`.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{header::AUTHORIZATION, request::Parts, Extensions, HeaderMap},
    middleware::Next,
    response::Response,
};
use ipnet::IpNet;

use super::error::ApiError;
use crate::{
    config::{AccessConfig, ConfigError, Secret},
    source::{secret_matches, Verifier},
    telemetry::Untrusted,
};

/// The rules deciding who may call, read once from the [`AccessConfig`] flags (the `…_file`
/// secrets read, the signature check built); the checks are its methods.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// Required on `POST /v1/callback` when set.
    callback_token: Option<Secret>,
    /// Required on every read/admin endpoint (and to log in to the console) when set.
    pub(super) admin_token: Option<Secret>,
    /// The signature every callback body must carry, when set.
    signature: Option<Verifier>,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<IpNet>,
    /// When not empty, `POST /v1/callback` only from these networks.
    allow_from: Vec<IpNet>,
}

impl Access {
    /// The rules `config` describes: reads its `…_file` secrets and builds its signature check.
    /// An unreadable file or an unusable secret is an error naming the flag, so a receiver
    /// never serves without a secret it was given.
    pub(crate) fn from_config(config: &AccessConfig) -> Result<Self, ConfigError> {
        let hmac_secret = secret(
            &config.hmac_secret,
            &config.hmac_secret_file,
            "hmac-secret-file",
        )?;
        let webhook_secret = secret(
            &config.webhook_secret,
            &config.webhook_secret_file,
            "webhook-secret-file",
        )?;
        let signature = match (hmac_secret, webhook_secret) {
            (Some(_), Some(_)) => return Err(ConfigError(
                "--hmac-secret and --webhook-secret are two signature schemes: set only the one your sender uses".into(),
            )),
            (Some(secret), None) => Some(
                Verifier::hmac_sha256(secret.expose().as_bytes(), &config.hmac_header)
                    .map_err(|e| ConfigError(format!("--hmac-secret: {e}")))?,
            ),
            (None, Some(secret)) => Some(
                Verifier::standard_webhooks(secret.expose())
                    .map_err(|e| ConfigError(format!("--webhook-secret: {e}")))?,
            ),
            (None, None) => None,
        };
        Ok(Self {
            callback_token: secret(
                &config.callback_token,
                &config.callback_token_file,
                "callback-token-file",
            )?,
            admin_token: secret(
                &config.admin_token,
                &config.admin_token_file,
                "admin-token-file",
            )?,
            signature,
            trusted_proxies: config.trusted_proxies.clone(),
            allow_from: config.allow_from.clone(),
        })
    }

    /// The `--allow-from` rule for `POST /v1/callback`: when networks are listed, the client (as
    /// [`client_ip`] finds it) must be in one of them.
    pub(super) fn check_sender(&self, request: &Parts) -> Result<(), ApiError> {
        if self.allow_from.is_empty() {
            return Ok(());
        }
        let client = socket_peer(&request.extensions)
            .map(|peer| client_ip(peer, &request.headers, &self.trusted_proxies));
        if client.is_some_and(|ip| is_in(ip, &self.allow_from)) {
            return Ok(());
        }
        tracing::debug!(client = ?client, "callback refused: not from --allow-from");
        Err(ApiError::NetworkNotAllowed(
            "callbacks are accepted only from the --allow-from networks (OKRA_ALLOW_FROM): add the sender's egress addresses, or list your proxy in --trusted-proxies so the real client address is used".into(),
        ))
    }

    /// The `--callback-token` rule for `POST /v1/callback`.
    pub(super) fn check_callback_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match &self.callback_token {
            Some(token) if !bearer_matches(headers, token) => Err(ApiError::Unauthorized(
                "a valid callback token is required: send `Authorization: Bearer <token>` with the token set in Okra's dashboard (--callback-token)",
            )),
            _ => Ok(()),
        }
    }

    /// The signature rule (`--hmac-secret`, `--webhook-secret`), checked on the bytes as
    /// received, before anything parses them.
    pub(super) fn check_signature(&self, headers: &HeaderMap, raw: &[u8]) -> Result<(), ApiError> {
        let Some(verifier) = &self.signature else {
            return Ok(());
        };
        verifier.verify(headers, raw).map_err(|e| {
            tracing::debug!(scheme = verifier.scheme(), reason = %Untrusted(&e.to_string()), "callback refused: invalid signature");
            ApiError::InvalidSignature(format!("{e}: {}", verifier.hint()))
        })
    }

    /// The `--admin-token` rule for every read and admin endpoint: the bearer token when one is
    /// set, otherwise loopback clients only. The client is the socket's peer unless that peer is
    /// a `--trusted-proxies` proxy; a forwarded header from anyone else is never believed. An
    /// untrusted loopback peer whose forwarded headers name a remote client (a local reverse
    /// proxy not listed as trusted) is refused too, rather than let its remote clients in as
    /// "loopback".
    pub(super) fn check_admin(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        if let Some(token) = &self.admin_token {
            if !bearer_matches(headers, token) {
                return Err(ApiError::Unauthorized(
                    "a valid admin token is required: send `Authorization: Bearer <token>` with the --admin-token value",
                ));
            }
            return Ok(());
        }
        let trusted = &self.trusted_proxies;
        let Some(socket_peer) = socket_peer(extensions) else {
            return Err(ApiError::LoopbackOnly);
        };
        if !is_in(socket_peer, trusted)
            && is_loopback(socket_peer)
            && forwards_a_remote_client(headers)
        {
            return Err(ApiError::NetworkNotAllowed(
                "this request came through a local proxy that is not in --trusted-proxies, so its client is unknown: list the proxy in --trusted-proxies (OKRA_TRUSTED_PROXIES), or set --admin-token".into(),
            ));
        }
        if !is_loopback(client_ip(socket_peer, headers, trusted)) {
            return Err(ApiError::LoopbackOnly);
        }
        Ok(())
    }
}

/// A secret given inline, or the contents of the file `--{flag}` names (without the trailing
/// line break), read now.
fn secret(
    inline: &Option<Secret>,
    file: &Option<std::path::PathBuf>,
    flag: &str,
) -> Result<Option<Secret>, ConfigError> {
    match file {
        Some(path) => read_secret(path, flag).map(Some),
        None => Ok(inline.clone()),
    }
}

fn read_secret(path: &Path, flag: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read --{flag} {}: {e}", path.display())))?;
    text.trim_end_matches(['\r', '\n'])
        .parse()
        .map_err(|e| ConfigError(format!("--{flag} {}: {e}", path.display())))
}

/// Middleware putting the `--admin-token` rule ([`Access::check_admin`]) in front of a router.
pub(super) async fn require_admin(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    access.check_admin(request.extensions(), request.headers())?;
    Ok(next.run(request).await)
}

/// Whether the request carries `Authorization: Bearer <expected>`. Both tokens are hashed first
/// and the digests compared in constant time, so neither where they differ nor the expected
/// token's length shows in the timing.
fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
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
    secret_matches(given.trim().as_bytes(), expected.expose().as_bytes())
}

/// The socket peer of a request, as the server recorded it (`ConnectInfo<SocketAddr>`).
fn socket_peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Whether `ip` is in one of `nets`. IPv4-mapped IPv6 addresses count as their IPv4 address.
fn is_in(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|net| net.contains(&ip))
}

/// Whether `ip` is a loopback address (`127.0.0.0/8`, `::1`, or IPv4-mapped loopback).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Whether a forwarded header (`X-Forwarded-For`, `X-Real-IP`, `Forwarded: for=`) names a client
/// that is not a loopback address (or names one that cannot be read). Used only to refuse: an
/// untrusted peer's claims never grant anything, but a local proxy that says it relays a remote
/// client is taken at its word.
fn forwards_a_remote_client(headers: &HeaderMap) -> bool {
    let remote = |hop: &str| !parse_hop(hop).is_some_and(is_loopback);
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
    };
    values("x-forwarded-for")
        .flat_map(|v| v.split(','))
        .any(remote)
        || values("x-real-ip").any(remote)
        || values("forwarded")
            .flat_map(|v| v.split([',', ';']))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
            .any(|(_, value)| {
                let value = value.trim().trim_matches('"');
                let value = value
                    .strip_prefix('[')
                    .and_then(|v| v.split_once(']'))
                    .map_or(value, |(ip, _)| ip);
                remote(value)
            })
}

/// One `X-Forwarded-For` element: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address: `peer` itself unless it is a trusted proxy, else the rightmost
/// untrusted `X-Forwarded-For` hop (or the leftmost believable one when every hop is trusted).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut client = peer.to_canonical();
    if !is_in(client, trusted) {
        return client;
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Some(ip) = parse_hop(hop) else {
            // Garbage was written by someone we do not trust: believe nothing further left.
            return client;
        };
        client = ip;
        if !is_in(ip, trusted) {
            return ip;
        }
    }
    client
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

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let spoof = xff(&["127.0.0.1"]);
        assert_eq!(client_ip(ip("203.0.113.9"), &spoof, &[]), ip("203.0.113.9"));
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoof, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_proxies_name_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client's own spoofed entry is at the left; the proxy appended the real address.
        let h = xff(&["127.0.0.1, 198.51.100.7"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
        // Chains of trusted proxies are walked through, across several header lines too.
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.0.0.3"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
        // Ports and brackets are understood.
        let h = xff(&["[2001:db8::5]:4711"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("2001:db8::5"));
        let h = xff(&["198.51.100.7:80"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
        // Everything trusted: the leftmost believable hop.
        let h = xff(&["127.0.0.1, 10.9.9.9"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("127.0.0.1"));
        // Garbage stops the walk at the last trusted hop.
        let h = xff(&["127.0.0.1, nonsense, 10.9.9.9"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_headers_naming_remote_clients_are_recognised() {
        let with = |name: &str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::HeaderName::try_from(name).unwrap(),
                value.parse().unwrap(),
            );
            h
        };
        assert!(!forwards_a_remote_client(&HeaderMap::new()));
        for (name, value, remote) in [
            ("x-forwarded-for", "127.0.0.1", false),
            ("x-forwarded-for", "127.0.0.1, ::1", false),
            ("x-forwarded-for", "127.0.0.1, 198.51.100.7", true),
            ("x-forwarded-for", "nonsense", true),
            ("x-real-ip", "198.51.100.7", true),
            ("x-real-ip", "127.0.0.1", false),
            ("forwarded", "for=198.51.100.7;proto=https", true),
            ("forwarded", "for=\"[2001:db8::1]:4711\"", true),
            ("forwarded", "for=127.0.0.1, for=\"[::1]\"", false),
            ("forwarded", "for=_hidden", true),
            ("forwarded", "proto=https", false),
        ] {
            assert_eq!(
                forwards_a_remote_client(&with(name, value)),
                remote,
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert!(is_in(ip("::ffff:10.1.2.3"), &trusted));
        assert!(is_loopback(ip("::ffff:127.0.0.1")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("::ffff:10.0.0.1")));
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &xff(&["198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
    }

    /// The access flags as the binary parses them.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        access: AccessConfig,
    }

    fn resolved(args: &[&str]) -> Result<Access, ConfigError> {
        Access::from_config(&<Cli as clap::Parser>::parse_from(args).access)
    }

    #[test]
    fn resolved_secrets_never_print() {
        let access = resolved(&["x", "--admin-token", "hunter2-admin"]).unwrap();
        let shown = format!("{access:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }

    #[test]
    fn token_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let access = resolved(&["x", "--admin-token-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(access.admin_token.unwrap().expose(), "from-a-file");

        let missing = resolved(&["x", "--callback-token-file", "/nonexistent/t"]).unwrap_err();
        assert!(missing
            .to_string()
            .contains("cannot read --callback-token-file"));
    }

    #[test]
    fn signature_secrets_come_from_flags_or_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whsec");
        std::fs::write(&path, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n").unwrap();
        let access = resolved(&["x", "--webhook-secret-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(access.signature.unwrap().scheme(), "standard-webhooks");
        let config =
            <Cli as clap::Parser>::parse_from(["x", "--hmac-secret", "hunter2-hmac"]).access;
        assert!(!format!("{config:?}").contains("hunter2"));
        let verifier = Access::from_config(&config).unwrap().signature.unwrap();
        assert_eq!(verifier.scheme(), "hmac-sha256");
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }

    #[test]
    fn unusable_signature_settings_are_refused_without_echoing_the_secret() {
        let err = resolved(&["x", "--webhook-secret", "whsec_not*base64"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--webhook-secret") && !err.contains("not*base64"),
            "{err}"
        );
        assert!(<Cli as clap::Parser>::try_parse_from([
            "x",
            "--hmac-secret",
            "a",
            "--webhook-secret",
            "whsec_AAAA"
        ])
        .is_err());
        // Set in code, both at once are refused too.
        let both = AccessConfig {
            hmac_secret: Some(Secret::new("a")),
            webhook_secret: Some(Secret::new("whsec_AAAA")),
            ..AccessConfig::default()
        };
        assert!(Access::from_config(&both)
            .unwrap_err()
            .to_string()
            .contains("only the one"));
        let err = resolved(&["x", "--hmac-secret", "a", "--hmac-header", "bad header"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("X-Okra-Signature"), "{err}");
    }
}
