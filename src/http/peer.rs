//! Who is calling: the client's address, believing forwarded headers only from trusted proxies.
//!
//! The socket's peer is the client unless it is listed in `--trusted-proxies`. Then
//! `X-Forwarded-For` is walked from the right (the hop the trusted proxy appended) past every
//! trusted address; the first untrusted one is the client. A client can put anything at the
//! left of that header, so nothing left of the first untrusted hop is ever believed.

use std::net::{IpAddr, SocketAddr};

use axum::{extract::ConnectInfo, http::HeaderMap};
use ipnet::IpNet;

/// The socket peer of a request, as the server recorded it (`ConnectInfo<SocketAddr>`).
pub fn socket_peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Whether `ip` is in one of `nets`. IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn is_in(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|net| net.contains(&ip))
}

/// Whether `ip` is a loopback address (`127.0.0.0/8`, `::1`, or IPv4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Whether a forwarded header (`X-Forwarded-For`, `X-Real-IP`, `Forwarded: for=`) names a client
/// that is not a loopback address (or names one that cannot be read). Used only to refuse: an
/// untrusted peer's claims never grant anything, but a local proxy that says it relays a remote
/// client is taken at its word.
pub fn forwards_a_remote_client(headers: &HeaderMap) -> bool {
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
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
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
}
