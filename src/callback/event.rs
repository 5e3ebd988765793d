//! Callbacks from the sources after Okra: the generic event every source has, and the typed view
//! some get.
//!
//! A source's reader finds a record, a type, maybe a code and an event id in its payload; with
//! the source's name and the raw bytes that is an [`Event`], the generic event, and
//! [`Envelope::from_event`] makes it the same [`Envelope`] Okra's callbacks are, so the store,
//! the dispatcher, the outputs and the handlers walk one path for every source. Plaid's webhooks
//! are also typed ([`PlaidWebhook`], chosen by [`SourceModel::Plaid`]); every other source's are
//! handled through the generic accessors ([`Envelope::source`], [`Envelope::record`],
//! [`Envelope::callback_type`], [`Envelope::callback_code`], [`Envelope::event_id`],
//! [`Envelope::raw`]).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{
    plaid::PlaidWebhook, required_str, within_bound, Callback, Envelope, ParseError, RecordId,
};

/// The name of Okra's own source: what `POST /v1/callback` stores, and what every callback
/// stored before sources existed is. Reserved: no configured source may take it.
pub(crate) const OKRA: &str = "okra";

/// Which typed view a source's callbacks get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceModel {
    /// Only the generic accessors: Mono, Paystack, Standard Webhooks, `generic`.
    #[default]
    Generic,
    /// Plaid's webhooks, also typed as [`PlaidWebhook`] ([`Envelope::plaid`]).
    Plaid,
}

/// Which model each configured source's callbacks get, by source name. A name it does not
/// list (a source removed from the configuration since its callbacks were stored) is
/// [`SourceModel::Generic`].
#[derive(Debug, Clone, Default)]
pub struct SourceModels(HashMap<String, SourceModel>);

impl SourceModels {
    /// The model of `source`'s callbacks.
    pub fn get(&self, source: &str) -> SourceModel {
        self.0.get(source).copied().unwrap_or_default()
    }
}

impl FromIterator<(String, SourceModel)> for SourceModels {
    fn from_iter<I: IntoIterator<Item = (String, SourceModel)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// A callback from a source other than Okra, as its reader found it: the generic event.
///
/// `record` is the source's record (Plaid's Item, Mono's account, Paystack's customer); a
/// source whose payload has none gives the callback's own id, so each such callback is its own
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The source's name, as configured (`[sources.NAME]`).
    pub source: String,
    /// The record the callback is about.
    pub record: String,
    /// Its type (e.g. Plaid's `webhook_type`, Paystack's `event`).
    pub callback_type: String,
    /// Its code, where the source has one (e.g. Plaid's `webhook_code`).
    pub callback_code: Option<String>,
    /// The provider's id for the event, where it gives one (e.g. `webhook-id`): the dedup key.
    pub event_id: Option<String>,
}

/// Who sent an envelope, beside what Okra's parse found.
#[derive(Clone, PartialEq, Default)]
pub(super) struct Origin {
    /// The source's name; `None` for Okra's.
    source: Option<String>,
    event_id: Option<String>,
    plaid: Option<Box<PlaidWebhook>>,
}

impl Envelope {
    /// The envelope of a callback from a source other than Okra: `raw` as received, and what the
    /// source's reader found in it. The fields of a JSON object body are kept
    /// ([`Envelope::fields`]; empty for any other body), and a [`SourceModel::Plaid`] source's
    /// webhook is typed ([`Envelope::plaid`]). Its [`Envelope::callback`] is
    /// [`Callback::Unknown`]: Okra's model does not apply.
    ///
    /// Refused as Okra's would be: a blank or over-long record, type or code
    /// ([`super::MAX_FIELD_CHARS`]), or one holding a NUL.
    ///
    /// ```
    /// use okra_callbacks::{Event, PlaidItemEvent, PlaidWebhook, SourceModel};
    /// use okra_callbacks::Envelope;
    ///
    /// let body = br#"{"webhook_type":"ITEM","webhook_code":"LOGIN_REPAIRED","item_id":"item_1"}"#;
    /// let event = Event {
    ///     source: "plaid".into(),
    ///     record: "item_1".into(),
    ///     callback_type: "ITEM".into(),
    ///     callback_code: Some("LOGIN_REPAIRED".into()),
    ///     event_id: None,
    /// };
    /// let env = Envelope::from_event(event, body.to_vec(), SourceModel::Plaid)?;
    /// assert_eq!(env.source(), "plaid");
    /// assert_eq!(env.plaid(), Some(&PlaidWebhook::Item(PlaidItemEvent::LoginRepaired)));
    /// # Ok::<(), okra_callbacks::ParseError>(())
    /// ```
    pub fn from_event(
        event: Event,
        raw: impl Into<Bytes>,
        model: SourceModel,
    ) -> Result<Self, ParseError> {
        let raw = raw.into();
        // The reader's values are checked as Okra's fields are, through the same rules.
        let mut checked = Map::new();
        checked.insert("record".into(), Value::String(event.record.clone()));
        checked.insert("type".into(), Value::String(event.callback_type.clone()));
        let record = required_str(&checked, ["record", "record"])
            .map_err(|(field, found)| ParseError::InvalidRecord { field, found })?
            .ok_or(ParseError::MissingRecord)?;
        let kind = required_str(&checked, ["type", "type"])
            .map_err(|(field, found)| ParseError::InvalidType { field, found })?
            .ok_or(ParseError::MissingType)?;
        for (field, value) in [
            ("record", Some(record)),
            ("type", Some(kind)),
            ("code", event.callback_code.as_deref()),
            ("event id", event.event_id.as_deref()),
        ] {
            if let Some(value) = value {
                within_bound(value).map_err(|chars| ParseError::TooLong { field, chars })?;
            }
        }
        let code = event
            .callback_code
            .filter(|c| !c.is_empty() && !c.contains('\0'));
        let event_id = event
            .event_id
            .filter(|c| !c.is_empty() && !c.contains('\0'));
        let fields = match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        let plaid = (model == SourceModel::Plaid)
            .then(|| Box::new(PlaidWebhook::from_parts(kind, code.as_deref(), &fields)));
        Ok(Self {
            raw,
            record: RecordId(record.to_owned()),
            callback_type: kind.to_owned(),
            callback: Callback::Unknown {
                callback_type: kind.to_owned(),
                callback_code: code.clone(),
            },
            callback_code: code,
            error: None,
            fields,
            origin: Origin {
                source: Some(event.source),
                event_id,
                plaid,
            },
        })
    }

    /// The source that sent the callback: `"okra"` for Okra's, else the configured name.
    pub fn source(&self) -> &str {
        self.origin.source.as_deref().unwrap_or(OKRA)
    }

    /// Whether Okra sent it (so [`Envelope::callback`] is its typed view).
    pub fn is_okra(&self) -> bool {
        self.origin.source.is_none()
    }

    /// The provider's id for the event, where the source gives one.
    pub fn event_id(&self) -> Option<&str> {
        self.origin.event_id.as_deref()
    }

    /// Plaid's typed view, for a callback of a [`SourceModel::Plaid`] source.
    pub fn plaid(&self) -> Option<&PlaidWebhook> {
        self.origin.plaid.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::plaid::PlaidTransactionsEvent;

    fn event(record: &str, kind: &str, code: Option<&str>) -> Event {
        Event {
            source: "mono".into(),
            record: record.into(),
            callback_type: kind.into(),
            callback_code: code.map(Into::into),
            event_id: Some("evt_1".into()),
        }
    }

    #[test]
    fn a_source_event_keeps_what_its_reader_found() {
        let body = br#"{"event":"mono.events.account_updated","data":{"account":{"_id":"acc_1"}}}"#;
        let env = Envelope::from_event(
            event("acc_1", "mono.events.account_updated", Some("AVAILABLE")),
            body.to_vec(),
            SourceModel::Generic,
        )
        .unwrap();
        assert_eq!(env.source(), "mono");
        assert!(!env.is_okra());
        assert_eq!(env.record().as_str(), "acc_1");
        assert_eq!(env.callback_type(), "mono.events.account_updated");
        assert_eq!(env.callback_code(), Some("AVAILABLE"));
        assert_eq!(env.event_id(), Some("evt_1"));
        assert_eq!(env.raw().as_ref(), &body[..]);
        assert!(env.fields().contains_key("data"));
        assert!(env.plaid().is_none());
        assert!(env.callback().is_unknown(), "{:?}", env.callback());
    }

    #[test]
    fn a_plaid_source_gets_the_typed_view() {
        let body = br#"{"webhook_type":"TRANSACTIONS","webhook_code":"DEFAULT_UPDATE","item_id":"i","new_transactions":2}"#;
        let mut e = event("i", "TRANSACTIONS", Some("DEFAULT_UPDATE"));
        e.source = "plaid".into();
        let env = Envelope::from_event(e, body.to_vec(), SourceModel::Plaid).unwrap();
        assert_eq!(
            env.plaid(),
            Some(&PlaidWebhook::Transactions(
                PlaidTransactionsEvent::DefaultUpdate {
                    new_transactions: Some(2)
                }
            ))
        );
    }

    #[test]
    fn okra_envelopes_are_okra_s() {
        let env = Envelope::parse(&br#"{"callback_type":"AUTH","record":"r"}"#[..]).unwrap();
        assert_eq!(env.source(), OKRA);
        assert!(env.is_okra());
        assert_eq!(env.event_id(), None);
    }

    #[test]
    fn bad_reader_values_are_refused_as_okra_s_are() {
        let raw = b"{}".to_vec();
        let refused = |e: Event| Envelope::from_event(e, raw.clone(), SourceModel::Generic);
        assert!(matches!(
            refused(event(" ", "t", None)),
            Err(ParseError::InvalidRecord { .. })
        ));
        assert!(matches!(
            refused(event("r", "", None)),
            Err(ParseError::InvalidType { .. })
        ));
        assert!(matches!(
            refused(event("r", &"t".repeat(200), None)),
            Err(ParseError::TooLong { field: "type", .. })
        ));
        // A body that is not an object is kept as bytes; its fields are empty.
        let env = Envelope::from_event(
            event("r", "t", Some("")),
            b"[1]".to_vec(),
            SourceModel::Generic,
        )
        .unwrap();
        assert!(env.fields().is_empty());
        assert_eq!(env.callback_code(), None, "an empty code counts as none");
    }
}
