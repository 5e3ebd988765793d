//! The CLI's client side: send a callback as Okra would, replay, and check health — talking
//! to a running receiver over HTTP, the way an operator or a container HEALTHCHECK would.

use std::time::Duration;

use serde_json::Value;

use okra_callbacks::{source::Verifier, Envelope};

/// Okra's documented example payloads and production-shaped ones, by file name (`samples/`).
pub const SAMPLES: &[(&str, &str)] = &[
    (
        "transactions_initial",
        include_str!("../../samples/transactions_initial.json"),
    ),
    (
        "transactions_full",
        include_str!("../../samples/transactions_full.json"),
    ),
    (
        "transactions_periodic",
        include_str!("../../samples/transactions_periodic.json"),
    ),
    (
        "transactions_deleted",
        include_str!("../../samples/transactions_deleted.json"),
    ),
    (
        "record_error",
        include_str!("../../samples/record_error.json"),
    ),
    (
        "record_webhook_update_acknowledged",
        include_str!("../../samples/record_webhook_update_acknowledged.json"),
    ),
    (
        "income_ready_misspelled",
        include_str!("../../samples/income_ready_misspelled.json"),
    ),
    (
        "identity_ready",
        include_str!("../../samples/identity_ready.json"),
    ),
    (
        "identity_is_ready",
        include_str!("../../samples/identity_is_ready.json"),
    ),
    (
        "balance_ready",
        include_str!("../../samples/balance_ready.json"),
    ),
    (
        "balance_success",
        include_str!("../../samples/balance_success.json"),
    ),
    (
        "auth_success",
        include_str!("../../samples/auth_success.json"),
    ),
    (
        "accounts_success",
        include_str!("../../samples/accounts_success.json"),
    ),
];

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
    #[error("{status}: {body}{}", hint.map(|h| format!("\n  {h}")).unwrap_or_default())]
    Status {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
        /// What to change on this command's line, when the answer says.
        hint: Option<&'static str>,
    },
}

/// Which command asked: the fix for a refusal is a flag of that command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// `send`, with whether it sent a token.
    Send { token: bool },
    /// `replay`, with whether it sent a token.
    Replay { token: bool },
    /// `healthcheck`.
    Health,
}

impl Caller {
    /// The flag to set (or correct) after the receiver refused this command with `status`.
    fn hint(self, status: reqwest::StatusCode, body: &str) -> Option<&'static str> {
        use reqwest::StatusCode as S;
        match (self, status) {
            (Caller::Send { .. }, S::UNAUTHORIZED) if body.contains("\"invalid_signature\"") => Some(
                "the receiver checks a signature: pass its secret with --hmac-secret or --webhook-secret (or OKRA_HMAC_SECRET / OKRA_WEBHOOK_SECRET)",
            ),
            (Caller::Send { token: false }, S::UNAUTHORIZED) => Some(
                "the receiver requires its callback token: pass it with --token <token> (or OKRA_CALLBACK_TOKEN)",
            ),
            (Caller::Send { token: true }, S::UNAUTHORIZED) => Some(
                "the --token given is not the receiver's callback token (its --callback-token / OKRA_CALLBACK_TOKEN)",
            ),
            (Caller::Replay { token: false }, S::UNAUTHORIZED) => Some(
                "the receiver requires its admin token: pass it with --admin-token <token> (or OKRA_ADMIN_TOKEN)",
            ),
            (Caller::Replay { token: true }, S::UNAUTHORIZED) => Some(
                "the --admin-token given is not the receiver's admin token (its --admin-token / OKRA_ADMIN_TOKEN)",
            ),
            (Caller::Replay { .. }, S::FORBIDDEN) => Some(
                "without an admin token the receiver answers loopback clients only: run replay on its host, or start it with --admin-token and pass the same --admin-token here",
            ),
            _ => None,
        }
    }
}

/// A built-in sample with the type and code it carries.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The fixture's file name, without `.json`.
    pub name: &'static str,
    /// Its callback type, e.g. `TRANSACTIONS`.
    pub callback_type: String,
    /// Its callback code, if it has one.
    pub callback_code: Option<String>,
    /// The JSON as Okra sends it.
    pub body: &'static str,
}

/// Every built-in sample, each parsed once for its type and code.
pub fn samples() -> impl Iterator<Item = Sample> {
    SAMPLES.iter().map(|&(name, body)| {
        let env = Envelope::parse(body.as_bytes().to_vec()).expect("samples parse");
        Sample {
            name,
            callback_type: env.callback_type().to_owned(),
            callback_code: env.callback_code().map(str::to_owned),
            body,
        }
    })
}

/// Picks a built-in sample by type and (optionally) code, e.g. `TRANSACTIONS` + `PERIODIC_TRANSACTIONS`.
pub fn sample(callback_type: &str, code: Option<&str>) -> Result<&'static str, ClientError> {
    samples()
        .find(|s| {
            s.callback_type.eq_ignore_ascii_case(callback_type)
                && code.is_none_or(|c| {
                    s.callback_code
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(c))
                })
        })
        .map(|s| s.body)
        .ok_or_else(|| {
            let wanted = type_and_code(callback_type, code);
            let known: Vec<String> = samples()
                .map(|s| type_and_code(&s.callback_type, s.callback_code.as_deref()))
                .collect();
            ClientError::Usage(format!(
                "no built-in sample for {wanted}: choose one of: {}",
                known.join(", ")
            ))
        })
}

/// `TYPE CODE`, or `TYPE` alone when there is no code.
fn type_and_code(callback_type: &str, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{callback_type} {code}"),
        None => callback_type.to_owned(),
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
    caller: Caller,
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

/// POSTs `body` to a receiver's `/v1/callback` as Okra would — with a bearer token and a
/// signature when given — and returns the answer's body.
pub async fn send(
    url: &str,
    body: String,
    token: Option<&str>,
    signer: Option<&Verifier>,
) -> Result<String, ClientError> {
    let mut request = client(Duration::from_secs(30))
        .post(url)
        .header("Content-Type", "application/json");
    if let Some(signer) = signer {
        let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        for (name, value) in signer.sign(&id, chrono::Utc::now().timestamp(), body.as_bytes()) {
            request = request.header(name, value);
        }
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let caller = Caller::Send {
        token: token.is_some(),
    };
    answer(url, caller, request.body(body).send().await).await
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
    answer(url, caller, request.send().await).await
}

/// GETs `url` and succeeds on a 2xx answer: the container's HEALTHCHECK (no curl needed).
pub async fn healthcheck(url: &str) -> Result<String, ClientError> {
    let response = client(Duration::from_secs(5)).get(url).send().await;
    answer(url, Caller::Health, response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_type_and_code() {
        let body = sample("transactions", Some("periodic_transactions")).unwrap();
        assert!(body.contains("\"new_transactions\":3"));
        let body = sample("IDENTITY", Some("IDENTITY_IS_READY")).unwrap();
        assert!(body.contains("\"identity\""));
        let err = sample("LOANS", None).unwrap_err().to_string();
        assert!(err.contains("TRANSACTIONS PERIODIC_TRANSACTIONS"), "{err}");
    }

    #[test]
    fn every_sample_is_listed_with_its_type_and_code() {
        let all: Vec<Sample> = samples().collect();
        assert_eq!(all.len(), SAMPLES.len());
        let find = |name: &str| all.iter().find(|s| s.name == name).unwrap();
        let income = find("income_ready_misspelled");
        assert_eq!(income.callback_type, "INCOME");
        assert_eq!(income.callback_code.as_deref(), Some("PDOCUT_IS_READY"));
        assert_eq!(find("accounts_success").callback_type, "ACCOUNTS");
        assert!(all.iter().all(|s| s.callback_code.is_some()));
    }

    #[test]
    fn record_is_rewritten_in_both_spellings() {
        let body = with_record(sample("AUTH", Some("AUTH_SUCCESS")).unwrap(), "rec-9").unwrap();
        let env = Envelope::parse(body.into_bytes()).unwrap();
        assert_eq!(env.record().as_str(), "rec-9");
        assert_eq!(env.fields()["recordId"], "rec-9");
    }
}
