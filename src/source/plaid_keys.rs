//! Plaid's webhook verification keys: asked of `POST {api_url}/webhook_verification_key/get` by
//! key id (`kid`), kept while the process runs, and asked for sparingly.
//!
//! The bounds are what make a flood of forged `kid`s harmless: a `kid` that is not known is asked
//! for at most once a minute (requests that arrive together share the one question), and the key
//! service is asked at most [`MAX_QUESTIONS`] times a minute in all. A request that would need a
//! question beyond those bounds, or whose question went unanswered, gets
//! [`VerifyError::Unavailable`] so that Plaid retries it later.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;
use tokio::sync::watch;

use super::VerifyError;

/// How often one unknown `kid` may be asked for.
pub(super) const PER_KID_INTERVAL: Duration = Duration::from_secs(60);
/// How many questions the key service may be asked in any minute, all `kid`s together.
pub(super) const MAX_QUESTIONS: usize = 10;
/// How long the key service has to answer one question.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a key is used before Plaid is asked again whether it has expired. Meanwhile, and
/// while that question is out or unanswered, the cached key keeps serving.
pub(super) const KEY_RECHECK: Duration = Duration::from_secs(60 * 60);
/// The largest answer read from the key service (a JWK is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A P-256 public key as an uncompressed point (`04 || x || y`), as ECDSA verification takes it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(pub(super) [u8; 65]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0[1..9]))
    }
}

impl PublicKey {
    /// Reads a JWK's `x` and `y` (a `kty` `EC` key on `crv` `P-256`).
    pub fn from_jwk(jwk: &Value) -> Result<Self, String> {
        if jwk.get("kty").and_then(Value::as_str) != Some("EC")
            || jwk.get("crv").and_then(Value::as_str) != Some("P-256")
        {
            return Err("the key is not an EC key on P-256".into());
        }
        let coordinate = |name: &str| -> Result<Vec<u8>, String> {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the key has no `{name}`"))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| format!("the key's `{name}` is not base64url"))?;
            if bytes.len() != 32 {
                return Err(format!("the key's `{name}` is not 32 bytes"));
            }
            Ok(bytes)
        };
        let mut point = [0u8; 65];
        point[0] = 4;
        point[1..33].copy_from_slice(&coordinate("x")?);
        point[33..].copy_from_slice(&coordinate("y")?);
        Ok(Self(point))
    }
}

/// The outcome of one question, shared with every request that waited for it.
#[derive(Clone, Debug)]
enum Outcome {
    Key(Arc<PublicKey>),
    Expired,
    Unknown,
    Unavailable(String),
}

/// What is known about one `kid`.
enum Entry {
    /// A usable key, and when it is next to be re-asked for (to learn of its expiry).
    Key {
        key: Arc<PublicKey>,
        recheck_at: Instant,
        rechecking: bool,
    },
    /// Plaid set `expired_at`: refused from now on.
    Expired,
    /// Plaid answered 4xx at this time: unknown until a minute has passed.
    Unknown(Instant),
    /// The key service did not answer at this time: not asked again for a minute.
    Failed(Instant),
    /// A question is on its way; its outcome arrives here.
    Pending(watch::Receiver<Option<Outcome>>),
}

/// The cache and the record of questions asked.
#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// When each question of the last minute was asked, oldest first.
    asked: VecDeque<Instant>,
}

impl State {
    /// Takes one question from the budget of the last minute, if any is left.
    fn take_question(&mut self, now: Instant, limits: &Limits) -> bool {
        while self
            .asked
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.window)
        {
            self.asked.pop_front();
        }
        if self.asked.len() >= limits.max_questions {
            return false;
        }
        self.asked.push_back(now);
        true
    }

    /// Forgets the outcomes of questions older than the per-`kid` interval: those `kid`s may be
    /// asked again, and a flood of forged `kid`s leaves no more than a minute's worth behind.
    fn prune(&mut self, now: Instant, limits: &Limits) {
        self.entries.retain(|_, entry| match entry {
            Entry::Unknown(at) | Entry::Failed(at) => now.duration_since(*at) < limits.per_kid,
            _ => true,
        });
    }
}

/// The bounds on asking; tests shorten them.
#[derive(Debug, Clone)]
struct Limits {
    per_kid: Duration,
    recheck: Duration,
    window: Duration,
    max_questions: usize,
}

/// The client of Plaid's key service, with its cache. Cheap to clone (shared).
#[derive(Clone)]
pub struct PlaidKeys {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `{api_url}/webhook_verification_key/get`.
    url: String,
    client_id: String,
    secret: String,
    limits: Limits,
    state: Mutex<State>,
}

impl fmt::Debug for PlaidKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaidKeys")
            .field("url", &self.inner.url)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

impl PlaidKeys {
    /// A client of the key service at `api_url` (e.g. `https://production.plaid.com`) with the
    /// team's Plaid API keys.
    pub fn new(api_url: &str, client_id: &str, secret: &str) -> Result<Self, String> {
        Self::with_timeout(api_url, client_id, secret, ANSWER_TIMEOUT)
    }

    fn with_timeout(
        api_url: &str,
        client_id: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base = url::Url::parse(api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!("`{api_url}` is not an http(s) URL: use e.g. https://production.plaid.com or https://sandbox.plaid.com")
            })?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url: format!(
                    "{}/webhook_verification_key/get",
                    base.as_str().trim_end_matches('/')
                ),
                client_id: client_id.to_owned(),
                secret: secret.to_owned(),
                limits: Limits {
                    per_kid: PER_KID_INTERVAL,
                    recheck: KEY_RECHECK,
                    window: Duration::from_secs(60),
                    max_questions: MAX_QUESTIONS,
                },
                state: Mutex::default(),
            }),
        })
    }

    /// The key `kid` names: from the cache, or asked of the key service within the bounds.
    /// A `kid` Plaid does not know, or a key it has expired, is refused; no answer (or no
    /// question allowed now) is [`VerifyError::Unavailable`].
    pub async fn key(&self, kid: &str) -> Result<Arc<PublicKey>, VerifyError> {
        let mut pending = {
            let mut state = self
                .inner
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            match state.entries.get(kid) {
                Some(Entry::Key {
                    key,
                    recheck_at,
                    rechecking,
                }) => {
                    let key = key.clone();
                    if now >= *recheck_at
                        && !*rechecking
                        && state.take_question(now, &self.inner.limits)
                    {
                        if let Some(Entry::Key { rechecking, .. }) = state.entries.get_mut(kid) {
                            *rechecking = true;
                        }
                        let (tx, _) = watch::channel(None);
                        tokio::spawn(ask_and_record(self.inner.clone(), kid.to_owned(), tx));
                    }
                    return Ok(key);
                }
                Some(Entry::Expired) => return outcome(Outcome::Expired),
                Some(Entry::Unknown(at)) if now.duration_since(*at) < self.inner.limits.per_kid => {
                    return outcome(Outcome::Unknown)
                }
                Some(Entry::Failed(at)) if now.duration_since(*at) < self.inner.limits.per_kid => {
                    return Err(VerifyError::Unavailable(
                        "Plaid's key service did not answer for this key less than a minute ago; it is asked again after the minute".into(),
                    ));
                }
                Some(Entry::Pending(rx)) => rx.clone(),
                _ => {
                    state.prune(now, &self.inner.limits);
                    if !state.take_question(now, &self.inner.limits) {
                        return Err(VerifyError::Unavailable(format!(
                            "the receiver has asked Plaid's key service {} times in the last minute, its limit; the key is asked for once the minute has passed",
                            self.inner.limits.max_questions
                        )));
                    }
                    let (tx, rx) = watch::channel(None);
                    state
                        .entries
                        .insert(kid.to_owned(), Entry::Pending(rx.clone()));
                    // The question runs on its own task: it completes and fills the cache even
                    // if the request that started it goes away.
                    tokio::spawn(ask_and_record(self.inner.clone(), kid.to_owned(), tx));
                    rx
                }
            }
        };
        let shared = pending
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .ok()
            .flatten();
        outcome(shared.unwrap_or_else(|| {
            Outcome::Unavailable("the question to Plaid's key service was abandoned".into())
        }))
    }
}

fn outcome(outcome: Outcome) -> Result<Arc<PublicKey>, VerifyError> {
    match outcome {
        Outcome::Key(key) => Ok(key),
        Outcome::Expired => Err(VerifyError::Refused(
            "the Plaid-Verification JWT is signed with a key Plaid has expired".into(),
        )),
        Outcome::Unknown => Err(VerifyError::Refused(
            "the Plaid-Verification JWT names a key (`kid`) Plaid does not know for these API keys: check the source's client_id and secret, and that the webhook comes from Plaid".into(),
        )),
        Outcome::Unavailable(why) => Err(VerifyError::Unavailable(why)),
    }
}

async fn ask_and_record(inner: Arc<Inner>, kid: String, tx: watch::Sender<Option<Outcome>>) {
    let result = ask(&inner, &kid).await;
    let now = Instant::now();
    let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = match (&result, state.entries.remove(&kid)) {
        (Outcome::Key(key), _) => Entry::Key {
            key: key.clone(),
            recheck_at: now + inner.limits.recheck,
            rechecking: false,
        },
        (Outcome::Expired, _) => Entry::Expired,
        // A known key whose re-check went unanswered keeps serving; it is re-asked for after
        // the per-`kid` interval.
        (Outcome::Unavailable(_), Some(Entry::Key { key, .. })) => Entry::Key {
            key,
            recheck_at: now + inner.limits.per_kid,
            rechecking: false,
        },
        (Outcome::Unknown, _) => Entry::Unknown(now),
        (Outcome::Unavailable(_), _) => Entry::Failed(now),
    };
    state.entries.insert(kid, entry);
    drop(state);
    tx.send_replace(Some(result));
}

/// One question to the key service.
async fn ask(inner: &Inner, kid: &str) -> Outcome {
    let question = serde_json::json!({
        "client_id": inner.client_id,
        "secret": inner.secret,
        "key_id": kid,
    });
    let sent = inner
        .http
        .post(&inner.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(question.to_string())
        .send()
        .await;
    let unavailable = |why: String| {
        tracing::warn!(url = %inner.url, reason = %why, "Plaid's key service did not answer");
        Outcome::Unavailable(format!(
            "Plaid's key service did not answer ({why}); Plaid retries the webhook"
        ))
    };
    let mut response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return unavailable(format!(
                "no answer within {}",
                crate::telemetry::format_duration(ANSWER_TIMEOUT)
            ))
        }
        Err(e) if e.is_connect() => {
            return unavailable("the connection was refused or failed".into())
        }
        Err(_) => return unavailable("the request failed".into()),
    };
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => return unavailable("the answer is too large".into()),
            Ok(None) => break,
            Err(_) => return unavailable("the answer was cut off".into()),
        }
    }
    let answer: Option<Value> = serde_json::from_slice(&body).ok();
    if status.is_client_error() {
        // Plaid's error codes (e.g. INVALID_API_KEYS) tell the operator what to fix; they are not
        // secret.
        let error_code = answer
            .as_ref()
            .and_then(|a| a.get("error_code"))
            .and_then(Value::as_str)
            .unwrap_or("-");
        tracing::warn!(
            status = status.as_u16(),
            error_code,
            "Plaid's key service does not know a webhook's key id"
        );
        return Outcome::Unknown;
    }
    if !status.is_success() {
        return unavailable(format!("it answered {status}"));
    }
    let Some(jwk) = answer.as_ref().and_then(|a| a.get("key")) else {
        return unavailable("its answer has no `key`".into());
    };
    if jwk.get("expired_at").is_some_and(|at| !at.is_null()) {
        return Outcome::Expired;
    }
    match PublicKey::from_jwk(jwk) {
        Ok(key) => Outcome::Key(Arc::new(key)),
        Err(why) => unavailable(why),
    }
}

#[cfg(test)]
impl PlaidKeys {
    /// A client whose bounds are shortened, for tests of the bounds themselves.
    pub(super) fn for_tests(
        api_url: &str,
        timeout: Duration,
        recheck: Duration,
        max_questions: usize,
    ) -> Self {
        let mut keys = Self::with_timeout(api_url, "client", "plaid-secret", timeout).unwrap();
        let inner = Arc::get_mut(&mut keys.inner).unwrap();
        inner.limits.recheck = recheck;
        inner.limits.max_questions = max_questions;
        keys
    }
}
