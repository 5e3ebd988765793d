//! The binary's client commands (`send`, `replay`, `healthcheck`): they talk to a running
//! receiver over HTTP and are no part of the library.

mod client;
mod env;

pub use env::exit as exit_on_bad_arguments;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use clap::Args;
use okra_callbacks::source::{self, Verifier};

/// `send`: what to deliver, where, and how to authenticate it.
#[derive(Args)]
pub struct SendArgs {
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
    #[arg(long, env = "OKRA_HMAC_HEADER", default_value = source::DEFAULT_HMAC_HEADER)]
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

/// `replay`: which callbacks, and the receiver to ask.
#[derive(Args)]
pub struct ReplayArgs {
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

/// `healthcheck`: the receiver to check, by the address it serves on or by URL.
#[derive(Args)]
pub struct HealthArgs {
    /// The address the receiver serves on (its --listen): `/readyz` on it is checked, an
    /// unspecified address (`0.0.0.0`, `[::]`) through loopback. In a container this is the
    /// same OKRA_LISTEN the receiver reads, so the check follows it.
    #[arg(long, env = "OKRA_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The URL to check instead.
    #[arg(long)]
    url: Option<String>,
}

impl HealthArgs {
    /// The readiness URL this check asks.
    fn url(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => readyz_url(self.listen),
        }
    }
}

/// `/readyz` of a receiver listening on `listen`, reached through loopback when `listen` is
/// the unspecified address.
fn readyz_url(mut listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        listen.set_ip(match listen {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{listen}/readyz")
}

/// Delivers a callback (a file or a built-in sample) as Okra would and prints the answer.
pub async fn send(args: SendArgs) -> Result<(), String> {
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

/// Asks a running receiver to replay callbacks and prints its answers.
pub async fn replay(args: ReplayArgs) -> Result<(), String> {
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

/// Succeeds when the receiver answers its readiness check.
pub async fn healthcheck(args: HealthArgs) -> Result<(), String> {
    let url = args.url();
    client::healthcheck(&url)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthcheck_follows_the_listen_address() {
        let url = |listen: &str| readyz_url(listen.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("0.0.0.0:9090"), "http://127.0.0.1:9090/readyz");
        assert_eq!(url("[::]:9090"), "http://[::1]:9090/readyz");
        assert_eq!(url("10.1.2.3:8081"), "http://10.1.2.3:8081/readyz");
    }
}
