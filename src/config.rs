//! The flags of a receiver, typed, in groups (store, access, limits, delivery). They are
//! checked together once, at start-up, where they become the receiver's settings
//! (`settings.rs`). The binary's own flags (`--listen`, logging, `--forward-url`) live in the
//! binary.
//!
//! Every flag also reads an environment variable; secrets can come from a file
//! (`--callback-token-file`, `OKRA_CALLBACK_TOKEN_FILE`, …) and never print.

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use clap::Args;
use ipnet::IpNet;

use crate::{dispatch::DispatchConfig, source::DEFAULT_HMAC_HEADER, store::StoreOptions};

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
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("`{s}` is not a network: write e.g. 10.0.0.0/8, 203.0.113.7 or fd00::/8")
        })
}

/// Parses a duration such as `500ms`, `30s`, `10m` or `24h` (clap's value parser for every
/// duration flag, the binary's own included).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}: write a duration such as 500ms, 30s, 10m or 24h"))
}

/// `--retry-base-delay-ms`, the older spelling of `--retry-base-delay`: a whole number of
/// milliseconds.
fn parse_millis(s: &str) -> Result<Duration, String> {
    s.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| {
        format!("`{s}` is not a whole number of milliseconds: write e.g. 1000, or use --retry-base-delay 1s")
    })
}

/// Parses a size: a number of bytes (`4194304`) or a number with a unit (`512KiB`, `4MiB`,
/// `1.5GiB` in powers of 1024; `1MB` in powers of 1000), the unit in any case, a space allowed
/// before it.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let refuse = || {
        format!(
            "`{s}` is not a size: write a number of bytes (4194304) or one with a unit: 512KiB, 4MiB, 1GiB (powers of 1024) or 1MB (powers of 1000)"
        )
    };
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(refuse()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(refuse());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(unit).ok_or_else(refuse);
    }
    let value = number.parse::<f64>().map_err(|_| refuse())? * unit as f64;
    if value.is_finite() && value < u64::MAX as f64 {
        Ok(value as u64)
    } else {
        Err(refuse())
    }
}

/// `--max-body-bytes`: a size (`4MiB`, `512KiB`, `1000000`) of at least one byte.
fn parse_body_limit(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("the body limit must be at least 1 byte: write e.g. 4MiB".into()),
        bytes => usize::try_from(bytes)
            .map_err(|_| format!("`{s}` is more than this machine can hold: write e.g. 4MiB")),
    }
}

/// `--dedup-filter-mb`: whole MiB from 1 to 4096, as a number (`16`) or a size (`16MiB`,
/// `1GiB`).
fn parse_filter_mib(s: &str) -> Result<u32, String> {
    let mib = match s.trim().parse::<u64>() {
        Ok(mib) => mib,
        Err(_) => {
            let bytes = parse_size(s)?;
            if bytes % (1 << 20) != 0 {
                return Err(format!(
                    "`{s}` is not a whole number of MiB: write e.g. 16 or 16MiB"
                ));
            }
            bytes >> 20
        }
    };
    match u32::try_from(mib) {
        Ok(mib @ 1..=4096) => Ok(mib),
        _ => Err(format!(
            "`{s}` is outside 1 to 4096 MiB: write e.g. 16 or 64MiB"
        )),
    }
}

/// What the library needs to serve: where callbacks are stored, who may call, the limits on
/// requests, how handlers are retried. Build it with `Config::default()` in code (setting the
/// groups you care about), or from the command line and environment through clap
/// (`#[command(flatten)]`, as the binary does). [`crate::Receiver::new`] checks it once.
#[derive(Debug, Clone, Default, Args)]
pub struct Config {
    /// Where callbacks are kept, and for how long.
    #[command(flatten, next_help_heading = "Store")]
    pub store: StoreConfig,
    /// Who may call: tokens, signatures, networks.
    #[command(flatten, next_help_heading = "Access")]
    pub access: AccessConfig,
    /// What bounds connections and requests.
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitsConfig,
    /// How stored callbacks reach the handlers.
    #[command(flatten, next_help_heading = "Delivery")]
    pub delivery: DeliveryConfig,
}

/// Where callbacks are kept, and for how long.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded; the file is created if missing, its directory must exist) or `postgres://…` (shared by replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://okra-callbacks.db"
    )]
    pub database_url: String,

    /// How long one database operation may take before the store counts as unavailable
    /// (`POST` answers 503, `/readyz` 503).
    #[arg(long, env = "OKRA_DATABASE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_timeout: Duration,

    /// The most PostgreSQL connections this replica opens; all replicas together must stay
    /// under the server's `max_connections`.
    #[arg(long, env = "OKRA_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_pool_size: u32,

    /// The same body bytes again within this window are answered as a duplicate.
    #[arg(long, env = "OKRA_DEDUP_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub dedup_window: Duration,

    /// Memory for the embedded store's dedup filter, in MiB: fixed, whatever the window holds.
    /// Each MiB keeps about 600,000 keys of the window at ~3% false positives (a false positive
    /// costs one index read, never a callback); more keys only read the table more often.
    /// A size with a unit is read as such (`64MiB`, `1GiB`); a plain number is MiB.
    #[arg(long, env = "OKRA_DEDUP_FILTER_MB", default_value_t = DEDUP_FILTER_MB, value_parser = parse_filter_mib)]
    pub dedup_filter_mb: u32,

    /// Delete delivered and dead callbacks older than this (e.g. 90d). Unset: keep everything.
    #[arg(long, env = "OKRA_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,
}

/// `--dedup-filter-mb`'s default.
const DEDUP_FILTER_MB: u32 = (crate::store::DEDUP_FILTER_BYTES >> 20) as u32;

impl Default for StoreConfig {
    fn default() -> Self {
        let store = StoreOptions::default();
        Self {
            database_url: "sqlite://okra-callbacks.db".into(),
            database_timeout: store.timeout,
            database_pool_size: store.max_connections as u32,
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_filter_mb: DEDUP_FILTER_MB,
            retention: None,
        }
    }
}

/// Who may call: bearer tokens, body signatures and networks. Each secret can also come from a
/// file (`…_file`), read once at start-up.
#[derive(Debug, Clone, Args)]
pub struct AccessConfig {
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

    /// A TOML file of `[sources.NAME]` tables: the providers besides Okra (Plaid, Mono,
    /// Standard Webhooks, Paystack, generic), each served at `POST /v1/sources/NAME` and
    /// checked as its preset says. A mistake in it stops the start-up.
    #[arg(long, env = "OKRA_SOURCES")]
    pub sources: Option<PathBuf>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
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
            sources: None,
        }
    }
}

/// What bounds connections and requests, so slow or many clients cannot exhaust the receiver.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// A connection must send its request line and headers within this time, or it is closed
    /// (slow clients cannot hold connections open). Also closes idle keep-alive connections.
    #[arg(long, env = "OKRA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// The longest a request may take, body included; past it the answer is 408.
    #[arg(long, env = "OKRA_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Open HTTP connections at once; past it, new ones wait in the kernel's accept queue.
    #[arg(
        long = "max-connections",
        env = "OKRA_MAX_CONNECTIONS",
        value_name = "MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_open_connections: usize,

    /// Larger request bodies get 413. A size: bytes (`4194304`) or with a unit (`512KiB`,
    /// `4MiB`, `1MB`).
    #[arg(long, env = "OKRA_MAX_BODY_BYTES", value_name = "SIZE", default_value = "4194304", value_parser = parse_body_limit)]
    pub max_body_bytes: usize,

    /// Callbacks being stored at once before new ones get 429 with `Retry-After`.
    #[arg(long, env = "OKRA_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// On SIGTERM, how long to wait for in-flight requests and handler calls.
    #[arg(long, env = "OKRA_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_open_connections: 1024,
            max_body_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 1024,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// How stored callbacks reach the handlers: attempts, backoff, timeouts, parallelism.
#[derive(Debug, Clone, Args)]
pub struct DeliveryConfig {
    /// Handler attempts before a callback is marked dead.
    #[arg(long, env = "OKRA_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// The first retry delay; doubles each attempt (with jitter).
    #[arg(long, env = "OKRA_RETRY_BASE_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub retry_base_delay: Duration,

    /// The first retry delay in whole milliseconds: the older spelling of `--retry-base-delay`
    /// (and `OKRA_RETRY_BASE_DELAY_MS` of `OKRA_RETRY_BASE_DELAY`), still read, hidden from
    /// `--help`. When set it wins over `retry_base_delay`; giving both is refused.
    #[arg(
        long = "retry-base-delay-ms",
        env = "OKRA_RETRY_BASE_DELAY_MS",
        value_name = "MS",
        hide = true,
        conflicts_with = "retry_base_delay",
        value_parser = parse_millis
    )]
    pub retry_base_delay_ms: Option<Duration>,

    /// The longest delay between two attempts.
    #[arg(long, env = "OKRA_RETRY_MAX_DELAY", default_value = "1h", value_parser = parse_duration)]
    pub retry_max_delay: Duration,

    /// How long one handler call may run before it counts as failed.
    #[arg(long, env = "OKRA_HANDLER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub handler_timeout: Duration,

    /// How long a replica's claim on a record lasts without news from it: a killed or cut-off
    /// replica's records go to the others after about this. A heartbeat renews it every third of
    /// it while handlers run, so a handler may run as long as `--handler-timeout` allows.
    /// Default: 10s (2 × `--database-timeout` if that is longer). Must exceed a third of itself
    /// plus `--database-timeout` (one beat plus one renewal that times out), i.e. 1.5 ×
    /// `--database-timeout`.
    #[arg(long, env = "OKRA_LEASE", value_parser = parse_duration)]
    pub lease: Option<Duration>,

    /// How many records are handled in parallel.
    #[arg(long, env = "OKRA_WORKERS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,

    /// How long deliveries may wait while a burst of callbacks queues to be stored (PostgreSQL):
    /// the database's time goes to acknowledging Okra, and deliveries catch up after the burst.
    /// A longer burst is delivered alongside. 0s turns this off.
    #[arg(long, env = "OKRA_MAX_DELIVERY_DEFERRAL", default_value = "30s", value_parser = parse_duration)]
    pub max_delivery_deferral: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let dispatch = DispatchConfig::default();
        Self {
            max_attempts: dispatch.max_attempts,
            retry_base_delay: dispatch.retry_base_delay,
            retry_base_delay_ms: None,
            retry_max_delay: dispatch.retry_max_delay,
            handler_timeout: dispatch.handler_timeout,
            lease: None,
            workers: dispatch.concurrency as u32,
            max_delivery_deferral: dispatch.max_delivery_deferral,
        }
    }
}

/// A setting that cannot be used; the message says which and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    /// A command line of the receiver's flags, as the binary flattens them.
    #[derive(Parser)]
    pub(crate) struct Cli {
        #[command(flatten)]
        pub(crate) config: Config,
    }

    #[test]
    fn defaults_match_the_contract_and_default_impl() {
        let parsed = Cli::parse_from(["x"]).config;
        let default = Config::default();
        assert_eq!(parsed.store.database_url, "sqlite://okra-callbacks.db");
        assert_eq!(parsed.delivery.max_attempts, 10);
        assert_eq!(
            parsed.delivery.retry_base_delay,
            Duration::from_millis(1000)
        );
        assert_eq!(parsed.limits.max_body_bytes, 4194304);
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    /// The variable `--long` reads.
    fn env_of(long: &str) -> Option<String> {
        <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
    }

    #[test]
    fn retry_base_delay_is_a_duration_and_the_millisecond_flag_still_works() {
        let delay = |args: &[&str]| {
            let config = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?
                .config;
            Ok::<_, String>(
                config
                    .delivery
                    .retry_base_delay_ms
                    .unwrap_or(config.delivery.retry_base_delay),
            )
        };
        assert_eq!(delay(&[]), Ok(Duration::from_secs(1)));
        assert_eq!(
            delay(&["--retry-base-delay", "250ms"]),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            delay(&["--retry-base-delay-ms", "250"]),
            Ok(Duration::from_millis(250))
        );
        let err = delay(&["--retry-base-delay-ms", "1s"]).unwrap_err();
        assert!(err.contains("whole number of milliseconds"), "{err}");
        assert!(err.contains("--retry-base-delay 1s"), "{err}");
        let err = delay(&["--retry-base-delay", "2s", "--retry-base-delay-ms", "250"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
        assert_eq!(
            env_of("retry-base-delay").as_deref(),
            Some("OKRA_RETRY_BASE_DELAY")
        );
        assert_eq!(
            env_of("retry-base-delay-ms").as_deref(),
            Some("OKRA_RETRY_BASE_DELAY_MS")
        );
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--retry-base-delay <RETRY_BASE_DELAY>"),
            "{help}"
        );
        assert!(!help.contains("--retry-base-delay-ms"), "hidden: {help}");
    }

    #[test]
    fn sizes_are_read_in_bytes_or_with_a_unit() {
        let cases = [
            ("4194304", 4 << 20),
            ("4MiB", 4 << 20),
            ("4 mib", 4 << 20),
            ("512KiB", 512 << 10),
            ("1MB", 1_000_000),
            ("2kb", 2_000),
            ("1GiB", 1 << 30),
            ("1.5MiB", 3 << 19),
            ("100B", 100),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "MiB", "4 MB2", "4XB", "-1", "1.", ".5MiB", "1e3"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("512KiB, 4MiB"), "{bad}: {err}");
        }
        let body = |v: &str| {
            Cli::try_parse_from(["x", "--max-body-bytes", v])
                .map(|c| c.config.limits.max_body_bytes)
                .map_err(|e| e.to_string())
        };
        assert_eq!(body("4MiB"), Ok(4 << 20));
        assert_eq!(body("512KiB"), Ok(512 << 10));
        assert_eq!(body("1MB"), Ok(1_000_000));
        assert_eq!(body("65536"), Ok(65536));
        let err = body("4 megs").unwrap_err();
        assert!(err.contains("4MiB") && err.contains("bytes"), "{err}");
        assert!(body("0").unwrap_err().contains("at least 1 byte"));
        let filter = |v: &str| {
            Cli::try_parse_from(["x", "--dedup-filter-mb", v])
                .map(|c| c.config.store.dedup_filter_mb)
                .map_err(|e| e.to_string())
        };
        assert_eq!(filter("64"), Ok(64));
        assert_eq!(filter("64MiB"), Ok(64));
        assert_eq!(filter("1GiB"), Ok(1024));
        assert!(filter("16MB").unwrap_err().contains("whole number of MiB"));
        assert!(filter("0").unwrap_err().contains("1 to 4096 MiB"));
        assert!(filter("8GiB").unwrap_err().contains("1 to 4096 MiB"));
    }

    #[test]
    fn secrets_never_print() {
        let config = Cli::parse_from(["x", "--admin-token", "hunter2-admin"]).config;
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }

    #[test]
    fn bad_values_are_refused_with_a_hint() {
        let err = Cli::try_parse_from(["x", "--dedup-window", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("30s"), "{err}");
        assert!(Cli::try_parse_from(["x", "--max-attempts", "0"]).is_err());
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
            config.access.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "127.0.0.1/32".parse().unwrap()
            ]
        );
        assert_eq!(config.access.allow_from.len(), 2);
        let err = Cli::try_parse_from(["x", "--allow-from", "10.0.0.0/33"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("10.0.0.0/8"), "{err}");
    }
}
