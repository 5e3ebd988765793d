//! The error answers several routes declare alike, written once: each an OpenAPI response list
//! ([`IntoResponses`]) that a route's `responses(...)` names beside its own rows.

use std::collections::BTreeMap;

use utoipa::{
    openapi::{
        ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder, ResponsesBuilder,
    },
    IntoResponses, PartialSchema, ToSchema,
};

use super::error::ErrorBody;

/// What a route under the admin rule answers a caller who may not use it: 401 `unauthorized`,
/// 403 `forbidden`.
pub(super) struct AccessRefusals;

/// What an admin route that reads the store answers beyond [`AccessRefusals`]: 503
/// `store_unavailable`.
pub(super) struct AdminRefusals;

/// What a route about one callback by id answers beyond [`AdminRefusals`]: 400 when the id is
/// not UTF-8, 404 when no callback has it.
pub(super) struct OneCallbackRefusals;

/// What both sinks (Okra's and the sources') answer alike: 403 (`--allow-from`), 413, 415 and
/// 429 with its `Retry-After`.
pub(super) struct SinkRefusals;

/// An error answer as the document declares it: what it means, with an [`ErrorBody`].
fn refusal(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    )
}

/// `rows` (status, what it means) as error answers.
fn refusals(rows: &[(&str, &str)]) -> ResponsesBuilder {
    rows.iter()
        .fold(ResponsesBuilder::new(), |list, (status, description)| {
            list.response(*status, refusal(description))
        })
}

impl IntoResponses for AccessRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        refusals(&[("401", "`unauthorized`"), ("403", "`forbidden`")])
            .build()
            .into()
    }
}

impl IntoResponses for AdminRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut list = AccessRefusals::responses();
        list.append(&mut refusals(&[("503", "`store_unavailable`")]).build().into());
        list
    }
}

impl IntoResponses for OneCallbackRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut list = AdminRefusals::responses();
        list.append(
            &mut refusals(&[
                (
                    "400",
                    "`invalid_parameter`: the id is not valid UTF-8 once percent-decoded",
                ),
                ("404", "`not_found`: no callback has that id"),
            ])
            .build()
            .into(),
        );
        list
    }
}

impl IntoResponses for SinkRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let retry_after = HeaderBuilder::new()
            .schema(u64::schema())
            .description(Some("Seconds to wait before retrying"));
        refusals(&[
            (
                "403",
                "`forbidden`: --allow-from is set and the client is not in it",
            ),
            ("413", "`payload_too_large`: larger than --max-body-bytes"),
            (
                "415",
                "`unsupported_media_type`: a content type other than JSON",
            ),
        ])
        .response(
            "429",
            refusal("`too_many_requests`: shedding load; retry after the `Retry-After` seconds")
                .header("Retry-After", retry_after.build()),
        )
        .build()
        .into()
    }
}
