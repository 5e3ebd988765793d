//! What the store derives from a callback's source: its dedup key, the key of its record's
//! queue (and of its type's counters), and the envelope a stored callback is handed over in.
//!
//! Okra's keys are what they were before sources existed — the SHA-256 of the body, the record
//! itself, the type itself — so the rows of an existing store stay valid as Okra's. Another
//! source's keys carry its name: two sources never share a dedup key, a record's queue, or a
//! counter, even when their record or type strings are equal.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{NewCallback, StoredCallback};
use crate::callback::{Envelope, Event, ParseError, SourceModels, OKRA};

/// Separates a source's name from its record (or type) in a composite key. Source names are
/// `[a-z0-9_-]`, so the first separator in a key always ends the name.
const SEPARATOR: char = '\u{1f}';

/// Domain separation of another source's dedup key from any body's SHA-256.
const DEDUP_DOMAIN: &[u8] = b"okra-callbacks source dedup v1\0";

/// The 32-byte dedup key of a callback: for Okra's, the SHA-256 of its body (as every stored
/// key already is); for another source's, the SHA-256 over the domain, the source's name, and
/// its event id where it has one, else its body. The same event id with another body is a
/// duplicate; another event id never is.
pub fn dedup_key(source: &str, event_id: Option<&str>, body: &[u8]) -> [u8; 32] {
    if source == OKRA {
        return Sha256::digest(body).into();
    }
    let mut hash = Sha256::new();
    hash.update(DEDUP_DOMAIN);
    hash.update((source.len() as u64).to_le_bytes());
    hash.update(source.as_bytes());
    match event_id {
        Some(id) => {
            hash.update([1]);
            hash.update(id.as_bytes());
        }
        None => {
            hash.update([2]);
            hash.update(body);
        }
    }
    hash.finalize().into()
}

/// The key of `source`'s `record` among the queue's rows (per-record order and leases), or of
/// `source`'s type `record` among the counters: the value itself for Okra's (unless it holds
/// the separator), else the source's name, the separator and the value.
pub fn queue_key<'a>(source: &str, record: &'a str) -> Cow<'a, str> {
    if source == OKRA && !record.contains(SEPARATOR) {
        Cow::Borrowed(record)
    } else {
        Cow::Owned(format!("{source}{SEPARATOR}{record}"))
    }
}

/// The source and the record (or type) a [`queue_key`] was made of.
pub fn split_queue_key(key: &str) -> (&str, &str) {
    key.split_once(SEPARATOR).unwrap_or((OKRA, key))
}

impl NewCallback {
    /// The dedup key ([`dedup_key`]): per source, by event id where there is one, else by body.
    pub fn dedup_key(&self) -> [u8; 32] {
        dedup_key(&self.source, self.event_id.as_deref(), &self.body)
    }

    /// The key of its record's queue ([`queue_key`]).
    pub fn queue_key(&self) -> Cow<'_, str> {
        queue_key(&self.source, &self.record)
    }
}

impl StoredCallback {
    /// The key of its record's queue ([`queue_key`]): what [`Claim::record`](super::Claim::record),
    /// [`Delivery::release`](super::Delivery::release) and [`OperatorView::lease_of`](super::OperatorView::lease_of)
    /// name.
    pub fn queue_key(&self) -> Cow<'_, str> {
        queue_key(&self.source, &self.record)
    }

    /// The envelope the handlers get: Okra's parsed as Okra's, another source's built from what
    /// was stored of it, typed as `models` says its source is.
    pub fn envelope(&self, models: &SourceModels) -> Result<Envelope, ParseError> {
        if self.source == OKRA {
            return Envelope::parse(self.body.clone());
        }
        let event = Event {
            source: self.source.clone(),
            record: self.record.clone(),
            callback_type: self.callback_type.clone(),
            callback_code: self.callback_code.clone(),
            event_id: self.event_id.clone(),
        };
        Envelope::from_event(event, self.body.clone(), models.get(&self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okra_keys_are_what_they_were() {
        let body = br#"{"callback_type":"AUTH","record":"r"}"#;
        assert_eq!(
            dedup_key(OKRA, None, body),
            <[u8; 32]>::from(Sha256::digest(body))
        );
        assert_eq!(queue_key(OKRA, "rec_1"), "rec_1");
        assert_eq!(split_queue_key("rec_1"), (OKRA, "rec_1"));
    }

    #[test]
    fn sources_never_share_a_key() {
        let body = b"{}";
        let keys = [
            dedup_key(OKRA, None, body),
            dedup_key("mono", None, body),
            dedup_key("paystack", None, body),
            dedup_key("mono", Some("evt_1"), body),
            dedup_key("stitch", Some("evt_1"), body),
            dedup_key("mono", Some("evt_2"), body),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The event id decides, not the body.
        assert_eq!(
            dedup_key("mono", Some("evt_1"), b"{\"a\":1}"),
            dedup_key("mono", Some("evt_1"), b"{\"a\":2}")
        );
        // The name is length-prefixed: no (name, id) pair reads as another.
        assert_ne!(
            dedup_key("ab", Some("c"), body),
            dedup_key("a", Some("bc"), body)
        );
    }

    #[test]
    fn queue_keys_round_trip_and_stay_apart() {
        for (source, record) in [
            ("mono", "acc_1"),
            ("plaid", "acc_1"),
            (OKRA, "acc_1"),
            (OKRA, "odd\u{1f}record"),
            ("mono", "odd\u{1f}record"),
        ] {
            let key = queue_key(source, record);
            assert_eq!(split_queue_key(&key), (source, record), "{key:?}");
        }
        assert_ne!(queue_key("mono", "acc_1"), queue_key("plaid", "acc_1"));
        assert_ne!(queue_key("mono", "acc_1"), queue_key(OKRA, "acc_1"));
        // An Okra record cannot pose as another source's queue.
        assert_ne!(queue_key(OKRA, "mono\u{1f}acc_1"), "mono\u{1f}acc_1");
    }
}
