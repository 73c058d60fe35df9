//! Transport only: the accept loop, HTTP/1.1 and HTTP/2 (h2c, or ALPN over TLS) on
//! each connection, connection limits, and graceful drain. What a request means is
//! decided by the handler given to `serve`.
//!
//! Each connection is told apart here (ALPN `h2`, or the 24-byte HTTP/2 preface read
//! and replayed) and handed to hyper's HTTP/1 server or to `h2` (the h2 crate,
//! which can send 1xx and extended CONNECT). 1xx interim responses: `interim`.
//!
//! Limits, per listener (`Limits`, from `[server]`):
//! - `max_connections`: a connection accepted while that many are open is closed at
//!   once (counted in `gatehouse_connections_rejected_total`); an upgraded connection
//!   counts until its socket closes;
//! - `header_read_timeout`: a new connection must deliver its TLS handshake and first
//!   request head within it from accept, and a later HTTP/1 head within it from its
//!   first byte; `idle_timeout`: a connection with no request in flight and no byte
//!   moving either way is closed after it (both in
//!   `gatehouse_connections_closed_total`, see `conn`);
//! - `max_header_bytes`: larger request heads are answered 431.

pub mod conn;
pub mod h2;
pub mod interim;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{Body, BoxError, RequestBody};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use conn::{Closed, Conn, Tracked};

/// What a listener calls for each request.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        req: http::Request<RequestBody>,
        peer: SocketAddr,
    ) -> impl Future<Output = http::Response<Body>> + Send;
}

/// Limits applied to every connection of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(s: &ServerConfig) -> Limits {
        Limits {
            max_header_bytes: s.max_header_bytes as usize,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections as usize,
        }
    }
}

impl Default for Limits {
    /// The `[server]` defaults.
    fn default() -> Limits {
        use crate::config as c;
        Limits {
            max_header_bytes: c::DEFAULT_MAX_HEADER_BYTES as usize,
            header_read_timeout: c::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: c::DEFAULT_IDLE_TIMEOUT,
            max_connections: c::DEFAULT_MAX_CONNECTIONS as usize,
        }
    }
}

/// One listener's connection series, resolved once.
#[derive(Clone)]
struct Counters {
    open: IntGauge,
    rejected: IntCounter,
    closed_header_read: IntCounter,
    closed_idle: IntCounter,
}

impl Counters {
    fn new(name: &str, metrics: Option<&Metrics>) -> Counters {
        match metrics {
            Some(m) => Counters {
                open: m.connections_open.with_label_values(&[name]),
                rejected: m
                    .connections_rejected_total
                    .with_label_values(&[name, "max_connections"]),
                closed_header_read: m
                    .connections_closed_total
                    .with_label_values(&[name, Closed::HeaderReadTimeout.label()]),
                closed_idle: m
                    .connections_closed_total
                    .with_label_values(&[name, Closed::IdleTimeout.label()]),
            },
            // A listener outside the app (the demo origin) counts on collectors no
            // registry renders.
            None => {
                let c = || IntCounter::new("unregistered", "-").expect("valid metric");
                Counters {
                    open: IntGauge::new("unregistered", "-").expect("valid metric"),
                    rejected: c(),
                    closed_header_read: c(),
                    closed_idle: c(),
                }
            }
        }
    }

    fn closed(&self, why: Closed) -> &IntCounter {
        match why {
            Closed::HeaderReadTimeout => &self.closed_header_read,
            Closed::IdleTimeout => &self.closed_idle,
        }
    }
}

/// An open connection's place under `max_connections`, given back on drop.
struct Slot {
    open: Arc<AtomicUsize>,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
    }
}

/// Serves `listener` until `shutdown` turns true, then stops accepting and lets the
/// in-flight requests finish for at most `grace` (HTTP/1: the connection closes after
/// its current response; HTTP/2: GOAWAY, open streams finish). The returned task ends
/// when every connection is closed or the grace has run out. `metrics` (None outside
/// the app) receives the `gatehouse_connections_*` series under `listener = name`.
#[allow(clippy::too_many_arguments)]
pub fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<H>,
    limits: Limits,
    metrics: Option<&Metrics>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> tokio::task::JoinHandle<()> {
    let counters = Counters::new(name, metrics);
    tokio::spawn(async move {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // hyper's own header timer starts when it begins to parse, after the
        // version detection has waited for the first bytes, and restarts as soon as
        // a keep-alive connection goes idle: `conn` keeps both clocks instead.
        h1.max_buf_size(limits.max_header_bytes.max(8192))
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(None);
        let protocols = Arc::new(Protocols {
            h1,
            h2: h2::builder(&limits),
        });
        // Every connection holds a receiver; the drain is over when all are gone.
        let (drain_tx, drain_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
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
            if open.load(Ordering::Relaxed) >= limits.max_connections {
                // Envoy's overflow: close at once rather than queue.
                counters.rejected.inc();
                tracing::debug!(listener = name, %peer, "max_connections reached; connection closed");
                drop(stream);
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            counters.open.inc();
            let slot = Slot {
                open: open.clone(),
                gauge: counters.open.clone(),
            };
            let _ = stream.set_nodelay(true);
            let conn = Conn::new(limits.header_read_timeout, limits.idle_timeout);
            // The slot goes with the socket, upgraded (WebSocket) or not.
            let io = Tracked::new(stream, conn.clone(), slot);
            let tls = tls.clone();
            let protocols = protocols.clone();
            let drain = drain_rx.clone();
            let counters = counters.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let serve = async {
                    let ctx = ConnCtx {
                        handler,
                        conn: conn.clone(),
                        peer,
                        protocols,
                        drain,
                    };
                    let result = match tls {
                        None => serve_io(io, false, ctx).await,
                        // The handshake runs under the first head's deadline.
                        Some(acceptor) => match acceptor.accept(io).await {
                            Ok(s) => {
                                let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                                serve_io(s, h2, ctx).await
                            }
                            Err(e) => {
                                tracing::debug!(listener = name, error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                    };
                    if let Err(e) = result {
                        tracing::debug!(listener = name, error = %e, "connection ended with an error");
                    }
                };
                // Counted before the select drops `serve` (and closes the socket), so
                // whoever sees the close also sees it counted.
                let watchdog = async {
                    let why = conn.watchdog().await;
                    counters.closed(why).inc();
                    why
                };
                tokio::select! {
                    _ = serve => {}
                    why = watchdog => {
                        tracing::debug!(listener = name, %peer, reason = why.label(), "connection closed");
                    }
                }
            });
        }
        drop(listener);
        drop(drain_rx);
        drain_tx.send_replace(true);
        tokio::select! {
            _ = drain_tx.closed() => {
                tracing::debug!(listener = name, "all connections drained");
            }
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(listener = name, "shutdown grace ran out; closing remaining connections");
            }
        }
    })
}

/// The two protocol servers a listener's connections are handed to.
struct Protocols {
    h1: hyper::server::conn::http1::Builder,
    h2: ::h2::server::Builder,
}

/// What one connection's server needs.
struct ConnCtx<H> {
    handler: Arc<H>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    protocols: Arc<Protocols>,
    drain: watch::Receiver<bool>,
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one connection (plain, or TLS after the handshake): HTTP/2 when ALPN said
/// `h2` or its first bytes are the preface (h2c prior knowledge), else HTTP/1.
/// The bytes read to tell are replayed to the server chosen.
async fn serve_io<IO, H>(mut io: IO, alpn_h2: bool, ctx: ConnCtx<H>) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut seen = Vec::with_capacity(PREFACE.len());
    let h2 = alpn_h2 || {
        loop {
            let mut chunk = [0u8; 24];
            let want = PREFACE.len() - seen.len();
            let n = io.read(&mut chunk[..want]).await?;
            if n == 0 {
                // Closed before a request.
                return Ok(());
            }
            seen.extend_from_slice(&chunk[..n]);
            if !PREFACE.starts_with(&seen) {
                break false;
            }
            if seen.len() == PREFACE.len() {
                break true;
            }
        }
    };
    let io = Replay {
        seen: Bytes::from(seen),
        io,
    };
    let ConnCtx {
        handler,
        conn,
        peer,
        protocols,
        mut drain,
    } = ctx;
    if h2 {
        return h2::serve(io, &protocols.h2, handler, conn, peer, drain)
            .await
            .map_err(Into::into);
    }
    let interim = Arc::new(interim::H1Shared::default());
    let service = {
        let interim = interim.clone();
        service_fn(move |req: http::Request<Incoming>| {
            let handler = handler.clone();
            let in_flight = conn.request_started(req.version());
            let mut req = req.map(RequestBody::Hyper);
            // HTTP/1 requests are answered one at a time: each begins the
            // connection's next interim turn. None to HTTP/1.0 clients.
            let turn = interim.begin();
            if req.version() == http::Version::HTTP_11 {
                req.extensions_mut().insert(turn.clone());
            }
            async move {
                let resp = handler.call(req, peer).await;
                turn.finished();
                Ok::<_, Infallible>(in_flight.answered(resp))
            }
        })
    };
    let c = protocols
        .h1
        .serve_connection(TokioIo::new(interim::InterimIo::new(io, interim)), service)
        .with_upgrades();
    tokio::pin!(c);
    tokio::select! {
        r = c.as_mut() => return r.map_err(Into::into),
        _ = drain.wait_for(|d| *d) => {}
    }
    c.as_mut().graceful_shutdown();
    c.await.map_err(Into::into)
}

/// An IO whose first reads give back the bytes already read from it.
struct Replay<T> {
    seen: Bytes,
    io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.seen.is_empty() {
            let n = self.seen.len().min(buf.remaining());
            buf.put_slice(&self.seen.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
