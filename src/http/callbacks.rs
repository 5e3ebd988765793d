//! The stored callbacks, one at a time (the `--admin-token` rule): what was received for one
//! record and product (`GET /v1/callback`), one callback with its delivery state and attempt
//! history (`GET /v1/callbacks/{id}`), and its replay (`POST /v1/callbacks/{id}/replay`).
//!
//! The shapes the search shares live here too: a callback's [`DeliveryStatus`] and times as
//! the API writes them.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{Json, Path, Query},
    filter::{PageQuery, DEFAULT_RECORD_LIMIT},
    refusals::OneCallbackRefusals,
    schema,
    state::AppState,
};
use crate::{
    callback::{CallbackType, MAX_FIELD_CHARS},
    store::{Attempt, AttemptOutcome, Filter, Scope, Status, StoredCallback},
    telemetry::Untrusted,
};

/// The routes of one record's callbacks and of one callback, with their OpenAPI descriptions.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_callbacks))
        .routes(routes!(get_callback))
        .routes(routes!(replay_callback))
}

/// A stored body as the JSON it was received as.
fn payload(body: &[u8]) -> Box<RawValue> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| RawValue::from_string(s.trim().to_owned()).ok())
        .unwrap_or_else(|| {
            // Stored bodies were valid JSON when received; keep the answer valid regardless.
            RawValue::from_string(
                Value::String(String::from_utf8_lossy(body).into_owned()).to_string(),
            )
            .expect("a JSON string is valid JSON")
        })
}

/// A time as the API writes it: RFC 3339 in UTC, to the millisecond.
pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Where delivery of a stored callback stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum DeliveryStatus {
    /// Waiting for a (further) handler attempt.
    Pending,
    /// The handlers succeeded.
    Delivered,
    /// The handlers failed `--max-attempts` times; kept for inspection and replay.
    Dead,
}

impl From<Status> for DeliveryStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => Self::Pending,
            Status::Delivered => Self::Delivered,
            Status::Dead => Self::Dead,
        }
    }
}

/// One stored callback, as `GET /v1/callback` lists it.
#[derive(Serialize, ToSchema)]
pub(super) struct CallbackSummary {
    /// The id this receiver gave it.
    id: String,
    /// The source that sent it (`okra` for Okra's).
    #[schema(example = "okra")]
    source: String,
    /// Its callback type.
    callback_type: String,
    /// Its code as sent, if any.
    callback_code: Option<String>,
    /// When it was received (RFC 3339).
    received_at: String,
    /// Where delivery stands.
    status: DeliveryStatus,
    /// Handler calls made so far, the successful one included.
    attempts: u32,
    /// The callback exactly as received.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
}

impl From<&StoredCallback> for CallbackSummary {
    fn from(cb: &StoredCallback) -> Self {
        Self {
            id: cb.id.clone(),
            source: cb.source.clone(),
            callback_type: cb.callback_type.clone(),
            callback_code: cb.callback_code.clone(),
            received_at: rfc3339(cb.received_at),
            status: cb.status.into(),
            attempts: cb.attempts,
            payload: payload(&cb.body),
        }
    }
}

/// The query of `GET /v1/callback` (the shape of Okra's own callback endpoint).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RecordQuery {
    /// The record id (absent: 400 `missing_parameter`; declared required by
    /// `schema::mark_required`).
    #[param(schema_with = schema::record_param)]
    record: Option<String>,
    /// The product: AUTH, TRANSACTIONS, IDENTITY, INCOME, BALANCE, RECORD or ACCOUNTS (the
    /// server also takes them in any case; absent: 400 `missing_parameter`).
    #[param(schema_with = schema::method_param)]
    method: Option<String>,
}

/// What was received for one record and product (`GET /v1/callback`), a page at a time.
#[derive(Serialize, ToSchema)]
pub(super) struct CallbackList {
    /// The record asked about.
    record: String,
    /// The callback type asked about, in its canonical spelling.
    method: String,
    /// Its callbacks, oldest first.
    callbacks: Vec<CallbackSummary>,
    /// Pass as `cursor` (with the same record and method) for the next page; `null` on the
    /// last page.
    next_cursor: Option<String>,
}

/// `GET /v1/callback?record=…&method=…`: what was received for one record and product.
#[utoipa::path(
    get,
    path = "/v1/callback",
    tag = "admin",
    description = "What Okra sent for one record and product, oldest first, a page at a time (`limit`, default 100; `cursor` = the previous page's `next_cursor`). Okra's callbacks only: other sources' are listed by `GET /v1/callbacks?source=NAME`.",
    params(RecordQuery, PageQuery),
    responses(
        (status = 200, description = "A page of the record's callbacks of that type, oldest first", body = CallbackList),
        (status = 400, description = "`missing_parameter`, `invalid_method` (the message lists the valid methods), `invalid_parameter` (`limit`, a parameter sent twice, a record id longer than 128 characters) or `invalid_cursor` (a cursor of the declared format that is not the `next_cursor` of this listing)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: --admin-token is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "`forbidden`: no --admin-token is set and the client is not on loopback", body = ErrorBody),
        (status = 404, description = "`record_not_found`: nothing was ever received for the record", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
async fn list_callbacks(
    State(state): State<AppState>,
    Query(q): Query<RecordQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<CallbackList>, ApiError> {
    let record = q.record.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        ApiError::MissingParameter(
            "the `record` query parameter is required: GET /v1/callback?record=<RECORD ID>&method=TRANSACTIONS".into(),
        )
    })?;
    let method = q.method.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
        ApiError::MissingParameter(
            "the `method` query parameter is required: one of AUTH, TRANSACTIONS, IDENTITY, INCOME, BALANCE, RECORD, ACCOUNTS".into(),
        )
    })?;
    if record.chars().count() > MAX_FIELD_CHARS {
        return Err(ApiError::InvalidParameter(format!(
            "the `record` query parameter is longer than {MAX_FIELD_CHARS} characters, so no callback has it: send the record id a callback gave"
        )));
    }
    let kind = CallbackType::from_name(method.trim()).ok_or(ApiError::InvalidMethod(method))?;
    let limit = page.limit(DEFAULT_RECORD_LIMIT)?;
    let scope = Filter::of_record(&record, kind.as_str());
    let cursor = page.cursor(&scope, Scope::Record)?;
    let found = state
        .store
        .record_page(&record, kind.as_str(), limit, cursor.as_ref())
        .await?
        .ok_or_else(|| ApiError::RecordNotFound(record.clone()))?;
    Ok(Json(CallbackList {
        record,
        method: kind.as_str().to_owned(),
        callbacks: found.callbacks.iter().map(CallbackSummary::from).collect(),
        next_cursor: found.next.map(|c| c.encode()),
    }))
}

/// How one handler attempt ended, as the API spells it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum AttemptOutcomeName {
    /// The handlers succeeded.
    Succeeded,
    /// A handler returned an error.
    Failed,
    /// The handlers ran past `--handler-timeout`.
    TimedOut,
    /// A handler panicked.
    Panicked,
}

/// One handler attempt in a callback's history.
#[derive(Serialize, ToSchema)]
pub(super) struct AttemptEntry {
    /// Which attempt this was, from 1 (counting across replays).
    attempt: u32,
    /// When the handlers were called (RFC 3339).
    started_at: String,
    /// When they returned or were given up on (RFC 3339).
    finished_at: String,
    /// How it ended.
    outcome: AttemptOutcomeName,
    /// What failed (e.g. the forward target's HTTP status); `null` on success. Never payload
    /// data from this receiver.
    error: Option<String>,
}

impl From<&Attempt> for AttemptEntry {
    fn from(a: &Attempt) -> Self {
        Self {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            finished_at: rfc3339(a.finished_at),
            outcome: match a.outcome {
                AttemptOutcome::Succeeded => AttemptOutcomeName::Succeeded,
                AttemptOutcome::Failed => AttemptOutcomeName::Failed,
                AttemptOutcome::TimedOut => AttemptOutcomeName::TimedOut,
                AttemptOutcome::Panicked => AttemptOutcomeName::Panicked,
            },
            error: a.error.clone(),
        }
    }
}

/// One stored callback with its delivery state and history (`GET /v1/callbacks/{id}`).
#[derive(Serialize, ToSchema)]
pub(super) struct CallbackDetail {
    /// What the list shows.
    #[serde(flatten)]
    summary: CallbackSummary,
    /// The record it is about.
    record: String,
    /// The provider's id for the event, where the source gives one (its dedup key).
    event_id: Option<String>,
    /// The last handler error, if the last attempt failed.
    last_error: Option<String>,
    /// When the next attempt is due (pending callbacks only; RFC 3339).
    next_attempt_at: Option<String>,
    /// When it was delivered or declared dead (RFC 3339).
    finished_at: Option<String>,
    /// Every handler attempt, oldest first.
    history: Vec<AttemptEntry>,
    /// Which replica holds the record's lease now and until when, for debugging a stuck
    /// record; `null` when nobody does (and always on the embedded store, which has no leases
    /// to show).
    lease: Option<LeaseDetail>,
}

/// A record's lease as `GET /v1/callbacks/{id}` shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct LeaseDetail {
    /// The replica holding it: `HOSTNAME-<uuid>`, as in the replica's logs.
    owner: String,
    /// When it runs out unless the replica renews it (RFC 3339, the database's clock). A
    /// replica that stopped answering loses its records to another after this.
    until: String,
    /// How many times the record was claimed; a replica holding an older generation can no
    /// longer record outcomes for it.
    generation: i64,
}

/// `GET /v1/callbacks/{id}`: one callback with its delivery state and attempt history.
#[utoipa::path(
    get,
    path = "/v1/callbacks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The callback's id, as the acknowledgement gave it")),
    responses(
        (status = 200, description = "The callback, its delivery state and every handler attempt", body = CallbackDetail),
        OneCallbackRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn get_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CallbackDetail>, ApiError> {
    let cb = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no callback has the id `{id}`")))?;
    let history = state.store.history(&id).await?;
    Ok(Json(CallbackDetail {
        summary: CallbackSummary::from(&cb),
        record: cb.record.clone(),
        event_id: cb.event_id.clone(),
        last_error: cb.last_error.clone(),
        next_attempt_at: cb
            .next_attempt_at
            .filter(|_| cb.status == Status::Pending)
            .map(rfc3339),
        finished_at: cb.finished_at.map(rfc3339),
        history: history.iter().map(AttemptEntry::from).collect(),
        lease: state
            .store
            .lease_of(&cb.queue_key())
            .await?
            .map(|lease| LeaseDetail {
                owner: lease.owner,
                until: rfc3339(lease.until),
                generation: lease.generation,
            }),
    }))
}

/// The answer to a replay of one callback.
#[derive(Serialize, ToSchema)]
pub(super) struct Replayed {
    /// The callback's id.
    id: String,
    /// Always `pending`: it is queued for the handlers again.
    status: DeliveryStatus,
}

/// `POST /v1/callbacks/{id}/replay`: hand the callback to the handlers again.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{id}/replay",
    tag = "admin",
    params(("id" = String, Path, description = "The callback's id")),
    responses(
        (status = 202, description = "Queued for the handlers again, with a fresh attempt budget", body = Replayed),
        OneCallbackRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn replay_callback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    if !state.store.replay(&id).await? {
        return Err(ApiError::NotFound(format!("no callback has the id `{id}`")));
    }
    state.wake.notify_one();
    tracing::info!(id = %Untrusted(&id), "callback replayed");
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            id,
            status: DeliveryStatus::Pending,
        }),
    ))
}
