//! The `okra-callbacks` binary: set up logging, read the configuration, run the command.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use okra_callbacks::{
    client,
    config::Config,
    output::OutputArgs,
    signature::{self, Verifier},
    telemetry, AllOf, ForwardHandler, LogHandler, Receiver,
};

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
    serve: Config,
    #[command(flatten)]
    outputs: OutputArgs,
}

// Parsed once at start-up: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the receiver (the default).
    Serve {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        outputs: OutputArgs,
    },
    /// Deliver a callback to a running receiver as Okra would, and print its answer.
    Send(SendArgs),
    /// Hand stored callbacks to the handlers again, through a running receiver.
    Replay(ReplayArgs),
    /// Exit 0 if a receiver answers its readiness check (for container HEALTHCHECKs).
    Healthcheck(HealthArgs),
}

#[derive(Args)]
struct SendArgs {
    /// A JSON file holding one callback. Without it, a built-in sample chosen by --type/--code.
    file: Option<PathBuf>,
    /// The callback type of the built-in sample, e.g. TRANSACTIONS.
    #[arg(long = "type", value_name = "TYPE")]
    callback_type: Option<String>,
    /// The callback code of the built-in sample, e.g. PERIODIC_TRANSACTIONS.
    #[arg(long)]
    code: Option<String>,
    /// Replace the record id in the body.
    #[arg(long)]
    record: Option<String>,
    /// The receiver's callback URL.
    #[arg(
        long,
        env = "OKRA_SEND_URL",
        default_value = "http://127.0.0.1:8080/v1/callback"
    )]
    url: String,
    /// Send `Authorization: Bearer <token>`.
    #[arg(long, env = "OKRA_CALLBACK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Sign the body with HMAC-SHA256 under this secret, as a receiver started with the same
    /// `--hmac-secret` expects.
    #[arg(long, env = "OKRA_HMAC_SECRET", hide_env_values = true)]
    hmac_secret: Option<String>,
    /// The header carrying the HMAC signature.
    #[arg(long, env = "OKRA_HMAC_HEADER", default_value = signature::DEFAULT_HMAC_HEADER)]
    hmac_header: String,
    /// Sign the body the Standard Webhooks way with this `whsec_…` secret.
    #[arg(
        long,
        env = "OKRA_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with = "hmac_secret"
    )]
    webhook_secret: Option<String>,
    /// List the built-in samples and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// Callback ids to replay.
    ids: Vec<String>,
    /// Replay every dead callback instead.
    #[arg(long, conflicts_with = "ids")]
    dead: bool,
    /// The receiver's base URL.
    #[arg(long, env = "OKRA_ADMIN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Send `Authorization: Bearer <token>`.
    #[arg(long, env = "OKRA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Args)]
struct HealthArgs {
    /// The URL to check.
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    url: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve, cli.outputs).await,
        Some(Command::Serve { config, outputs }) => serve(config, outputs).await,
        Some(Command::Send(args)) => send(args).await,
        Some(Command::Replay(args)) => replay(args).await,
        Some(Command::Healthcheck(args)) => client::healthcheck(&args.url)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("okra-callbacks: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, outputs: OutputArgs) -> Result<(), String> {
    telemetry::init_tracing(config.log_format);
    let config = config.resolve().map_err(|e| e.to_string())?;
    let outputs = outputs.configs().map_err(|e| e.to_string())?;
    let metrics = telemetry::install_metrics()?;
    let mut handlers = AllOf::new().with(LogHandler::new().with_bodies(config.log_bodies));
    if let Some(url) = &config.forward_url {
        handlers = handlers
            .with(ForwardHandler::new(url, config.forward_timeout).map_err(|e| e.to_string())?);
    }
    for output in okra_callbacks::output::connect_all(&outputs)
        .await
        .map_err(|e| e.to_string())?
    {
        handlers.push(output);
    }
    let listen = config.listen;
    tracing::info!(
        %listen,
        database = %okra_callbacks::store::redact_url(&config.database_url),
        handlers = ?handlers,
        outputs = ?outputs,
        callback_token = config.callback_token.is_some(),
        admin_token = config.admin_token.is_some(),
        signature = if config.hmac_secret.is_some() {
            "hmac-sha256"
        } else if config.webhook_secret.is_some() {
            "standard-webhooks"
        } else {
            "none"
        },
        trusted_proxies = ?config.trusted_proxies,
        allow_from = ?config.allow_from,
        log_bodies = config.log_bodies,
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

async fn send(args: SendArgs) -> Result<(), String> {
    if args.list {
        for sample in client::samples() {
            println!(
                "{:<36} --type {} --code {}",
                sample.name,
                sample.callback_type,
                sample.callback_code.as_deref().unwrap_or("")
            );
        }
        return Ok(());
    }
    let body = match (&args.file, &args.callback_type) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, Some(kind)) => client::sample(kind, args.code.as_deref())
            .map_err(|e| e.to_string())?
            .to_owned(),
        (None, None) => {
            return Err("say what to send: a JSON file, or --type TYPE [--code CODE] for a built-in sample (--list shows them)".into())
        }
    };
    let body = match &args.record {
        Some(record) => client::with_record(&body, record).map_err(|e| e.to_string())?,
        None => body,
    };
    let signer = match (&args.hmac_secret, &args.webhook_secret) {
        (Some(secret), _) => Some(Verifier::hmac_sha256(secret.as_bytes(), &args.hmac_header)),
        (None, Some(secret)) => Some(Verifier::standard_webhooks(secret)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| e.to_string())?;
    let answer = client::send(&args.url, body, args.token.as_deref(), signer.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    println!("{answer}");
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<(), String> {
    let base = args.url.trim_end_matches('/');
    let token = args.admin_token.as_deref();
    if args.dead {
        let answer = client::replay(&format!("{base}/v1/callbacks/replay?status=dead"), token)
            .await
            .map_err(|e| e.to_string())?;
        println!("{answer}");
        return Ok(());
    }
    if args.ids.is_empty() {
        return Err("say what to replay: one or more callback ids, or --dead".into());
    }
    for id in &args.ids {
        let answer = client::replay(&format!("{base}/v1/callbacks/{id}/replay"), token)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        println!("{answer}");
    }
    Ok(())
}
