//! Why a connection to PostgreSQL could not be opened, in words an operator can act on: the
//! server's own message and what to change when it answered, the network's cause when it did
//! not, and what to do about TLS, which this client does not speak.

use std::{error::Error as _, io};

use tokio_postgres::{
    config::{Host, SslMode},
    error::SqlState,
    Config, Error as PgError,
};

use crate::store::StoreError;

/// The server a store connects to, as its messages name it.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The host name or address (a socket directory for a Unix socket).
    host: String,
    /// `HOST:PORT`.
    address: String,
}

impl Target {
    /// The first host of `config` (the one a single-host URL names).
    pub(super) fn of(config: &Config) -> Self {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Self {
            address: format!("{host}:{port}"),
            host,
        }
    }
}

/// A URL that asks for TLS, refused before anything is tried: this client connects without
/// TLS. `sslmode=prefer` (the default) is accepted and connects without it.
pub(super) fn tls_refused(url: &str, config: Option<&Config>) -> Option<StoreError> {
    let asked = match config {
        Some(config) => config.get_ssl_mode() == SslMode::Require,
        None => url.contains("sslmode=verify-"),
    };
    asked.then(|| {
        StoreError::Config(
            "--database-url asks for TLS (sslmode=require or verify-…), which is not supported: \
             okra-callbacks connects to PostgreSQL without TLS. Remove sslmode from the URL (or \
             set sslmode=disable) and keep the database on a private network, or run a local \
             TLS proxy (stunnel, PgBouncer with server_tls_sslmode) and point the URL at it"
                .to_owned(),
        )
    })
}

/// Why opening a connection to `target` failed. Starts with `database unreachable:` so the
/// store's cause ([`StoreError::cause`]) names it.
pub(super) fn connect_failed(e: &PgError, target: &Target) -> String {
    let address = &target.address;
    if let Some(db) = e.as_db_error() {
        let hint = match db.code() {
            c if *c == SqlState::INVALID_CATALOG_NAME => {
                ": create it (CREATE DATABASE, or createdb), or correct the database name in --database-url"
            }
            c if *c == SqlState::INVALID_PASSWORD => {
                ": check the user and password in --database-url"
            }
            c if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                ": check the user in --database-url (a role with LOGIN), and that the server's pg_hba.conf lets it connect from this host"
            }
            c if *c == SqlState::TOO_MANY_CONNECTIONS => {
                ": lower --database-pool-size (all replicas' pools together must stay under the server's max_connections) or raise max_connections"
            }
            c if *c == SqlState::CANNOT_CONNECT_NOW => {
                ": the server is starting or stopping; the next request tries again"
            }
            _ => "",
        };
        return format!(
            "database unreachable: the server at {address} refused the connection: {}{hint}",
            db.message()
        );
    }
    let io = std::iter::successors(e.source(), |&s| s.source())
        .find_map(|s| s.downcast_ref::<io::Error>());
    match io {
        Some(io) if io.kind() == io::ErrorKind::ConnectionRefused => format!(
            "database unreachable: connection refused by {address}: start PostgreSQL there, or correct the host and port in --database-url"
        ),
        Some(io) if io.kind() == io::ErrorKind::TimedOut => format!(
            "database unreachable: {address} did not answer in time ({io}): check the host, the port and the firewall between them"
        ),
        Some(io) if is_unknown_host(io) => format!(
            "database unreachable: unknown host {} ({io}): correct the host name in --database-url",
            target.host
        ),
        Some(io) => format!("database unreachable: cannot connect to {address}: {io}"),
        None if e.to_string().contains("password missing") => format!(
            "database unreachable: the server at {address} asks for a password and --database-url has none: write postgres://USER:PASSWORD@HOST:PORT/DB"
        ),
        None => format!("database unreachable: {address}: {}", chain(e)),
    }
}

/// Whether a connect error is a name that did not resolve.
fn is_unknown_host(e: &io::Error) -> bool {
    let text = e.to_string();
    [
        "failed to lookup address",
        "Name or service not known",
        "No address associated",
        "nodename nor servname",
        "Temporary failure in name resolution",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// An error and each of its causes, `: `-separated.
fn chain(e: &PgError) -> String {
    std::iter::successors(Some(e as &dyn std::error::Error), |&s| s.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_target_is_the_urls_host_and_port() {
        let config = Config::from_str("postgres://u@db.internal:6543/okra").unwrap();
        let target = Target::of(&config);
        assert_eq!(target.address, "db.internal:6543");
        assert_eq!(target.host, "db.internal");
        let config = Config::from_str("postgres://u@db.internal/okra").unwrap();
        assert_eq!(Target::of(&config).address, "db.internal:5432");
    }

    #[test]
    fn tls_is_refused_with_what_to_do_and_prefer_is_not() {
        let url = "postgres://u@h/db?sslmode=require";
        let err = tls_refused(url, Config::from_str(url).ok().as_ref()).unwrap();
        let text = err.to_string();
        assert!(
            text.contains("TLS") && text.contains("not supported"),
            "{text}"
        );
        assert!(text.contains("sslmode"), "{text}");
        let url = "postgres://u@h/db?sslmode=prefer";
        assert!(tls_refused(url, Config::from_str(url).ok().as_ref()).is_none());
        let url = "postgres://u@h/db?sslmode=verify-full";
        assert!(tls_refused(url, Config::from_str(url).ok().as_ref()).is_some());
    }
}
