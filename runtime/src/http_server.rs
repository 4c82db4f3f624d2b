//! The HTTP/1.1 connection loop of central's inbound API and the sites'
//! internal API: `axum::serve` without
//! its blind spot. `axum::serve` gives hyper no timer, so hyper's header
//! read timeout never fires and a client that sends its headers one byte at
//! a time (slowloris) holds a connection for ever. Here every connection is
//! served by hyper with a tokio timer and `header_read_timeout`, which also
//! bounds how long an idle keep-alive connection waits for its next request.
//! The body's read timeout is the handler's (`read_body`), because only the
//! handler knows when it reads a body.
//!
//! Graceful shutdown is axum's: stop accepting, tell every connection to
//! finish its request in flight, wait until all have closed.
//!
//! The peer's address is a task-local of the connection's task ([`peer`]),
//! not a `ConnectInfo` extension: hyper polls a request's handler inside that
//! task, and an extension costs every request a map allocation and insert.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

tokio::task_local! {
    /// The peer of the connection whose requests this task serves.
    static PEER: SocketAddr;
}

/// The address of the peer whose request is being handled, when it came
/// through [`serve`] (not for a request handed to a router in-process).
pub(crate) fn peer() -> Option<SocketAddr> {
    PEER.try_with(|peer| *peer).ok()
}

/// Serves `app` on `listener` until `stop` resolves, then drains.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), String> {
    // Every connection task holds a receiver; `closed()` on the sender
    // resolves once they have all finished.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: wait a moment rather
            // than spin (axum does the same).
            Err(error) => {
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Handlers see the peer's address through `peer()` (central's CIDR
        // allow-lists): the task-local is set for the connection's task.
        let service = TowerToHyperService::new(app.clone());
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        tokio::spawn(PEER.scope(remote, async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!("connection ended: {error}");
                        }
                        break;
                    }
                    // The sender is dropped on shutdown: finish the request
                    // in flight, then close.
                    _ = signal.changed(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close);
        }));
    }
    drop(listener);
    drop(signal_rx);
    drop(signal_tx);
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}
