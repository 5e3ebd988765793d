//! Test support in one place. Spawns the real receiver on port 0 over a real store, with a fake
//! handler that reports what it sees down a channel. Quiet unless `TEST_LOG` is set.
//!
//! - [`app`] / [`on`] → [`Builder`] → [`TestApp`], with one typed helper per endpoint
//!   ([`TestApp::post_callback`], [`TestApp::get_callback`], [`TestApp::record_query`],
//!   [`TestApp::replay`], [`TestApp::replay_dead`]); [`paths`] for tests that build requests
//!   themselves (raw sockets, a router called in-process, child processes);
//! - [`eventually`]: the one way to wait for something asynchronous;
//! - [`fixture`] / [`samples`]: the one loader of Okra's sample payloads (`samples/`);
//! - [`callback`]: a distinct callback body per record and marker;
//! - [`error_body`]: an error answer, checked against the contract's shape;
//! - [`Switchable`]: a store the test can switch off.
//!
//! Child processes, the forward sink and replicas are in `process.rs`; a controllable TCP proxy
//! in `proxy.rs`.
//!
//! PostgreSQL tests read the server URL from `OKRA_TEST_DATABASE_URL` and create a fresh database
//! per test. Without it they skip with a message — except under `CI=true`, where they must run.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, Once},
    time::Duration,
};

use okra_callbacks::{
    async_trait, Config, Context, Handler, HandlerError, HandlerResult, Receiver,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// The variable holding the PostgreSQL server URL for tests.
pub const PG_ENV: &str = "OKRA_TEST_DATABASE_URL";

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the server [`PG_ENV`] names.
    Postgres,
}

/// The PostgreSQL server URL for tests, or `None` (with a message) when it is not configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{PG_ENV} is not set, but CI=true: the PostgreSQL tests must run in CI")
        }
        _ => {
            eprintln!(
                "skipping a PostgreSQL test: set {PG_ENV}=postgres://postgres@127.0.0.1:5432/test to run it"
            );
            None
        }
    }
}

/// A database for one test: a SQLite file in a temp dir, or a fresh PostgreSQL database.
pub struct TestDb {
    /// The URL the receiver opens.
    pub url: String,
    /// Which store it is.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, empty database of `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path: PathBuf = dir.path().join("okra.db");
                Self {
                    url: format!("sqlite://{}", path.display()),
                    backend,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let base = postgres_url().expect("Backend::Postgres needs the test URL");
                Self {
                    url: fresh_postgres_database(&base).await,
                    backend,
                    _dir: None,
                }
            }
        }
    }
}

/// Creates a uniquely named database on the server `base` points at; returns its URL.
pub async fn fresh_postgres_database(base: &str) -> String {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {PG_ENV}: {e}"));
    tokio::spawn(conn);
    drop_stale_databases(&client).await;
    let name = format!("okra_test_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (prefix, _) = base
        .split('?')
        .next()
        .unwrap()
        .rsplit_once('/')
        .expect("a postgres:// URL with a database name");
    format!("{prefix}/{name}")
}

/// A connection to the database at `url`, for tests that look under the store.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The first column of every row `sql` answers, for tests that look under the store.
pub async fn first_column<T: tokio_postgres::types::FromSqlOwned>(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The PostgreSQL migrations in order, for tests that build a database of an earlier schema.
const POSTGRES_MIGRATIONS: [&str; 4] = [
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_operator_view.sql"),
    include_str!("../../migrations/postgres/0003_lease_generation.sql"),
    include_str!("../../migrations/postgres/0004_history_in_row.sql"),
];

/// Brings the empty database behind `client` to schema `version` (migrations 1 to `version`,
/// recorded as applied), as an earlier release left it; the store migrates it from there.
pub async fn postgres_schema(client: &tokio_postgres::Client, version: usize) {
    client
        .batch_execute(
            "CREATE TABLE okra_schema_migrations (
               version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (i, sql) in POSTGRES_MIGRATIONS[..version].iter().enumerate() {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO okra_schema_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await
            .unwrap();
    }
}

/// How old a test database must be before any test run drops it: no test runs this long.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Drops up to 100 test databases (of any run, on this server) created more than
/// [`STALE_AFTER`] ago, once per test process: each PostgreSQL test creates a database of its own, and without
/// this they pile up until the server's disk is full. The creation time is the UUIDv7 in the
/// name.
async fn drop_stale_databases(client: &tokio_postgres::Client) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let Ok(rows) = client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'okra\\_test\\_%'",
                    &[],
                )
                .await
            else {
                return;
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let stale = rows
                .iter()
                .map(|row| row.get::<_, String>(0))
                .filter(|name| {
                    name.strip_prefix("okra_test_")
                        .and_then(|id| id.get(..12))
                        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
                        .is_some_and(|created_ms| {
                            now_ms.saturating_sub(created_ms) > STALE_AFTER.as_millis()
                        })
                });
            // A bounded sweep per run (each drop checkpoints): a backlog drains over a few runs
            // without holding up this one.
            for name in stale.take(100) {
                // Another run may be sweeping too; a failed drop is its drop.
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        })
        .await;
}

/// What the fake handler does with one delivery.
#[derive(Debug, Clone)]
pub enum Action {
    /// Returns `Ok`.
    Succeed,
    /// Returns this error.
    Fail(&'static str),
    /// Panics.
    Panic,
    /// Takes this long, then succeeds.
    Sleep(Duration),
}

/// One delivery the fake handler saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The callback id the receiver gave.
    pub id: String,
    /// The record it belongs to.
    pub record: String,
    /// `callback_type` as parsed.
    pub callback_type: String,
    /// `callback_code` as parsed.
    pub callback_code: Option<String>,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// The bytes the handler got.
    pub body: Vec<u8>,
    /// What the script made of it: `ok`, `fail` or `panic`.
    pub outcome: &'static str,
}

type Script = Arc<dyn Fn(&Context) -> Action + Send + Sync>;

/// Reports every call down a channel, then acts as its script says.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Seen>,
    script: Script,
    load: Arc<Load>,
}

/// How many handler calls overlapped: in all, and within one record.
#[derive(Default)]
pub struct Load {
    now: Mutex<HashMap<String, usize>>,
    total_now: std::sync::atomic::AtomicUsize,
    /// The most calls in flight at once.
    pub max_total: std::sync::atomic::AtomicUsize,
    /// The most calls of one record in flight at once.
    pub max_per_record: std::sync::atomic::AtomicUsize,
}

impl Load {
    fn enter(&self, record: &str) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut now = self.now.lock().unwrap();
        let n = now.entry(record.to_owned()).or_default();
        *n += 1;
        self.max_per_record.fetch_max(*n, SeqCst);
        let total = self.total_now.fetch_add(1, SeqCst) + 1;
        self.max_total.fetch_max(total, SeqCst);
    }

    fn leave(&self, record: &str) {
        *self.now.lock().unwrap().get_mut(record).unwrap() -= 1;
        self.total_now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Leaves the load count even when the call is cancelled (timeout) or panics.
struct Entered<'a>(&'a Load, String);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave(&self.1);
    }
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        self.load.enter(cx.record().as_str());
        let _entered = Entered(&self.load, cx.record().to_string());
        let action = (self.script)(cx);
        if let Action::Sleep(d) = action {
            tokio::time::sleep(d).await;
        }
        let outcome = match action {
            Action::Fail(_) => "fail",
            Action::Panic => "panic",
            _ => "ok",
        };
        let _ = self.tx.send(Seen {
            id: cx.id.clone(),
            record: cx.record().to_string(),
            callback_type: cx.envelope.callback_type().to_owned(),
            callback_code: cx.envelope.callback_code().map(str::to_owned),
            attempt: cx.attempt,
            body: cx.envelope.raw().to_vec(),
            outcome,
        });
        match action {
            Action::Fail(msg) => Err(HandlerError::msg(msg)),
            Action::Panic => panic!("the test handler panics on purpose"),
            _ => Ok(()),
        }
    }
}

/// A running receiver and what its handler saw.
pub struct TestApp {
    /// `http://ADDR`.
    pub base: String,
    /// A client for requests the helpers do not cover.
    pub client: reqwest::Client,
    /// What the handler saw, in order (see [`TestApp::next_seen`]).
    pub seen: mpsc::UnboundedReceiver<Seen>,
    /// How the handler's calls overlapped.
    pub load: Arc<Load>,
    /// The database it runs on.
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), okra_callbacks::Error>>>,
}

/// Installs the test binary's global subscriber (once per run): one that logs to stderr when
/// `TEST_LOG` is set, else a registry that shows nothing.
///
/// The global subscriber is never nothing, because `tracing` caches whether each callsite is
/// enabled once per process, computed on the thread that first reaches it: a test thread with
/// no subscriber reaching, say, the `deliver` span first would cache it as disabled for every
/// thread, and a test capturing logs (see [`keep_callsites_enabled`]) would then find its
/// events outside their spans — one run in about twenty, under load. The bare registry wants
/// every callsite, so none is cached as disabled. It also forwards the `log` records of
/// dependencies to each thread's subscriber.
pub fn init_logs() {
    use tracing_subscriber::util::SubscriberInitExt;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            okra_callbacks::telemetry::init_tracing(okra_callbacks::telemetry::LogFormat::Text);
        } else {
            let _ = tracing_subscriber::registry().try_init();
        }
    });
}

/// Call before a test captures logs with a thread-local subscriber (`set_default`): the
/// global subscriber of [`init_logs`], and every callsite cached before it asked again.
pub fn keep_callsites_enabled() {
    init_logs();
    tracing::callsite::rebuild_interest_cache();
}

/// Settings for fast tests: short retry delays.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::default();
    config.store.database_url = db.url.clone();
    config.delivery.retry_base_delay = Duration::from_millis(20);
    config.delivery.retry_max_delay = Duration::from_millis(200);
    config.delivery.handler_timeout = Duration::from_secs(5);
    config.limits.shutdown_timeout = Duration::from_secs(10);
    config
}

/// How a [`TestApp`] is set up before [`Builder::spawn`]: from [`app`] or [`on`].
pub struct Builder {
    db: TestDb,
    config: Config,
    script: Script,
    metrics: bool,
    /// Handlers that run before the recorder (e.g. a broker output): the recorder then sees a
    /// callback only once they all succeeded.
    before: Vec<Arc<dyn Handler>>,
}

impl Builder {
    /// Changes the receiver's settings (they start as [`test_config`]).
    pub fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// What the fake handler does with each delivery (it succeeds by default).
    pub fn script(mut self, f: impl Fn(&Context) -> Action + Send + Sync + 'static) -> Self {
        self.script = Arc::new(f);
        self
    }

    /// Runs `handler` before the recording fake, in one `AllOf` chain.
    pub fn before(mut self, handler: Arc<dyn Handler>) -> Self {
        self.before.push(handler);
        self
    }

    /// Records metrics into a registry of this app's own and serves them at `/metrics`, so a
    /// test sees exactly its own traffic while others run in parallel.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Starts the receiver on 127.0.0.1 port 0.
    pub async fn spawn(self) -> TestApp {
        init_logs();
        let (tx, seen) = mpsc::unbounded_channel();
        let load = Arc::new(Load::default());
        let handler = Recorder {
            tx,
            script: self.script,
            load: load.clone(),
        };
        let mut receiver = if self.before.is_empty() {
            Receiver::new(self.config, handler).await
        } else {
            let mut chain = okra_callbacks::AllOf::new();
            for h in self.before {
                chain.push(h);
            }
            Receiver::new(self.config, chain.with(handler)).await
        }
        .expect("receiver starts");
        if self.metrics {
            receiver = receiver.with_metrics(okra_callbacks::Metrics::private());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(receiver.run(listener, async {
            let _ = stop_rx.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            seen,
            load,
            db: self.db,
            shutdown: Some(stop_tx),
            task: Some(task),
        }
    }
}

/// A receiver on a fresh database of `backend`.
pub async fn app(backend: Backend) -> Builder {
    let db = TestDb::new(backend).await;
    on(db)
}

/// A receiver on an existing database (e.g. after a restart).
pub fn on(db: TestDb) -> Builder {
    let config = test_config(&db);
    Builder {
        db,
        config,
        script: Arc::new(|_| Action::Succeed),
        metrics: false,
        before: Vec::new(),
    }
}

impl TestApp {
    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a callback body as Okra would.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_callback(body).await
    }

    /// `POST /v1/callback` with a JSON body, as Okra sends it; the raw answer.
    pub async fn post_callback(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.callback_request()
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// A `POST /v1/callback` request with nothing set yet, for tests that craft the headers
    /// (content type, token, signature) themselves.
    pub fn callback_request(&self) -> reqwest::RequestBuilder {
        self.client.post(self.url(paths::CALLBACK))
    }

    /// `GET /v1/callbacks/{id}`: the status and the JSON answer (`Null` when not JSON).
    pub async fn get_callback(&self, id: &str) -> (u16, serde_json::Value) {
        self.get_json(&paths::callback(id)).await
    }

    /// `GET /v1/callback?record=..&method=..`: the status and the JSON answer.
    pub async fn record_query(&self, record: &str, method: &str) -> (u16, serde_json::Value) {
        self.get_json(&paths::record_query(record, method)).await
    }

    /// `POST /v1/callbacks/{id}/replay`; the raw answer.
    pub async fn replay(&self, id: &str) -> reqwest::Response {
        self.client
            .post(self.url(&paths::replay(id)))
            .send()
            .await
            .expect("request")
    }

    /// `POST /v1/callbacks/replay?status=dead`; the raw answer.
    pub async fn replay_dead(&self) -> reqwest::Response {
        self.client
            .post(self.url(paths::REPLAY_DEAD))
            .send()
            .await
            .expect("request")
    }

    /// POSTs and returns the JSON answer, asserting 200.
    pub async fn post_ok(&self, body: impl Into<reqwest::Body>) -> serde_json::Value {
        let response = self.post(body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET {path}`: the status and the JSON answer (`Null` when not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits for the next delivery the handler saw.
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("a delivery within 10 s")
            .expect("handler channel open")
    }

    /// Collects `n` deliveries.
    pub async fn seen_n(&mut self, n: usize) -> Vec<Seen> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_seen().await);
        }
        out
    }

    /// Asserts no further delivery arrives within `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(seen)) = tokio::time::timeout(d, self.seen.recv()).await {
            panic!("unexpected delivery: {seen:?}");
        }
    }

    /// Polls `GET /v1/callbacks/{id}` until its status is `status`; returns that state.
    pub async fn wait_status(&self, id: &str, status: &str) -> serde_json::Value {
        let what = format!("{id} became {status}");
        eventually(Duration::from_secs(10), &what, || async move {
            let (code, body) = self.get_callback(id).await;
            assert_eq!(code, 200, "{body}");
            (body["status"] == status).then_some(body)
        })
        .await
    }

    /// Shuts down gracefully and hands back the database for a restart, with the deliveries the
    /// handler made that the test had not taken yet — those made while the receiver drained
    /// included: a graceful stop finishes the record it is serving before it lets go.
    pub async fn stop_seen(mut self) -> (TestDb, Vec<Seen>) {
        let mut seen = std::mem::replace(&mut self.seen, mpsc::unbounded_channel().1);
        let db = self.stop().await;
        let mut rest = Vec::new();
        while let Ok(one) = seen.try_recv() {
            rest.push(one);
        }
        (db, rest)
    }

    /// Shuts down gracefully and hands back the database for a restart.
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("receiver task")
                .expect("receiver stops cleanly");
        }
        // Release the SQLite file lock held by the database thread.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                backend: Backend::Sqlite,
                _dir: None,
            },
        )
    }
}

/// A callback body for `record` with a marker field, so each is distinct.
pub fn callback(record: &str, kind: &str, code: &str, n: usize) -> String {
    serde_json::json!({
        "callback_type": kind,
        "callback_code": code,
        "record": record,
        "error": null,
        "seq": n,
    })
    .to_string()
}

/// The directory of Okra's sample payloads.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// A sample payload from `samples/`, by file stem (`fixture("auth_success")`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = samples_dir().join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("sample {}: {e}", path.display()))
}

/// Every sample in `samples/`, as (file stem, bytes), sorted by name.
pub fn samples() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(samples_dir())
        .expect("the samples/ directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let body = fixture(&name);
            (name, body)
        })
        .collect()
}

/// The paths of the contract's callback endpoints, so no test spells them out.
pub mod paths {
    /// `POST` a callback here; `GET` it with `?record=&method=` to list a record's callbacks.
    pub const CALLBACK: &str = "/v1/callback";
    /// `POST`: hand every dead callback over again.
    pub const REPLAY_DEAD: &str = "/v1/callbacks/replay?status=dead";

    /// `GET` one callback's state.
    pub fn callback(id: &str) -> String {
        format!("/v1/callbacks/{id}")
    }

    /// `POST`: hand one callback over again.
    pub fn replay(id: &str) -> String {
        format!("/v1/callbacks/{id}/replay")
    }

    /// `GET`: the callbacks of `record` for the product `method`.
    pub fn record_query(record: &str, method: &str) -> String {
        list(&[("record", record), ("method", method)])
    }

    /// `GET /v1/callback` with exactly these query parameters (e.g. one missing, for a 400).
    pub fn list(params: &[(&str, &str)]) -> String {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{CALLBACK}?{}", query.join("&"))
    }
}

/// Polls `probe` every 20 ms until it yields `Some`, and returns that; panics after `within`
/// saying `what` never happened. The one way tests wait for something asynchronous: a fixed
/// sleep is either too short on a busy machine or slower than needed.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    try_eventually(within, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting until {what}"))
}

/// [`eventually`] that answers `None` after `within` instead of panicking, for a test that
/// says itself what went wrong.
pub async fn try_eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(done) = probe().await {
            return Some(done);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a plain condition.
pub async fn eventually_true(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    eventually(within, what, || {
        std::future::ready(condition().then_some(()))
    })
    .await
}

/// Runs each named test against SQLite and, when configured, PostgreSQL:
/// `both_stores!(name)` makes `name::sqlite` and `name::postgres` from `async fn name(Backend)`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_url().is_some() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// A store that can be switched off, to see how the receiver behaves when its store fails.
pub struct Switchable {
    inner: Arc<dyn okra_callbacks::store::Store>,
    down: std::sync::atomic::AtomicBool,
}

impl Switchable {
    /// A switch in front of `inner`, on.
    pub fn new(inner: Arc<dyn okra_callbacks::store::Store>) -> Self {
        Self {
            inner,
            down: Default::default(),
        }
    }

    /// Off (`true`: every call fails as unavailable) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), okra_callbacks::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(okra_callbacks::store::StoreError::Unavailable(
                "switched off by the test".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl okra_callbacks::store::Store for Switchable {
    async fn insert(
        &self,
        cb: okra_callbacks::store::NewCallback,
        w: Duration,
    ) -> Result<okra_callbacks::store::Inserted, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.insert(cb, w).await
    }
    async fn claim(
        &self,
        o: &str,
        m: usize,
        p: usize,
        l: Duration,
    ) -> Result<Vec<okra_callbacks::store::Claim>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.claim(o, m, p, l).await
    }
    async fn finish_attempt(
        &self,
        o: &str,
        cb: &okra_callbacks::store::StoredCallback,
        out: okra_callbacks::store::Outcome,
        a: &okra_callbacks::store::Attempt,
        l: Duration,
    ) -> Result<(), okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.finish_attempt(o, cb, out, a, l).await
    }
    async fn release(&self, o: &str, r: &str) -> Result<(), okra_callbacks::store::StoreError> {
        self.inner.release(o, r).await
    }
    async fn release_all(&self, o: &str) -> Result<(), okra_callbacks::store::StoreError> {
        self.inner.release_all(o).await
    }
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<okra_callbacks::store::StoredCallback>, okra_callbacks::store::StoreError>
    {
        self.check()?;
        self.inner.get(id).await
    }
    async fn list(
        &self,
        r: &str,
        t: &[&str],
    ) -> Result<okra_callbacks::store::Listing, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.list(r, t).await
    }
    async fn replay(&self, id: &str) -> Result<bool, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay(id).await
    }
    async fn replay_dead(&self) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay_dead().await
    }
    async fn ping(&self) -> Result<(), okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn backlog(
        &self,
    ) -> Result<okra_callbacks::store::Backlog, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.backlog().await
    }
    async fn prune(
        &self,
        b: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.prune(b).await
    }
    async fn search(
        &self,
        f: &okra_callbacks::store::Filter,
        n: usize,
        c: Option<&okra_callbacks::store::Cursor>,
    ) -> Result<okra_callbacks::store::Page, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.search(f, n, c).await
    }
    async fn record_page(
        &self,
        r: &str,
        t: &str,
        n: usize,
        c: Option<&okra_callbacks::store::Cursor>,
    ) -> Result<Option<okra_callbacks::store::Page>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.record_page(r, t, n, c).await
    }
    async fn history(
        &self,
        id: &str,
    ) -> Result<Vec<okra_callbacks::store::Attempt>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.history(id).await
    }
    async fn replay_matching(
        &self,
        f: &okra_callbacks::store::Filter,
    ) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay_matching(f).await
    }
    async fn stats(
        &self,
    ) -> Result<okra_callbacks::store::Stats, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.stats().await
    }
}

/// A receiver over a store built by the test; returns it (unstoppable: it ends with the test)
/// and the handler's channel.
pub async fn spawn_with_store(
    db: &TestDb,
    store: Arc<dyn okra_callbacks::store::Store>,
) -> (TestApp, mpsc::UnboundedReceiver<Seen>) {
    init_logs();
    let (tx, seen) = mpsc::unbounded_channel();
    let handler = Arc::new(Recorder {
        tx,
        script: Arc::new(|_| Action::Succeed),
        load: Default::default(),
    });
    let receiver = Receiver::with_store(test_config(db), store, handler).expect("usable config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver.run(listener, std::future::pending()));
    let (_unused_tx, unused_rx) = mpsc::unbounded_channel();
    let app = TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        seen: unused_rx,
        load: Default::default(),
        db: TestDb {
            url: db.url.clone(),
            backend: db.backend,
            _dir: None,
        },
        shutdown: None,
        task: None,
    };
    (app, seen)
}

/// An error answer's status, `error.code` and `error.message` — checking the body has the
/// contract's shape and a message that says something.
pub async fn error_body(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("error bodies are JSON");
    let field = |name: &str| {
        body["error"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no error.{name} in the {status} answer {body}"))
            .to_owned()
    };
    let (code, message) = (field("code"), field("message"));
    assert!(!message.is_empty(), "an empty error message for {code}");
    (status, code, message)
}
