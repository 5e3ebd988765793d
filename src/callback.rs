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

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod event;
pub mod plaid;

pub use event::{Event, SourceModel, OKRA};

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

/// The products Okra reports on: the known values of `callback_type`.
///
/// Also the `method` of `GET /v1/callback?record=…&method=…`, matched case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackType {
    /// `TRANSACTIONS`
    Transactions,
    /// `RECORD`
    Record,
    /// `INCOME`
    Income,
    /// `IDENTITY`
    Identity,
    /// `BALANCE`
    Balance,
    /// `AUTH`
    Auth,
    /// `ACCOUNTS`
    Accounts,
}

impl CallbackType {
    /// Every known type, in the order the documentation lists them.
    pub const ALL: [CallbackType; 7] = [
        Self::Auth,
        Self::Transactions,
        Self::Identity,
        Self::Income,
        Self::Balance,
        Self::Record,
        Self::Accounts,
    ];

    /// The wire spelling, e.g. `"TRANSACTIONS"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transactions => "TRANSACTIONS",
            Self::Record => "RECORD",
            Self::Income => "INCOME",
            Self::Identity => "IDENTITY",
            Self::Balance => "BALANCE",
            Self::Auth => "AUTH",
            Self::Accounts => "ACCOUNTS",
        }
    }

    /// Parses a type name, ignoring ASCII case. `None` for a type this crate does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for CallbackType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object Okra attaches to a callback (`null` when all went well).
///
/// Every field is optional; fields this crate does not know are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OkraError {
    /// Text meant for the end user, e.g. "The provided credentials were not correct."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_message: Option<String>,
    /// Machine-readable code, e.g. `RECORD_LOGIN_REQUIRED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Developer-facing description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The error family, e.g. `RECORD_ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// An HTTP-like status, e.g. 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// Fields Okra added that this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Writes only that a value is present, so personal data never reaches a log through `{:?}`.
struct Redacted<'a, T>(&'a Option<T>);

impl<T> fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "<redacted>"
        } else {
            "None"
        })
    }
}

/// The `identity` object of an `IDENTITY_IS_READY` callback: the customer's personal data.
///
/// Its `Debug` output redacts every personal field.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityData {
    /// Bank Verification Number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bvn: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstname: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middlename: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lastname: Option<String>,
    /// Full name as the bank holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullname: Option<String>,
    /// Date of birth, as sent (e.g. `1990-01-31`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dob: Option<String>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Vec<String>>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Vec<String>>,
    /// Postal addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Vec<String>>,
    /// Gender as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Okra's customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Fields Okra added that this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for IdentityData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityData")
            .field("bvn", &Redacted(&self.bvn))
            .field("firstname", &Redacted(&self.firstname))
            .field("middlename", &Redacted(&self.middlename))
            .field("lastname", &Redacted(&self.lastname))
            .field("fullname", &Redacted(&self.fullname))
            .field("dob", &Redacted(&self.dob))
            .field("phone", &Redacted(&self.phone))
            .field("email", &Redacted(&self.email))
            .field("address", &Redacted(&self.address))
            .field("gender", &Redacted(&self.gender))
            .field("customer", &self.customer)
            .field("extra", &format_args!("{} more fields", self.extra.len()))
            .finish()
    }
}

/// The `balance` object of a `BALANCE_SUCCESS` callback, or the `account` object of an
/// `ACCOUNTS_SUCCESS` one: one bank account and its balances.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountData {
    /// The 10-digit Nigerian account number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nuban: Option<String>,
    /// The account holder's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Okra's account id.
    #[serde(default, rename = "accountId", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Ledger (book) balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_balance: Option<f64>,
    /// Balance available to spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_balance: Option<f64>,
    /// ISO 4217 currency, e.g. `NGN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Account status as sent, e.g. `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Fields Okra added that this crate does not model (e.g. `account`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for AccountData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountData")
            .field("nuban", &Redacted(&self.nuban))
            .field("name", &Redacted(&self.name))
            .field("account_id", &self.account_id)
            .field("ledger_balance", &Redacted(&self.ledger_balance))
            .field("available_balance", &Redacted(&self.available_balance))
            .field("currency", &self.currency)
            .field("status", &self.status)
            .field("extra", &format_args!("{} more fields", self.extra.len()))
            .finish()
    }
}

/// The `auth` object of an `AUTH_SUCCESS` callback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthData {
    /// Okra's client id.
    #[serde(default, rename = "clientId", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The kind of auth, e.g. `validate`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Whether the customer authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<bool>,
    /// Whether this was a re-authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth: Option<bool>,
    /// Fields Okra added that this crate does not model.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `TRANSACTIONS` callbacks: transactions were pulled or removed.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionsEvent {
    /// `INITIAL_TRANSACTIONS`: the first pull after a record was created.
    Initial {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `FULL_TRANSACTIONS`: the full history is available.
    Full {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `PERIODIC_TRANSACTIONS`: a scheduled refresh found new transactions.
    Periodic {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `TRANSACTIONS_DELETED`: transactions Okra no longer reports.
    Deleted {
        /// Ids of the removed transactions (`removed_transactions`).
        removed_transactions: Vec<String>,
    },
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `RECORD` callbacks: something happened to the record itself.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordEvent {
    /// `WEBHOOK_UPDATE_ACKNOWLEDGED`: the record's callback URL changed.
    WebhookUpdateAcknowledged {
        /// The new URL (`new_callback_url`).
        new_callback_url: Option<String>,
    },
    /// `ERROR`: the record hit an error, e.g. the customer changed their bank password.
    Error(OkraError),
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `INCOME` callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum IncomeEvent {
    /// `PRODUCT_IS_READY` (also the documented misspelling `PDOCUT_IS_READY`).
    ProductIsReady,
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `IDENTITY` callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityEvent {
    /// `PRODUCT_IS_READY`: identity can be fetched.
    ProductIsReady,
    /// `IDENTITY_IS_READY`: identity delivered in the callback (`identity`). `None` when the
    /// object is missing or not shaped as expected; the original is still in the envelope.
    IdentityIsReady(Option<Box<IdentityData>>),
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `BALANCE` callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum BalanceEvent {
    /// `PRODUCT_IS_READY`: balance can be fetched.
    ProductIsReady,
    /// `INITIAL_BALANCE`
    Initial,
    /// `PERIODIC_BALANCE`
    Periodic,
    /// `BALANCE_DELETED`
    Deleted,
    /// `BALANCE_SUCCESS`: the balance delivered in the callback (`balance`).
    Success(Option<Box<AccountData>>),
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `AUTH` callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthEvent {
    /// `PRODUCT_IS_READY`
    ProductIsReady,
    /// `AUTH_SUCCESS`: the auth result delivered in the callback (`auth`).
    Success(Option<Box<AuthData>>),
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `ACCOUNTS` callbacks.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountsEvent {
    /// `ACCOUNTS_SUCCESS`: one account delivered in the callback (`account`).
    Success(Option<Box<AccountData>>),
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// One Okra callback, typed: the product (`callback_type`), then what happened (`callback_code`).
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// `TRANSACTIONS`
    Transactions(TransactionsEvent),
    /// `RECORD`
    Record(RecordEvent),
    /// `INCOME`
    Income(IncomeEvent),
    /// `IDENTITY`
    Identity(IdentityEvent),
    /// `BALANCE`
    Balance(BalanceEvent),
    /// `AUTH`
    Auth(AuthEvent),
    /// `ACCOUNTS`
    Accounts(AccountsEvent),
    /// A `callback_type` this crate does not know yet. Accepted and kept, never rejected.
    Unknown {
        /// The type as sent.
        callback_type: String,
        /// The code as sent, if any.
        callback_code: Option<String>,
    },
}

impl Callback {
    /// The known type, or `None` for [`Callback::Unknown`].
    pub fn kind(&self) -> Option<CallbackType> {
        Some(match self {
            Self::Transactions(_) => CallbackType::Transactions,
            Self::Record(_) => CallbackType::Record,
            Self::Income(_) => CallbackType::Income,
            Self::Identity(_) => CallbackType::Identity,
            Self::Balance(_) => CallbackType::Balance,
            Self::Auth(_) => CallbackType::Auth,
            Self::Accounts(_) => CallbackType::Accounts,
            Self::Unknown { .. } => return None,
        })
    }

    /// Whether this crate does not know the type or the code, so a catch-all handles it.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Self::Unknown { .. }
                | Self::Transactions(TransactionsEvent::Other(_))
                | Self::Record(RecordEvent::Other(_))
                | Self::Income(IncomeEvent::Other(_))
                | Self::Identity(IdentityEvent::Other(_))
                | Self::Balance(BalanceEvent::Other(_))
                | Self::Auth(AuthEvent::Other(_))
                | Self::Accounts(AccountsEvent::Other(_))
        )
    }

    fn from_parts(kind: &str, code: Option<&str>, obj: &Map<String, Value>) -> Self {
        let other = || code.map(str::to_owned);
        let count = || obj.get("new_transactions").and_then(Value::as_u64);
        let Some(kind_enum) = CallbackType::from_name(kind) else {
            return Self::Unknown {
                callback_type: kind.to_owned(),
                callback_code: other(),
            };
        };
        let ready = matches!(code, Some("PRODUCT_IS_READY" | "PDOCUT_IS_READY"));
        match kind_enum {
            CallbackType::Transactions => Self::Transactions(match code {
                Some("INITIAL_TRANSACTIONS") => TransactionsEvent::Initial {
                    new_transactions: count(),
                },
                Some("FULL_TRANSACTIONS") => TransactionsEvent::Full {
                    new_transactions: count(),
                },
                Some("PERIODIC_TRANSACTIONS") => TransactionsEvent::Periodic {
                    new_transactions: count(),
                },
                Some("TRANSACTIONS_DELETED") => TransactionsEvent::Deleted {
                    removed_transactions: typed(obj, "removed_transactions").unwrap_or_default(),
                },
                _ => TransactionsEvent::Other(other()),
            }),
            CallbackType::Record => Self::Record(match code {
                Some("WEBHOOK_UPDATE_ACKNOWLEDGED") => RecordEvent::WebhookUpdateAcknowledged {
                    new_callback_url: typed(obj, "new_callback_url"),
                },
                Some("ERROR") => RecordEvent::Error(typed(obj, "error").unwrap_or_default()),
                _ => RecordEvent::Other(other()),
            }),
            CallbackType::Income => Self::Income(if ready {
                IncomeEvent::ProductIsReady
            } else {
                IncomeEvent::Other(other())
            }),
            CallbackType::Identity => Self::Identity(match code {
                _ if ready => IdentityEvent::ProductIsReady,
                Some("IDENTITY_IS_READY") => IdentityEvent::IdentityIsReady(typed(obj, "identity")),
                _ => IdentityEvent::Other(other()),
            }),
            CallbackType::Balance => Self::Balance(match code {
                _ if ready => BalanceEvent::ProductIsReady,
                Some("INITIAL_BALANCE") => BalanceEvent::Initial,
                Some("PERIODIC_BALANCE") => BalanceEvent::Periodic,
                Some("BALANCE_DELETED") => BalanceEvent::Deleted,
                Some("BALANCE_SUCCESS") => BalanceEvent::Success(typed(obj, "balance")),
                _ => BalanceEvent::Other(other()),
            }),
            CallbackType::Auth => Self::Auth(match code {
                _ if ready => AuthEvent::ProductIsReady,
                Some("AUTH_SUCCESS") => AuthEvent::Success(typed(obj, "auth")),
                _ => AuthEvent::Other(other()),
            }),
            CallbackType::Accounts => Self::Accounts(match code {
                Some("ACCOUNTS_SUCCESS") => AccountsEvent::Success(typed(obj, "account")),
                _ => AccountsEvent::Other(other()),
            }),
        }
    }
}

/// Reads an optional typed field leniently: a missing, `null` or oddly shaped value is `None`
/// (the original stays in the envelope), so a change on Okra's side never rejects a callback.
fn typed<T: serde::de::DeserializeOwned>(obj: &Map<String, Value>, key: &str) -> Option<T> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => T::deserialize(v).ok(),
    }
}

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
fn required_str<'a>(
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

/// `value`, found under the first of `names` present in `fields`, within [`MAX_FIELD_CHARS`].
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
    raw: Bytes,
    fields: Map<String, Value>,
    record: RecordId,
    callback_type: String,
    callback_code: Option<String>,
    error: Option<OkraError>,
    callback: Callback,
    /// Who sent it ([`OKRA`] for Okra's), its event id and Plaid's typed view: see `event.rs`.
    origin: event::Origin,
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
            origin: event::Origin::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Envelope {
        let path = format!("{}/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Envelope::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    const SEED_RECORD: &str = "wz666MBjYWTp2PDzzggYhM6oWWmBb";
    const OBSERVED_RECORD: &str = "6373b7d8c2f1a90012e4a8f1";

    #[test]
    fn seed_transactions_fixtures() {
        for (name, expected) in [
            (
                "transactions_initial",
                TransactionsEvent::Initial {
                    new_transactions: Some(19),
                },
            ),
            (
                "transactions_full",
                TransactionsEvent::Full {
                    new_transactions: Some(231),
                },
            ),
            (
                "transactions_periodic",
                TransactionsEvent::Periodic {
                    new_transactions: Some(3),
                },
            ),
            (
                "transactions_deleted",
                TransactionsEvent::Deleted {
                    removed_transactions: vec![
                        "yBVBEwrPyJs8GvR77N7QTxnGg6wG74H7dEDN6".into(),
                        "kgygNvAVPzSX9KkddNdWHaVGRVex1MHm3k9no".into(),
                    ],
                },
            ),
        ] {
            let env = fixture(name);
            assert_eq!(env.callback(), &Callback::Transactions(expected), "{name}");
            assert_eq!(env.record().as_str(), SEED_RECORD);
            assert_eq!(env.callback_type(), "TRANSACTIONS");
            assert_eq!(env.error(), None);
        }
    }

    #[test]
    fn seed_record_fixtures() {
        let env = fixture("record_webhook_update_acknowledged");
        assert_eq!(
            env.callback(),
            &Callback::Record(RecordEvent::WebhookUpdateAcknowledged {
                new_callback_url: Some("https://okra.ng/example/callback".into())
            })
        );
        assert_eq!(env.callback_code(), Some("WEBHOOK_UPDATE_ACKNOWLEDGED"));

        let env = fixture("record_error");
        let Callback::Record(RecordEvent::Error(err)) = env.callback() else {
            panic!("expected RECORD/ERROR, got {:?}", env.callback());
        };
        assert_eq!(err.error_code.as_deref(), Some("RECORD_LOGIN_REQUIRED"));
        assert_eq!(err.error_type.as_deref(), Some("RECORD_ERROR"));
        assert_eq!(err.status, Some(400));
        assert_eq!(
            err.error_message.as_deref(),
            Some("the provided credentials were not correct")
        );
        assert_eq!(
            err.display_message.as_deref(),
            Some("The provided credentials were not correct. Please try again.")
        );
        assert_eq!(env.error(), Some(err));
    }

    #[test]
    fn seed_product_ready_fixtures() {
        assert_eq!(
            fixture("income_ready_misspelled").callback(),
            &Callback::Income(IncomeEvent::ProductIsReady)
        );
        assert_eq!(
            fixture("identity_ready").callback(),
            &Callback::Identity(IdentityEvent::ProductIsReady)
        );
        assert_eq!(
            fixture("balance_ready").callback(),
            &Callback::Balance(BalanceEvent::ProductIsReady)
        );
        // The misspelled code is kept as sent.
        assert_eq!(
            fixture("income_ready_misspelled").callback_code(),
            Some("PDOCUT_IS_READY")
        );
    }

    #[test]
    fn observed_fixtures() {
        let env = fixture("identity_is_ready");
        assert_eq!(env.record().as_str(), OBSERVED_RECORD);
        let Callback::Identity(IdentityEvent::IdentityIsReady(Some(id))) = env.callback() else {
            panic!("got {:?}", env.callback());
        };
        assert_eq!(id.bvn.as_deref(), Some("22222222222"));
        assert_eq!(id.fullname.as_deref(), Some("Ada N Obi"));
        assert_eq!(
            id.phone.as_deref(),
            Some(&["+2348000000000".to_owned()][..])
        );
        assert_eq!(id.extra["_id"], "6373b7e0c2f1a90012e4a901");

        let env = fixture("balance_success");
        let Callback::Balance(BalanceEvent::Success(Some(bal))) = env.callback() else {
            panic!("got {:?}", env.callback());
        };
        assert_eq!(bal.available_balance, Some(150000.0));
        assert_eq!(bal.ledger_balance, Some(152340.5));
        assert_eq!(bal.currency.as_deref(), Some("NGN"));
        assert_eq!(bal.account_id.as_deref(), Some("6373b7e4c2f1a90012e4a905"));

        let env = fixture("auth_success");
        let Callback::Auth(AuthEvent::Success(Some(auth))) = env.callback() else {
            panic!("got {:?}", env.callback());
        };
        assert_eq!(auth.status, Some(true));
        assert_eq!(auth.reauth, Some(false));
        assert_eq!(auth.kind.as_deref(), Some("validate"));
        assert_eq!(env.fields()["customerBvn"], "22222222222");

        let env = fixture("accounts_success");
        let Callback::Accounts(AccountsEvent::Success(Some(acct))) = env.callback() else {
            panic!("got {:?}", env.callback());
        };
        assert_eq!(acct.nuban.as_deref(), Some("0123456789"));
        assert_eq!(acct.name.as_deref(), Some("ADA N OBI"));
        assert_eq!(acct.extra["account"], "6373b7e4c2f1a90012e4a905");
        assert_eq!(env.callback_type(), "ACCOUNTS");
    }

    #[test]
    fn raw_bytes_are_kept_exactly() {
        let bytes = b" {\"record\":\"r\",  \"callback_type\":\"AUTH\"}\n".to_vec();
        let env = Envelope::parse(bytes.clone()).unwrap();
        assert_eq!(env.raw().as_ref(), &bytes[..]);
    }

    #[test]
    fn alternate_spellings() {
        let env = Envelope::parse(
            br#"{"method":"BALANCE","code":"BALANCE_DELETED","recordId":"r9","type":"CALLBACK"}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(env.record().as_str(), "r9");
        assert_eq!(env.callback(), &Callback::Balance(BalanceEvent::Deleted));
        assert_eq!(env.callback_code(), Some("BALANCE_DELETED"));

        // `callback_type` wins over `method`, `record` over `recordId`, `callback_code` over `code`.
        let env = Envelope::parse(
            br#"{"method":"AUTH","callback_type":"INCOME","code":"X","callback_code":"PRODUCT_IS_READY","record":"a","recordId":"b"}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(env.record().as_str(), "a");
        assert_eq!(
            env.callback(),
            &Callback::Income(IncomeEvent::ProductIsReady)
        );

        // Lower-case types are understood and reported in the canonical spelling.
        let env = Envelope::parse(br#"{"method":"identity","record":"r"}"#.to_vec()).unwrap();
        assert_eq!(
            env.callback(),
            &Callback::Identity(IdentityEvent::Other(None))
        );
        assert_eq!(env.callback_type(), "IDENTITY");
    }

    #[test]
    fn unknown_type_and_code_are_kept() {
        let env = Envelope::parse(
            br#"{"callback_type":"LIABILITIES","callback_code":"LIABILITIES_READY","record":"r","total":5}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(
            env.callback(),
            &Callback::Unknown {
                callback_type: "LIABILITIES".into(),
                callback_code: Some("LIABILITIES_READY".into())
            }
        );
        assert!(env.callback().is_unknown());
        assert_eq!(env.fields()["total"], 5);

        let env = Envelope::parse(
            br#"{"callback_type":"TRANSACTIONS","callback_code":"TRANSACTIONS_REVERSED","record":"r","n":[1]}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(
            env.callback(),
            &Callback::Transactions(TransactionsEvent::Other(Some(
                "TRANSACTIONS_REVERSED".into()
            )))
        );
        assert!(env.callback().is_unknown());
        assert_eq!(env.fields()["n"], serde_json::json!([1]));
    }

    #[test]
    fn invalid_bodies_give_precise_errors() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"  \n", ParseError::Empty),
            (b"[1,2]", ParseError::NotAnObject("an array")),
            (b"\"x\"", ParseError::NotAnObject("a string")),
            (br#"{"callback_type":"AUTH"}"#, ParseError::MissingRecord),
            (
                br#"{"callback_type":"AUTH","record":42}"#,
                ParseError::InvalidRecord {
                    field: "record",
                    found: "a number",
                },
            ),
            (
                br#"{"callback_type":"AUTH","recordId":""}"#,
                ParseError::InvalidRecord {
                    field: "recordId",
                    found: "an empty string",
                },
            ),
            (
                br#"{"callback_type":"AUTH","record":"r\u0000"}"#,
                ParseError::InvalidRecord {
                    field: "record",
                    found: "a string with a NUL character",
                },
            ),
            (
                br#"{"record":"r","method":"AUTH\u0000"}"#,
                ParseError::InvalidType {
                    field: "method",
                    found: "a string with a NUL character",
                },
            ),
            (br#"{"record":"r"}"#, ParseError::MissingType),
            (
                br#"{"record":"r","callback_type":["AUTH"]}"#,
                ParseError::InvalidType {
                    field: "callback_type",
                    found: "an array",
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                &Envelope::parse(body.to_vec()).unwrap_err(),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            Envelope::parse(b"{not json".to_vec()),
            Err(ParseError::InvalidJson(_))
        ));
        assert_eq!(
            ParseError::MissingRecord.to_string(),
            "the callback has no record id: expected a string field `record` (or `recordId`)"
        );
    }

    #[test]
    fn a_blank_record_id_is_reported_as_blank() {
        assert_eq!(
            Envelope::parse(br#"{"callback_type":"AUTH","record":" \t "}"#.to_vec()).unwrap_err(),
            ParseError::InvalidRecord {
                field: "record",
                found: "a string of whitespace only",
            }
        );
        assert_eq!(
            Envelope::parse(br#"{"record":"r","method":"  "}"#.to_vec()).unwrap_err(),
            ParseError::InvalidType {
                field: "method",
                found: "a string of whitespace only",
            }
        );
    }

    #[test]
    fn record_ids_types_and_codes_are_bounded() {
        let at = "é".repeat(MAX_FIELD_CHARS);
        let over = "é".repeat(MAX_FIELD_CHARS + 1);
        let body = |record: &str, kind: &str, code: &str| {
            serde_json::json!({"recordId": record, "method": kind, "code": code})
                .to_string()
                .into_bytes()
        };
        // At the bound (in characters, not bytes): accepted, kept as sent.
        let env = Envelope::parse(body(&at, &at, &at)).unwrap();
        assert_eq!(env.record().as_str(), at);
        assert_eq!(env.callback_type(), at);
        assert_eq!(env.callback_code(), Some(at.as_str()));
        // One past it, in any of the three: refused, naming the field as sent and the limit.
        for (field, body) in [
            ("recordId", body(&over, "AUTH", "X")),
            ("method", body("r", &over, "X")),
            ("code", body("r", "AUTH", &over)),
        ] {
            let e = Envelope::parse(body).unwrap_err();
            assert_eq!(
                e,
                ParseError::TooLong {
                    field,
                    chars: MAX_FIELD_CHARS + 1
                }
            );
            let message = e.to_string();
            assert!(message.contains(&format!("`{field}`")), "{message}");
            assert!(message.contains("limit of 128"), "{message}");
        }
        assert!(RecordId::parse(at).is_some());
        assert!(RecordId::parse(over).is_none());
    }

    #[test]
    fn a_code_that_is_not_a_string_counts_as_absent_and_is_kept_in_the_body() {
        for code in ["{}", "false", "0", "[]"] {
            let raw = format!(r#"{{"record":"r","callback_type":"AUTH","callback_code":{code}}}"#);
            let env = Envelope::parse(raw.clone().into_bytes()).unwrap();
            assert_eq!(env.callback_code(), None, "{code}");
            assert_eq!(env.raw(), raw.as_bytes());
            assert_eq!(
                env.fields()["callback_code"],
                serde_json::from_str::<Value>(code).unwrap()
            );
        }
    }

    #[test]
    fn debug_output_hides_personal_data() {
        let env = fixture("identity_is_ready");
        let shown = format!("{env:?} {:?}", env.callback());
        for secret in [
            "22222222222",
            "Ada",
            "Obi",
            "+2348000000000",
            "ada@example.com",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIXTURES: [&str; 13] = [
        "accounts_success",
        "auth_success",
        "balance_ready",
        "balance_success",
        "identity_is_ready",
        "identity_ready",
        "income_ready_misspelled",
        "record_error",
        "record_webhook_update_acknowledged",
        "transactions_deleted",
        "transactions_full",
        "transactions_initial",
        "transactions_periodic",
    ];

    proptest! {
        /// Extra fields Okra may add survive parse → serialise → parse, and never change the
        /// typed view.
        #[test]
        fn serialising_loses_no_field(
            which in 0..FIXTURES.len(),
            extra in prop::collection::btree_map("x_[a-zA-Z0-9_]{1,10}", json_value(), 0..6),
        ) {
            let base = fixture(FIXTURES[which]);
            let mut obj = base.fields().clone();
            for (k, v) in extra {
                obj.insert(k, v);
            }
            let bytes = serde_json::to_vec(&obj).unwrap();
            let parsed = Envelope::parse(bytes).unwrap();
            prop_assert_eq!(parsed.callback(), base.callback());
            let round: Value = serde_json::to_value(&parsed).unwrap();
            prop_assert_eq!(round, Value::Object(obj.clone()));
            let again: Envelope = serde_json::from_value(Value::Object(obj)).unwrap();
            prop_assert_eq!(again.callback(), base.callback());
        }
    }
}
