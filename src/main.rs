//! The `okra-callbacks` binary: set up logging, read the configuration, run the command.

mod cli;

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use okra_callbacks::{
    output::{ForwardHandler, OutputArgs},
    parse_duration,
    telemetry::{self, LogFormat},
    AllOf, Config, LogHandler, Receiver,
};

/// jemalloc: a request allocates and frees on several threads (HTTP workers, the inbox writer,
/// the database thread); glibc's malloc spent ~15% of the acknowledging path's CPU in its own
/// bookkeeping (`_int_free`, `malloc_consolidate`, `unlink_chunk`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: a background thread hands pages freed after a burst
/// back to the system within about a second (`dirty_decay_ms`, and `muzzy_decay_ms:0` with no
/// lazily-freed middle stage), so the resident set falls back toward idle instead of staying
/// at the burst's peak. The arenas stay jemalloc's default (four per core): fewer cost the
/// PostgreSQL store a tenth of its acknowledgements (BENCHMARKS.md, "Ingest, PostgreSQL").
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "okra-callbacks",
    version,
    about = "Receive Okra's callbacks durably and hand them to your handlers.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve` is what runs with no subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

// Parsed once at start-up: the size of `Serve(ServeArgs)` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the receiver (the default).
    Serve(ServeArgs),
    /// Deliver a callback to a running receiver as Okra, or a source of the sources file,
    /// would sign it, and print its answer.
    Send(cli::SendArgs),
    /// Hand stored callbacks to the handlers again, through a running receiver.
    Replay(cli::ReplayArgs),
    /// Exit 0 if a receiver answers its readiness check (for container HEALTHCHECKs).
    Healthcheck(cli::HealthArgs),
}

/// `serve`: the library's [`Config`] plus what only the binary reads — the socket, the logs and
/// its built-in handlers.
#[derive(Args)]
struct ServeArgs {
    /// Address to serve on.
    #[arg(long, env = "OKRA_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Log output format.
    #[arg(long, env = "OKRA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log full callback bodies (they hold personal data: BVNs, names, phone numbers). Off by
    /// default; turn on only while debugging, never in production. The variable takes
    /// true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "OKRA_LOG_BODIES", value_parser = clap::builder::BoolishValueParser::new())]
    log_bodies: bool,

    /// POST each callback's original JSON to this internal URL; a non-2xx answer is a failure.
    #[arg(long, env = "OKRA_FORWARD_URL", value_parser = parse_forward_url)]
    forward_url: Option<String>,

    /// Timeout of one forward request.
    #[arg(long, env = "OKRA_FORWARD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    forward_timeout: Duration,

    #[command(flatten)]
    outputs: OutputArgs,

    #[command(flatten)]
    config: Config,
}

/// `--forward-url` must be an http(s) URL with a host.
fn parse_forward_url(url: &str) -> Result<String, String> {
    let ok = reqwest::Url::parse(url)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .unwrap_or(false);
    if ok {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "`{url}` is not an http(s) URL: use e.g. http://ledger.internal:9000/okra"
        ))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        cli::exit_on_bad_arguments(e, &<Cli as clap::CommandFactory>::command())
    });
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Send(args)) => cli::send(args).await,
        Some(Command::Replay(args)) => cli::replay(args).await,
        Some(Command::Healthcheck(args)) => cli::healthcheck(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("okra-callbacks: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    telemetry::init_tracing(args.log_format);
    let outputs = args.outputs.configs().map_err(|e| e.to_string())?;
    let metrics = telemetry::install_metrics()?;
    let mut handlers = AllOf::new().with(LogHandler::new().with_bodies(args.log_bodies));
    if let Some(url) = &args.forward_url {
        handlers = handlers
            .with(ForwardHandler::new(url, args.forward_timeout).map_err(|e| e.to_string())?);
    }
    for output in okra_callbacks::output::connect_all(&outputs)
        .await
        .map_err(|e| e.to_string())?
    {
        handlers.push(output);
    }
    let (listen, config) = (args.listen, args.config);
    let access = &config.access;
    tracing::info!(
        %listen,
        database = %okra_callbacks::telemetry::redact(&config.store.database_url),
        handlers = ?handlers,
        outputs = ?outputs,
        callback_token = access.callback_token.is_some() || access.callback_token_file.is_some(),
        admin_token = access.admin_token.is_some() || access.admin_token_file.is_some(),
        signature = if access.hmac_secret.is_some() || access.hmac_secret_file.is_some() {
            "hmac-sha256"
        } else if access.webhook_secret.is_some() || access.webhook_secret_file.is_some() {
            "standard-webhooks"
        } else {
            "none"
        },
        trusted_proxies = ?access.trusted_proxies,
        allow_from = ?access.allow_from,
        log_bodies = args.log_bodies,
        "starting okra-callbacks {}",
        env!("CARGO_PKG_VERSION")
    );
    let receiver = Receiver::new(config, handlers)
        .await
        .map_err(|e| e.to_string())?
        .with_metrics(metrics);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e} (set --listen or OKRA_LISTEN)"))?;
    tracing::info!(address = %listener.local_addr().map_err(|e| e.to_string())?, "listening");
    let result = receiver
        .run(listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string());
    tracing::info!("stopped");
    telemetry::shutdown_tracing();
    result
}

/// Completes on SIGTERM (what orchestrators send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_flags_keep_their_contract_defaults() {
        let cli = Cli::parse_from(["okra-callbacks"]);
        assert_eq!(cli.serve.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.serve.log_format, LogFormat::Text);
        assert!(!cli.serve.log_bodies);
        assert_eq!(cli.serve.forward_url, None);
        assert_eq!(cli.serve.forward_timeout, Duration::from_secs(10));
        let cli = Cli::parse_from([
            "okra-callbacks",
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--workers",
            "3",
        ]);
        let Some(Command::Serve(args)) = cli.command else {
            panic!("`serve` parses as Serve");
        };
        assert_eq!(args.listen.to_string(), "127.0.0.1:9");
        assert_eq!(args.config.delivery.workers, 3);
    }

    #[test]
    fn a_forward_url_that_is_not_http_is_refused_with_a_hint() {
        let err = Cli::try_parse_from(["okra-callbacks", "--forward-url", "ftp://x"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("http(s)"), "{err}");
        let cli = Cli::parse_from(["okra-callbacks", "--forward-url", "http://ledger:9000/okra"]);
        assert_eq!(
            cli.serve.forward_url.as_deref(),
            Some("http://ledger:9000/okra")
        );
    }
}
