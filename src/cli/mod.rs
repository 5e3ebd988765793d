//! The binary's client commands (`send`, `replay`, `healthcheck`): they talk to a running
//! receiver over HTTP and are no part of the library. `send` is in `send.rs` with its samples
//! in `samples.rs`; what they print goes through `out.rs`.

mod client;
mod env;
mod out;
mod samples;
mod send;

pub use env::exit as exit_on_bad_arguments;
pub use send::{send, SendArgs};

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::Args;

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

/// Asks a running receiver to replay callbacks and prints its answers.
pub async fn replay(args: ReplayArgs) -> Result<(), String> {
    let base = args.url.trim_end_matches('/');
    let token = args.admin_token.as_deref();
    if args.dead {
        let answer = client::replay(&format!("{base}/v1/callbacks/replay?status=dead"), token)
            .await
            .map_err(|e| e.to_string())?;
        return out::print(&answer);
    }
    if args.ids.is_empty() {
        return Err("say what to replay: one or more callback ids, or --dead".into());
    }
    for id in &args.ids {
        let answer = client::replay(&format!("{base}/v1/callbacks/{id}/replay"), token)
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        out::print(&answer)?;
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
