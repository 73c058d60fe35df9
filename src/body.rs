//! The one response body type every listener uses: a boxed, streaming body whose
//! errors are boxed too, so origin streams, cached bytes and JSON answers mix; and
//! the request body both servers (hyper's HTTP/1.1, `server::h2`) produce.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Any streaming body boxed into `Body`.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A request body as either server gives it: hyper's (HTTP/1.1) or an h2 stream's
/// (HTTP/2, `server::h2`). Its flow-control window is released as data is read.
pub enum RequestBody {
    Hyper(hyper::body::Incoming),
    H2 {
        recv: h2::RecvStream,
        /// The request's `content-length` (h2 enforces it), for `size_hint`.
        length: Option<u64>,
        /// The data frames have all been read (trailers next).
        data_done: bool,
        /// Everything has been read.
        done: bool,
    },
    /// No body (an extended CONNECT's stream is the tunnel, not a body).
    Empty,
}

impl RequestBody {
    pub fn h2(recv: h2::RecvStream, length: Option<u64>) -> RequestBody {
        RequestBody::H2 {
            recv,
            length,
            data_done: false,
            done: false,
        }
    }
}

impl From<hyper::body::Incoming> for RequestBody {
    fn from(b: hyper::body::Incoming) -> RequestBody {
        RequestBody::Hyper(b)
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::{ready, Poll};
        match self.get_mut() {
            RequestBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::H2 {
                recv,
                data_done,
                done,
                ..
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                if !*data_done {
                    match ready!(recv.poll_data(cx)) {
                        Some(Ok(data)) => {
                            let _ = recv.flow_control().release_capacity(data.len());
                            return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                        }
                        Some(Err(e)) => {
                            *done = true;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        None => *data_done = true,
                    }
                }
                let trailers = ready!(recv.poll_trailers(cx));
                *done = true;
                match trailers {
                    Ok(Some(t)) => Poll::Ready(Some(Ok(http_body::Frame::trailers(t)))),
                    Ok(None) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(b) => b.is_end_stream(),
            RequestBody::Empty => true,
            RequestBody::H2 { recv, done, .. } => *done || recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RequestBody::Hyper(b) => b.size_hint(),
            RequestBody::Empty => http_body::SizeHint::with_exact(0),
            RequestBody::H2 { length, .. } => match length {
                _ if self.is_end_stream() => http_body::SizeHint::with_exact(0),
                Some(n) => http_body::SizeHint::with_exact(*n),
                None => http_body::SizeHint::default(),
            },
        }
    }
}
