//! The receiver: the HTTP API and the dispatcher over one store, with graceful shutdown.
//!
//! The caller owns the socket and the shutdown signal, so tests bind port 0 and embedders pick
//! their own signal handling.

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, ConfigError},
    dispatch::Dispatcher,
    handler::Handler,
    http::{
        self,
        serve::{serve, ConnectionLimits},
        Access, AppState,
    },
    settings::Settings,
    source::Sources,
    store::{self, Store, StoreError},
    Metrics,
};

/// The sources `--sources` names (none without it), each warning of the file logged once: a
/// mistake in the file stops the start-up with the source and the setting named.
fn load_sources(settings: &Settings) -> Result<Sources, ConfigError> {
    let Some(path) = &settings.access.sources else {
        return Ok(Sources::default());
    };
    let sources = Sources::load(path).map_err(|e| ConfigError(e.to_string()))?;
    for warning in sources.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        sources = %sources.names().collect::<Vec<_>>().join(","),
        "serving sources at /v1/sources/NAME"
    );
    Ok(sources)
}

/// Why the receiver could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// A setting cannot be used (e.g. a secret file that cannot be read).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A callback receiver: build it with [`Receiver::new`], then [`Receiver::run`] it.
///
/// ```no_run
/// use okra_callbacks::{Config, LogHandler, Receiver};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = Config::default();
/// config.store.database_url = "sqlite://callbacks.db".into();
/// let receiver = Receiver::new(config, LogHandler::new()).await?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// receiver.run(listener, async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
pub struct Receiver {
    settings: Settings,
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    state: AppState,
}

impl Receiver {
    /// Opens (and migrates) the store `config.store.database_url` names, and serves `handler`.
    /// Checks the configuration first: `…_file` secrets are read and a setting that cannot be
    /// used is an error.
    pub async fn new(config: Config, handler: impl Handler) -> Result<Self, Error> {
        let settings = Settings::resolve(config)?;
        let access = Access::from_config(&settings.access)?;
        let sources = load_sources(&settings)?;
        let store = store::open_with(&settings.database_url, &settings.store).await?;
        Ok(Self::build(settings, access, store, Arc::new(handler)).with_sources(sources))
    }

    /// Uses a store opened elsewhere (e.g. shared with other code, or a custom [`Store`]).
    ///
    /// Fails if the configuration cannot be used (an unreadable secret file, an invalid
    /// signature secret): it fails closed rather than serve without a secret it was given.
    pub fn with_store(
        config: Config,
        store: Arc<dyn Store>,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, Error> {
        let settings = Settings::resolve(config)?;
        let access = Access::from_config(&settings.access)?;
        let sources = load_sources(&settings)?;
        Ok(Self::build(settings, access, store, handler).with_sources(sources))
    }

    /// Serves `sources` at `POST /v1/sources/{name}` (replacing those of `--sources`), and
    /// hands their callbacks to the handlers typed as each source's preset says.
    pub fn with_sources(mut self, sources: Sources) -> Self {
        let models = sources
            .iter()
            .map(|s| (s.name().to_owned(), s.model()))
            .collect();
        self.dispatcher = self.dispatcher.with_source_models(models);
        self.state.set_sources(Arc::new(sources));
        self
    }

    fn build(
        settings: Settings,
        access: Access,
        store: Arc<dyn Store>,
        handler: Arc<dyn Handler>,
    ) -> Self {
        let owner = format!("{}-{}", hostname(), uuid::Uuid::now_v7());
        let dispatcher = Dispatcher::new(store.clone(), handler, settings.dispatch.clone(), owner);
        let state = AppState::new(&settings, access, store.clone(), dispatcher.waker());
        Self {
            settings,
            store,
            dispatcher,
            state,
        }
    }

    /// Records metrics into `metrics` and serves them at `GET /metrics`: the global recorder
    /// ([`crate::telemetry::install_metrics`], or a `PrometheusHandle` of one installed
    /// elsewhere) or a registry private to this receiver ([`Metrics::private`]).
    pub fn with_metrics(mut self, metrics: impl Into<Metrics>) -> Self {
        let metrics = metrics.into();
        self.dispatcher.set_metrics(metrics.clone());
        self.state.set_metrics(metrics);
        self
    }

    /// The HTTP routes, for testing with `oneshot` or nesting into a larger app. The dispatcher
    /// only runs under [`Receiver::run`].
    pub fn router(&self) -> Router {
        http::router(self.state.clone())
    }

    /// The store this receiver uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serves HTTP on `listener` and dispatches stored callbacks until `shutdown` completes; then
    /// stops accepting, finishes in-flight requests and handler calls (within
    /// `--shutdown-timeout`) and returns. Nothing acknowledged is lost: what was not delivered
    /// stays pending in the store for the next start.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let stop = CancellationToken::new();
        let router = self.router();
        let dispatcher = tokio::spawn(self.dispatcher.run(stop.child_token()));
        let pruner = self
            .settings
            .retention
            .map(|keep| tokio::spawn(prune_loop(self.store.clone(), keep, stop.child_token())));
        let upkeep = self
            .state
            .metrics()
            .filter(|m| m.is_private())
            .cloned()
            .map(|m| tokio::spawn(upkeep_loop(m, stop.child_token())));
        let http_stop = CancellationToken::new();
        let limits = ConnectionLimits {
            header_read_timeout: self.settings.limits.header_read_timeout,
            max_connections: self.settings.limits.max_open_connections,
        };
        let server = tokio::spawn(serve(listener, router, limits, http_stop.clone()));
        shutdown.await;
        tracing::info!("shutting down: draining requests and handler calls");
        http_stop.cancel();
        let grace = self.settings.limits.shutdown_timeout;
        let drained = tokio::time::timeout(grace, async {
            let served = server.await;
            stop.cancel();
            let _ = dispatcher.await;
            served
        })
        .await;
        stop.cancel();
        for task in [pruner, upkeep].into_iter().flatten() {
            task.abort();
        }
        match drained {
            Ok(Ok(result)) => result.map_err(Error::Io),
            Ok(Err(join)) => Err(Error::Io(std::io::Error::other(join))),
            Err(_) => {
                tracing::warn!(
                    grace = %crate::telemetry::format_duration(grace),
                    "shutdown timeout reached; unfinished work stays pending for the next start"
                );
                Ok(())
            }
        }
    }
}

async fn prune_loop(store: Arc<dyn Store>, keep: Duration, stop: CancellationToken) {
    loop {
        let before = chrono::Utc::now() - keep;
        match store.prune(before).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned callbacks past retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; will try again"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Keeps a private metrics registry's histograms drained when nobody scrapes it.
async fn upkeep_loop(metrics: Metrics, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => metrics.run_upkeep(),
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "okra".into())
}
