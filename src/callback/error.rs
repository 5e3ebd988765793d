//! Why a body is not a callback.

use super::MAX_FIELD_CHARS;

/// Why a body is not an Okra callback. Each message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The body is empty.
    #[error("the body is empty: send the callback as a JSON object")]
    Empty,
    /// The body is not JSON at all.
    #[error("the body is not valid JSON ({0}): send the callback as a JSON object")]
    InvalidJson(String),
    /// The body is JSON, but not an object.
    #[error("the callback must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// Neither `record` nor `recordId` is present.
    #[error("the callback has no record id: expected a string field `record` (or `recordId`)")]
    MissingRecord,
    /// `record` (or `recordId`) is present but not a non-empty string.
    #[error("the callback's record id `{field}` must be a string that is not blank, found {found}: send the record id Okra gave")]
    InvalidRecord {
        /// The field that held the bad value.
        field: &'static str,
        /// What was found instead, e.g. "a number".
        found: &'static str,
    },
    /// Neither `callback_type` nor `method` is present.
    #[error(
        "the callback has no type: expected a string field `callback_type` (or `method`), e.g. \"TRANSACTIONS\""
    )]
    MissingType,
    /// `callback_type` (or `method`) is present but not a non-empty string.
    #[error("the callback's type `{field}` must be a string that is not blank, found {found}: send the product, e.g. \"TRANSACTIONS\"")]
    InvalidType {
        /// The field that held the bad value.
        field: &'static str,
        /// What was found instead, e.g. "a number".
        found: &'static str,
    },
    /// The record id, type or code is longer than [`MAX_FIELD_CHARS`].
    #[error("the callback's `{field}` is {chars} characters long, over the limit of {MAX_FIELD_CHARS}: send the value Okra gave (its ids, types and codes are far shorter)")]
    TooLong {
        /// The field that held the long value.
        field: &'static str,
        /// Its length in characters.
        chars: usize,
    },
}
