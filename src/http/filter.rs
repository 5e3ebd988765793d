//! The operator's filters and pages, parsed once: the query string of `GET /v1/callbacks` and
//! `POST /v1/callbacks/replay` and the console's filter form both become the store's
//! [`Filter`] through [`FilterQuery::parse`]; `limit` and `cursor` are read by [`PageQuery`].
//!
//! A value that does not parse is an [`InvalidFilter`] naming the parameter and its valid
//! values (the API and the console each word it for their reader); a cursor that is not the
//! `next_cursor` of the same listing is a [`CursorError`].

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{
    openapi::{path::ParameterIn, RefOr, Schema},
    IntoParams,
};

use super::{
    error::ApiError,
    schema::{self, MAX_LIMIT},
};
use crate::{
    callback::CallbackType,
    store::{Cursor, CursorError, Filter, Scope, Status},
};

/// The page size of `GET /v1/callbacks` when `limit` is not given.
pub(super) const DEFAULT_LIMIT: usize = 50;
/// The page size of `GET /v1/callback?record=&method=` when `limit` is not given.
pub(super) const DEFAULT_RECORD_LIMIT: usize = 100;

/// The filters of `GET /v1/callbacks` and `POST /v1/callbacks/replay` (and of the console's
/// form), as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FilterQuery {
    /// `pending`, `delivered` or `dead`; several comma-separated (`dead,pending`).
    #[param(schema_with = schema::status_list_param)]
    pub(super) status: Option<String>,
    /// The callback type, in any case (`transactions`, `IDENTITY`, …).
    pub(super) callback_type: Option<String>,
    /// The callback code, as sent (`PERIODIC_TRANSACTIONS`, …).
    pub(super) callback_code: Option<String>,
    /// The record id.
    pub(super) record: Option<String>,
    /// Only callbacks received at or after this time (RFC 3339, e.g. `2026-01-31T12:00:00Z`).
    #[param(schema_with = schema::time_param)]
    pub(super) received_after: Option<String>,
    /// Only callbacks received before this time (RFC 3339).
    #[param(schema_with = schema::time_param)]
    pub(super) received_before: Option<String>,
    /// The source: `okra`, or a configured source's name; several comma-separated
    /// (`plaid,mono`).
    #[param(schema_with = schema::source_list_param)]
    pub(super) source: Option<String>,
}

/// The filters of `POST /v1/callbacks/replay` as the document declares them: one object
/// parameter (`style: form`, `explode: true`, so each property is its own query parameter and
/// `?status=dead` is the object `{"status": "dead"}`) whose properties are [`FilterQuery`]'s,
/// at least one of them not empty (`anyOf`): an empty value is no filter, and a replay without
/// one answers 400 `missing_parameter`.
pub(super) struct ReplayFilter;

impl ReplayFilter {
    /// The schema as JSON.
    fn json() -> Value {
        let mut properties = serde_json::Map::new();
        let mut one_given = Vec::new();
        for p in FilterQuery::into_params(|| Some(ParameterIn::Query)) {
            let mut schema = serde_json::to_value(&p.schema).expect("a parameter schema");
            if let (Some(description), Some(object)) = (&p.description, schema.as_object_mut()) {
                object.insert("description".into(), json!(description));
            }
            // Free text must hold more than blanks; the statuses and times, anything.
            let free_text = schema.get("pattern").is_none() && schema.get("anyOf").is_none();
            let given = if free_text {
                json!({"type": "string", "pattern": schema::NOT_ONLY_WHITE_SPACE})
            } else {
                json!({"type": "string", "minLength": 1})
            };
            one_given.push(json!({
                "type": "object",
                "required": [&p.name],
                "properties": {&p.name: given},
            }));
            properties.insert(p.name, schema);
        }
        json!({
            "description": "The filters of `GET /v1/callbacks`; at least one, not empty.",
            "allOf": [
                // Any other query parameter is refused ([`FilterQuery::refuse_others`]).
                {"type": "object", "properties": properties, "additionalProperties": false},
                {"anyOf": one_given},
            ],
        })
    }
}

impl utoipa::PartialSchema for ReplayFilter {
    fn schema() -> RefOr<Schema> {
        serde_json::from_value(Self::json()).expect("the replay filter is a valid schema")
    }
}

impl utoipa::ToSchema for ReplayFilter {}

/// A filter value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum InvalidFilter {
    /// `list` (the `status` value as sent) holds `bad`, which is not a status.
    Status {
        /// The whole `status` value.
        list: String,
        /// The part of it that is not a status.
        bad: String,
    },
    /// `list` (the `source` value as sent) holds `bad`, which cannot be a source's name.
    Source {
        /// The whole `source` value.
        list: String,
        /// The part of it that is not a name.
        bad: String,
    },
    /// `value` of the time parameter `parameter` is not an RFC 3339 time with a zone.
    Time {
        /// `received_after` or `received_before`.
        parameter: &'static str,
        /// The value as sent.
        value: String,
    },
}

impl From<InvalidFilter> for ApiError {
    fn from(e: InvalidFilter) -> Self {
        match e {
            InvalidFilter::Status { list, .. } => invalid(
                "status",
                &list,
                "pending, delivered or dead (several comma-separated, e.g. status=dead,pending)",
            ),
            InvalidFilter::Source { list, .. } => invalid(
                "source",
                &list,
                "okra or a source's name from the sources file ([a-z0-9_-], up to 32 characters; several comma-separated, e.g. source=plaid,mono)",
            ),
            InvalidFilter::Time { parameter, value } => invalid(
                parameter,
                &value,
                "an RFC 3339 time with a zone, e.g. 2026-01-31T12:00:00Z",
            ),
        }
    }
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

fn time(
    parameter: &'static str,
    value: &Option<String>,
) -> Result<Option<DateTime<Utc>>, InvalidFilter> {
    given(value)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| InvalidFilter::Time {
                    parameter,
                    value: v.to_owned(),
                })
        })
        .transpose()
}

/// The names of [`FilterQuery`]'s parameters.
const FILTERS: [&str; 7] = [
    "status",
    "callback_type",
    "callback_code",
    "record",
    "received_after",
    "received_before",
    "source",
];

impl FilterQuery {
    /// Refuses a query string holding a parameter that is not a filter (400
    /// `invalid_parameter`): where the filters choose what to act on, a misspelt one must not
    /// widen the choice by being ignored.
    pub(super) fn refuse_others(query: Option<&str>, route: &str) -> Result<(), ApiError> {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
        match pairs.map(|(name, _)| name).find(|name| !FILTERS.contains(&name.as_ref())) {
            None => Ok(()),
            Some(name) => Err(ApiError::InvalidParameter(format!(
                "`{name}` is not a filter of {route}: use status, callback_type, callback_code, record, received_after, received_before or source (a parameter that is not a filter is refused here, so that a misspelt one never widens what is acted on)"
            ))),
        }
    }

    /// The store's filter these parameters describe.
    pub(super) fn parse(&self) -> Result<Filter, InvalidFilter> {
        let statuses = match given(&self.status) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    Status::from_name(s).ok_or_else(|| InvalidFilter::Status {
                        list: list.to_owned(),
                        bad: s.trim().to_owned(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let callback_type = given(&self.callback_type).map(|t| {
            // Known types in their canonical spelling; others as sent (matched in any case).
            CallbackType::from_name(t).map_or_else(|| t.to_owned(), |k| k.as_str().to_owned())
        });
        Ok(Filter {
            statuses,
            callback_type,
            callback_code: given(&self.callback_code).map(str::to_owned),
            record: given(&self.record).map(str::to_owned),
            received_after: time("received_after", &self.received_after)?,
            received_before: time("received_before", &self.received_before)?,
            sources: sources(&self.source)?,
        })
    }
}

/// The names in a `source` value, each `[a-z0-9_-]{1,32}` (what a source may be named).
fn sources(value: &Option<String>) -> Result<Vec<String>, InvalidFilter> {
    let Some(list) = given(value) else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|name| {
            let name = name.trim();
            let valid = (1..=32).contains(&name.len())
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if valid {
                Ok(name.to_owned())
            } else {
                Err(InvalidFilter::Source {
                    list: list.to_owned(),
                    bad: name.to_owned(),
                })
            }
        })
        .collect()
}

/// The page parameters of the lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// How many callbacks per page: 1–500 (default 50 on `GET /v1/callbacks`, 100 on
    /// `GET /v1/callback`).
    #[param(schema_with = schema::limit_param)]
    limit: Option<String>,
    /// The previous page's `next_cursor`, to read the next page (same filters).
    #[param(schema_with = schema::cursor_param)]
    cursor: Option<String>,
}

impl PageQuery {
    /// The page size, 1–500, or `default`.
    pub(super) fn limit(&self, default: usize) -> Result<usize, ApiError> {
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
    pub(super) fn cursor(&self, filter: &Filter, scope: Scope) -> Result<Option<Cursor>, ApiError> {
        cursor(given(&self.cursor), filter, scope)
            .map_err(|e| ApiError::InvalidCursor(e.to_string()))
    }
}

/// The cursor `text` (absent: the first page), checked against the listing it must belong to.
pub(super) fn cursor(
    text: Option<&str>,
    filter: &Filter,
    scope: Scope,
) -> Result<Option<Cursor>, CursorError> {
    text.map(|text| {
        let cursor = Cursor::decode(text)?;
        cursor.fits(filter, scope)?;
        Ok(cursor)
    })
    .transpose()
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
        let invalid = q("dead,bogus").parse().unwrap_err();
        assert_eq!(
            invalid,
            InvalidFilter::Status {
                list: "dead,bogus".into(),
                bad: "bogus".into()
            }
        );
        let err = ApiError::from(invalid).to_string();
        assert!(
            err.contains("status") && err.contains("pending, delivered or dead"),
            "{err}"
        );
    }

    #[test]
    fn sources_parse_comma_separated_and_bad_names_are_named() {
        let f = FilterQuery {
            source: Some("plaid, okra,my-hooks_2".into()),
            ..FilterQuery::default()
        }
        .parse()
        .unwrap();
        assert_eq!(f.sources, ["plaid", "okra", "my-hooks_2"]);
        let invalid = FilterQuery {
            source: Some("plaid,Mono".into()),
            ..FilterQuery::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(
            invalid,
            InvalidFilter::Source {
                list: "plaid,Mono".into(),
                bad: "Mono".into()
            }
        );
        let err = ApiError::from(invalid).to_string();
        assert!(
            err.contains("`source=plaid,Mono`") && err.contains("[a-z0-9_-]"),
            "{err}"
        );
        assert!(FilterQuery::default().parse().unwrap().sources.is_empty());
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
        .unwrap_err();
        let err = ApiError::from(err).to_string();
        assert!(
            err.contains("received_before") && err.contains("RFC 3339"),
            "{err}"
        );
    }

    /// The replay's object declares the list's filters, and requires one of them given.
    #[test]
    fn the_replay_filter_holds_the_list_filters_one_at_least() {
        let schema = ReplayFilter::json();
        // The schema survives utoipa's types whole.
        let served = serde_json::to_value(<ReplayFilter as utoipa::PartialSchema>::schema());
        assert_eq!(served.unwrap(), schema);
        let (fields, one_given) = (&schema["allOf"][0], &schema["allOf"][1]["anyOf"]);
        let names: Vec<String> = fields["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut listed: Vec<String> = FilterQuery::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        listed.sort();
        assert_eq!(names, listed);
        let mut filters = FILTERS.to_vec();
        filters.sort();
        assert_eq!(filters, listed);
        assert_eq!(one_given.as_array().unwrap().len(), 7);
        assert_eq!(fields["additionalProperties"], false);
        assert_eq!(
            one_given[1]["properties"]["callback_type"]["pattern"],
            schema::NOT_ONLY_WHITE_SPACE
        );
        assert_eq!(one_given[0]["required"], json!(["status"]));
        assert_eq!(one_given[0]["properties"]["status"]["minLength"], 1);
    }

    #[test]
    fn only_filters_pass_where_others_are_refused() {
        let route = "POST /v1/callbacks/replay";
        assert!(FilterQuery::refuse_others(None, route).is_ok());
        assert!(FilterQuery::refuse_others(Some("status=dead&record=r1"), route).is_ok());
        for query in [
            "stauts=dead",
            "status=dead&limit=5",
            "received_after%5B%5D=1",
        ] {
            let err = FilterQuery::refuse_others(Some(query), route)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("is not a filter of POST /v1/callbacks/replay")
                    && err.contains("received_before"),
                "{query}: {err}"
            );
        }
    }
}
