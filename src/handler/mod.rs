//! The handler trait users implement for their business logic, and how a callback reaches it.
//!
//! A [`Handler`] has one async method per callback type, each defaulting to success, so a user
//! overrides only what they care about; [`Handler::on_unknown`] catches types and codes this crate
//! does not know yet. Returning an error (or panicking, or running past the timeout) means "try
//! again later": the dispatcher retries with backoff until `--max-attempts`.

use std::{error::Error as StdError, fmt, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

mod log;

pub use self::log::LogHandler;

use crate::callback::{
    AccountsEvent, AuthEvent, BalanceEvent, Callback, Envelope, IdentityEvent, IncomeEvent,
    PlaidItemEvent, PlaidTransactionsEvent, PlaidWebhook, RecordEvent, RecordId, TransactionsEvent,
};

/// What a handler returns: `Ok(())` once the callback is fully handled.
pub type HandlerResult = Result<(), HandlerError>;

/// A handler's failure: the callback will be retried later.
///
/// Any `std::error::Error` converts into it with `?`; [`HandlerError::msg`] makes one from text.
pub struct HandlerError(Box<dyn StdError + Send + Sync + 'static>);

impl HandlerError {
    /// A failure described by a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }

    /// The underlying error.
    pub fn source_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// One delivery of a stored callback to the handlers.
#[derive(Debug, Clone)]
pub struct Context {
    /// The id this receiver gave the callback when it stored it; stable across retries and
    /// replays, so handlers can use it to make their work idempotent.
    pub id: String,
    /// Which handler call this is for the callback, starting at 1.
    pub attempt: u32,
    /// When the callback was received and stored.
    pub received_at: DateTime<Utc>,
    /// The callback itself.
    pub envelope: Arc<Envelope>,
}

impl Context {
    /// The record the callback is about.
    pub fn record(&self) -> &RecordId {
        self.envelope.record()
    }

    /// The typed callback.
    pub fn callback(&self) -> &Callback {
        self.envelope.callback()
    }

    /// The source that sent it: `okra` for Okra's, else the configured source's name.
    pub fn source(&self) -> &str {
        self.envelope.source()
    }
}

/// Business logic for callbacks. Override the methods for the callbacks you care about; the
/// others succeed without doing anything.
///
/// Callbacks of one record arrive one at a time, in the order they were received; different
/// records are handled concurrently, so implementations must be `Send + Sync`. Delivery is at
/// least once: use [`Context::id`] to make side effects idempotent.
///
/// ```
/// use okra_callbacks::{async_trait, Context, Handler, HandlerResult, TransactionsEvent};
///
/// struct Ledger;
///
/// #[async_trait]
/// impl Handler for Ledger {
///     async fn on_transactions(&self, cx: &Context, event: &TransactionsEvent) -> HandlerResult {
///         if let TransactionsEvent::Periodic { new_transactions: Some(n) } = event {
///             println!("record {}: {n} new transactions to fetch", cx.record());
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// A short name for logs and metrics.
    fn name(&self) -> &str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// Entry point: routes the callback to the method for its type. Override only to see every
    /// callback in one place (as [`AllOf`] does).
    async fn handle(&self, cx: &Context) -> HandlerResult {
        handle_by_type(self, cx).await
    }

    /// `TRANSACTIONS` callbacks with a known code.
    async fn on_transactions(&self, _cx: &Context, _event: &TransactionsEvent) -> HandlerResult {
        Ok(())
    }

    /// `RECORD` callbacks with a known code (callback URL changed, record error).
    async fn on_record(&self, _cx: &Context, _event: &RecordEvent) -> HandlerResult {
        Ok(())
    }

    /// `INCOME` callbacks with a known code.
    async fn on_income(&self, _cx: &Context, _event: &IncomeEvent) -> HandlerResult {
        Ok(())
    }

    /// `IDENTITY` callbacks with a known code.
    async fn on_identity(&self, _cx: &Context, _event: &IdentityEvent) -> HandlerResult {
        Ok(())
    }

    /// `BALANCE` callbacks with a known code.
    async fn on_balance(&self, _cx: &Context, _event: &BalanceEvent) -> HandlerResult {
        Ok(())
    }

    /// `AUTH` callbacks with a known code.
    async fn on_auth(&self, _cx: &Context, _event: &AuthEvent) -> HandlerResult {
        Ok(())
    }

    /// `ACCOUNTS` callbacks with a known code.
    async fn on_accounts(&self, _cx: &Context, _event: &AccountsEvent) -> HandlerResult {
        Ok(())
    }

    /// Callbacks whose type or code this crate does not know yet. The raw JSON is in
    /// `cx.envelope`. Succeeds by default, so a new Okra code is not retried forever.
    async fn on_unknown(&self, _cx: &Context) -> HandlerResult {
        Ok(())
    }

    /// Plaid `TRANSACTIONS` webhooks with a known code, from a `plaid` source; `cx.record()` is
    /// the Item.
    async fn on_plaid_transactions(
        &self,
        _cx: &Context,
        _event: &PlaidTransactionsEvent,
    ) -> HandlerResult {
        Ok(())
    }

    /// Plaid `ITEM` webhooks with a known code (Item errors, consent expiring, revocations).
    async fn on_plaid_item(&self, _cx: &Context, _event: &PlaidItemEvent) -> HandlerResult {
        Ok(())
    }

    /// Plaid webhooks whose type or code this crate does not model; by default handed to
    /// [`Handler::on_source`], the catch-all.
    async fn on_plaid_unknown(&self, cx: &Context) -> HandlerResult {
        self.on_source(cx).await
    }

    /// Callbacks of every source other than Okra without a typed method (Mono, Paystack,
    /// Standard Webhooks, `generic`): the generic event is `cx.envelope` — its
    /// [`source`](Envelope::source), [`record`](Envelope::record),
    /// [`callback_type`](Envelope::callback_type), [`callback_code`](Envelope::callback_code),
    /// [`event_id`](Envelope::event_id) and [`raw`](Envelope::raw) bytes. Succeeds by default.
    async fn on_source(&self, _cx: &Context) -> HandlerResult {
        Ok(())
    }
}

/// Routes a callback to the [`Handler`] method for its type; unknown types and codes go to
/// [`Handler::on_unknown`]. This is what [`Handler::handle`] does by default.
///
/// Callbacks of other sources go to the Plaid methods (a `plaid` source's webhooks) or to
/// [`Handler::on_source`].
pub async fn handle_by_type<H: Handler + ?Sized>(handler: &H, cx: &Context) -> HandlerResult {
    if !cx.envelope.is_okra() {
        return match cx.envelope.plaid() {
            Some(PlaidWebhook::Transactions(PlaidTransactionsEvent::Other(_)))
            | Some(PlaidWebhook::Item(PlaidItemEvent::Other(_)))
            | Some(PlaidWebhook::Unknown { .. }) => handler.on_plaid_unknown(cx).await,
            Some(PlaidWebhook::Transactions(e)) => handler.on_plaid_transactions(cx, e).await,
            Some(PlaidWebhook::Item(e)) => handler.on_plaid_item(cx, e).await,
            None => handler.on_source(cx).await,
        };
    }
    if cx.callback().is_unknown() {
        return handler.on_unknown(cx).await;
    }
    match cx.callback() {
        Callback::Transactions(e) => handler.on_transactions(cx, e).await,
        Callback::Record(e) => handler.on_record(cx, e).await,
        Callback::Income(e) => handler.on_income(cx, e).await,
        Callback::Identity(e) => handler.on_identity(cx, e).await,
        Callback::Balance(e) => handler.on_balance(cx, e).await,
        Callback::Auth(e) => handler.on_auth(cx, e).await,
        Callback::Accounts(e) => handler.on_accounts(cx, e).await,
        Callback::Unknown { .. } => handler.on_unknown(cx).await,
    }
}

#[async_trait]
impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn handle(&self, cx: &Context) -> HandlerResult {
        (**self).handle(cx).await
    }
}

/// Several handlers plugged in together: each callback goes to every handler, in order.
///
/// All must succeed. The first error stops the chain and the whole callback is retried later,
/// starting again from the first handler — so every handler must be idempotent (key on
/// [`Context::id`]).
#[derive(Clone, Default)]
pub struct AllOf {
    handlers: Vec<Arc<dyn Handler>>,
}

impl AllOf {
    /// An empty chain; it succeeds for every callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a handler to the chain.
    pub fn with(mut self, handler: impl Handler) -> Self {
        self.handlers.push(Arc::new(handler));
        self
    }

    /// Appends a shared handler to the chain.
    pub fn push(&mut self, handler: Arc<dyn Handler>) {
        self.handlers.push(handler);
    }

    /// How many handlers are chained.
    pub fn len(&self) -> usize {
        self.handlers.len()
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

impl fmt::Debug for AllOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.handlers.iter().map(|h| h.name()))
            .finish()
    }
}

#[async_trait]
impl Handler for AllOf {
    fn name(&self) -> &str {
        "all_of"
    }

    /// Calls each member in turn, each in a `handler` span, counting its calls and time under
    /// its own name and the callback's source (`okra_handler_attempts_total{handler=…,source=…}`,
    /// `okra_handler_duration_seconds`).
    async fn handle(&self, cx: &Context) -> HandlerResult {
        use futures::FutureExt;
        use tracing::Instrument;
        for h in &self.handlers {
            let started = std::time::Instant::now();
            let span = tracing::info_span!("handler", handler = h.name());
            let result = std::panic::AssertUnwindSafe(h.handle(cx))
                .catch_unwind()
                .instrument(span)
                .await;
            let outcome = match &result {
                Ok(Ok(())) => "ok",
                Ok(Err(_)) => "error",
                Err(_) => "panic",
            };
            let name = h.name().to_owned();
            let source = cx.source().to_owned();
            metrics::counter!(crate::telemetry::names::HANDLER_ATTEMPTS, "handler" => name.clone(), "source" => source.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!(crate::telemetry::names::HANDLER_DURATION, "handler" => name, "source" => source)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(result) => result
                    .map_err(|e| HandlerError::msg(format_args!("handler {}: {e}", h.name())))?,
                // The dispatcher reports the panic as it would for a lone handler.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// What the fake saw: which method was called, and for which callback.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Transactions(TransactionsEvent),
        Record(RecordEvent),
        Income(IncomeEvent),
        Identity(IdentityEvent),
        Balance(BalanceEvent),
        Auth(AuthEvent),
        Accounts(AccountsEvent),
        Unknown(String),
    }

    struct Fake(mpsc::UnboundedSender<Seen>);

    #[async_trait]
    impl Handler for Fake {
        async fn on_transactions(&self, _: &Context, e: &TransactionsEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Transactions(e.clone()))?)
        }
        async fn on_record(&self, _: &Context, e: &RecordEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Record(e.clone()))?)
        }
        async fn on_income(&self, _: &Context, e: &IncomeEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Income(e.clone()))?)
        }
        async fn on_identity(&self, _: &Context, e: &IdentityEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Identity(e.clone()))?)
        }
        async fn on_balance(&self, _: &Context, e: &BalanceEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Balance(e.clone()))?)
        }
        async fn on_auth(&self, _: &Context, e: &AuthEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Auth(e.clone()))?)
        }
        async fn on_accounts(&self, _: &Context, e: &AccountsEvent) -> HandlerResult {
            Ok(self.0.send(Seen::Accounts(e.clone()))?)
        }
        async fn on_unknown(&self, cx: &Context) -> HandlerResult {
            Ok(self
                .0
                .send(Seen::Unknown(cx.envelope.callback_type().into()))?)
        }
    }

    fn cx(body: &[u8]) -> Context {
        Context {
            id: "cb_1".into(),
            attempt: 1,
            received_at: Utc::now(),
            envelope: Arc::new(Envelope::parse(body.to_vec()).unwrap()),
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/samples/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn every_fixture_reaches_the_method_for_its_type() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handler = Fake(tx);
        let cases = [
            (
                "transactions_initial",
                Seen::Transactions(TransactionsEvent::Initial {
                    new_transactions: Some(19),
                }),
            ),
            (
                "transactions_full",
                Seen::Transactions(TransactionsEvent::Full {
                    new_transactions: Some(231),
                }),
            ),
            (
                "transactions_periodic",
                Seen::Transactions(TransactionsEvent::Periodic {
                    new_transactions: Some(3),
                }),
            ),
            (
                "record_webhook_update_acknowledged",
                Seen::Record(RecordEvent::WebhookUpdateAcknowledged {
                    new_callback_url: Some("https://okra.ng/example/callback".into()),
                }),
            ),
            (
                "income_ready_misspelled",
                Seen::Income(IncomeEvent::ProductIsReady),
            ),
            (
                "identity_ready",
                Seen::Identity(IdentityEvent::ProductIsReady),
            ),
            ("balance_ready", Seen::Balance(BalanceEvent::ProductIsReady)),
        ];
        for (name, expected) in cases {
            handler.handle(&cx(&fixture(name))).await.unwrap();
            assert_eq!(rx.try_recv().unwrap(), expected, "{name}");
        }
        // The remaining fixtures carry objects; check the variant only.
        for (name, check) in [
            (
                "transactions_deleted",
                (|s| matches!(s, Seen::Transactions(TransactionsEvent::Deleted { removed_transactions }) if removed_transactions.len() == 2))
                    as fn(&Seen) -> bool,
            ),
            (
                "record_error",
                |s| matches!(s, Seen::Record(RecordEvent::Error(e)) if e.error_code.as_deref() == Some("RECORD_LOGIN_REQUIRED")),
            ),
            (
                "identity_is_ready",
                |s| matches!(s, Seen::Identity(IdentityEvent::IdentityIsReady(Some(i))) if i.bvn.as_deref() == Some("22222222222")),
            ),
            (
                "balance_success",
                |s| matches!(s, Seen::Balance(BalanceEvent::Success(Some(b))) if b.available_balance == Some(150000.0)),
            ),
            (
                "auth_success",
                |s| matches!(s, Seen::Auth(AuthEvent::Success(Some(a))) if a.status == Some(true)),
            ),
            (
                "accounts_success",
                |s| matches!(s, Seen::Accounts(AccountsEvent::Success(Some(a))) if a.nuban.as_deref() == Some("0123456789")),
            ),
        ] {
            handler.handle(&cx(&fixture(name))).await.unwrap();
            let seen = rx.try_recv().unwrap();
            assert!(check(&seen), "{name}: {seen:?}");
        }
        assert!(rx.try_recv().is_err(), "one call per callback");
    }

    #[tokio::test]
    async fn unknown_types_and_codes_reach_the_catch_all() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handler = Fake(tx);
        for (body, kind) in [
            (&br#"{"callback_type":"LOANS","record":"r"}"#[..], "LOANS"),
            (
                br#"{"callback_type":"BALANCE","callback_code":"BALANCE_FROZEN","record":"r"}"#,
                "BALANCE",
            ),
            (br#"{"method":"AUTH","record":"r"}"#, "AUTH"),
        ] {
            handler.handle(&cx(body)).await.unwrap();
            assert_eq!(rx.try_recv().unwrap(), Seen::Unknown(kind.into()));
        }
    }

    /// What a source-aware fake saw: the Plaid methods, or the catch-all with the source.
    #[derive(Debug, PartialEq)]
    enum SeenSource {
        PlaidTransactions(PlaidTransactionsEvent),
        PlaidItem(PlaidItemEvent),
        Source(String, String),
    }

    struct SourceFake(mpsc::UnboundedSender<SeenSource>);

    #[async_trait]
    impl Handler for SourceFake {
        async fn on_plaid_transactions(
            &self,
            _: &Context,
            e: &PlaidTransactionsEvent,
        ) -> HandlerResult {
            Ok(self.0.send(SeenSource::PlaidTransactions(e.clone()))?)
        }
        async fn on_plaid_item(&self, _: &Context, e: &PlaidItemEvent) -> HandlerResult {
            Ok(self.0.send(SeenSource::PlaidItem(e.clone()))?)
        }
        async fn on_source(&self, cx: &Context) -> HandlerResult {
            let seen = SeenSource::Source(cx.source().into(), cx.envelope.callback_type().into());
            Ok(self.0.send(seen)?)
        }
        async fn on_unknown(&self, _: &Context) -> HandlerResult {
            Err(HandlerError::msg(
                "another source's callback reached Okra's catch-all",
            ))
        }
    }

    fn source_cx(source: &str, model: crate::callback::SourceModel, body: &[u8]) -> Context {
        let fields: serde_json::Value = serde_json::from_slice(body).unwrap();
        let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let event = crate::callback::Event {
            source: source.into(),
            record: text("item_id").unwrap_or_else(|| "acc_1".into()),
            callback_type: text("webhook_type").or_else(|| text("event")).unwrap(),
            callback_code: text("webhook_code"),
            event_id: None,
        };
        Context {
            id: "cb_2".into(),
            attempt: 1,
            received_at: Utc::now(),
            envelope: Arc::new(Envelope::from_event(event, body.to_vec(), model).unwrap()),
        }
    }

    #[tokio::test]
    async fn other_sources_reach_the_plaid_methods_or_the_catch_all() {
        use crate::callback::SourceModel::{Generic, Plaid};
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handler = SourceFake(tx);
        let cases = [
            (
                source_cx("plaid", Plaid, &fixture("plaid/transactions_default_update")),
                SeenSource::PlaidTransactions(PlaidTransactionsEvent::DefaultUpdate {
                    new_transactions: Some(3),
                }),
            ),
            (
                source_cx("plaid", Plaid, &fixture("plaid/item_login_repaired")),
                SeenSource::PlaidItem(PlaidItemEvent::LoginRepaired),
            ),
            (
                // A Plaid type this crate does not model falls to the catch-all.
                source_cx("plaid", Plaid, br#"{"webhook_type":"AUTH","webhook_code":"AUTOMATICALLY_VERIFIED","item_id":"i"}"#),
                SeenSource::Source("plaid".into(), "AUTH".into()),
            ),
            (
                source_cx("mono", Generic, &fixture("mono/account_updated")),
                SeenSource::Source("mono".into(), "mono.events.account_updated".into()),
            ),
            (
                // A generic source is not typed as Plaid's even with Plaid's shape.
                source_cx("relay", Generic, &fixture("plaid/item_login_repaired")),
                SeenSource::Source("relay".into(), "ITEM".into()),
            ),
        ];
        for (cx, expected) in cases {
            handler.handle(&cx).await.unwrap();
            assert_eq!(rx.try_recv().unwrap(), expected);
        }
        assert!(rx.try_recv().is_err(), "one call per callback");
        // Okra's callbacks still go to Okra's methods, never the sources' catch-all.
        handler
            .handle(&cx(&fixture("balance_ready")))
            .await
            .unwrap();
        assert!(rx.try_recv().is_err());
    }

    struct Failing;
    #[async_trait]
    impl Handler for Failing {
        async fn on_auth(&self, _: &Context, _: &AuthEvent) -> HandlerResult {
            Err(HandlerError::msg("bank API down"))
        }
    }

    #[tokio::test]
    async fn all_of_runs_in_order_and_stops_at_the_first_error() {
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let chain = AllOf::new().with(Fake(tx1)).with(Fake(tx2));
        chain.handle(&cx(&fixture("balance_ready"))).await.unwrap();
        assert_eq!(
            rx1.try_recv().unwrap(),
            Seen::Balance(BalanceEvent::ProductIsReady)
        );
        assert_eq!(
            rx2.try_recv().unwrap(),
            Seen::Balance(BalanceEvent::ProductIsReady)
        );

        let (tx3, mut rx3) = mpsc::unbounded_channel();
        let chain = AllOf::new().with(Failing).with(Fake(tx3));
        let err = chain
            .handle(&cx(
                br#"{"callback_type":"AUTH","callback_code":"PRODUCT_IS_READY","record":"r"}"#,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "handler Failing: bank API down");
        assert!(
            rx3.try_recv().is_err(),
            "later handlers do not run after a failure"
        );
        // The failing handler ignores other types, so they succeed through the whole chain.
        chain.handle(&cx(&fixture("balance_ready"))).await.unwrap();
        assert_eq!(
            rx3.try_recv().unwrap(),
            Seen::Balance(BalanceEvent::ProductIsReady)
        );
    }

    #[tokio::test]
    async fn all_of_counts_each_member_under_its_own_name() {
        let metrics = crate::Metrics::private();
        let (tx, _rx) = mpsc::unbounded_channel();
        let chain = AllOf::new().with(Fake(tx)).with(Failing);
        let auth =
            cx(br#"{"callback_type":"AUTH","callback_code":"PRODUCT_IS_READY","record":"r"}"#);
        let balance = cx(&fixture("balance_ready"));
        metrics
            .scope(async {
                chain.handle(&auth).await.unwrap_err();
                chain.handle(&balance).await.unwrap();
            })
            .await;
        let text = metrics.render();
        for line in [
            r#"okra_handler_attempts_total{handler="Fake",source="okra",outcome="ok"} 2"#,
            r#"okra_handler_attempts_total{handler="Failing",source="okra",outcome="error"} 1"#,
            r#"okra_handler_attempts_total{handler="Failing",source="okra",outcome="ok"} 1"#,
            r#"okra_handler_duration_seconds_count{handler="Fake",source="okra"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
