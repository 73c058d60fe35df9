//! 1xx interim responses (103 Early Hints, 102 Processing) sent to a client before
//! its final response. hyper's server has no way to send them, so:
//!
//! - on HTTP/1.1 the connection's outermost IO (the one hyper writes to, over TLS
//!   when there is TLS) is an `InterimIo`: an `Interim` handle in the request's
//!   extensions queues a head and wakes the connection task, and the IO writes the
//!   queued bytes where hyper's own bytes cannot be interleaved with them (see
//!   `InterimIo`);
//! - on HTTP/2 (`server::h2`) the handle hands the head to the stream's task, which
//!   sends it with `send_informational`.
//!
//! A handle accepts heads only while its request's final response has not been
//! handed to the connection; an HTTP/1.0 request (RFC 9110 §15.2) gets none.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a request's interim responses go; in the request's extensions.
#[derive(Clone)]
pub struct Interim(Sink);

#[derive(Clone)]
enum Sink {
    H1 { shared: Arc<H1Shared>, seq: u64 },
    H2(tokio::sync::mpsc::UnboundedSender<http::Response<()>>),
}

impl Interim {
    /// Sends an interim head (`headers` already made fit for the client: hop-by-hop
    /// removed). False when it cannot go any more (the final response has started,
    /// the connection is gone) or `status` is not a forwardable 1xx (100 is hyper's
    /// own, for `Expect`; 101 is an upgrade).
    pub fn send(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if !status.is_informational()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return false;
        }
        match &self.0 {
            Sink::H1 { shared, seq } => shared.push(*seq, status, headers),
            Sink::H2(tx) => {
                let mut head = http::Response::new(());
                *head.status_mut() = status;
                *head.headers_mut() = headers.clone();
                tx.send(head).is_ok()
            }
        }
    }

    /// `h1` or `h2`: the `protocol` label of `gatehouse_interim_responses_forwarded_total`.
    pub fn protocol(&self) -> &'static str {
        match self.0 {
            Sink::H1 { .. } => "h1",
            Sink::H2(_) => "h2",
        }
    }

    /// The client's HTTP version (for `Via`).
    pub fn version(&self) -> http::Version {
        match self.0 {
            Sink::H1 { .. } => http::Version::HTTP_11,
            Sink::H2(_) => http::Version::HTTP_2,
        }
    }

    /// The final response has been handed to the connection: no more heads.
    pub fn finished(&self) {
        if let Sink::H1 { shared, seq } = &self.0 {
            let mut s = shared.state.lock().expect("interim lock");
            if s.current == *seq {
                s.answered = true;
            }
        }
    }

    pub(crate) fn h2(tx: tokio::sync::mpsc::UnboundedSender<http::Response<()>>) -> Interim {
        Interim(Sink::H2(tx))
    }
}

/// One HTTP/1 connection's interim queue, shared by its `InterimIo` and the handles
/// of its requests.
#[derive(Default)]
pub struct H1Shared {
    state: Mutex<H1State>,
}

#[derive(Default)]
struct H1State {
    /// The request now being answered (hyper answers HTTP/1 requests one at a time,
    /// pipelined ones included).
    current: u64,
    /// Its final response has been handed to hyper: no more heads for it.
    answered: bool,
    /// hyper's write buffer has been empty since `current` began (hyper flushes the
    /// IO only with its buffer empty): every byte hyper writes from now on is
    /// `current`'s, so queued heads go before them.
    clean: bool,
    /// Queued head bytes and how many of them are written.
    queue: Vec<u8>,
    written: usize,
    /// The connection task, woken when a head is queued.
    waker: Option<Waker>,
}

impl H1Shared {
    /// A request head has been read: returns its handle. Heads left for the previous
    /// request are dropped.
    pub fn begin(self: &Arc<Self>) -> Interim {
        let mut s = self.state.lock().expect("interim lock");
        s.current += 1;
        s.answered = false;
        s.clean = false;
        s.queue.clear();
        s.written = 0;
        Interim(Sink::H1 {
            shared: self.clone(),
            seq: s.current,
        })
    }

    fn push(&self, seq: u64, status: StatusCode, headers: &HeaderMap) -> bool {
        let mut s = self.state.lock().expect("interim lock");
        if s.current != seq || s.answered {
            return false;
        }
        let reason = status.canonical_reason().unwrap_or("Informational");
        s.queue
            .extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_str()).as_bytes());
        for (name, value) in headers {
            s.queue.extend_from_slice(name.as_str().as_bytes());
            s.queue.extend_from_slice(b": ");
            s.queue.extend_from_slice(value.as_bytes());
            s.queue.extend_from_slice(b"\r\n");
        }
        s.queue.extend_from_slice(b"\r\n");
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        true
    }
}

/// The IO hyper's HTTP/1 connection writes to, writing queued interim heads first
/// when that is safe:
/// - on `poll_flush`, which hyper calls only once its own write buffer is empty
///   (every byte of earlier responses written), after the connection loop's reads
///   and writes on every turn;
/// - on a write, when hyper's buffer has been empty since the request began (so the
///   bytes are this request's final response); if it has not, the bytes may end an
///   earlier response and begin this one, and heads still queued once this
///   request's response has started are dropped rather than written among them.
pub struct InterimIo<T> {
    io: T,
    shared: Arc<H1Shared>,
}

impl<T> InterimIo<T> {
    pub fn new(io: T, shared: Arc<H1Shared>) -> InterimIo<T> {
        InterimIo { io, shared }
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    fn remember(&self, cx: &Context<'_>, s: &mut H1State) {
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
    }

    /// Writes what is queued; Ready once the queue is empty.
    fn drain(&mut self, cx: &mut Context<'_>, flushing: bool) -> Poll<io::Result<()>> {
        let shared = self.shared.clone();
        let mut s = shared.state.lock().expect("interim lock");
        self.remember(cx, &mut s);
        if flushing {
            s.clean = true;
        }
        if s.queue.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !s.clean {
            if s.answered {
                tracing::debug!("interim response dropped: the final response had begun");
                s.queue.clear();
                s.written = 0;
            }
            return Poll::Ready(Ok(()));
        }
        while s.written < s.queue.len() {
            let from = s.written;
            match Pin::new(&mut self.io).poll_write(cx, &s.queue[from..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => s.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        s.queue.clear();
        s.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        {
            let shared = self.shared.clone();
            let mut s = shared.state.lock().expect("interim lock");
            self.remember(cx, &mut s);
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx, false))?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx, false))?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx, true))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hints() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("link", "</a.css>; rel=preload".parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_head_goes_before_the_final_bytes_and_not_after_them() {
        let (a, mut b) = tokio::io::duplex(1024);
        let shared = Arc::new(H1Shared::default());
        let mut io = InterimIo::new(a, shared.clone());
        let first = shared.begin();
        assert!(first.send(StatusCode::from_u16(103).unwrap(), &hints()));
        assert!(!first.send(StatusCode::CONTINUE, &hints()));
        io.flush().await.unwrap();
        first.finished();
        assert!(!first.send(StatusCode::from_u16(103).unwrap(), &hints()));
        io.write_all(b"FINAL").await.unwrap();
        // The next request's handle; the old one is spent.
        let second = shared.begin();
        assert!(!first.send(StatusCode::from_u16(103).unwrap(), &hints()));
        assert!(second.send(StatusCode::PROCESSING, &HeaderMap::new()));
        // Bytes written before hyper's buffer was seen empty belong to an earlier
        // response: the head waits for the flush.
        io.write_all(b"TAIL").await.unwrap();
        io.flush().await.unwrap();
        drop(io);
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nFINAL\
             TAIL\
             HTTP/1.1 102 Processing\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_head_queued_when_it_cannot_be_placed_is_dropped() {
        let (a, mut b) = tokio::io::duplex(1024);
        let shared = Arc::new(H1Shared::default());
        let mut io = InterimIo::new(a, shared.clone());
        let req = shared.begin();
        assert!(req.send(StatusCode::from_u16(103).unwrap(), &hints()));
        req.finished();
        // No flush since the request began: these bytes may hold an earlier
        // response's tail and this one's head.
        io.write_all(b"TAIL+FINAL").await.unwrap();
        io.flush().await.unwrap();
        drop(io);
        let mut out = String::new();
        b.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "TAIL+FINAL");
    }
}
