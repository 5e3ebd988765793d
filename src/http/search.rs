//! Finding callbacks and acting on them (the `--admin-token` rule): callbacks across all
//! records by filter, a page at a time (`GET /v1/callbacks`), and the replay of every dead or
//! delivered one a filter matches (`POST /v1/callbacks/replay`).

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    callbacks::{rfc3339, DeliveryStatus},
    error::{ApiError, ErrorBody},
    extract::{Json, Query},
    filter::{FilterQuery, PageQuery, ReplayFilter, DEFAULT_LIMIT},
    refusals::AdminRefusals,
    state::AppState,
};
use crate::store::{Scope, StoredCallback};

/// The search and bulk-replay routes, with their OpenAPI descriptions.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_callbacks))
        .routes(routes!(replay_matching))
}

/// One callback as `GET /v1/callbacks` lists it (no payload).
#[derive(Serialize, ToSchema)]
pub(super) struct ListedCallback {
    /// The id this receiver gave it.
    id: String,
    /// The source that sent it (`okra` for Okra's).
    #[schema(example = "okra")]
    source: String,
    /// The record it is about.
    record: String,
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
}

impl From<&StoredCallback> for ListedCallback {
    fn from(cb: &StoredCallback) -> Self {
        Self {
            id: cb.id.clone(),
            source: cb.source.clone(),
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
pub(super) struct CallbackPage {
    /// The matching callbacks, newest first.
    callbacks: Vec<ListedCallback>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    next_cursor: Option<String>,
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
        (status = 400, description = "`invalid_parameter` (the message names the parameter and its valid values; or a parameter sent twice) or `invalid_cursor` (a cursor of the declared format that is not the `next_cursor` of this listing: edited, forged, or of other filters)", body = ErrorBody),
        AdminRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn search_callbacks(
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

/// The answer to a bulk replay.
#[derive(Serialize, ToSchema)]
pub(super) struct ReplayedCount {
    /// How many callbacks were queued for the handlers again.
    replayed: u64,
}

/// `POST /v1/callbacks/replay?…`: replay every dead or delivered callback matching the filters.
///
/// The document declares the filters as one object parameter ([`ReplayFilter`]) so that its
/// schema can require one of them; on the wire they are the list's query parameters.
#[utoipa::path(
    post,
    path = "/v1/callbacks/replay",
    tag = "admin",
    description = "Hands every dead or delivered callback matching the filters (those of `GET /v1/callbacks`; at least one) to the handlers again, each with a fresh attempt budget. `?status=dead` replays every dead callback. Pending callbacks are on their way already and are left alone.",
    params(
        ("filter" = inline(ReplayFilter), Query, style = Form, explode,
            description = "The filters of `GET /v1/callbacks`, each its own query parameter (e.g. `?status=dead&callback_type=AUTH`); at least one, not empty."),
    ),
    responses(
        (status = 202, description = "The matching callbacks are queued for the handlers again", body = ReplayedCount),
        (status = 400, description = "`missing_parameter`: no filter given; `invalid_parameter`: a filter that does not parse, a parameter sent twice, or one that is not a filter", body = ErrorBody),
        AdminRefusals,
    ),
    security((), ("admin_token" = [])),
)]
async fn replay_matching(
    State(state): State<AppState>,
    Query(filters): Query<FilterQuery>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<ReplayedCount>), ApiError> {
    FilterQuery::refuse_others(query.as_deref(), "POST /v1/callbacks/replay")?;
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
