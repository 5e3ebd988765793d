//! The operator's view over HTTP (the `--admin-token` rule): find callbacks across all records a
//! page at a time, one record's callbacks a page at a time, one callback with its attempt
//! history, replay in bulk by filter, and the counts.
//!
//! Query parameters are parsed once, here, into a [`Filter`]; a value that does not parse is a
//! 400 `invalid_parameter` naming the parameter and its valid values, and a cursor that is not
//! the `next_cursor` of the same listing is a 400 `invalid_cursor`.

use std::collections::BTreeMap;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    admin::{rfc3339, summary, CallbackSummary, DeliveryStatus},
    error::ErrorBody,
    extract::{Json, Path, Query},
    schema, ApiError, AppState,
};
use crate::{
    callback::{CallbackType, MAX_FIELD_CHARS},
    store::{Attempt, Cursor, Filter, Scope, Status, StoredCallback},
};

/// The most callbacks one page of `GET /v1/callbacks` holds.
pub const MAX_LIMIT: usize = 500;
/// The page size of `GET /v1/callbacks` when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The page size of `GET /v1/callback?record=&method=` when `limit` is not given.
pub const DEFAULT_RECORD_LIMIT: usize = 100;

/// The filters of `GET /v1/callbacks` and `POST /v1/callbacks/replay`, as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// `pending`, `delivered` or `dead`; several comma-separated (`dead,pending`).
    #[param(schema_with = schema::status_list_param)]
    status: Option<String>,
    /// The callback type, in any case (`transactions`, `IDENTITY`, …).
    callback_type: Option<String>,
    /// The callback code, as sent (`PERIODIC_TRANSACTIONS`, …).
    callback_code: Option<String>,
    /// The record id.
    record: Option<String>,
    /// Only callbacks received at or after this time (RFC 3339, e.g. `2026-01-31T12:00:00Z`).
    #[param(schema_with = schema::time_param)]
    received_after: Option<String>,
    /// Only callbacks received before this time (RFC 3339).
    #[param(schema_with = schema::time_param)]
    received_before: Option<String>,
}

/// The page parameters of `GET /v1/callbacks`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many callbacks per page: 1–500 (default 50 on `GET /v1/callbacks`, 100 on
    /// `GET /v1/callback`).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The previous page's `next_cursor`, to read the next page (same filters).
    cursor: Option<String>,
}

/// A parameter that does not parse: names it and its valid values.
fn invalid(name: &str, value: &str, valid: &str) -> ApiError {
    ApiError::InvalidParameter(format!(
        "`{name}={value}` is not valid: {name} must be {valid}"
    ))
}

/// A given, non-empty parameter value.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn time(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    given(value)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        name,
                        v,
                        "an RFC 3339 time with a zone, e.g. 2026-01-31T12:00:00Z",
                    )
                })
        })
        .transpose()
}

impl FilterQuery {
    /// The filter these parameters describe.
    pub fn parse(&self) -> Result<Filter, ApiError> {
        let statuses = match given(&self.status) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    Status::from_name(s).ok_or_else(|| {
                        invalid(
                            "status",
                            list,
                            "pending, delivered or dead (several comma-separated, e.g. status=dead,pending)",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let callback_type = given(&self.callback_type).map(|t| {
            // Known types in their canonical spelling; others as sent (matched in any case).
            CallbackType::from_name(t).map_or_else(|| t.to_owned(), |k| k.as_str().to_owned())
        });
        let filter = Filter {
            statuses,
            callback_type,
            callback_code: given(&self.callback_code).map(str::to_owned),
            record: given(&self.record).map(str::to_owned),
            received_after: time("received_after", &self.received_after)?,
            received_before: time("received_before", &self.received_before)?,
        };
        Ok(filter)
    }
}

impl PageQuery {
    /// The page size, 1–500, or `default`.
    fn limit(&self, default: usize) -> Result<usize, ApiError> {
        match given(&self.limit) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| invalid("limit", v, "a whole number from 1 to 500")),
        }
    }

    /// The cursor, checked against the listing it must belong to.
    fn cursor(&self, filter: &Filter, scope: Scope) -> Result<Option<Cursor>, ApiError> {
        given(&self.cursor)
            .map(|text| {
                let cursor =
                    Cursor::decode(text).map_err(|e| ApiError::InvalidCursor(e.to_string()))?;
                cursor
                    .fits(filter, scope)
                    .map_err(|e| ApiError::InvalidCursor(e.to_string()))?;
                Ok(cursor)
            })
            .transpose()
    }
}

/// One callback as `GET /v1/callbacks` lists it (no payload).
#[derive(Serialize, ToSchema)]
pub struct ListedCallback {
    /// The id this receiver gave it.
    pub id: String,
    /// The record it is about.
    pub record: String,
    /// Its callback type.
    pub callback_type: String,
    /// Its code as sent, if any.
    pub callback_code: Option<String>,
    /// When it was received (RFC 3339).
    pub received_at: String,
    /// Where delivery stands.
    pub status: DeliveryStatus,
    /// Handler calls made so far, the successful one included.
    pub attempts: u32,
}

impl From<&StoredCallback> for ListedCallback {
    fn from(cb: &StoredCallback) -> Self {
        Self {
            id: cb.id.clone(),
            record: cb.record.clone(),
            callback_type: cb.callback_type.clone(),
            callback_code: cb.callback_code.clone(),
            received_at: rfc3339(cb.received_at),
            status: cb.status.into(),
            attempts: cb.attempts,
        }
    }
}

/// A page of `GET /v1/callbacks`.
#[derive(Serialize, ToSchema)]
pub struct CallbackPage {
    /// The matching callbacks, newest first.
    pub callbacks: Vec<ListedCallback>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/callbacks`: callbacks across all records, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/callbacks",
    tag = "admin",
    description = "Callbacks across all records, newest first, filtered (all filters combined with AND). Walking the pages with `next_cursor` lists each matching callback exactly once, even while new ones arrive. No payloads: fetch one callback for its payload and history.",
    params(FilterQuery, PageQuery),
    responses(
        (status = 200, description = "One page of matching callbacks", body = CallbackPage),
        (status = 400, description = "`invalid_parameter` (the message names the parameter and its valid values; or a parameter sent twice) or `invalid_cursor` (not the `next_cursor` of this listing)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub(super) async fn search_callbacks(
    State(state): State<AppState>,
    Query(filters): Query<FilterQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Json<CallbackPage>, ApiError> {
    let filter = filters.parse()?;
    let limit = page.limit(DEFAULT_LIMIT)?;
    let cursor = page.cursor(&filter, Scope::Search)?;
    let found = state.store.search(&filter, limit, cursor.as_ref()).await?;
    Ok(Json(CallbackPage {
        callbacks: found.callbacks.iter().map(ListedCallback::from).collect(),
        next_cursor: found.next.map(|c| c.encode()),
    }))
}

/// The query of `GET /v1/callback` (the shape of Okra's own callback endpoint).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
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
pub struct CallbackList {
    /// The record asked about.
    pub record: String,
    /// The callback type asked about, in its canonical spelling.
    pub method: String,
    /// Its callbacks, oldest first.
    pub callbacks: Vec<CallbackSummary>,
    /// Pass as `cursor` (with the same record and method) for the next page; `null` on the
    /// last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/callback?record=…&method=…`: what was received for one record and product.
#[utoipa::path(
    get,
    path = "/v1/callback",
    tag = "admin",
    description = "What was received for one record and product, oldest first, a page at a time (`limit`, default 100; `cursor` = the previous page's `next_cursor`).",
    params(RecordQuery, PageQuery),
    responses(
        (status = 200, description = "A page of the record's callbacks of that type, oldest first", body = CallbackList),
        (status = 400, description = "`missing_parameter`, `invalid_method` (the message lists the valid methods), `invalid_parameter` (`limit`, a parameter sent twice, a record id longer than 128 characters) or `invalid_cursor`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: --admin-token is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "`forbidden`: no --admin-token is set and the client is not on loopback", body = ErrorBody),
        (status = 404, description = "`record_not_found`: nothing was ever received for the record", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub(super) async fn list_callbacks(
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
    let scope = Filter {
        record: Some(record.clone()),
        callback_type: Some(kind.as_str().to_owned()),
        ..Filter::default()
    };
    let cursor = page.cursor(&scope, Scope::Record)?;
    let found = state
        .store
        .record_page(&record, kind.as_str(), limit, cursor.as_ref())
        .await?
        .ok_or_else(|| ApiError::RecordNotFound(record.clone()))?;
    Ok(Json(CallbackList {
        record,
        method: kind.as_str().to_owned(),
        callbacks: found.callbacks.iter().map(summary).collect(),
        next_cursor: found.next.map(|c| c.encode()),
    }))
}

/// How one handler attempt ended, as the API spells it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcomeName {
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
pub struct AttemptEntry {
    /// Which attempt this was, from 1 (counting across replays).
    pub attempt: u32,
    /// When the handlers were called (RFC 3339).
    pub started_at: String,
    /// When they returned or were given up on (RFC 3339).
    pub finished_at: String,
    /// How it ended.
    pub outcome: AttemptOutcomeName,
    /// What failed (e.g. the forward target's HTTP status); `null` on success. Never payload
    /// data from this receiver.
    pub error: Option<String>,
}

impl From<&Attempt> for AttemptEntry {
    fn from(a: &Attempt) -> Self {
        use crate::store::AttemptOutcome as O;
        Self {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            finished_at: rfc3339(a.finished_at),
            outcome: match a.outcome {
                O::Succeeded => AttemptOutcomeName::Succeeded,
                O::Failed => AttemptOutcomeName::Failed,
                O::TimedOut => AttemptOutcomeName::TimedOut,
                O::Panicked => AttemptOutcomeName::Panicked,
            },
            error: a.error.clone(),
        }
    }
}

/// One stored callback with its delivery state and history (`GET /v1/callbacks/{id}`).
#[derive(Serialize, ToSchema)]
pub struct CallbackDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: CallbackSummary,
    /// The record it is about.
    pub record: String,
    /// The last handler error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending callbacks only; RFC 3339).
    pub next_attempt_at: Option<String>,
    /// When it was delivered or declared dead (RFC 3339).
    pub finished_at: Option<String>,
    /// Every handler attempt, oldest first.
    pub history: Vec<AttemptEntry>,
    /// Which replica holds the record's lease now and until when, for debugging a stuck
    /// record; `null` when nobody does (and always on the embedded store, which has no leases
    /// to show).
    pub lease: Option<LeaseDetail>,
}

/// A record's lease as `GET /v1/callbacks/{id}` shows it.
#[derive(Serialize, ToSchema)]
pub struct LeaseDetail {
    /// The replica holding it: `HOSTNAME-<uuid>`, as in the replica's logs.
    pub owner: String,
    /// When it runs out unless the replica renews it (RFC 3339, the database's clock). A
    /// replica that stopped answering loses its records to another after this.
    pub until: String,
    /// How many times the record was claimed; a replica holding an older generation can no
    /// longer record outcomes for it.
    pub generation: i64,
}

/// `GET /v1/callbacks/{id}`: one callback with its delivery state and attempt history.
#[utoipa::path(
    get,
    path = "/v1/callbacks/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The callback's id, as the acknowledgement gave it")),
    responses(
        (status = 200, description = "The callback, its delivery state and every handler attempt", body = CallbackDetail),
        (status = 400, description = "`invalid_parameter`: the id is not valid UTF-8 once percent-decoded", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no callback has that id", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub(super) async fn get_callback(
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
        summary: summary(&cb),
        record: cb.record.clone(),
        last_error: cb.last_error.clone(),
        next_attempt_at: cb
            .next_attempt_at
            .filter(|_| cb.status == Status::Pending)
            .map(rfc3339),
        finished_at: cb.finished_at.map(rfc3339),
        history: history.iter().map(AttemptEntry::from).collect(),
        lease: state
            .store
            .lease_of(&cb.record)
            .await?
            .map(|lease| LeaseDetail {
                owner: lease.owner,
                until: rfc3339(lease.until),
                generation: lease.generation,
            }),
    }))
}

/// The answer to a bulk replay.
#[derive(Serialize, ToSchema)]
pub struct ReplayedCount {
    /// How many callbacks were queued for the handlers again.
    pub replayed: u64,
}

/// `POST /v1/callbacks/replay?…`: replay every dead or delivered callback matching the filters.
#[utoipa::path(
    post,
    path = "/v1/callbacks/replay",
    tag = "admin",
    description = "Hands every dead or delivered callback matching the filters (those of `GET /v1/callbacks`; at least one) to the handlers again, each with a fresh attempt budget. `?status=dead` replays every dead callback. Pending callbacks are on their way already and are left alone.",
    params(FilterQuery),
    responses(
        (status = 202, description = "The matching callbacks are queued for the handlers again", body = ReplayedCount),
        (status = 400, description = "`missing_parameter`: no filter given; `invalid_parameter`: a filter that does not parse, or a parameter sent twice", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub(super) async fn replay_matching(
    State(state): State<AppState>,
    Query(filters): Query<FilterQuery>,
) -> Result<(StatusCode, Json<ReplayedCount>), ApiError> {
    let filter = filters.parse()?;
    if filter.is_empty() {
        return Err(ApiError::MissingParameter(
            "say which callbacks to replay with at least one filter: e.g. POST /v1/callbacks/replay?status=dead, or &callback_type=…, &record=…, &received_after=… (or replay one by id: POST /v1/callbacks/<id>/replay)".into(),
        ));
    }
    let replayed = state.store.replay_matching(&filter).await?;
    if replayed > 0 {
        state.wake.notify_one();
    }
    tracing::info!(replayed, "callbacks replayed by filter");
    Ok((StatusCode::ACCEPTED, Json(ReplayedCount { replayed })))
}

/// What `GET /v1/stats` answers.
#[derive(Serialize, ToSchema)]
pub struct StatsBody {
    /// Callbacks waiting for a (further) handler attempt.
    pub pending: u64,
    /// Callbacks the handlers took.
    pub delivered: u64,
    /// Callbacks that failed `--max-attempts` times, kept for inspection and replay.
    pub dead: u64,
    /// When the oldest pending callback was received (RFC 3339); `null` when none is pending.
    pub oldest_pending_received_at: Option<String>,
    /// How long the oldest pending callback has waited, in seconds; `0` when none is pending.
    pub oldest_pending_age_seconds: f64,
    /// Stored callbacks per callback type.
    pub by_type: BTreeMap<String, u64>,
}

/// `GET /v1/stats`: counts per status and per type, and the oldest pending callback.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "admin",
    description = "Counts per status and per callback type, and the oldest pending callback. Read from counters kept on write: cheap at any size.",
    responses(
        (status = 200, description = "The counts", body = StatsBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub(super) async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, ApiError> {
    let stats = state.store.stats().await?;
    Ok(Json(StatsBody {
        pending: stats.pending,
        delivered: stats.delivered,
        dead: stats.dead,
        oldest_pending_received_at: stats.oldest_pending_at.map(rfc3339),
        oldest_pending_age_seconds: pending_age(stats.oldest_pending_at),
        by_type: stats.by_type.into_iter().collect(),
    }))
}

/// How long ago `oldest` was, in seconds (0 when nothing is pending).
pub(super) fn pending_age(oldest: Option<DateTime<Utc>>) -> f64 {
    oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(status: &str) -> FilterQuery {
        FilterQuery {
            status: Some(status.into()),
            ..FilterQuery::default()
        }
    }

    #[test]
    fn statuses_parse_comma_separated_and_bad_ones_are_named() {
        let f = q("dead, Pending").parse().unwrap();
        assert_eq!(f.statuses, [Status::Dead, Status::Pending]);
        let err = q("bogus").parse().unwrap_err().to_string();
        assert!(
            err.contains("status") && err.contains("pending, delivered or dead"),
            "{err}"
        );
    }

    #[test]
    fn limits_are_bounded() {
        let page = |l: &str| PageQuery {
            limit: Some(l.into()),
            cursor: None,
        };
        assert_eq!(page("500").limit(50).unwrap(), 500);
        assert_eq!(PageQuery::default().limit(50).unwrap(), 50);
        for bad in ["0", "501", "100000", "-1", "ten"] {
            let err = page(bad).limit(50).unwrap_err().to_string();
            assert!(err.contains("limit") && err.contains("1 to 500"), "{err}");
        }
    }

    #[test]
    fn known_types_are_canonical_and_times_must_have_a_zone() {
        let f = FilterQuery {
            callback_type: Some("transactions".into()),
            received_after: Some("2026-01-31T12:00:00+01:00".into()),
            ..FilterQuery::default()
        }
        .parse()
        .unwrap();
        assert_eq!(f.callback_type.as_deref(), Some("TRANSACTIONS"));
        assert_eq!(
            f.received_after.unwrap().to_rfc3339(),
            "2026-01-31T11:00:00+00:00"
        );
        let err = FilterQuery {
            received_before: Some("yesterday".into()),
            ..FilterQuery::default()
        }
        .parse()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("received_before") && err.contains("RFC 3339"),
            "{err}"
        );
    }
}
