//! The Okra callback model: raw bytes in, a typed [`Envelope`] out.
//!
//! Okra POSTs one JSON object per callback. [`Envelope::parse`] turns those bytes into a
//! [`Callback`] — a tagged enum over `callback_type`, each variant an enum over `callback_code` —
//! once, at the edge. The original bytes and every field of the object (known or not) are kept
//! beside the typed value, because the bytes are what gets stored, forwarded and verified.
//!
//! Only two things are required: a record id (`record`, else `recordId`) and a callback type
//! (`callback_type`, else `method`). A type or code this crate does not know is accepted and kept
//! as [`Callback::Unknown`] or an `Other` code, never rejected: a new code from Okra must not make
//! it retry forever.

mod envelope;
mod error;
mod event;
mod okra;
mod plaid;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use self::{envelope::required_str, okra::typed};

pub use envelope::Envelope;
pub use error::ParseError;
pub(crate) use event::OKRA;
pub use event::{Event, SourceModel, SourceModels};
pub use okra::{
    AccountData, AccountsEvent, AuthData, AuthEvent, BalanceEvent, Callback, CallbackType,
    IdentityData, IdentityEvent, IncomeEvent, OkraError, RecordEvent, TransactionsEvent,
};
pub use plaid::{PlaidError, PlaidItemEvent, PlaidTransactionsEvent, PlaidWebhook};

/// The most characters a record id, callback type or callback code may have (Okra's are about
/// 30): a longer one is refused (`422 invalid_callback`), so a sender cannot fill the store,
/// the indexes and the logs with one field.
pub const MAX_FIELD_CHARS: usize = 128;

/// `Err(chars)` when `s` is longer than [`MAX_FIELD_CHARS`].
fn within_bound(s: &str) -> Result<(), usize> {
    // Counting stops one past the bound, so a huge value costs no more than a short one.
    let chars = s.chars().take(MAX_FIELD_CHARS + 1).count();
    if chars > MAX_FIELD_CHARS {
        Err(s.chars().count())
    } else {
        Ok(())
    }
}

/// The id of an Okra record (one customer's linked bank account): a string that is not blank,
/// of at most [`MAX_FIELD_CHARS`] characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(String);

impl RecordId {
    /// Accepts any string that is not blank and not longer than [`MAX_FIELD_CHARS`]; Okra's ids
    /// are opaque.
    pub fn parse(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (!s.trim().is_empty() && within_bound(&s).is_ok()).then_some(Self(s))
    }

    /// The id as sent by Okra.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
