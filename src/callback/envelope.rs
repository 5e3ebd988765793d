//! The [`Envelope`]: a received callback's raw bytes, every field of its JSON object, and the
//! typed view, parsed once at the edge.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{okra::typed, within_bound, Callback, OkraError, ParseError, RecordId};

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds the first present field among `names`; `Ok(None)` if none is present.
pub(super) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    names: [&'static str; 2],
) -> Result<Option<&'a str>, (&'static str, &'static str)> {
    for name in names {
        match obj.get(name) {
            None | Some(Value::Null) => continue,
            // A NUL cannot be stored as text (PostgreSQL refuses it), nor is it part of any id.
            Some(Value::String(s)) if s.contains('\0') => {
                return Err((name, "a string with a NUL character"))
            }
            Some(Value::String(s)) if !s.trim().is_empty() => return Ok(Some(s)),
            Some(Value::String(s)) if s.is_empty() => return Err((name, "an empty string")),
            Some(Value::String(_)) => return Err((name, "a string of whitespace only")),
            Some(other) => return Err((name, json_kind(other))),
        }
    }
    Ok(None)
}

/// `value`, found under the first of `names` present in `fields`, within [`MAX_FIELD_CHARS`](super::MAX_FIELD_CHARS).
fn bounded(
    fields: &Map<String, Value>,
    names: [&'static str; 2],
    value: &str,
) -> Result<(), ParseError> {
    within_bound(value).map_err(|chars| ParseError::TooLong {
        field: names
            .into_iter()
            .find(|n| fields.get(*n).and_then(Value::as_str) == Some(value))
            .unwrap_or(names[0]),
        chars,
    })
}

/// A received callback: the raw bytes, every field of the JSON object, and the typed view.
///
/// Built once by [`Envelope::parse`]; cheap to share behind an `Arc`.
#[derive(Clone, PartialEq)]
pub struct Envelope {
    pub(super) raw: Bytes,
    pub(super) fields: Map<String, Value>,
    pub(super) record: RecordId,
    pub(super) callback_type: String,
    pub(super) callback_code: Option<String>,
    pub(super) error: Option<OkraError>,
    pub(super) callback: Callback,
    /// Who sent it ([`OKRA`](super::OKRA) for Okra's), its event id and Plaid's typed view: see `event.rs`.
    pub(super) origin: super::event::Origin,
}

impl Envelope {
    /// Parses the body of a callback request.
    ///
    /// Accepts the documented and the production spellings: type from `callback_type`, else
    /// `method`; code from `callback_code`, else `code`; record from `record`, else `recordId`.
    ///
    /// ```
    /// use okra_callbacks::{Callback, Envelope, TransactionsEvent};
    ///
    /// let body = br#"{"callback_type":"TRANSACTIONS","callback_code":"PERIODIC_TRANSACTIONS",
    ///                 "record":"rec_1","new_transactions":3}"#;
    /// let env = Envelope::parse(body.to_vec())?;
    /// assert_eq!(env.record().as_str(), "rec_1");
    /// assert_eq!(
    ///     env.callback(),
    ///     &Callback::Transactions(TransactionsEvent::Periodic { new_transactions: Some(3) })
    /// );
    /// # Ok::<(), okra_callbacks::ParseError>(())
    /// ```
    pub fn parse(raw: impl Into<Bytes>) -> Result<Self, ParseError> {
        let raw = raw.into();
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        let value: Value =
            serde_json::from_slice(&raw).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
        let fields = match value {
            Value::Object(map) => map,
            other => return Err(ParseError::NotAnObject(json_kind(&other))),
        };
        Self::from_fields(raw, fields)
    }

    fn from_fields(raw: Bytes, fields: Map<String, Value>) -> Result<Self, ParseError> {
        let record = required_str(&fields, ["record", "recordId"])
            .map_err(|(field, found)| ParseError::InvalidRecord { field, found })?
            .ok_or(ParseError::MissingRecord)?;
        bounded(&fields, ["record", "recordId"], record)?;
        let record = RecordId(record.to_owned());
        let kind = required_str(&fields, ["callback_type", "method"])
            .map_err(|(field, found)| ParseError::InvalidType { field, found })?
            .ok_or(ParseError::MissingType)?;
        bounded(&fields, ["callback_type", "method"], kind)?;
        // The code is optional; one that is not a string (`{}`, `false`, `0`), or holds a NUL,
        // counts as absent rather than rejecting (acknowledged as `"callback_code": null`);
        // the body keeps it as sent.
        let code = ["callback_code", "code"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str));
        if let Some(code) = code {
            bounded(&fields, ["callback_code", "code"], code)?;
        }
        let code = code.filter(|c| !c.is_empty() && !c.contains('\0'));
        let callback = Callback::from_parts(kind, code, &fields);
        let callback_type = match callback.kind() {
            Some(k) => k.as_str().to_owned(),
            None => kind.to_owned(),
        };
        let callback_code = code.map(str::to_owned);
        let error = typed(&fields, "error");
        Ok(Self {
            raw,
            fields,
            record,
            callback_type,
            callback_code,
            error,
            callback,
            origin: super::event::Origin::default(),
        })
    }

    /// The typed callback, to `match` on.
    pub fn callback(&self) -> &Callback {
        &self.callback
    }

    /// The record the callback is about.
    pub fn record(&self) -> &RecordId {
        &self.record
    }

    /// The callback type as a string: the known spelling (`"TRANSACTIONS"`) or, for an unknown
    /// type, exactly as sent.
    pub fn callback_type(&self) -> &str {
        &self.callback_type
    }

    /// The callback code exactly as sent (`callback_code`, else `code`), if any.
    pub fn callback_code(&self) -> Option<&str> {
        self.callback_code.as_deref()
    }

    /// The `error` object, when Okra sent a non-null one.
    pub fn error(&self) -> Option<&OkraError> {
        self.error.as_ref()
    }

    /// The bytes exactly as received: what is stored, forwarded and signature-checked.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Every field of the callback object, including those this crate does not model.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
}

impl fmt::Debug for Envelope {
    /// Shows what identifies the callback, never the payload (it may carry personal data).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("record", &self.record)
            .field("callback_type", &self.callback_type)
            .field("callback_code", &self.callback_code)
            .field("bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

impl Serialize for Envelope {
    /// Serialises the whole callback object, every field included.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = Map::<String, Value>::deserialize(d)?;
        let raw = serde_json::to_vec(&fields).map_err(serde::de::Error::custom)?;
        Self::from_fields(raw.into(), fields).map_err(serde::de::Error::custom)
    }
}
