//! HTTP/2 connections, served with the h2 crate directly (hyper's server cannot send
//! 1xx interim responses on h2): a connection that negotiated ALPN `h2`, or whose
//! first bytes are the h2c prior-knowledge preface.
//!
//! It keeps what hyper's h2 server did with gatehouse's settings: hyper's defaults
//! (1 MiB stream and connection windows, 16 KiB frames, 200 concurrent streams, a
//! 400 KiB send buffer, 1024 local error resets), `SETTINGS_MAX_HEADER_LIST_SIZE`
//! from `server.max_header_bytes`, `Date` on every answer, connection-specific
//! fields removed, `content-length` from an exact body size, trailers, flow control
//! (capacity released as a request body is read, reserved before a response body is
//! sent), resets both ways (a client's RST_STREAM drops the handler's future), and
//! GOAWAY on drain. Each stream counts on the connection's clock (`conn`) as hyper's
//! did.
//!
//! A connection's streams are polled by the connection's own task, not spawned: as
//! nginx and Envoy serve a connection on one worker, so a request costs no task and
//! no wake-up across threads (h2c hits went from 0.79x to 1.04x nginx's, see
//! `benches/README.md`). A stream's handler that computes for long delays the other
//! streams of its connection, never those of other connections.
//!
//! Besides: 1xx interim responses (`Interim`) go out with `send_informational`, and
//! extended CONNECT (RFC 8441, `SETTINGS_ENABLE_CONNECT_PROTOCOL`) is offered: a
//! CONNECT's stream is handed, once the handler answers 2xx, to the `Tunnel` in its
//! request's extensions as an `H2Io`.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};

use super::conn::{Conn, InFlight, TrackedBody};
use super::interim::Interim;
use super::{Handler, Limits};
use crate::body::{BoxError, RequestBody};

/// The h2 settings every connection of a listener gets.
pub fn builder(limits: &Limits) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(1024 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .max_frame_size(16 * 1024)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(200)
        .max_send_buffer_size(400 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .enable_connect_protocol();
    b
}

/// Serves one HTTP/2 connection until the client or the drain closes it. On drain,
/// GOAWAY is sent and the streams already open finish.
pub async fn serve<IO, H>(
    io: IO,
    builder: &h2::server::Builder,
    handler: Arc<H>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    mut drain: watch::Receiver<bool>,
) -> Result<(), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut connection = builder.handshake::<_, Bytes>(io).await?;
    let mut draining = false;
    // The connection's streams run inside its task, as nginx and Envoy serve a
    // connection on one worker: no task spawned and no cross-thread wake-up per
    // request, and the h2 connection state is not contended across cores.
    let mut streams = FuturesUnordered::new();
    loop {
        let next = tokio::select! {
            next = connection.accept() => Some(next),
            Some(()) = streams.next(), if !streams.is_empty() => continue,
            _ = drain.wait_for(|d| *d), if !draining => None,
        };
        match next {
            None => {
                draining = true;
                connection.graceful_shutdown();
            }
            Some(Some(Ok((req, respond)))) => {
                streams.push(stream(handler.clone(), conn.clone(), peer, req, respond));
            }
            Some(Some(Err(e))) => return Err(e),
            Some(None) => {
                // Closed: what the streams still hold ends as their handlers do.
                while streams.next().await.is_some() {}
                return Ok(());
            }
        }
    }
}

/// One stream: the handler's future (dropped if the client resets the stream),
/// its interim heads, then the response.
async fn stream<H: Handler>(
    handler: Arc<H>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let in_flight = conn.request_started(Version::HTTP_2);
    let (mut parts, recv) = req.into_parts();
    let (tunnel, body) = if parts.method == Method::CONNECT {
        let (tx, rx) = oneshot::channel();
        parts
            .extensions
            .insert(Tunnel(Arc::new(Mutex::new(Some(rx)))));
        (Some((tx, recv)), RequestBody::Empty)
    } else {
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (None, RequestBody::h2(recv, length))
    };
    let (interim_tx, mut interim) = mpsc::unbounded_channel();
    parts.extensions.insert(Interim::h2(interim_tx));
    let call = handler.call(Request::from_parts(parts, body), peer);
    tokio::pin!(call);
    let resp = loop {
        tokio::select! {
            biased;
            resp = &mut call => break resp,
            Some(head) = interim.recv() => {
                let _ = respond.send_informational(head);
            }
            reason = poll_fn(|cx| respond.poll_reset(cx)) => {
                tracing::debug!(?reason, "h2 stream reset by the client; its handler is dropped");
                return;
            }
        }
    };
    // Heads queued before the answer still go first; none is accepted after.
    interim.close();
    while let Ok(head) = interim.try_recv() {
        let _ = respond.send_informational(head);
    }
    let (mut head, body) = in_flight.answered(resp).into_parts();
    strip_connection_headers(&mut head.headers);
    head.headers.entry(header::DATE).or_insert_with(|| {
        HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
            .expect("an HTTP date is a valid field value")
    });
    if let Some((tx, recv)) = tunnel {
        if head.status.is_success() {
            head.headers.remove(header::CONTENT_LENGTH);
            match respond.send_response(Response::from_parts(head, ()), false) {
                Ok(send) => {
                    // The tunnel counts as a running handler: the connection's idle
                    // rule waits for it; `origin.upgrade_idle_timeout` governs it.
                    let held = conn.request_started(Version::HTTP_2);
                    let _ = tx.send(H2Io {
                        send,
                        recv,
                        pending: Bytes::new(),
                        _held: held,
                    });
                }
                Err(e) => tracing::debug!(error = %e, "h2 CONNECT answer not sent"),
            }
            return;
        }
    }
    let result = if body.is_end_stream() {
        respond
            .send_response(Response::from_parts(head, ()), true)
            .map(drop)
            .map_err(BoxError::from)
    } else {
        if let Some(n) = body.size_hint().exact() {
            if !head.headers.contains_key(header::CONTENT_LENGTH) {
                head.headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        match respond.send_response(Response::from_parts(head, ()), false) {
            Ok(send) => pipe(body, send).await,
            Err(e) => Err(e.into()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "h2 stream ended with an error");
    }
}

/// Sends a response body: a frame at a time, each once the stream has send
/// capacity, then trailers or END_STREAM. A client's reset ends it.
async fn pipe(mut body: TrackedBody, mut tx: SendStream<Bytes>) -> Result<(), BoxError> {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            reason = poll_fn(|cx| tx.poll_reset(cx)) => {
                return Err(format!("reset by the client: {reason:?}").into());
            }
        };
        let frame = match frame {
            None => {
                tx.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Some(Err(e)) => {
                tx.send_reset(Reason::INTERNAL_ERROR);
                return Err(e);
            }
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    tx.send_trailers(trailers)?;
                    return Ok(());
                }
                continue;
            }
        };
        let eos = body.is_end_stream();
        if !data.is_empty() {
            // A small claim: h2 raises it to what is buffered, and waiting for any
            // capacity keeps at most one frame queued beyond the window.
            tx.reserve_capacity(1);
            while tx.capacity() == 0 {
                match poll_fn(|cx| tx.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err("the stream closed before its body was sent".into()),
                }
            }
        } else if !eos {
            continue;
        }
        tx.send_data(data, eos)?;
        if eos {
            return Ok(());
        }
    }
}

/// Fields that name the connection, which HTTP/2 forbids (RFC 9113 §8.2.2).
fn strip_connection_headers(headers: &mut HeaderMap) {
    if let Some(named) = headers.remove(header::CONNECTION) {
        if let Ok(named) = named.to_str() {
            for n in named.split(',') {
                headers.remove(n.trim());
            }
        }
    }
    for n in [
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(n);
    }
}

use http::header::HeaderName;

/// An extended CONNECT's stream, handed to whoever holds this once the handler has
/// answered 2xx (in the request's extensions).
#[derive(Clone)]
pub struct Tunnel(Arc<Mutex<Option<oneshot::Receiver<H2Io>>>>);

impl Tunnel {
    /// The stream, once the 2xx has been sent; None if it never is (the handler's
    /// answer was not 2xx, or the stream went away).
    pub async fn open(&self) -> Option<H2Io> {
        let rx = self.0.lock().expect("tunnel lock").take()?;
        rx.await.ok()
    }
}

/// An h2 stream as a byte stream: DATA frames read (their window released as they
/// are) and written (as the peer's window allows); shutdown sends END_STREAM.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    _held: InFlight,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(buf.len());
        let capacity = loop {
            match self.send.capacity() {
                0 => match ready!(self.send.poll_capacity(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                    None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                },
                n => break n,
            }
        };
        let n = capacity.min(buf.len());
        self.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes the frames out.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
