//! Transport only: the accept loop, HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS) on
//! each connection, request-head limits, and graceful drain. What a request means is
//! decided by the handler given to `serve`.

pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::Body;

/// What a listener calls for each request.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        req: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = http::Response<Body>> + Send;
}

/// Limits applied to every connection of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
}

/// Serves `listener` until `shutdown` turns true, then stops accepting and lets the
/// in-flight requests finish for at most `grace`. The returned task ends when every
/// connection is closed or the grace has run out.
pub fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .max_buf_size(limits.max_header_bytes.max(8192))
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        builder
            .http2()
            .max_header_list_size(limits.max_header_bytes as u32)
            .timer(hyper_util::rt::TokioTimer::new());
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and friends: back off, keep serving.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.call(req, peer).await) }
            });
            match &tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(listener = name, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let tls_stream = match tokio::time::timeout(
                            Duration::from_secs(10),
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(listener = name, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                            .into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(listener = name, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {
                tracing::debug!(listener = name, "all connections drained");
            }
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(listener = name, "shutdown grace ran out; closing remaining connections");
            }
        }
    })
}
