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
    /// The sources (`okra`, or a configured source's name); any when empty.
    pub(super) sources: Vec<String>,
    /// Received at or after: as the list shows times (`2026-12-01 10:00:00 UTC`), or RFC 3339.
    pub(super) received_after: String,
    /// Received before.
    pub(super) received_before: String,
    /// The page to show (the previous page's cursor).
    pub(super) cursor: Option<String>,
}

impl FilterForm {
    pub(super) fn from_form(form: &Form) -> Self {
        let mut f = Self::default();
        let list = |value: &str| {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for (name, value) in &form.0 {
            let value = value.trim();
            match name.as_str() {
                "status" => f
                    .statuses
                    .extend(list(value).iter().map(|s| s.to_ascii_lowercase())),
                // Names as typed: the parser says why `Mono` is not one.
                "source" => f.sources.extend(list(value)),
                "callback_type" => f.callback_type = value.to_owned(),
                "callback_code" => f.callback_code = value.to_owned(),
                "record" => f.record = value.to_owned(),
                "received_after" => f.received_after = value.to_owned(),
                "received_before" => f.received_before = value.to_owned(),
                "cursor" if !value.is_empty() => f.cursor = Some(value.to_owned()),
                _ => {}
            }
        }
        for names in [&mut f.statuses, &mut f.sources] {
            names.sort();
            names.dedup();
        }
        f
    }

    /// The filters as form fields (no cursor, no empty ones).
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        let statuses = self.statuses.iter().map(|s| ("status", s.clone()));
        let sources = self.sources.iter().map(|s| ("source", s.clone()));
        let mut pairs: Vec<(&'static str, String)> = statuses.chain(sources).collect();
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

    /// The filters in words, for the replay confirmation (the statuses go without saying: a
    /// bulk replay takes the dead ones).
    pub(super) fn described(&self) -> Vec<(&'static str, String)> {
        let sources = (!self.sources.is_empty()).then(|| ("Source", self.sources.join(", ")));
        let others = self
            .pairs()
            .into_iter()
            .filter(|(name, _)| !matches!(*name, "status" | "source"))
            .map(|(name, value)| {
                let label = match name {
                    "callback_type" => "Type",
                    "callback_code" => "Code",
                    "record" => "Record",
                    "received_after" => "Received after",
                    _ => "Received before",
                };
                (label, value)
            });
        sources.into_iter().chain(others).collect()
    }

    /// The store's filter, read by the API's parser: the statuses and the sources each as one
    /// comma-separated list, the times as RFC 3339.
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
            source: Some(self.sources.join(",")),
        }
        .parse()
    }
}

/// A time as typed: as the console shows times (`2026-12-01 10:00:05 UTC`, so a time copied
/// from a page means the same instant in a filter), RFC 3339 (`2026-12-01T11:00:05+01:00`), or
/// a date and time without a zone (`2026-12-01 10:00[:05]`, `T` or a space between them) taken
/// as UTC; `None` when it is no time.
pub(super) fn typed_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    let utc = value
        .len()
        .checked_sub(4)
        .filter(|&at| value.is_char_boundary(at) && value[at..].eq_ignore_ascii_case(" utc"))
        .map_or(value, |at| value[..at].trim_end());
    let t = utc.replacen(' ', "T", 1);
    DateTime::parse_from_rfc3339(&t)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(&t, format).ok())
                .map(|t| t.and_utc())
        })
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
        let sources = typed("source=okra&source=mono,plaid&source=mono");
        assert_eq!(sources.sources, ["mono", "okra", "plaid"]);
        assert_eq!(sources.filter().unwrap().sources, ["mono", "okra", "plaid"]);
        assert_eq!(
            sources.query_with_cursor(None),
            "source=mono&source=okra&source=plaid"
        );
        assert_eq!(
            sources.described(),
            [("Source", "mono, okra, plaid".into())]
        );
        assert_eq!(
            typed("source=Mono").filter().unwrap_err(),
            InvalidFilter::Source {
                list: "Mono".into(),
                bad: "Mono".into()
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

    /// A time as the pages show it reads back as the same instant, whatever else is typed.
    #[test]
    fn a_time_as_shown_reads_back_as_the_same_instant() {
        let shown = "2026-12-07T11:42:05Z";
        for typed in [
            "2026-12-07 11:42:05 UTC",
            "2026-12-07 11:42:05 utc",
            " 2026-12-07 11:42:05  UTC ",
            "2026-12-07 11:42:05",
            "2026-12-07T11:42:05",
            "2026-12-07T11:42:05Z",
            "2026-12-07 11:42:05Z",
            "2026-12-07T12:42:05+01:00",
        ] {
            let t = typed_time(typed).unwrap_or_else(|| panic!("{typed} is a time"));
            assert_eq!(
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                shown,
                "{typed}"
            );
        }
        let minute = typed_time("2026-12-07 11:42").unwrap();
        assert_eq!(minute.to_rfc3339(), "2026-12-07T11:42:00+00:00");
        let millis = typed_time("2026-12-07 11:42:05.250 UTC").unwrap();
        assert_eq!(millis.timestamp_subsec_millis(), 250);
        for bad in [
            "yesterday",
            "UTC",
            "2026-12-07",
            "2026-13-07 11:42:05 UTC",
            "é UTC",
        ] {
            assert_eq!(typed_time(bad), None, "{bad}");
        }
    }
}
