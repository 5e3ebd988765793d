//! The CLI's client side: send a callback as Okra would, replay, and check health — talking
//! to a running receiver over HTTP, the way an operator or a container HEALTHCHECK would.

use std::time::Duration;

use serde_json::Value;

use okra_callbacks::{signature::Verifier, Envelope};

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
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// The receiver answered with an error status.
    #[error("{status}: {body}")]
    Status {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
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
            let known: Vec<String> = samples()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.callback_type,
                        s.callback_code.as_deref().unwrap_or("")
                    )
                })
                .collect();
            ClientError::Usage(format!(
                "no built-in sample for {callback_type} {}: choose one of: {}",
                code.unwrap_or(""),
                known.join(", ")
            ))
        })
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
        Err(ClientError::Status { status, body })
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
    answer(url, request.body(body).send().await).await
}

/// POSTs to a replay endpoint of a running receiver.
pub async fn replay(url: &str, token: Option<&str>) -> Result<String, ClientError> {
    let mut request = client(Duration::from_secs(30)).post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(url, request.send().await).await
}

/// GETs `url` and succeeds on a 2xx answer: the container's HEALTHCHECK (no curl needed).
pub async fn healthcheck(url: &str) -> Result<String, ClientError> {
    answer(url, client(Duration::from_secs(5)).get(url).send().await).await
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
