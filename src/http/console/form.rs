//! The console's forms: a form body or query string decoded ([`Form`]), and the list's filters
//! as the operator typed them ([`FilterForm`]), kept as typed to show them back, and read into
//! the store's filter by the API's own parser ([`FilterQuery::parse`]).

use axum::body::Body;
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::{
    http::filter::{FilterQuery, InvalidFilter},
    store::Filter,
};

/// The largest form body the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form body larger than the console reads.
#[derive(Debug)]
pub(super) struct FormTooLarge;

/// A form body or query string, decoded.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn from_query(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(super) async fn read(body: Body) -> Result<Self, FormTooLarge> {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| FormTooLarge)?;
        Ok(Self(form_urlencoded::parse(&bytes).into_owned().collect()))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The list's filters as the operator typed them (kept as typed, to show them back).
#[derive(Debug, Clone, Default)]
pub(super) struct FilterForm {
    /// `pending`, `delivered`, `dead` (a field may also hold several, comma-separated).
    pub(super) statuses: Vec<String>,
    /// The callback type, any case.
    pub(super) callback_type: String,
    /// The callback code.
    pub(super) callback_code: String,
    /// The record id.
    pub(super) record: String,
    /// Received at or after (RFC 3339, or a `datetime-local` value taken as UTC).
    pub(super) received_after: String,
    /// Received before.
    pub(super) received_before: String,
    /// The page to show (the previous page's cursor).
    pub(super) cursor: Option<String>,
}

impl FilterForm {
    pub(super) fn from_form(form: &Form) -> Self {
        let mut f = Self::default();
        for (name, value) in &form.0 {
            let value = value.trim();
            match name.as_str() {
                "status" => f.statuses.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_ascii_lowercase),
                ),
                "callback_type" => f.callback_type = value.to_owned(),
                "callback_code" => f.callback_code = value.to_owned(),
                "record" => f.record = value.to_owned(),
                "received_after" => f.received_after = value.to_owned(),
                "received_before" => f.received_before = value.to_owned(),
                "cursor" if !value.is_empty() => f.cursor = Some(value.to_owned()),
                _ => {}
            }
        }
        f.statuses.sort();
        f.statuses.dedup();
        f
    }

    /// The filters as form fields (no cursor, no empty ones).
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = self
            .statuses
            .iter()
            .map(|s| ("status", s.clone()))
            .collect();
        for (name, value) in [
            ("callback_type", &self.callback_type),
            ("callback_code", &self.callback_code),
            ("record", &self.record),
            ("received_after", &self.received_after),
            ("received_before", &self.received_before),
        ] {
            if !value.is_empty() {
                pairs.push((name, value.clone()));
            }
        }
        pairs
    }

    /// The filters as a query string, with `cursor` when given.
    pub(super) fn query_with_cursor(&self, cursor: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            query.append_pair(name, &value);
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    }

    /// The filters in words, for the replay confirmation.
    pub(super) fn described(&self) -> Vec<(&'static str, String)> {
        self.pairs()
            .into_iter()
            .filter(|(name, _)| *name != "status")
            .map(|(name, value)| {
                let label = match name {
                    "callback_type" => "Type",
                    "callback_code" => "Code",
                    "record" => "Record",
                    "received_after" => "Received after",
                    _ => "Received before",
                };
                (label, value)
            })
            .collect()
    }

    /// The store's filter, read by the API's parser: the statuses as one comma-separated
    /// list, the date picker's times as RFC 3339.
    pub(super) fn filter(&self) -> Result<Filter, InvalidFilter> {
        let text = |s: &str| Some(s.to_owned());
        let time = |s: &str| Some(typed_time(s).map_or_else(|| s.to_owned(), |t| t.to_rfc3339()));
        FilterQuery {
            status: Some(self.statuses.join(",")),
            callback_type: text(&self.callback_type),
            callback_code: text(&self.callback_code),
            record: text(&self.record),
            received_after: time(&self.received_after),
            received_before: time(&self.received_before),
            source: None,
        }
        .parse()
    }
}

/// A time as typed: RFC 3339, or a `datetime-local` value (`2026-12-01T10:00[:00]`) taken as
/// UTC; `None` when it is no time.
pub(super) fn typed_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M").map(|t| t.and_utc()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;

    fn typed(query: &str) -> FilterForm {
        FilterForm::from_form(&Form::from_query(Some(query)))
    }

    #[test]
    fn the_form_reads_into_the_store_filter_through_the_api_parser() {
        let f = typed(
            "status=dead&status=pending,dead&callback_type=auth&received_after=2026-12-01T10:00",
        )
        .filter()
        .unwrap();
        assert_eq!(f.statuses, [Status::Dead, Status::Pending]);
        assert_eq!(f.callback_type.as_deref(), Some("AUTH"));
        assert_eq!(
            f.received_after.unwrap().to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
        assert_eq!(typed("").filter().unwrap(), Filter::default());
        assert_eq!(
            typed("status=bogus").filter().unwrap_err(),
            InvalidFilter::Status {
                list: "bogus".into(),
                bad: "bogus".into()
            }
        );
        assert_eq!(
            typed("received_before=yesterday").filter().unwrap_err(),
            InvalidFilter::Time {
                parameter: "received_before",
                value: "yesterday".into()
            }
        );
    }
}
