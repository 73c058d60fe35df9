//! One client connection's clock: the IO wrapper that records when bytes move, the
//! request and response-body counts kept by the service, and the watchdog that says
//! when the connection has overrun `server.header_read_timeout` or
//! `server.idle_timeout`.
//!
//! The rules, per connection:
//! - from accept, a complete request head (TLS handshake and HTTP/2 preface included)
//!   must arrive within `header_read_timeout`;
//! - on an HTTP/1 keep-alive connection, a later head must be complete within
//!   `header_read_timeout` of its first byte;
//! - with no handler running (a request waiting on the origin has no deadline here:
//!   `origin.timeout` governs it), a connection on which no byte has moved either way
//!   for `idle_timeout` is closed; a response body that keeps streaming keeps it open.
//!
//! The hot path is a clock read and a few relaxed atomics per read or write, and an
//! `Arc` clone per request; nothing is allocated per request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{Body, BoxError};

/// `head_since` when no request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// Why the watchdog closed a connection (the `reason` label of
/// `gatehouse_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    HeaderReadTimeout,
    IdleTimeout,
}

impl Closed {
    pub fn label(self) -> &'static str {
        match self {
            Closed::HeaderReadTimeout => "header_read_timeout",
            Closed::IdleTimeout => "idle_timeout",
        }
    }
}

/// The state one connection's IO, service and watchdog share.
pub struct Conn {
    base: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Microseconds after `base` of the last byte read or written.
    last_io: AtomicU64,
    /// Microseconds after `base` at which the head being read began, or `NO_HEAD`.
    head_since: AtomicU64,
    /// Handlers called that have not returned a response head.
    handlers: AtomicU32,
    /// Response bodies handed to hyper and not yet finished or dropped.
    bodies: AtomicU32,
    /// Set by the first HTTP/2 request: frames of many streams (and WINDOW_UPDATE,
    /// PING) interleave, so a byte read says nothing about a head beginning; after
    /// the first head only the idle rule applies.
    multiplexed: AtomicBool,
    /// Wakes the watchdog when a deadline moves earlier (a head begins).
    wake: Notify,
}

impl Conn {
    /// A connection accepted now: its first head is due `header_read_timeout` from now.
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Conn> {
        Arc::new(Conn {
            base: Instant::now(),
            header_read_timeout,
            idle_timeout,
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            handlers: AtomicU32::new(0),
            bodies: AtomicU32::new(0),
            multiplexed: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.base).as_micros() as u64
    }

    fn at(&self, us: u64) -> Instant {
        self.base + Duration::from_micros(us)
    }

    fn on_read(&self) {
        let now = self.now_us();
        self.last_io.store(now, Relaxed);
        // Bytes arriving with nothing in flight are the start of the next head.
        if self.head_since.load(Relaxed) == NO_HEAD
            && self.handlers.load(Relaxed) == 0
            && self.bodies.load(Relaxed) == 0
            && !self.multiplexed.load(Relaxed)
            && self
                .head_since
                .compare_exchange(NO_HEAD, now, Relaxed, Relaxed)
                .is_ok()
            && self.header_read_timeout < self.idle_timeout
        {
            self.wake.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now_us(), Relaxed);
    }

    /// Called by the service as hyper hands it a request head.
    pub fn request_started(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.handlers.fetch_add(1, Relaxed);
        self.head_since.store(NO_HEAD, Relaxed);
        if version == http::Version::HTTP_2 {
            self.multiplexed.store(true, Relaxed);
        }
        InFlight {
            conn: Some(self.clone()),
        }
    }

    /// The earliest deadline now in force, or None while a handler runs.
    fn deadline(&self) -> Option<(Instant, Closed)> {
        if self.handlers.load(Relaxed) > 0 {
            return None;
        }
        let idle = self.at(self.last_io.load(Relaxed)) + self.idle_timeout;
        match self.head_since.load(Relaxed) {
            NO_HEAD => Some((idle, Closed::IdleTimeout)),
            since => {
                let head = self.at(since) + self.header_read_timeout;
                Some(if head <= idle {
                    (head, Closed::HeaderReadTimeout)
                } else {
                    (idle, Closed::IdleTimeout)
                })
            }
        }
    }

    /// Resolves when the connection has overrun a deadline; the caller then drops it.
    pub async fn watchdog(&self) -> Closed {
        loop {
            match self.deadline() {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                // A handler is running: look again after a while (its end refreshes
                // `last_io`, so the idle period counts from the response head).
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.idle_timeout) => {}
                        _ = self.wake.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request whose handler is running; dropped (or answered) when it returns.
pub struct InFlight {
    conn: Option<Arc<Conn>>,
}

impl InFlight {
    /// The handler's response, with its body counted until it is finished.
    pub fn answered(mut self, resp: http::Response<Body>) -> http::Response<TrackedBody> {
        let conn = self.conn.take().expect("answered once");
        conn.last_io.store(conn.now_us(), Relaxed);
        // Counted as a body before it stops counting as a handler, so no read in
        // between mistakes a request body's tail for a new head.
        conn.bodies.fetch_add(1, Relaxed);
        conn.handlers.fetch_sub(1, Relaxed);
        resp.map(|inner| TrackedBody {
            inner,
            _open: BodyOpen(conn),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.last_io.store(conn.now_us(), Relaxed);
            conn.handlers.fetch_sub(1, Relaxed);
        }
    }
}

struct BodyOpen(Arc<Conn>);

impl Drop for BodyOpen {
    fn drop(&mut self) {
        self.0.bodies.fetch_sub(1, Relaxed);
    }
}

/// A response body counted as open on its connection until hyper drops it.
pub struct TrackedBody {
    inner: Body,
    _open: BodyOpen,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What hears of the bytes a `Tracked` IO moves.
pub trait IoObserver: Send + Sync {
    fn bytes_read(&self);
    fn bytes_written(&self);
}

impl IoObserver for Conn {
    fn bytes_read(&self) {
        self.on_read();
    }

    fn bytes_written(&self) {
        self.on_write();
    }
}

/// An IO telling an observer each time bytes move: the accepted socket (under TLS,
/// when there is TLS) tells its `Conn`; an upgraded tunnel tells its idle clock.
/// `hold` lives as long as the IO: past the HTTP connection when it is upgraded (the
/// upgraded IO owns this), so a connection's place under `max_connections` is given
/// back when the socket closes, not when HTTP ends.
pub struct Tracked<T, O: ?Sized = Conn> {
    io: T,
    conn: Arc<O>,
    _hold: Box<dyn Send + Sync>,
}

impl<T, O: IoObserver + ?Sized> Tracked<T, O> {
    pub fn new(io: T, conn: Arc<O>, hold: impl Send + Sync + 'static) -> Tracked<T, O> {
        Tracked {
            io,
            conn,
            _hold: Box::new(hold),
        }
    }
}

impl<T: AsyncRead + Unpin, O: IoObserver + ?Sized> AsyncRead for Tracked<T, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin, O: IoObserver + ?Sized> AsyncWrite for Tracked<T, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.bytes_written();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.bytes_written();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    async fn closes_after(conn: &Conn) -> (Duration, Closed) {
        let start = Instant::now();
        let why = conn.watchdog().await;
        (start.elapsed(), why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_header_read_timeout_after_accept() {
        let conn = Conn::new(HEAD, IDLE);
        assert_eq!(closes_after(&conn).await, (HEAD, Closed::HeaderReadTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_does_not_extend_its_deadline() {
        let conn = Conn::new(HEAD, IDLE);
        let c = conn.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.on_read();
            }
        });
        assert_eq!(closes_after(&conn).await, (HEAD, Closed::HeaderReadTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idles_then_a_new_head_is_timed_from_its_first_byte() {
        let conn = Conn::new(HEAD, IDLE);
        conn.on_read();
        let req = conn.request_started(http::Version::HTTP_11);
        drop(req.answered(http::Response::new(crate::body::empty())));
        conn.on_write();
        let c = conn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            c.on_read();
        });
        // 30 s idle, then a head begins and is never finished: closed 10 s later.
        assert_eq!(
            closes_after(&conn).await,
            (Duration::from_secs(40), Closed::HeaderReadTimeout)
        );
        let conn = Conn::new(HEAD, IDLE);
        let req = conn.request_started(http::Version::HTTP_11);
        drop(req.answered(http::Response::new(crate::body::empty())));
        assert_eq!(closes_after(&conn).await, (IDLE, Closed::IdleTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_handler_has_no_deadline_and_idle_counts_from_its_answer() {
        let conn = Conn::new(HEAD, IDLE);
        let req = conn.request_started(http::Version::HTTP_11);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(150)).await;
            drop(req);
        });
        assert_eq!(
            closes_after(&conn).await,
            (Duration::from_secs(210), Closed::IdleTimeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reads_while_a_response_body_streams_start_no_head() {
        let conn = Conn::new(HEAD, IDLE);
        let req = conn.request_started(http::Version::HTTP_11);
        let resp = req.answered(http::Response::new(crate::body::empty()));
        let c = conn.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                c.on_read();
                c.on_write();
            }
            drop(resp);
        });
        assert_eq!(
            closes_after(&conn).await,
            (Duration::from_secs(160), Closed::IdleTimeout)
        );
    }
}
