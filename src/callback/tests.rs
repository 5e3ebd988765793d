//! Parsing real and edge-case callbacks.

use super::*;
use proptest::prelude::*;
use serde_json::Value;

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
