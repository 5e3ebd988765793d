//! Reading a source's payload: where its record, type, code and event id sit.
//!
//! A [`Reader`] is built once from the configuration (a preset's places, or a `generic` source's
//! pointers) and then reads every request's raw body with one JSON parse. It never branches on
//! a provider's name: every preset is a set of [`Pointer`]s and, where the provider sends one,
//! the header that carries its event id.

use axum::http::{HeaderMap, HeaderName};
use serde_json::Value;

use crate::callback::MAX_FIELD_CHARS;

/// What the receiver needs from one source's callback to store and order it. The raw body is
/// kept beside it, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEvent {
    /// The record the callback is about (Plaid's item, Mono's account…), when the payload names
    /// one. A callback without one is its own record.
    pub record: Option<String>,
    /// The callback's type (`webhook_type`, `event`, `type`…): never blank.
    pub callback_type: String,
    /// The callback's code within its type (`webhook_code`…), where the source has one.
    pub callback_code: Option<String>,
    /// The provider's id of this event, where the source sends one: the dedup key when present.
    pub event_id: Option<String>,
}

/// Why a verified body cannot be read as its source's callback. The message says what is
/// missing or wrong and where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// 400 `invalid_json`: the body is not JSON at all.
    #[error("the body is not JSON ({0}): send the provider's JSON payload unchanged")]
    NotJson(String),
    /// 422 `invalid_callback`: JSON, but without the source's type, or with a field out of
    /// bounds.
    #[error("{0}")]
    Invalid(String),
}

/// A JSON pointer (RFC 6901, e.g. `/data/account/_id`), checked when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    /// Accepts `/`-separated pointers with `~0`/`~1` escapes; refuses the empty pointer (the
    /// whole document is never a field) and dotted paths, with a message saying how to write one.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            let hint = text.replace('.', "/");
            return Err(format!(
                "`{text}` is not a JSON pointer: write it as `/{hint}` (RFC 6901, `/` before each key)"
            ));
        }
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "`{text}` is not a JSON pointer: `~` must be followed by 0 (for `~`) or 1 (for `/`)"
                ));
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds a preset's pointer, known to be well-formed.
    pub(super) fn known(text: &'static str) -> Self {
        debug_assert!(Self::parse(text).is_ok(), "{text}");
        Self(text.to_owned())
    }
}

/// Where a source's event id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventIdAt {
    /// A field of the payload.
    Pointer(Pointer),
    /// A request header; the first of these present is used (`webhook-id`, then `svix-id`).
    Header(Vec<HeaderName>),
}

/// Reads a source's record, type, code and event id out of a request.
#[derive(Debug, Clone)]
pub struct Reader {
    /// Where the record may be, tried in order: the first that holds a value wins.
    pub(super) record: Vec<Pointer>,
    /// Where the type is; a payload without it is refused.
    pub(super) callback_type: Pointer,
    /// Where the code is, if the source has one.
    pub(super) callback_code: Option<Pointer>,
    /// Where the event id is, if the source sends one.
    pub(super) event_id: Option<EventIdAt>,
}

impl Reader {
    /// A reader of these places.
    pub fn new(
        record: Vec<Pointer>,
        callback_type: Pointer,
        callback_code: Option<Pointer>,
        event_id: Option<EventIdAt>,
    ) -> Self {
        Self {
            record,
            callback_type,
            callback_code,
            event_id,
        }
    }

    /// Reads one request: the body must be a JSON object holding the type; the record, code and
    /// event id are read where present. Every value is at most [`MAX_FIELD_CHARS`] characters.
    pub fn read(&self, headers: &HeaderMap, raw: &[u8]) -> Result<SourceEvent, ReadError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| ReadError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(ReadError::Invalid(
                "the body is JSON but not an object: send the provider's payload unchanged".into(),
            ));
        }
        let callback_type = field(&value, &self.callback_type, "type")?.ok_or_else(|| {
            ReadError::Invalid(format!(
                "the payload has no type at `{}` (a string): send the provider's payload unchanged, or set the source's `type` pointer to where its type is",
                self.callback_type.as_str()
            ))
        })?;
        let mut record = None;
        for pointer in &self.record {
            record = field(&value, pointer, "record")?;
            if record.is_some() {
                break;
            }
        }
        let callback_code = match &self.callback_code {
            Some(pointer) => field(&value, pointer, "code")?,
            None => None,
        };
        let event_id = match &self.event_id {
            None => None,
            Some(EventIdAt::Pointer(pointer)) => field(&value, pointer, "event id")?,
            Some(EventIdAt::Header(names)) => {
                match names
                    .iter()
                    .find_map(|name| headers.get(name).map(|v| (name, v)))
                {
                    None => None,
                    Some((name, v)) => {
                        let text = v.to_str().map_err(|_| {
                            ReadError::Invalid(format!(
                                "the `{name}` header (the event id) is not ASCII text"
                            ))
                        })?;
                        bounded(text, "event id", name.as_str())?
                    }
                }
            }
        };
        Ok(SourceEvent {
            record,
            callback_type,
            callback_code,
            event_id,
        })
    }
}

/// The value at `pointer` as text: a string, or an integer written in decimal. Anything else
/// (absent, null, an object…) or a blank string is `None`.
fn field(value: &Value, pointer: &Pointer, what: &str) -> Result<Option<String>, ReadError> {
    match value.pointer(pointer.as_str()) {
        Some(Value::String(s)) => bounded(s, what, pointer.as_str()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        _ => Ok(None),
    }
}

/// `text` trimmed, `None` when blank, refused when over [`MAX_FIELD_CHARS`].
fn bounded(text: &str, what: &str, at: &str) -> Result<Option<String>, ReadError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // Counting stops one past the bound, so a huge value costs no more than a short one.
    if text.chars().take(MAX_FIELD_CHARS + 1).count() > MAX_FIELD_CHARS {
        return Err(ReadError::Invalid(format!(
            "the {what} at `{at}` is longer than {MAX_FIELD_CHARS} characters: send the provider's payload unchanged (its ids and types are far shorter)"
        )));
    }
    Ok(Some(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    fn mono_like() -> Reader {
        Reader::new(
            vec![
                p("/data/account/_id"),
                p("/data/account/id"),
                p("/data/account"),
                p("/data/id"),
            ],
            p("/event"),
            Some(p("/data/meta/data_status")),
            None,
        )
    }

    fn read(reader: &Reader, body: &str) -> Result<SourceEvent, ReadError> {
        reader.read(&HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn pointers_are_checked_with_a_hint() {
        assert_eq!(p("/a/b~1c/~0d").as_str(), "/a/b~1c/~0d");
        let dotted = Pointer::parse("data.account").unwrap_err();
        assert!(dotted.contains("`/data/account`"), "{dotted}");
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
    }

    #[test]
    fn the_record_falls_back_in_order() {
        let r = mono_like();
        let cases = [
            (
                r#"{"event":"e","data":{"account":{"_id":"a1","id":"a2"},"id":"d"}}"#,
                "a1",
            ),
            (
                r#"{"event":"e","data":{"account":{"id":"a2"},"id":"d"}}"#,
                "a2",
            ),
            (r#"{"event":"e","data":{"account":"a3","id":"d"}}"#, "a3"),
            (
                r#"{"event":"e","data":{"account":{"name":"x"},"id":"d"}}"#,
                "d",
            ),
            (
                r#"{"event":"e","data":{"account":{"_id":"  "},"id":7}}"#,
                "7",
            ),
        ];
        for (body, record) in cases {
            assert_eq!(
                read(&r, body).unwrap().record.as_deref(),
                Some(record),
                "{body}"
            );
        }
        let none = read(&r, r#"{"event":"e","data":{}}"#).unwrap();
        assert_eq!(none.record, None);
        assert_eq!(none.callback_type, "e");
        assert_eq!(none.callback_code, None);
    }

    #[test]
    fn code_and_event_id_are_read_where_present() {
        let r = mono_like();
        let got = read(
            &r,
            r#"{"event":"mono.events.account_updated","data":{"id":"d","meta":{"data_status":"AVAILABLE"}}}"#,
        )
        .unwrap();
        assert_eq!(got.callback_type, "mono.events.account_updated");
        assert_eq!(got.callback_code.as_deref(), Some("AVAILABLE"));

        let headers_reader = Reader::new(
            vec![],
            p("/type"),
            None,
            Some(EventIdAt::Header(vec![
                HeaderName::from_static("webhook-id"),
                HeaderName::from_static("svix-id"),
            ])),
        );
        let mut h = HeaderMap::new();
        h.insert("svix-id", "msg_2".parse().unwrap());
        let got = headers_reader.read(&h, br#"{"type":"t"}"#).unwrap();
        assert_eq!(got.event_id.as_deref(), Some("msg_2"));
        h.insert("webhook-id", "msg_1".parse().unwrap());
        let got = headers_reader.read(&h, br#"{"type":"t"}"#).unwrap();
        assert_eq!(got.event_id.as_deref(), Some("msg_1"));
        let got = headers_reader
            .read(&HeaderMap::new(), br#"{"type":"t"}"#)
            .unwrap();
        assert_eq!(got.event_id, None);

        let pointer_reader =
            Reader::new(vec![], p("/type"), None, Some(EventIdAt::Pointer(p("/id"))));
        let got = read(&pointer_reader, r#"{"type":"t","id":12345}"#).unwrap();
        assert_eq!(got.event_id.as_deref(), Some("12345"));
    }

    #[test]
    fn a_payload_without_the_type_or_not_json_is_refused() {
        let r = mono_like();
        for body in [
            r#"{"data":{}}"#,
            r#"{"event":""}"#,
            r#"{"event":{"a":1}}"#,
            "[1]",
            "3",
        ] {
            let e = read(&r, body).unwrap_err();
            assert!(matches!(e, ReadError::Invalid(_)), "{body}: {e}");
        }
        let e = read(&r, r#"{"data":{}}"#).unwrap_err();
        assert!(e.to_string().contains("`/event`"), "{e}");
        for body in ["", "{", "not json", "{\"event\":\"e\"} x"] {
            assert!(
                matches!(read(&r, body), Err(ReadError::NotJson(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn fields_are_bounded() {
        let r = mono_like();
        let at_bound = "r".repeat(MAX_FIELD_CHARS);
        let body = format!(r#"{{"event":"e","data":{{"id":"{at_bound}"}}}}"#);
        assert_eq!(read(&r, &body).unwrap().record.as_deref(), Some(&*at_bound));
        for body in [
            format!(r#"{{"event":"e","data":{{"id":"{at_bound}x"}}}}"#),
            format!(r#"{{"event":"{at_bound}x"}}"#),
            format!(r#"{{"event":"e","data":{{"meta":{{"data_status":"{at_bound}x"}}}}}}"#),
        ] {
            let e = read(&r, &body).unwrap_err();
            assert!(matches!(e, ReadError::Invalid(_)), "{e}");
            assert!(e.to_string().contains("longer than 128"), "{e}");
        }
        let header_reader = Reader::new(
            vec![],
            p("/type"),
            None,
            Some(EventIdAt::Header(vec![HeaderName::from_static("x-id")])),
        );
        let mut h = HeaderMap::new();
        h.insert("x-id", format!("{at_bound}x").parse().unwrap());
        assert!(header_reader.read(&h, br#"{"type":"t"}"#).is_err());
    }
}
