//! Typed configuration for `okra-callbacks serve`, validated at start-up.
//!
//! Every flag also reads an environment variable; secrets can come from a file
//! (`--callback-token-file`, `OKRA_CALLBACK_TOKEN_FILE`, …) and never print.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use clap::Args;
use ipnet::IpNet;

use crate::{
    dispatch::DispatchConfig,
    signature::{Verifier, DEFAULT_HMAC_HEADER},
    store::StoreOptions,
    telemetry::LogFormat,
};

/// A secret string (a bearer token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is compared or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("a token cannot be empty".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or a single address (`10.1.2.3`).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not a network: write e.g. 10.0.0.0/8, 203.0.113.7 or fd00::/8")
        })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}: write a duration such as 500ms, 30s, 10m or 24h"))
}

/// Everything `serve` needs. Build it with `Config::default()` in code, or from the command line
/// and environment through clap.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve on.
    #[arg(long, env = "OKRA_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// `sqlite://PATH` (embedded, created if missing) or `postgres://…` (shared by replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://okra-callbacks.db"
    )]
    pub database_url: String,

    /// When set, `POST /v1/callback` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "OKRA_CALLBACK_TOKEN", hide_env_values = true)]
    pub callback_token: Option<Secret>,

    /// Read the callback token from this file instead.
    #[arg(
        long,
        env = "OKRA_CALLBACK_TOKEN_FILE",
        conflicts_with = "callback_token"
    )]
    pub callback_token_file: Option<PathBuf>,

    /// When set, every read/admin endpoint requires `Authorization: Bearer <token>`; when unset
    /// they answer loopback clients only.
    #[arg(long, env = "OKRA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Read the admin token from this file instead.
    #[arg(long, env = "OKRA_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// Check a signature on every callback: the hex HMAC-SHA256 of the raw body under this
    /// shared secret, in `--hmac-header` (bare or `sha256=<hex>`).
    #[arg(long, env = "OKRA_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<Secret>,

    /// Read the HMAC secret from this file instead.
    #[arg(long, env = "OKRA_HMAC_SECRET_FILE", conflicts_with = "hmac_secret")]
    pub hmac_secret_file: Option<PathBuf>,

    /// The header carrying the HMAC signature.
    #[arg(long, env = "OKRA_HMAC_HEADER", default_value = DEFAULT_HMAC_HEADER)]
    pub hmac_header: String,

    /// Check Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with this `whsec_…` secret.
    #[arg(
        long,
        env = "OKRA_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["hmac_secret", "hmac_secret_file"]
    )]
    pub webhook_secret: Option<Secret>,

    /// Read the Standard Webhooks secret from this file instead.
    #[arg(
        long,
        env = "OKRA_WEBHOOK_SECRET_FILE",
        conflicts_with_all = ["webhook_secret", "hmac_secret", "hmac_secret_file"]
    )]
    pub webhook_secret_file: Option<PathBuf>,

    /// Proxies (comma-separated networks) whose `X-Forwarded-For` is believed when finding a
    /// client's address. Unset: the socket's peer is the client and forwarded headers are ignored.
    #[arg(long, env = "OKRA_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Accept `POST /v1/callback` only from these networks (comma-separated); others get 403.
    /// Unset: from anywhere.
    #[arg(long, env = "OKRA_ALLOW_FROM", value_delimiter = ',', value_parser = parse_net)]
    pub allow_from: Vec<IpNet>,

    /// A connection must send its request line and headers within this time, or it is closed
    /// (slow clients cannot hold connections open). Also closes idle keep-alive connections.
    #[arg(long, env = "OKRA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// The longest a request may take, body included; past it the answer is 408.
    #[arg(long, env = "OKRA_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Open connections at once; past it, new ones wait in the kernel's accept queue.
    #[arg(long, env = "OKRA_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// POST each callback's original JSON to this internal URL; a non-2xx answer is a failure.
    #[arg(long, env = "OKRA_FORWARD_URL")]
    pub forward_url: Option<String>,

    /// Timeout of one forward request.
    #[arg(long, env = "OKRA_FORWARD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub forward_timeout: Duration,

    /// Handler attempts before a callback is marked dead.
    #[arg(long, env = "OKRA_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// First retry delay in milliseconds; doubles each attempt (with jitter).
    #[arg(long, env = "OKRA_RETRY_BASE_DELAY_MS", default_value_t = 1000)]
    pub retry_base_delay_ms: u64,

    /// The longest delay between two attempts.
    #[arg(long, env = "OKRA_RETRY_MAX_DELAY", default_value = "1h", value_parser = parse_duration)]
    pub retry_max_delay: Duration,

    /// How long one handler call may run before it counts as failed.
    #[arg(long, env = "OKRA_HANDLER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub handler_timeout: Duration,

    /// How long a replica's claim on a record lasts without news from it; a crashed replica's
    /// records go to the others after this. Default: 4 × `--handler-timeout`, at least 30s.
    /// Must exceed `--handler-timeout` + `--database-timeout`, so a live worker never loses it.
    #[arg(long, env = "OKRA_LEASE", value_parser = parse_duration)]
    pub lease: Option<Duration>,

    /// How long one database operation may take before the store counts as unavailable
    /// (`POST` answers 503, `/readyz` 503).
    #[arg(long, env = "OKRA_DATABASE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_timeout: Duration,

    /// The most PostgreSQL connections this replica opens; all replicas together must stay
    /// under the server's `max_connections`.
    #[arg(long, env = "OKRA_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,

    /// How many records are handled in parallel.
    #[arg(long, env = "OKRA_WORKERS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,

    /// Larger request bodies get 413.
    #[arg(long, env = "OKRA_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The same body bytes again within this window are answered as a duplicate.
    #[arg(long, env = "OKRA_DEDUP_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub dedup_window: Duration,

    /// Callbacks being stored at once before new ones get 429 with `Retry-After`.
    #[arg(long, env = "OKRA_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// On SIGTERM, how long to wait for in-flight requests and handler calls.
    #[arg(long, env = "OKRA_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Delete delivered and dead callbacks older than this (e.g. 90d). Unset: keep everything.
    #[arg(long, env = "OKRA_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,

    /// Log output format.
    #[arg(long, env = "OKRA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log full callback bodies (they hold personal data: BVNs, names, phone numbers). Off by
    /// default; turn on only while debugging, never in production.
    #[arg(long, env = "OKRA_LOG_BODIES")]
    pub log_bodies: bool,
}

impl Default for Config {
    fn default() -> Self {
        let dispatch = DispatchConfig::default();
        let store = StoreOptions::default();
        Self {
            listen: ([0, 0, 0, 0], 8080).into(),
            database_url: "sqlite://okra-callbacks.db".into(),
            callback_token: None,
            callback_token_file: None,
            admin_token: None,
            admin_token_file: None,
            hmac_secret: None,
            hmac_secret_file: None,
            hmac_header: DEFAULT_HMAC_HEADER.into(),
            webhook_secret: None,
            webhook_secret_file: None,
            trusted_proxies: Vec::new(),
            allow_from: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            forward_url: None,
            forward_timeout: Duration::from_secs(10),
            max_attempts: dispatch.max_attempts,
            retry_base_delay_ms: dispatch.retry_base_delay.as_millis() as u64,
            retry_max_delay: dispatch.retry_max_delay,
            handler_timeout: dispatch.handler_timeout,
            lease: None,
            database_timeout: store.timeout,
            database_pool_size: store.max_connections as u32,
            workers: dispatch.concurrency as u32,
            max_body_bytes: 4 * 1024 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            max_concurrent_requests: 1024,
            shutdown_timeout: Duration::from_secs(30),
            retention: None,
            log_format: LogFormat::Text,
            log_bodies: false,
        }
    }
}

/// A setting that cannot be used; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn read_secret(path: &PathBuf, flag: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read --{flag} {}: {e}", path.display())))?;
    text.trim_end_matches(['\r', '\n'])
        .parse()
        .map_err(|e| ConfigError(format!("--{flag} {}: {e}", path.display())))
}

impl Config {
    /// Reads the `…_FILE` secrets and checks the settings fit together. Call once at start-up
    /// ([`crate::Receiver::new`] does).
    pub fn resolve(mut self) -> Result<Self, ConfigError> {
        if let Some(path) = self.callback_token_file.take() {
            self.callback_token = Some(read_secret(&path, "callback-token-file")?);
        }
        if let Some(path) = self.admin_token_file.take() {
            self.admin_token = Some(read_secret(&path, "admin-token-file")?);
        }
        if let Some(path) = self.hmac_secret_file.take() {
            self.hmac_secret = Some(read_secret(&path, "hmac-secret-file")?);
        }
        if let Some(path) = self.webhook_secret_file.take() {
            self.webhook_secret = Some(read_secret(&path, "webhook-secret-file")?);
        }
        self.signature_verifier()?;
        if self.header_read_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(ConfigError(
                "--header-read-timeout and --request-timeout must be longer than 0 s".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError("--max-connections must be at least 1".into()));
        }
        if let Some(url) = &self.forward_url {
            let ok = reqwest::Url::parse(url)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .unwrap_or(false);
            if !ok {
                return Err(ConfigError(format!(
                    "--forward-url `{url}` is not an http(s) URL: use e.g. http://ledger.internal:9000/okra"
                )));
            }
        }
        if self.database_timeout.is_zero() {
            return Err(ConfigError(
                "--database-timeout must be more than 0: use e.g. 5s".into(),
            ));
        }
        if let Some(lease) = self.lease {
            let floor = self.handler_timeout + self.database_timeout;
            if lease <= floor {
                return Err(ConfigError(format!(
                    "--lease {} must exceed --handler-timeout + --database-timeout ({}), or a worker could lose a record while its handler still runs: raise --lease or lower the timeouts",
                    humantime::format_duration(lease),
                    humantime::format_duration(floor),
                )));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError("--max-body-bytes must be at least 1".into()));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError(
                "--max-concurrent-requests must be at least 1".into(),
            ));
        }
        Ok(self)
    }

    /// The signature check the secrets describe: HMAC-SHA256 with `--hmac-secret`, Standard
    /// Webhooks with `--webhook-secret`, none without either.
    pub fn signature_verifier(&self) -> Result<Option<Verifier>, ConfigError> {
        match (&self.hmac_secret, &self.webhook_secret) {
            (Some(_), Some(_)) => Err(ConfigError(
                "--hmac-secret and --webhook-secret are two signature schemes: set only the one your sender uses".into(),
            )),
            (Some(secret), None) => {
                Verifier::hmac_sha256(secret.expose().as_bytes(), &self.hmac_header)
                    .map(Some)
                    .map_err(|e| ConfigError(format!("--hmac-secret: {e}")))
            }
            (None, Some(secret)) => Verifier::standard_webhooks(secret.expose())
                .map(Some)
                .map_err(|e| ConfigError(format!("--webhook-secret: {e}"))),
            (None, None) => Ok(None),
        }
    }

    /// The dispatcher settings these flags describe.
    pub fn dispatch(&self) -> DispatchConfig {
        DispatchConfig {
            max_attempts: self.max_attempts,
            retry_base_delay: Duration::from_millis(self.retry_base_delay_ms),
            retry_max_delay: self.retry_max_delay,
            handler_timeout: self.handler_timeout,
            concurrency: self.workers as usize,
            lease: self.lease.unwrap_or_else(|| {
                (self.handler_timeout * 4)
                    .max(self.handler_timeout + self.database_timeout * 2)
                    .max(Duration::from_secs(30))
            }),
            ..DispatchConfig::default()
        }
    }

    /// The store settings these flags describe.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database_pool_size as usize,
            timeout: self.database_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn defaults_match_the_contract_and_default_impl() {
        let parsed = Cli::parse_from(["x"]).config;
        let default = Config::default();
        assert_eq!(parsed.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(parsed.database_url, "sqlite://okra-callbacks.db");
        assert_eq!(parsed.max_attempts, 10);
        assert_eq!(parsed.retry_base_delay_ms, 1000);
        assert_eq!(parsed.max_body_bytes, 4194304);
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn lease_defaults_to_four_handler_timeouts_and_can_be_set() {
        let config = Cli::parse_from(["x", "--handler-timeout", "20s"]).config;
        assert_eq!(config.dispatch().lease, Duration::from_secs(80));
        let config = Cli::parse_from(["x", "--handler-timeout", "1s"]).config;
        assert_eq!(config.dispatch().lease, Duration::from_secs(30));
        let config = Cli::parse_from([
            "x",
            "--handler-timeout",
            "1s",
            "--database-timeout",
            "1s",
            "--lease",
            "3s",
        ])
        .config
        .resolve()
        .unwrap();
        assert_eq!(config.dispatch().lease, Duration::from_secs(3));
        assert_eq!(config.store_options().timeout, Duration::from_secs(1));
    }

    #[test]
    fn secrets_never_print() {
        let config = Cli::parse_from(["x", "--admin-token", "hunter2-admin"]).config;
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }

    #[test]
    fn token_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let config = Cli::parse_from(["x", "--admin-token-file", path.to_str().unwrap()])
            .config
            .resolve()
            .unwrap();
        assert_eq!(config.admin_token.unwrap().expose(), "from-a-file");

        let missing = Cli::parse_from(["x", "--callback-token-file", "/nonexistent/t"])
            .config
            .resolve()
            .unwrap_err();
        assert!(missing
            .to_string()
            .contains("cannot read --callback-token-file"));
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        let err = Cli::try_parse_from(["x", "--dedup-window", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("30s"), "{err}");
        assert!(Cli::try_parse_from(["x", "--max-attempts", "0"]).is_err());
        let err = Cli::parse_from(["x", "--lease", "10s", "--handler-timeout", "8s"])
            .config
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("--lease 10s must exceed"), "{err}");
        let err = Cli::parse_from(["x", "--forward-url", "ftp://x"])
            .config
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("http(s)"));
    }

    #[test]
    fn networks_parse_as_cidr_lists() {
        let config = Cli::parse_from([
            "x",
            "--trusted-proxies",
            "10.0.0.0/8, 127.0.0.1",
            "--allow-from",
            "203.0.113.0/24,2001:db8::/32",
        ])
        .config;
        assert_eq!(
            config.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "127.0.0.1/32".parse().unwrap()
            ]
        );
        assert_eq!(config.allow_from.len(), 2);
        let err = Cli::try_parse_from(["x", "--allow-from", "10.0.0.0/33"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn signature_secrets_come_from_flags_or_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whsec");
        std::fs::write(&path, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\n").unwrap();
        let config = Cli::parse_from(["x", "--webhook-secret-file", path.to_str().unwrap()])
            .config
            .resolve()
            .unwrap();
        assert_eq!(
            config.signature_verifier().unwrap().unwrap().scheme(),
            "standard-webhooks"
        );
        let config = Cli::parse_from(["x", "--hmac-secret", "hunter2-hmac"]).config;
        assert!(!format!("{config:?}").contains("hunter2"));
        let verifier = config
            .resolve()
            .unwrap()
            .signature_verifier()
            .unwrap()
            .unwrap();
        assert_eq!(verifier.scheme(), "hmac-sha256");
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }

    #[test]
    fn unusable_signature_settings_are_refused_without_echoing_the_secret() {
        let err = Cli::parse_from(["x", "--webhook-secret", "whsec_not*base64"])
            .config
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--webhook-secret") && !err.contains("not*base64"),
            "{err}"
        );
        assert!(
            Cli::try_parse_from(["x", "--hmac-secret", "a", "--webhook-secret", "whsec_AAAA"])
                .is_err()
        );
        // Set in code, both at once are refused too.
        let both = Config {
            hmac_secret: Some(Secret::new("a")),
            webhook_secret: Some(Secret::new("whsec_AAAA")),
            ..Config::default()
        };
        assert!(both
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("only the one"));
        let err = Cli::parse_from(["x", "--hmac-secret", "a", "--hmac-header", "bad header"])
            .config
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("X-Okra-Signature"), "{err}");
        assert!(Cli::parse_from(["x", "--request-timeout", "0s"])
            .config
            .resolve()
            .is_err());
    }
}
