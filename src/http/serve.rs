//! The HTTP/1.1 serve loop: accepts connections within their limits and hands each request to
//! the router, until told to stop.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What bounds the connections themselves, before any request reaches the router.
pub(crate) struct ConnectionLimits {
    /// A connection that has not sent a whole request head within this time is closed.
    pub(crate) header_read_timeout: Duration,
    /// Open connections at once; past it the loop stops accepting until one closes.
    pub(crate) max_connections: usize,
}

/// Serves `router` over HTTP/1.1 on `listener` until `stop` is cancelled; then stops accepting,
/// lets in-flight requests finish (idle connections close at once) and returns.
///
/// This replaces `axum::serve`, which has no header-read timeout: there, a client sending its
/// headers a byte at a time holds a connection and a task for as long as it likes. Here hyper's
/// HTTP/1 server gets a timer and `header_read_timeout` (which also closes idle keep-alive
/// connections), and a semaphore caps open connections. Like `axum::serve` with
/// `into_make_service_with_connect_info`, each request carries `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(
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
