//! The receiver: the HTTP API and the dispatcher over one store, with graceful shutdown.
//!
//! The caller owns the socket and the shutdown signal, so tests bind port 0 and embedders pick
//! their own signal handling.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    config::{Config, ConfigError, Settings},
    dispatch::Dispatcher,
    handler::Handler,
    http::{self, AppState, Security},
    store::{self, Store, StoreError},
    telemetry::Metrics,
};

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
        let settings = config.resolve()?;
        let store = store::open_with(&settings.database_url, &settings.store).await?;
        Ok(Self::build(settings, store, Arc::new(handler)))
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
        Ok(Self::build(config.resolve()?, store, handler))
    }

    fn build(settings: Settings, store: Arc<dyn Store>, handler: Arc<dyn Handler>) -> Self {
        let owner = format!("{}-{}", hostname(), uuid::Uuid::now_v7());
        let dispatcher = Dispatcher::new(store.clone(), handler, settings.dispatch.clone(), owner);
        let access = settings.access.clone();
        let security = Security {
            trusted_proxies: access.trusted_proxies,
            allow_from: access.allow_from,
            signature: access.signature,
            request_timeout: settings.limits.request_timeout,
        };
        let state = AppState {
            store: store.clone(),
            wake: dispatcher.waker(),
            callback_token: access.callback_token,
            admin_token: access.admin_token,
            max_body_bytes: settings.limits.max_body_bytes,
            dedup_window: settings.dedup_window,
            in_flight: Arc::new(Semaphore::new(settings.limits.max_concurrent_requests)),
            metrics: None,
            security: Arc::new(security),
        };
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
        self.state.metrics = Some(metrics);
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
            .metrics
            .clone()
            .filter(Metrics::is_private)
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
                    ?grace,
                    "shutdown timeout reached; unfinished work stays pending for the next start"
                );
                Ok(())
            }
        }
    }
}

/// What bounds the connections themselves, before any request reaches the router.
struct ConnectionLimits {
    /// A connection that has not sent a whole request head within this time is closed.
    header_read_timeout: Duration,
    /// Open connections at once; past it the loop stops accepting until one closes.
    max_connections: usize,
}

/// Serves `router` over HTTP/1.1 on `listener` until `stop` is cancelled; then stops accepting,
/// lets in-flight requests finish (idle connections close at once) and returns.
///
/// This replaces `axum::serve`, which has no header-read timeout: there, a client sending its
/// headers a byte at a time holds a connection and a task for as long as it likes. Here hyper's
/// HTTP/1 server gets a timer and `header_read_timeout` (which also closes idle keep-alive
/// connections), and a semaphore caps open connections. Like `axum::serve` with
/// `into_make_service_with_connect_info`, each request carries `ConnectInfo<SocketAddr>`.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // E.g. out of file descriptors: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept connections; retrying in 1 s");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header-read timeouts, resets, malformed requests: the client's problem.
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
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
