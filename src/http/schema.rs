//! The OpenAPI schemas of what the routes accept, built from the same constants the server
//! checks against ([`MAX_FIELD_CHARS`], [`CallbackType::ALL`]), so that what the document calls
//! valid is what the server accepts.

use serde_json::{json, Value};
use utoipa::openapi::{
    schema::{ObjectBuilder, Schema, Type},
    Object, RefOr,
};

use crate::callback::{CallbackType, MAX_FIELD_CHARS};

/// The most callbacks one page of a list holds.
pub(super) const MAX_LIMIT: usize = 500;

/// The Unicode White_Space set Rust's `trim` removes, as the body of a regex class, listed so
/// every regex engine reads it the same.
macro_rules! white_space {
    () => {
        r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// A string that is not blank and holds no NUL, as the server checks a record id and a callback
/// type: at least one character that is neither NUL nor whitespace.
const NOT_BLANK: &str = concat!(r"^[^\u0000]*[^\u0000", white_space!(), r"][^\u0000]*$");

/// A string that is more than whitespace (NUL allowed), as the server reads a filter's text:
/// one that is only whitespace counts as no filter.
pub(super) const NOT_ONLY_WHITE_SPACE: &str = concat!(r"^[\s\S]*[^", white_space!(), r"][\s\S]*$");

/// A record id or callback type as the server accepts it.
fn identifier(description: &str) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_FIELD_CHARS,
        "pattern": NOT_BLANK,
        "description": description,
    })
}

/// The query parameters a route answers 400 `missing_parameter` without, whose schema comes
/// from a function here (utoipa then leaves them optional): `(path, parameter)` of a GET.
const REQUIRED: [(&str, &str); 2] = [("/v1/callback", "record"), ("/v1/callback", "method")];

/// Declares the [`REQUIRED`] parameters required in `doc`.
pub(super) fn mark_required(doc: &mut utoipa::openapi::OpenApi) {
    for (path, name) in REQUIRED {
        let params = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut());
        for p in params.into_iter().flatten().filter(|p| p.name == name) {
            p.required = utoipa::openapi::Required::True;
        }
    }
}

/// `record` of `GET /v1/callback`: a record id as callbacks carry it.
pub(super) fn record_param() -> Object {
    ObjectBuilder::new()
        .description(Some("The record id, as callbacks carry it."))
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_FIELD_CHARS))
        .pattern(Some(NOT_BLANK))
        .build()
}

/// `method` of `GET /v1/callback`: one of the known callback types (the server also takes them
/// in any case).
pub(super) fn method_param() -> Object {
    ObjectBuilder::new()
        .description(Some("The product (the server also takes it in any case)."))
        .schema_type(Type::String)
        .enum_values(Some(CallbackType::ALL.map(CallbackType::as_str)))
        .build()
}

/// `status` of `GET /v1/callbacks` and `POST /v1/callbacks/replay`: delivery statuses,
/// comma-separated (the server also takes them in any case).
pub(super) fn status_list_param() -> Object {
    let one = "(pending|delivered|dead)";
    ObjectBuilder::new()
        .description(Some(
            "`pending`, `delivered` or `dead`; several comma-separated (`dead,pending`).",
        ))
        .schema_type(Type::String)
        .pattern(Some(format!("^({one}(,{one})*)?$")))
        .examples([serde_json::json!("dead"), serde_json::json!("dead,pending")])
        .build()
}

/// `limit` of the lists: a page size from 1 to [`MAX_LIMIT`], or empty (the default).
pub(super) fn limit_param() -> RefOr<Schema> {
    serde_json::from_value(json!({
        "description": "How many callbacks per page, 1 to 500; empty: the list's default.",
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            {"type": "string", "maxLength": 0},
        ],
    }))
    .expect("the limit schema is a valid schema")
}

/// The length of a cursor as the server writes it: 21 bytes in unpadded URL-safe base64.
const CURSOR_CHARS: usize = 28;

/// `cursor` of the lists: what a `next_cursor` looks like, or empty (the first page).
///
/// The pattern declares a cursor's format, not which cursors the server made: those carry a
/// check only the server can verify and the fingerprint of the listing they belong to. A cursor
/// of this format that fails either answers 400 `invalid_cursor`, a response each list
/// declares: the document allows it as it allows a 404 for a well-formed id that names no
/// callback.
pub(super) fn cursor_param() -> Object {
    ObjectBuilder::new()
        .description(Some(
            "The previous page's `next_cursor`, passed back exactly as answered, with the same filters; empty: the first page. A cursor of this format that this server did not make for this listing (edited, forged, or of other filters) answers 400 `invalid_cursor`.",
        ))
        .schema_type(Type::String)
        .pattern(Some(format!("^([A-Za-z0-9_-]{{{CURSOR_CHARS}}})?$")))
        .build()
}

/// `source` of `GET /v1/callbacks` and `POST /v1/callbacks/replay`: source names as the server
/// reads them (`[a-z0-9_-]`, 1 to 32 characters), comma-separated.
pub(super) fn source_list_param() -> Object {
    let one = "[a-z0-9_-]{1,32}";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({one}(,{one})*)?$")))
        .examples([serde_json::json!("okra"), serde_json::json!("plaid,okra")])
        .build()
}

/// `received_after` and `received_before`: an RFC 3339 time with a zone, or empty (no bound).
pub(super) fn time_param() -> RefOr<Schema> {
    serde_json::from_value(json!({
        "description": "An RFC 3339 time with a zone, e.g. `2026-01-31T12:00:00Z`; empty: no bound.",
        "anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "string", "maxLength": 0},
        ],
    }))
    .expect("the time schema is a valid schema")
}

/// The body of `POST /v1/callback`, as [`crate::Envelope::parse`] accepts it: a JSON object
/// with a record id (`record`, else `recordId`) and a callback type (`callback_type`, else
/// `method`), each a string that is not blank, of at most [`MAX_FIELD_CHARS`] characters; a
/// `callback_code` (else `code`) of at most as many when it is a string (one that is not a
/// string counts as absent); every other field kept.
pub(super) struct CallbackBody;

impl CallbackBody {
    /// The schema as JSON.
    fn json() -> Value {
        let code = |what: &str| {
            json!({
                "description": format!("{what} A value that is not a string counts as absent (acknowledged as `\"callback_code\": null`); the body keeps it as sent."),
                "anyOf": [
                    {"type": "string", "maxLength": MAX_FIELD_CHARS},
                    {"type": ["object", "array", "boolean", "number", "null"]},
                ],
            })
        };
        // The first of two spellings that is present and not null is the one read; the
        // second is read (and checked) only without the first.
        let one_of_two = |first: &str, second: &str, schema: Value| {
            json!({
                "anyOf": [
                    {"type": "object", "required": [first], "properties": {first: schema.clone()}},
                    {"type": "object", "required": [second], "properties": {first: {"type": "null"}, second: schema}},
                ],
            })
        };
        // The code is the first string among `callback_code` and `code`, bounded.
        let bounded_code = json!({"type": "string", "maxLength": MAX_FIELD_CHARS});
        let not_a_string = json!({"type": ["object", "array", "boolean", "number", "null"]});
        let code_rule = json!({
            "anyOf": [
                {"type": "object", "required": ["callback_code"], "properties": {"callback_code": bounded_code}},
                {"type": "object", "properties": {"callback_code": not_a_string, "code": {"anyOf": [bounded_code, not_a_string]}}},
            ],
        });
        // Any JSON value: what a spelling read only in some cases may hold.
        let any = json!(["string", "object", "array", "boolean", "number", "null"]);
        let maybe = |schema: Value| json!({"anyOf": [schema, {"type": "null"}]});
        let fields = json!({
            "type": "object",
            "properties": {
                "record": maybe(identifier("The record id (or send `recordId`).")),
                "recordId": {"type": any, "description": "The record id, read only when `record` is absent or null (then as `record`)."},
                "callback_type": maybe(identifier("The product, e.g. `TRANSACTIONS` (or send `method`).")),
                "method": {"type": any, "description": "The product, read only when `callback_type` is absent or null (then as `callback_type`)."},
                "callback_code": code("The code, e.g. `PERIODIC_TRANSACTIONS` (or send `code`)."),
                "code": {"type": any, "description": "The code, read only when `callback_code` is not a string (then as `callback_code`)."},
            },
            "additionalProperties": true,
        });
        json!({
            "description": "An Okra callback. The record id is `record`, else `recordId`; the callback type is `callback_type`, else `method`; the code is `callback_code`, else `code`. A type or code this receiver does not know is accepted. Every other field is kept.",
            "allOf": [
                fields,
                one_of_two("record", "recordId", identifier("A record id.")),
                one_of_two("callback_type", "method", identifier("A callback type.")),
                code_rule,
            ],
            "example": {
                "callback_type": "TRANSACTIONS",
                "callback_code": "PERIODIC_TRANSACTIONS",
                "record": "5f8d1e2a9c1b2a0012345678",
                "new_transactions": 3,
            },
        })
    }
}

impl utoipa::PartialSchema for CallbackBody {
    fn schema() -> RefOr<Schema> {
        serde_json::from_value(Self::json()).expect("the callback schema is a valid schema")
    }
}

impl utoipa::ToSchema for CallbackBody {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema survives utoipa's types whole: nothing of it is dropped on the way to the
    /// document.
    #[test]
    fn the_callback_schema_is_kept_whole() {
        let schema = <CallbackBody as utoipa::PartialSchema>::schema();
        let served = serde_json::to_value(schema).unwrap();
        assert_eq!(served, CallbackBody::json());
    }

    /// The cursors the server makes fit the declared format, whatever their position and
    /// listing.
    #[test]
    fn cursors_fit_their_declared_format() {
        use crate::store::{Cursor, Filter, Scope};
        let pattern = cursor_param().pattern.expect("a pattern");
        assert_eq!(pattern, "^([A-Za-z0-9_-]{28})?$");
        let filter = Filter {
            record: Some("r1".into()),
            ..Filter::default()
        };
        for seq in [0, 1, 255, 1 << 40, i64::MAX] {
            for scope in [Scope::Search, Scope::Record] {
                let text = Cursor::after(seq, &filter, scope).encode();
                assert_eq!(text.len(), CURSOR_CHARS, "{text}");
                assert!(
                    text.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{text}"
                );
            }
        }
    }

    /// The two text patterns share the whitespace list; the record id's is the one the document
    /// has always declared.
    #[test]
    fn text_patterns_spell_the_whitespace_set_once() {
        assert_eq!(
            NOT_BLANK,
            r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        );
        assert_eq!(
            NOT_ONLY_WHITE_SPACE,
            r"^[\s\S]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]*$"
        );
    }
}
