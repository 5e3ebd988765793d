//! `POST /v1/sources/{name}`: the sink every configured source calls.
//!
//! The same walk as Okra's [`super::ingest`], with the source's own check and reader: admit →
//! read the body → the source's check on the raw bytes (`401 unauthorized` saying which check
//! failed; `503 verification_unavailable` when it cannot be made now) → the source's reader
//! (record, type, code, event id) → store durably → acknowledge, with `"source"`. The route
//! never branches on a provider's name: the source chosen from the configuration does.

use std::time::Instant;

use axum::extract::{Request, State};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    error::{ApiError, ErrorBody},
    extract::{Json, Path},
    ingest::{acknowledge, admit, new_id, read_body, record_on_span, store, Ack},
    refusals::SinkRefusals,
    state::AppState,
};
use crate::{
    callback::{Envelope, Event},
    source::{ReadError, VerifyError},
    telemetry::names,
};

/// The sources' route, with its OpenAPI description.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_from_source))
}

/// `POST /v1/sources/{name}`: check as the source signs, read, store durably, acknowledge.
#[utoipa::path(
    post,
    path = "/v1/sources/{name}",
    tag = "callbacks",
    description = "The sink a configured source (`--sources FILE`, `[sources.NAME]`) calls. Checked as the source's preset says (Plaid's JWT, Mono's secret, Standard Webhooks, Paystack's HMAC, a generic scheme), on the raw body; answered 200 only once durably stored. The same event id again (where the source sends one), else the same bytes, within the dedup window answer 200 with `duplicate: true` and the first id.",
    params(("name" = String, Path, description = "The source's name, as in the sources file")),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "The provider's JSON payload, unchanged: it is verified, stored and forwarded as received.",
    ),
    responses(
        (status = 200, description = "Stored (or a duplicate of a stored callback); `callback_code` is null where the source has none", body = Ack),
        (status = 400, description = "`invalid_json`: empty or not JSON; `invalid_parameter`: the name is not UTF-8 once decoded", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the source's check failed; the message says which (header missing, signature wrong, timestamp outside 5 minutes, key unknown or expired)", body = ErrorBody),
        (status = 404, description = "`unknown_source`: no source of that name is configured", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 422, description = "`invalid_callback`: the payload lacks the source's type, or a field is longer than 128 characters", body = ErrorBody),
        (status = 503, description = "`verification_unavailable` (the check cannot be made now, e.g. Plaid's key service is away: the provider retries) or `store_unavailable`; nothing was acknowledged", body = ErrorBody),
        SinkRefusals,
    ),
)]
async fn receive_from_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<Ack>, ApiError> {
    let result = ingest_from_source(&state, &name, request).await;
    if let Err(e) = &result {
        // Only configured names become a label: an unknown one is counted as such.
        let source = match e {
            ApiError::UnknownSource(_) => "unknown".to_owned(),
            _ => name,
        };
        metrics::counter!(names::REJECTED, "reason" => e.parts().1, "source" => source)
            .increment(1);
    }
    result.map(Json)
}

/// One source's callback, from the request to its acknowledgement.
async fn ingest_from_source(
    state: &AppState,
    name: &str,
    request: Request,
) -> Result<Ack, ApiError> {
    let started = Instant::now();
    let source = state
        .sources
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownSource(name.to_owned()))?;
    let (head, body) = request.into_parts();
    let _slot = admit(state, &head)?;
    let raw = read_body(state, &head.headers, body).await?;
    source
        .verify(&head.headers, &raw)
        .await
        .map_err(|e| match e {
            VerifyError::Refused(why) => ApiError::SourceRefused(why),
            VerifyError::Unavailable(why) => ApiError::VerificationUnavailable(why),
        })?;
    let read = source.read(&head.headers, &raw).map_err(|e| match e {
        ReadError::NotJson(_) => ApiError::InvalidJson(e.to_string()),
        ReadError::Invalid(_) => ApiError::InvalidCallback(e.to_string()),
    })?;
    let id = new_id();
    // A callback without a record is its own record.
    let own_record = read.record.is_none();
    let event = Event {
        source: source.name().to_owned(),
        record: read.record.unwrap_or_else(|| id.clone()),
        callback_type: read.callback_type,
        callback_code: read.callback_code,
        event_id: read.event_id,
    };
    let envelope = Envelope::from_event(event, raw, source.model())?;
    record_on_span(&envelope);
    let stored = store(state, &envelope, id).await?;
    let first = stored.id.clone();
    let mut ack = acknowledge(&envelope, stored, started);
    if own_record {
        // A duplicate's record is the first delivery's own id, not the id this one was offered.
        ack.set_record(first);
    }
    Ok(ack)
}
