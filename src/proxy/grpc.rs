//! gRPC on the proxy path: which messages are gRPC (one case-insensitive test, used
//! by the origin client, the cache policy and the local replies), and gatehouse's
//! own answers to a gRPC request made gRPC (what Envoy does for its local replies):
//! HTTP 200, `content-type: application/grpc`, trailers-only, `grpc-status` mapped
//! from the HTTP status as the gRPC spec's HTTP-to-status table says, `grpc-message`
//! carrying gatehouse's error code and message.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::error::ErrorCode;

/// Whether a `content-type` names gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web...`), in any letter case (media types are case-insensitive,
/// RFC 9110 §8.3.1).
pub fn is_grpc(content_type: Option<&HeaderValue>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    content_type.is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= GRPC.len() && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
    })
}

/// Whether a request or response's headers say it is gRPC.
pub fn is_grpc_message(headers: &HeaderMap) -> bool {
    is_grpc(headers.get(header::CONTENT_TYPE))
}

/// A gRPC request's deadline: its `grpc-timeout` (1 to 8 digits and a unit: `H`,
/// `M`, `S`, `m`, `u`, `n`), None when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The body of a gRPC answer under a deadline: frames pass unchanged until the
/// deadline; past it, the origin's stream is dropped (it sees the call cancelled)
/// and the client gets trailers `grpc-status: 4` (DEADLINE_EXCEEDED).
pub struct Deadline<B> {
    inner: Option<B>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Deadline<B> {
    /// `within`: the time left to the deadline (None: no deadline).
    pub fn new(inner: B, within: Option<Duration>) -> Deadline<B> {
        Deadline {
            inner: Some(inner),
            sleep: within.map(|d| Box::pin(tokio::time::sleep(d))),
        }
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                this.inner = None;
            }
            return Poll::Ready(frame);
        }
        match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                this.inner = None;
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("4"));
                t.insert(
                    "grpc-message",
                    HeaderValue::from_static("deadline exceeded (grpc-timeout)"),
                );
                Poll::Ready(Some(Ok(http_body::Frame::trailers(t))))
            }
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }
}

/// The `grpc-status` of a local reply with this HTTP status (the gRPC spec's
/// "HTTP to gRPC Status Code Mapping"), and of a 504 for an origin timeout:
/// 4 DEADLINE_EXCEEDED.
pub fn status_for(status: StatusCode, code: ErrorCode) -> u32 {
    match status.as_u16() {
        504 if code == ErrorCode::OriginTimeout => 4,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// Percent-encodes a `grpc-message` as the gRPC spec asks: every byte outside
/// printable ASCII (0x20..=0x7E), and `%` itself, as `%XX`.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes gatehouse's own error answer (one that carries `crate::error::Local`) to a
/// gRPC request gRPC: 200, `content-type: application/grpc`, no body, `grpc-status`
/// and `grpc-message` in the head (trailers-only). Every other field of the answer
/// (`Retry-After`, `WWW-Authenticate`, `Allow`, `Cache-Status`, ...) is kept. Any
/// other answer is returned unchanged.
pub fn local_reply(resp: Response<Body>) -> Response<Body> {
    let Some(local) = resp.extensions().get::<crate::error::Local>().cloned() else {
        return resp;
    };
    let (mut parts, _json) = resp.into_parts();
    let grpc_status = status_for(parts.status, local.code);
    parts.status = StatusCode::OK;
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(grpc_status));
    let message = encode_message(&format!("{}: {}", local.code, local.message));
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
    Response::from_parts(parts, crate::body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_in_any_case() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+proto",
            "APPLICATION/GRPC",
            "application/grpc-web+proto",
        ] {
            assert!(is_grpc(Some(&HeaderValue::from_static(yes))), "{yes}");
        }
        for no in ["application/json", "application/grp", "text/grpc", ""] {
            assert!(!is_grpc(Some(&HeaderValue::from_static(no))), "{no}");
        }
        assert!(!is_grpc(None));
    }

    #[test]
    fn http_statuses_map_as_the_grpc_table_says() {
        let cases = [
            (400, ErrorCode::BadRequest, 13),
            (401, ErrorCode::TokenMissing, 16),
            (403, ErrorCode::AudienceNotAllowed, 7),
            (404, ErrorCode::NoRoute, 12),
            (405, ErrorCode::MethodNotAllowed, 2),
            (413, ErrorCode::BodyTooLarge, 2),
            (429, ErrorCode::CapacityFull, 14),
            (502, ErrorCode::OriginUnreachable, 14),
            (503, ErrorCode::StoreUnavailable, 14),
            (504, ErrorCode::NotCached, 14),
            (504, ErrorCode::OriginTimeout, 4),
            (409, ErrorCode::CapacityFull, 2),
        ];
        for (status, code, grpc) in cases {
            let s = StatusCode::from_u16(status).unwrap();
            assert_eq!(status_for(s, code), grpc, "{status} {code}");
        }
    }

    #[test]
    fn grpc_timeouts_parse_by_unit() {
        let t = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            timeout(&h)
        };
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("3M"), Some(Duration::from_secs(180)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_deadline_the_body_ends_deadline_exceeded() {
        use http_body_util::BodyExt;
        // An origin that never sends another frame.
        let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let got = Deadline::new(body, Some(Duration::from_millis(50)))
            .collect()
            .await
            .unwrap();
        assert_eq!(got.trailers().unwrap()["grpc-status"], "4");
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("a b: 100%"), "a b: 100%25");
        assert_eq!(encode_message("née\n"), "n%C3%A9e%0A");
    }

    #[test]
    fn a_local_error_becomes_trailers_only_and_keeps_its_fields() {
        let resp = crate::error::Error::store_unavailable()
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .into_response();
        let resp = local_reply(resp);
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "14");
        assert!(h["grpc-message"]
            .to_str()
            .unwrap()
            .starts_with("STORE_UNAVAILABLE: "));
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["www-authenticate"], "Bearer");
        assert!(!h.contains_key("content-length"));
        // An answer that is not gatehouse's own error passes unchanged.
        let origin = Response::new(crate::body::empty());
        assert_eq!(local_reply(origin).status(), StatusCode::OK);
        let mut teapot = Response::new(crate::body::empty());
        *teapot.status_mut() = StatusCode::IM_A_TEAPOT;
        assert_eq!(local_reply(teapot).status(), StatusCode::IM_A_TEAPOT);
    }
}
