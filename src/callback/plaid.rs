//! Plaid's webhooks, typed: `webhook_type`, then `webhook_code`.
//!
//! Okra's callbacks were modelled on Plaid's webhooks, so the shape is the same as
//! [`Callback`](super::Callback)'s: a product (`TRANSACTIONS`, `ITEM`, …), then what happened.
//! The record is the Plaid *Item* (`item_id`: one end user's login at one institution). A type or
//! code this crate does not know is kept as [`PlaidWebhook::Unknown`] or an `Other` code, never
//! rejected, so a new webhook from Plaid does not make it retry forever.
//!
//! Field names follow Plaid's webhook reference (<https://plaid.com/docs/api/webhooks/>); every
//! field is read leniently (a missing or oddly shaped value is `None`, the original stays in the
//! envelope's raw bytes).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::typed;

/// The `error` object Plaid attaches to a webhook (`null` when all went well).
///
/// Every field is optional; fields this crate does not know are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaidError {
    /// The error family, e.g. `ITEM_ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Machine-readable code, e.g. `ITEM_LOGIN_REQUIRED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Developer-facing description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Text meant for the end user, when Plaid gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_message: Option<String>,
    /// An HTTP-like status, e.g. 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// Fields Plaid added that this crate does not model (`request_id`, `causes`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `TRANSACTIONS` webhooks: an Item's transactions changed.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaidTransactionsEvent {
    /// `SYNC_UPDATES_AVAILABLE`: new changes wait at `/transactions/sync`.
    SyncUpdatesAvailable {
        /// Whether the first 30 days are available (`initial_update_complete`).
        initial_update_complete: Option<bool>,
        /// Whether the whole history is available (`historical_update_complete`).
        historical_update_complete: Option<bool>,
    },
    /// `INITIAL_UPDATE`: the first 30 days are available at `/transactions/get`.
    InitialUpdate {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `HISTORICAL_UPDATE`: the whole history is available at `/transactions/get`.
    HistoricalUpdate {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `DEFAULT_UPDATE`: a scheduled refresh found new transactions.
    DefaultUpdate {
        /// How many transactions were added (`new_transactions`).
        new_transactions: Option<u64>,
    },
    /// `TRANSACTIONS_REMOVED`: transactions Plaid no longer reports.
    TransactionsRemoved {
        /// Ids of the removed transactions (`removed_transactions`).
        removed_transactions: Vec<String>,
    },
    /// `RECURRING_TRANSACTIONS_UPDATE`: recurring streams changed for these accounts.
    RecurringTransactionsUpdate {
        /// The accounts whose streams changed (`account_ids`).
        account_ids: Vec<String>,
    },
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// `ITEM` webhooks: something happened to the Item (the end user's login) itself.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaidItemEvent {
    /// `ERROR`: the Item needs the user, e.g. `ITEM_LOGIN_REQUIRED` (Link's update mode fixes it).
    Error(PlaidError),
    /// `LOGIN_REPAIRED`: the Item works again without the user having gone through Link.
    LoginRepaired,
    /// `NEW_ACCOUNTS_AVAILABLE`: the institution has accounts the user has not shared yet.
    NewAccountsAvailable,
    /// `PENDING_EXPIRATION`: the Item's consent expires soon.
    PendingExpiration {
        /// When, as Plaid sent it (ISO 8601, `consent_expiration_time`).
        consent_expiration_time: Option<String>,
    },
    /// `PENDING_DISCONNECT`: the Item will stop working, e.g. an institution migration.
    PendingDisconnect {
        /// Why, as Plaid sent it (`reason`, e.g. `INSTITUTION_MIGRATION`).
        reason: Option<String>,
    },
    /// `USER_PERMISSION_REVOKED`: the user revoked the Item's access at the institution.
    UserPermissionRevoked {
        /// The error Plaid attached, if any.
        error: Option<PlaidError>,
    },
    /// `USER_ACCOUNT_REVOKED`: the user revoked access to one account of the Item.
    UserAccountRevoked {
        /// The account (`account_id`).
        account_id: Option<String>,
    },
    /// `WEBHOOK_UPDATE_ACKNOWLEDGED`: the Item's webhook URL changed.
    WebhookUpdateAcknowledged {
        /// The new URL (`new_webhook_url`).
        new_webhook_url: Option<String>,
    },
    /// A code this crate does not know yet (or none).
    Other(Option<String>),
}

/// One Plaid webhook, typed: the product (`webhook_type`), then what happened (`webhook_code`).
#[derive(Debug, Clone, PartialEq)]
pub enum PlaidWebhook {
    /// `TRANSACTIONS`
    Transactions(PlaidTransactionsEvent),
    /// `ITEM`
    Item(PlaidItemEvent),
    /// A `webhook_type` this crate does not model (`AUTH`, `HOLDINGS`, a new one, …). Accepted
    /// and kept, never rejected.
    Unknown {
        /// The type as sent.
        webhook_type: String,
        /// The code as sent, if any.
        webhook_code: Option<String>,
    },
}

impl PlaidWebhook {
    /// The typed view of a webhook whose `webhook_type` is `kind` and `webhook_code` is `code`;
    /// `fields` is the webhook's JSON object, read for each code's own fields.
    ///
    /// ```
    /// use okra_callbacks::{PlaidTransactionsEvent, PlaidWebhook};
    ///
    /// let body: serde_json::Value = serde_json::json!({
    ///     "webhook_type": "TRANSACTIONS", "webhook_code": "DEFAULT_UPDATE",
    ///     "item_id": "wz666MBjYWTp2PDzzggYhM6oWWmBb", "new_transactions": 3
    /// });
    /// let typed = PlaidWebhook::from_parts("TRANSACTIONS", Some("DEFAULT_UPDATE"),
    ///                                      body.as_object().unwrap());
    /// assert_eq!(
    ///     typed,
    ///     PlaidWebhook::Transactions(PlaidTransactionsEvent::DefaultUpdate { new_transactions: Some(3) })
    /// );
    /// ```
    pub fn from_parts(kind: &str, code: Option<&str>, fields: &Map<String, Value>) -> Self {
        let other = || code.map(str::to_owned);
        let count = || fields.get("new_transactions").and_then(Value::as_u64);
        let flag = |key| fields.get(key).and_then(Value::as_bool);
        match kind {
            "TRANSACTIONS" => Self::Transactions(match code {
                Some("SYNC_UPDATES_AVAILABLE") => PlaidTransactionsEvent::SyncUpdatesAvailable {
                    initial_update_complete: flag("initial_update_complete"),
                    historical_update_complete: flag("historical_update_complete"),
                },
                Some("INITIAL_UPDATE") => PlaidTransactionsEvent::InitialUpdate {
                    new_transactions: count(),
                },
                Some("HISTORICAL_UPDATE") => PlaidTransactionsEvent::HistoricalUpdate {
                    new_transactions: count(),
                },
                Some("DEFAULT_UPDATE") => PlaidTransactionsEvent::DefaultUpdate {
                    new_transactions: count(),
                },
                Some("TRANSACTIONS_REMOVED") => PlaidTransactionsEvent::TransactionsRemoved {
                    removed_transactions: typed(fields, "removed_transactions").unwrap_or_default(),
                },
                Some("RECURRING_TRANSACTIONS_UPDATE") => {
                    PlaidTransactionsEvent::RecurringTransactionsUpdate {
                        account_ids: typed(fields, "account_ids").unwrap_or_default(),
                    }
                }
                _ => PlaidTransactionsEvent::Other(other()),
            }),
            "ITEM" => Self::Item(match code {
                Some("ERROR") => PlaidItemEvent::Error(typed(fields, "error").unwrap_or_default()),
                Some("LOGIN_REPAIRED") => PlaidItemEvent::LoginRepaired,
                Some("NEW_ACCOUNTS_AVAILABLE") => PlaidItemEvent::NewAccountsAvailable,
                Some("PENDING_EXPIRATION") => PlaidItemEvent::PendingExpiration {
                    consent_expiration_time: typed(fields, "consent_expiration_time"),
                },
                Some("PENDING_DISCONNECT") => PlaidItemEvent::PendingDisconnect {
                    reason: typed(fields, "reason"),
                },
                Some("USER_PERMISSION_REVOKED") => PlaidItemEvent::UserPermissionRevoked {
                    error: typed(fields, "error"),
                },
                Some("USER_ACCOUNT_REVOKED") => PlaidItemEvent::UserAccountRevoked {
                    account_id: typed(fields, "account_id"),
                },
                Some("WEBHOOK_UPDATE_ACKNOWLEDGED") => PlaidItemEvent::WebhookUpdateAcknowledged {
                    new_webhook_url: typed(fields, "new_webhook_url"),
                },
                _ => PlaidItemEvent::Other(other()),
            }),
            _ => Self::Unknown {
                webhook_type: kind.to_owned(),
                webhook_code: other(),
            },
        }
    }

    /// Whether this crate does not know the type or the code, so a catch-all handles it.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Self::Unknown { .. }
                | Self::Transactions(PlaidTransactionsEvent::Other(_))
                | Self::Item(PlaidItemEvent::Other(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> PlaidWebhook {
        let path = format!("{}/samples/plaid/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let fields = body.as_object().unwrap();
        PlaidWebhook::from_parts(
            fields["webhook_type"].as_str().unwrap(),
            fields["webhook_code"].as_str(),
            fields,
        )
    }

    #[test]
    fn every_sample_parses_to_its_variant() {
        use PlaidItemEvent as I;
        use PlaidTransactionsEvent as T;
        let cases = [
            (
                "transactions_sync_updates_available",
                PlaidWebhook::Transactions(T::SyncUpdatesAvailable {
                    initial_update_complete: Some(true),
                    historical_update_complete: Some(false),
                }),
            ),
            (
                "transactions_initial_update",
                PlaidWebhook::Transactions(T::InitialUpdate {
                    new_transactions: Some(19),
                }),
            ),
            (
                "transactions_historical_update",
                PlaidWebhook::Transactions(T::HistoricalUpdate {
                    new_transactions: Some(231),
                }),
            ),
            (
                "transactions_default_update",
                PlaidWebhook::Transactions(T::DefaultUpdate {
                    new_transactions: Some(3),
                }),
            ),
            (
                "transactions_removed",
                PlaidWebhook::Transactions(T::TransactionsRemoved {
                    removed_transactions: vec![
                        "yBVBEwrPyJs8GvR77N7QTxnGg6wG74H7dEDN6".into(),
                        "kgygNvAVPzSX9KkddNdWHaVGRVex1MHm3k9no".into(),
                    ],
                }),
            ),
            (
                "transactions_recurring_update",
                PlaidWebhook::Transactions(T::RecurringTransactionsUpdate {
                    account_ids: vec![
                        "lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDje".into(),
                        "lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDff".into(),
                    ],
                }),
            ),
            ("item_login_repaired", PlaidWebhook::Item(I::LoginRepaired)),
            (
                "item_new_accounts_available",
                PlaidWebhook::Item(I::NewAccountsAvailable),
            ),
            (
                "item_pending_expiration",
                PlaidWebhook::Item(I::PendingExpiration {
                    consent_expiration_time: Some("2026-12-14T06:00:00Z".into()),
                }),
            ),
            (
                "item_pending_disconnect",
                PlaidWebhook::Item(I::PendingDisconnect {
                    reason: Some("INSTITUTION_MIGRATION".into()),
                }),
            ),
            (
                "item_user_account_revoked",
                PlaidWebhook::Item(I::UserAccountRevoked {
                    account_id: Some("BxBXxLj1m4HMXBm9WZJyUg9XLd4rKEhw8Pb1J".into()),
                }),
            ),
            (
                "item_webhook_update_acknowledged",
                PlaidWebhook::Item(I::WebhookUpdateAcknowledged {
                    new_webhook_url: Some("https://receiver.example.com/v1/sources/plaid".into()),
                }),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(sample(name), expected, "{name}");
        }
        let PlaidWebhook::Item(I::Error(error)) = sample("item_error") else {
            panic!("item_error: {:?}", sample("item_error"));
        };
        assert_eq!(error.error_code.as_deref(), Some("ITEM_LOGIN_REQUIRED"));
        assert_eq!(error.status, Some(400));
        assert!(error.extra.contains_key("request_id"), "{error:?}");
        let PlaidWebhook::Item(I::UserPermissionRevoked { error: Some(error) }) =
            sample("item_user_permission_revoked")
        else {
            panic!("{:?}", sample("item_user_permission_revoked"));
        };
        assert_eq!(error.error_code.as_deref(), Some("USER_PERMISSION_REVOKED"));
    }

    #[test]
    fn unknown_types_and_codes_are_kept() {
        let empty = Map::new();
        let auth = PlaidWebhook::from_parts("AUTH", Some("AUTOMATICALLY_VERIFIED"), &empty);
        assert_eq!(
            auth,
            PlaidWebhook::Unknown {
                webhook_type: "AUTH".into(),
                webhook_code: Some("AUTOMATICALLY_VERIFIED".into()),
            }
        );
        assert!(auth.is_unknown());
        let new_code = PlaidWebhook::from_parts("ITEM", Some("ITEM_REVIVED"), &empty);
        assert_eq!(
            new_code,
            PlaidWebhook::Item(PlaidItemEvent::Other(Some("ITEM_REVIVED".into())))
        );
        assert!(new_code.is_unknown());
        let no_code = PlaidWebhook::from_parts("TRANSACTIONS", None, &empty);
        assert_eq!(
            no_code,
            PlaidWebhook::Transactions(PlaidTransactionsEvent::Other(None))
        );
        assert!(!PlaidWebhook::Item(PlaidItemEvent::LoginRepaired).is_unknown());
    }

    #[test]
    fn oddly_shaped_fields_are_none_not_a_refusal() {
        let body = serde_json::json!({
            "new_transactions": "three", "removed_transactions": [1, 2], "error": "boom"
        });
        let fields = body.as_object().unwrap();
        assert_eq!(
            PlaidWebhook::from_parts("TRANSACTIONS", Some("DEFAULT_UPDATE"), fields),
            PlaidWebhook::Transactions(PlaidTransactionsEvent::DefaultUpdate {
                new_transactions: None
            })
        );
        assert_eq!(
            PlaidWebhook::from_parts("TRANSACTIONS", Some("TRANSACTIONS_REMOVED"), fields),
            PlaidWebhook::Transactions(PlaidTransactionsEvent::TransactionsRemoved {
                removed_transactions: vec![]
            })
        );
        assert_eq!(
            PlaidWebhook::from_parts("ITEM", Some("ERROR"), fields),
            PlaidWebhook::Item(PlaidItemEvent::Error(PlaidError::default()))
        );
    }
}
