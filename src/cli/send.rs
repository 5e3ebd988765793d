//! `send`: deliver a built-in sample, a file or standard input to a running receiver, signed as
//! its sender would — Okra (`POST /v1/callback`), or a source of the sources file
//! (`POST /v1/sources/NAME`, signed with that source's secret from the same file the receiver
//! reads).

use std::{io::Read, path::PathBuf};

use clap::Args;
use okra_callbacks::source::{self, Sources, Verifier};

use super::{
    client::{self, Caller},
    out,
    samples::{self, Folder},
};

/// The name `--source` may give for Okra's own route.
const OKRA: &str = "okra";

/// `send`: what to deliver, where, and how to authenticate it.
#[derive(Args)]
pub struct SendArgs {
    /// What to send: a built-in sample's name (`--list` shows them), a JSON file, or `-` to read
    /// standard input. Without it, a built-in sample chosen by --type/--code.
    #[arg(value_name = "SAMPLE|FILE|-")]
    what: Option<PathBuf>,
    /// The callback type of the built-in sample, e.g. TRANSACTIONS.
    #[arg(long = "type", value_name = "TYPE")]
    callback_type: Option<String>,
    /// The callback code of the built-in sample, e.g. PERIODIC_TRANSACTIONS.
    #[arg(long)]
    code: Option<String>,
    /// Send as this source of the sources file, signed as its provider signs, to
    /// `/v1/sources/NAME` (with the samples of its provider). Without it, as Okra.
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// The sources file the receiver reads (its --sources): `--source` signs with its secrets.
    #[arg(long, env = "OKRA_SOURCES", value_name = "FILE")]
    sources: Option<PathBuf>,
    /// Replace Okra's record id in the body.
    #[arg(long, conflicts_with = "source")]
    record: Option<String>,
    /// The receiver's callback URL. With --source, its `/v1/callback` becomes
    /// `/v1/sources/NAME` (a URL without that path gets `/v1/sources/NAME` appended).
    #[arg(
        long,
        env = "OKRA_SEND_URL",
        default_value = "http://127.0.0.1:8080/v1/callback"
    )]
    url: String,
    /// Send `Authorization: Bearer <token>` (Okra's; not sent with --source).
    #[arg(long, env = "OKRA_CALLBACK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Sign the body with HMAC-SHA256 under this secret, as a receiver started with the same
    /// `--hmac-secret` expects (Okra's; not used with --source).
    #[arg(long, env = "OKRA_HMAC_SECRET", hide_env_values = true)]
    hmac_secret: Option<String>,
    /// The header carrying the HMAC signature.
    #[arg(long, env = "OKRA_HMAC_HEADER", default_value = source::DEFAULT_HMAC_HEADER)]
    hmac_header: String,
    /// Sign the body the Standard Webhooks way with this `whsec_…` secret (Okra's; not used
    /// with --source).
    #[arg(
        long,
        env = "OKRA_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with = "hmac_secret"
    )]
    webhook_secret: Option<String>,
    /// List the built-in samples of Okra and of each provider, and exit.
    #[arg(long)]
    list: bool,
}

/// Delivers a callback as its sender would and prints the receiver's answer.
pub async fn send(args: SendArgs) -> Result<(), String> {
    if args.list {
        return out::print(&samples::listing());
    }
    let answer = match args.source.as_deref() {
        None | Some(OKRA) => as_okra(&args).await?,
        Some(name) => as_source(&args, name).await?,
    };
    out::print(&answer)
}

/// To `POST /v1/callback`, with Okra's token and signature when given.
async fn as_okra(args: &SendArgs) -> Result<String, String> {
    let body = body(args, Some(samples::okra()), "Okra")?;
    let body = match &args.record {
        Some(record) => {
            let text = String::from_utf8(body)
                .map_err(|_| "the callback is not UTF-8 text, so not JSON".to_owned())?;
            client::with_record(&text, record)
                .map_err(|e| e.to_string())?
                .into_bytes()
        }
        None => body,
    };
    let signer = match (&args.hmac_secret, &args.webhook_secret) {
        (Some(secret), _) => Some(Verifier::hmac_sha256(secret.as_bytes(), &args.hmac_header)),
        (None, Some(secret)) => Some(Verifier::standard_webhooks(secret)),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| e.to_string())?;
    let mut headers = match &signer {
        Some(signer) => {
            let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
            signer.sign(&id, chrono::Utc::now().timestamp(), &body)
        }
        None => vec![],
    };
    if let Some(token) = &args.token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    let caller = Caller::Send {
        token: args.token.is_some(),
    };
    client::send(&args.url, body, headers, caller)
        .await
        .map_err(|e| e.to_string())
}

/// To `POST /v1/sources/NAME`, signed with the source's secret from the sources file.
async fn as_source(args: &SendArgs, name: &str) -> Result<String, String> {
    let file = args.sources.as_ref().ok_or_else(|| {
        format!("--source {name} signs with the secret of the sources file the receiver reads: pass it with --sources FILE (or OKRA_SOURCES)")
    })?;
    let sources = Sources::load(file).map_err(|e| e.to_string())?;
    let source = sources.get(name).ok_or_else(|| {
        let names: Vec<&str> = sources.names().collect();
        format!(
            "no source `{name}` in the sources file {}: it has {} (send --source NAME)",
            file.display(),
            names.join(", ")
        )
    })?;
    let preset = source.preset();
    let whose = format!("source `{name}` (preset {preset})");
    let body = body(args, Folder::for_preset(preset), &whose)?;
    let headers = source
        .sign(&body)
        .map_err(|e| format!("cannot send as {whose}: {e}"))?;
    let caller = Caller::SendSource {
        name: name.to_owned(),
        file: file.display().to_string(),
    };
    client::send(&source_url(&args.url, name), body, headers, caller)
        .await
        .map_err(|e| e.to_string())
}

/// The body to send: a built-in sample of `folder` (by name, or by --type/--code), a file, or
/// standard input. `whose` names the sender in errors (`Okra`, `source \`mono\` (preset mono)`).
fn body(args: &SendArgs, folder: Option<&Folder>, whose: &str) -> Result<Vec<u8>, String> {
    let choose = || {
        match folder {
        Some(folder) => format!(
            "choose one of: {} (send --list shows them), give a JSON file's path, or - to read standard input",
            folder.names()
        ),
        None => format!(
            "{whose} has no built-in samples: give a JSON file's path, or - to read standard input"
        ),
    }
    };
    let Some(what) = &args.what else {
        return match (&args.callback_type, folder) {
            (Some(kind), Some(folder)) => folder
                .by_type(kind, args.code.as_deref())
                .map(|body| body.as_bytes().to_vec()),
            (Some(_), None) => Err(choose()),
            (None, _) => Err(format!(
                "say what to send for {whose}: a sample's name, a JSON file, - for standard input, or --type TYPE [--code CODE] (send --list shows the samples)"
            )),
        };
    };
    if what.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(body);
    }
    if let Some(body) = what.to_str().and_then(|n| folder?.by_name(n)) {
        return Ok(body.as_bytes().to_vec());
    }
    std::fs::read(what).map_err(|e| {
        let bare = what.to_str().is_some_and(|n| !n.contains(['/', '\\', '.']));
        if bare && e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no built-in sample `{}` for {whose}, and no file of that name: {}",
                what.display(),
                choose()
            )
        } else {
            format!("cannot read {}: {e}", what.display())
        }
    })
}

/// Where source `name` is served, from the receiver's callback URL: its `/v1/callback` (or
/// `/v1/sources/NAME`) replaced, else `/v1/sources/NAME` appended.
fn source_url(url: &str, name: &str) -> String {
    let url = url.trim_end_matches('/');
    let own = format!("/v1/sources/{name}");
    let base = url
        .strip_suffix("/v1/callback")
        .or_else(|| url.strip_suffix(own.as_str()))
        .unwrap_or(url);
    format!("{base}{own}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_sent_to_its_route_beside_okra_s() {
        let url = |u: &str| source_url(u, "mono");
        assert_eq!(
            url("http://127.0.0.1:8080/v1/callback"),
            "http://127.0.0.1:8080/v1/sources/mono"
        );
        assert_eq!(
            url("https://hooks.example.com/v1/callback/"),
            "https://hooks.example.com/v1/sources/mono"
        );
        assert_eq!(
            url("https://hooks.example.com"),
            "https://hooks.example.com/v1/sources/mono"
        );
        assert_eq!(
            url("https://h.example.com/okra/v1/sources/mono"),
            "https://h.example.com/okra/v1/sources/mono"
        );
    }
}
