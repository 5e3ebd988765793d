//! The real receiver on 127.0.0.1 port 0 over a test database, with the fake handler:
//! [`app`] / [`on`] → [`Builder`] → [`TestApp`]; and the test binary's logging.

use std::{
    sync::{Arc, Once},
    time::Duration,
};

use okra_callbacks::{Config, Context, Handler, Receiver};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    db::{Backend, TestDb},
    handler::{Action, Load, Recorder, Script, Seen},
    wait::eventually,
};

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
    /// Temporary files the start-up reads (a sources file), kept until it has.
    files: Vec<tempfile::TempDir>,
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

    /// Keeps `dir` until the receiver has started (it reads the files there at start-up).
    pub(super) fn keep(mut self, dir: tempfile::TempDir) -> Self {
        self.files.push(dir);
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
        files: Vec::new(),
    }
}

impl TestApp {
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
            TestDb::unowned(String::new(), Backend::Sqlite),
        )
    }
}

/// A receiver of the test's own making, served on 127.0.0.1 port 0 until [`Served::stop`].
pub struct Served {
    /// `http://ADDR`.
    pub base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<(), okra_callbacks::Error>>,
}

/// Serves `receiver` on 127.0.0.1 port 0.
pub async fn serve(receiver: Receiver) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(receiver.run(listener, async {
        let _ = stopped.await;
    }));
    Served { base, stop, task }
}

impl Served {
    /// Shuts the receiver down gracefully and waits until it has stopped.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("receiver task")
            .expect("receiver stops cleanly");
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
        db: TestDb::unowned(db.url.clone(), db.backend),
        shutdown: None,
        task: None,
    };
    (app, seen)
}
