//! Okra's typed callbacks: a [`Callback`] per `callback_type`, each an enum over `callback_code`,
//! and the objects Okra attaches to them.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

    pub(super) fn from_parts(kind: &str, code: Option<&str>, obj: &Map<String, Value>) -> Self {
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
pub(super) fn typed<T: serde::de::DeserializeOwned>(
    obj: &Map<String, Value>,
    key: &str,
) -> Option<T> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => T::deserialize(v).ok(),
    }
}
