//! The CLI's client side: send a callback as Okra would, replay, and check health — talking
//! to a running receiver over HTTP, the way an operator or a container HEALTHCHECK would.

use std::time::Duration;

use serde_json::Value;

/// A failure of a CLI client command, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The arguments do not name a callback to send.
    #[error("{0}")]
    Usage(String),
    /// The receiver could not be reached.
    #[error(
        "cannot reach {url}: {}",
        okra_callbacks::output::request_failure(source, None)
    )]
    Unreachable {
        /// Where we tried.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("{status}: {body}{}", hint.as_ref().map(|h| format!("\n  {h}")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
        /// What to change on this command's line, when the answer says.
        hint: Option<String>,
    },
}

/// Which command asked: the fix for a refusal is a flag of that command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `send` as Okra, with whether it sent a token.
    Send { token: bool },
    /// `send --source NAME`, signing with the sources file `file`.
    SendSource { name: String, file: String },
    /// `replay`, with whether it sent a token.
    Replay { token: bool },
    /// `healthcheck`.
    Health,
}

impl Caller {
    /// The flag to set (or correct) after the receiver refused this command with `status`.
    fn hint(&self, status: reqwest::StatusCode, body: &str) -> Option<String> {
        use reqwest::StatusCode as S;
        let hint: String = match (self, status) {
            (Caller::Send { .. }, S::UNAUTHORIZED) if body.contains("\"invalid_signature\"") =>
                "the receiver checks a signature: pass its secret with --hmac-secret or --webhook-secret (or OKRA_HMAC_SECRET / OKRA_WEBHOOK_SECRET)".into(),
            (Caller::Send { token: false }, S::UNAUTHORIZED) =>
                "the receiver requires its callback token: pass it with --token <token> (or OKRA_CALLBACK_TOKEN)".into(),
            (Caller::Send { token: true }, S::UNAUTHORIZED) =>
                "the --token given is not the receiver's callback token (its --callback-token / OKRA_CALLBACK_TOKEN)".into(),
            (Caller::SendSource { name, file }, S::UNAUTHORIZED) => {
                format!(
                    "the receiver refused the request signed with source `{name}`'s secret from {file} (its message says which check failed): give send the sources file the receiver was started with, and the same values for its ${{VAR}}s"
                )
            }
            (Caller::SendSource { name, file }, S::NOT_FOUND) if body.contains("\"unknown_source\"") => {
                format!(
                    "the receiver has no source `{name}`: start it with --sources {file} (or OKRA_SOURCES), or point --url at the receiver that has it"
                )
            }
            (Caller::Replay { token: false }, S::UNAUTHORIZED) =>
                "the receiver requires its admin token: pass it with --admin-token <token> (or OKRA_ADMIN_TOKEN)".into(),
            (Caller::Replay { token: true }, S::UNAUTHORIZED) =>
                "the --admin-token given is not the receiver's admin token (its --admin-token / OKRA_ADMIN_TOKEN)".into(),
            (Caller::Replay { .. }, S::FORBIDDEN) =>
                "without an admin token the receiver answers loopback clients only: run replay on its host, or start it with --admin-token and pass the same --admin-token here".into(),
            _ => return None,
        };
        Some(hint)
    }
}

/// Sets the record id of a callback body (both spellings, where present).
pub fn with_record(body: &str, record: &str) -> Result<String, ClientError> {
    let mut value: Value = serde_json::from_str(body)
        .map_err(|e| ClientError::Usage(format!("the callback file is not JSON: {e}")))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| ClientError::Usage("the callback file must hold a JSON object".into()))?;
    obj.insert("record".into(), record.into());
    if obj.contains_key("recordId") {
        obj.insert("recordId".into(), record.into());
    }
    Ok(value.to_string())
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("a default HTTP client builds")
}

async fn answer(
    url: &str,
    caller: &Caller,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<String, ClientError> {
    let response = response.map_err(|source| ClientError::Unreachable {
        url: url.to_owned(),
        source,
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        let hint = caller.hint(status, &body);
        Err(ClientError::Status { status, body, hint })
    }
}

/// POSTs `body` as JSON to `url` with `headers` (a token, a signature: what its sender would
/// attach) and returns the answer's body.
pub async fn send(
    url: &str,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    caller: Caller,
) -> Result<String, ClientError> {
    let mut request = client(Duration::from_secs(30))
        .post(url)
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    answer(url, &caller, request.body(body).send().await).await
}

/// POSTs to a replay endpoint of a running receiver.
pub async fn replay(url: &str, token: Option<&str>) -> Result<String, ClientError> {
    let mut request = client(Duration::from_secs(30)).post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let caller = Caller::Replay {
        token: token.is_some(),
    };
    answer(url, &caller, request.send().await).await
}

/// GETs `url` and succeeds on a 2xx answer: the container's HEALTHCHECK (no curl needed).
pub async fn healthcheck(url: &str) -> Result<String, ClientError> {
    let response = client(Duration::from_secs(5)).get(url).send().await;
    answer(url, &Caller::Health, response).await
}

#[cfg(test)]
mod tests {
    use okra_callbacks::Envelope;

    use super::*;

    #[test]
    fn record_is_rewritten_in_both_spellings() {
        let sample = crate::cli::samples::okra().by_name("auth_success").unwrap();
        let body = with_record(sample, "rec-9").unwrap();
        let env = Envelope::parse(body.into_bytes()).unwrap();
        assert_eq!(env.record().as_str(), "rec-9");
        assert_eq!(env.fields()["recordId"], "rec-9");
    }
}
