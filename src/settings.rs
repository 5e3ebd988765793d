//! The resolved settings: a [`Config`]'s flags read and checked once, at start-up, in the shapes
//! the parts of a receiver take (the store's options, the dispatcher's settings).

use std::time::Duration;

use crate::{
    config::{AccessConfig, Config, ConfigError, DeliveryConfig, LimitsConfig},
    dispatch::DispatchConfig,
    store::StoreOptions,
    telemetry::format_duration,
};

/// A [`Config`] read and checked once, in the shapes the parts of a receiver take.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The store's URL (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// The store's pool and timeout.
    pub store: StoreOptions,
    /// The same bytes again within this window are a duplicate.
    pub dedup_window: Duration,
    /// Delivered and dead callbacks older than this are deleted.
    pub retention: Option<Duration>,
    /// Who may call, as flags (the HTTP layer reads the `…_file` secrets and builds the
    /// signature check when the receiver is built).
    pub access: AccessConfig,
    /// What bounds connections and requests.
    pub limits: LimitsConfig,
    /// The dispatcher's settings, the lease's default filled in.
    pub dispatch: DispatchConfig,
}

impl Settings {
    /// Checks the flags of `config` fit together. Runs once, when a receiver is built.
    pub(crate) fn resolve(config: Config) -> Result<Self, ConfigError> {
        let Config {
            store,
            access,
            limits,
            delivery,
        } = config;
        if let Some(delay) = delivery.retry_base_delay_ms {
            tracing::warn!(
                "--retry-base-delay-ms (OKRA_RETRY_BASE_DELAY_MS) is the older spelling of --retry-base-delay: write --retry-base-delay {} (OKRA_RETRY_BASE_DELAY) instead",
                format_duration(delay)
            );
        }
        if limits.header_read_timeout.is_zero() || limits.request_timeout.is_zero() {
            return Err(ConfigError(
                "--header-read-timeout and --request-timeout must be longer than 0s: use e.g. 10s and 30s".into(),
            ));
        }
        if limits.max_open_connections == 0 {
            return Err(ConfigError("--max-connections must be at least 1".into()));
        }
        if store.database_timeout.is_zero() {
            return Err(ConfigError(
                "--database-timeout must be more than 0: use e.g. 5s".into(),
            ));
        }
        let lease = lease_or_default(&delivery, store.database_timeout);
        if lease < Duration::from_millis(300) {
            return Err(ConfigError(format!(
                "--lease {} is too short: the heartbeat renews leases every third of it; use at least 300ms (the default is 10s)",
                format_duration(lease),
            )));
        }
        let beat = lease / 3;
        if beat + store.database_timeout >= lease {
            return Err(ConfigError(format!(
                "--lease {} is too short for --database-timeout {}: leases are renewed every {} and one renewal may take up to --database-timeout, so a live replica could lose its records; use --lease of more than {} (1.5 × --database-timeout) or a shorter --database-timeout",
                format_duration(lease),
                format_duration(store.database_timeout),
                format_duration(beat),
                format_duration(store.database_timeout * 3 / 2),
            )));
        }
        if limits.max_body_bytes == 0 {
            return Err(ConfigError("--max-body-bytes must be at least 1".into()));
        }
        if limits.max_concurrent_requests == 0 {
            return Err(ConfigError(
                "--max-concurrent-requests must be at least 1".into(),
            ));
        }
        Ok(Settings {
            dispatch: dispatch_config(&delivery, store.database_timeout),
            database_url: store.database_url,
            store: StoreOptions {
                max_connections: store.database_pool_size as usize,
                timeout: store.database_timeout,
                dedup_window: store.dedup_window,
                dedup_filter_bytes: store.dedup_filter_mb as usize * (1 << 20),
            },
            dedup_window: store.dedup_window,
            retention: store.retention,
            access,
            limits,
        })
    }
}

/// `--lease`, or its default: 10 s, or two database timeouts if that is longer.
fn lease_or_default(delivery: &DeliveryConfig, database_timeout: Duration) -> Duration {
    delivery
        .lease
        .unwrap_or_else(|| Duration::from_secs(10).max(database_timeout * 2))
}

/// The dispatcher settings the delivery flags describe, the lease's default filled in.
fn dispatch_config(delivery: &DeliveryConfig, database_timeout: Duration) -> DispatchConfig {
    DispatchConfig {
        max_attempts: delivery.max_attempts,
        retry_base_delay: delivery
            .retry_base_delay_ms
            .unwrap_or(delivery.retry_base_delay),
        retry_max_delay: delivery.retry_max_delay,
        handler_timeout: delivery.handler_timeout,
        concurrency: delivery.workers as usize,
        lease: lease_or_default(delivery, database_timeout),
        max_delivery_deferral: delivery.max_delivery_deferral,
        ..DispatchConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::tests::Cli;

    /// The settings these command-line arguments resolve to.
    fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::resolve(Cli::parse_from(args).config)
    }

    #[test]
    fn delivery_waits_for_a_burst_30_seconds_at_most_unless_set_or_turned_off() {
        let dispatch = |args: &[&str]| {
            let config = Cli::parse_from(std::iter::once("x").chain(args.iter().copied())).config;
            Settings::resolve(config)
                .unwrap()
                .dispatch
                .max_delivery_deferral
        };
        assert_eq!(dispatch(&[]), Duration::from_secs(30));
        assert_eq!(
            dispatch(&["--max-delivery-deferral", "5s"]),
            Duration::from_secs(5)
        );
        assert_eq!(dispatch(&["--max-delivery-deferral", "0s"]), Duration::ZERO);
    }

    #[test]
    fn lease_defaults_to_ten_seconds_whatever_the_handler_timeout_and_can_be_set() {
        for handler_timeout in ["1s", "30s", "5m"] {
            let dispatch = resolve(&["x", "--handler-timeout", handler_timeout])
                .unwrap()
                .dispatch;
            assert_eq!(dispatch.lease, Duration::from_secs(10), "{handler_timeout}");
            assert!(dispatch.renew_leases);
        }
        let config = Cli::parse_from(["x", "--database-timeout", "8s"]).config;
        assert_eq!(
            Settings::resolve(config).unwrap().dispatch.lease,
            Duration::from_secs(16),
            "the default lease leaves room for a renewal that times out"
        );
        let settings = resolve(&[
            "x",
            "--handler-timeout",
            "1s",
            "--database-timeout",
            "1s",
            "--lease",
            "3s",
        ])
        .unwrap();
        assert_eq!(settings.dispatch.lease, Duration::from_secs(3));
        assert_eq!(settings.store.timeout, Duration::from_secs(1));
    }

    #[test]
    fn resolved_secrets_never_print() {
        let shown = format!(
            "{:?}",
            resolve(&["x", "--admin-token", "hunter2-admin"]).unwrap()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn leases_that_do_not_fit_are_refused_with_a_hint() {
        // A handler longer than the lease is fine now (the heartbeat renews it) …
        let settings = resolve(&["x", "--lease", "10s", "--handler-timeout", "8m"]).unwrap();
        assert_eq!(settings.dispatch.lease, Duration::from_secs(10));
        // … but one renewal that times out must fit in what a beat leaves of the lease.
        let err = resolve(&["x", "--lease", "6s", "--database-timeout", "5s"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("--lease 6s is too short for --database-timeout 5s"),
            "{err}"
        );
        assert!(err.to_string().contains("more than 7.5s"), "{err}");
        let err = resolve(&["x", "--lease", "100ms", "--database-timeout", "50ms"]).unwrap_err();
        assert!(err.to_string().contains("at least 300ms"), "{err}");
    }

    #[test]
    fn the_lease_message_shows_durations_as_flags_take_them() {
        let err = resolve(&["x", "--lease", "5s"]).unwrap_err().to_string();
        assert!(
            err.contains(
                "--lease 5s is too short for --database-timeout 5s: leases are renewed every 1.67s"
            ),
            "{err}"
        );
        assert!(
            err.contains("more than 7.5s (1.5 × --database-timeout)"),
            "{err}"
        );
        assert!(!err.contains("ms ") && !err.contains("ns"), "{err}");
    }

    #[test]
    fn the_older_millisecond_retry_flag_sets_the_first_retry_delay() {
        let delay = |args: &[&str]| resolve(args).unwrap().dispatch.retry_base_delay;
        assert_eq!(delay(&["x"]), Duration::from_secs(1));
        assert_eq!(
            delay(&["x", "--retry-base-delay", "250ms"]),
            Duration::from_millis(250)
        );
        assert_eq!(
            delay(&["x", "--retry-base-delay-ms", "40"]),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn a_zero_request_timeout_is_refused() {
        assert!(resolve(&["x", "--request-timeout", "0s"]).is_err());
    }
}
