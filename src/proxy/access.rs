//! The request id and the access log of the proxy listener.
//!
//! - Every request has an id: the client's `X-Request-Id` when it is a plausible id
//!   (1–128 characters of `[A-Za-z0-9._:-]`), else a new 128-bit one. It is sent to the
//!   origin, echoed on the answer, and carried by the `request` span, so every log
//!   line of the request names it.
//! - One access line per request (`log.access`, sampled by `log.access_sample` or a
//!   route's `access_sample`; 5xx answers are always logged unless the sample is 0),
//!   as a tracing event with target `access`: text or JSON by `log.format`. The user is
//!   the verified `sub`, never the token.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::body::Body;
use crate::routes::Route;

/// The field the request id travels in (a `HeaderName`, so inserting it allocates
/// nothing).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the client's when plausible, else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
        {
            return v.clone();
        }
    }
    // Hex-encoded on the stack; the one allocation is the shared owner, so the copies
    // sent to the origin and echoed to the client are reference counts.
    let mut text = [0u8; 32];
    hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut text).expect("32 bytes hold 16 in hex");
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).expect("hex is a valid header value")
}

/// What one access line says.
pub struct Line<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub route: &'a str,
    pub status: StatusCode,
    pub duration: Duration,
    /// The origin the request's route sends to: `default` (`[origin]`, also without
    /// a route) or its `[origins.NAME]` name.
    pub origin: &'a str,
    pub origin_time: Option<Duration>,
    pub user: Option<&'a str>,
    pub peer: SocketAddr,
    pub request_id: &'a HeaderValue,
}

/// Whether this request gets an access line.
pub fn wanted(sample: f64, route: Option<&Route>, status: StatusCode) -> bool {
    let sample = route.and_then(|r| r.config.access_sample).unwrap_or(sample);
    if sample <= 0.0 {
        return false;
    }
    sample >= 1.0 || status.is_server_error() || rand::random::<f64>() < sample
}

/// Writes the access line for an answer about to leave.
pub fn log(line: &Line<'_>, resp: &Response<Body>) {
    let h = resp.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info!(
        target: "access",
        method = %line.method,
        path = line.path,
        route = line.route,
        status = line.status.as_u16(),
        bytes = text("content-length"),
        duration_ms = line.duration.as_secs_f64() * 1000.0,
        origin = line.origin,
        origin_ms = line.origin_time.map(|d| d.as_secs_f64() * 1000.0),
        cache = text(super::cache_status::FIELD.as_str()),
        user = line.user.unwrap_or("-"),
        client = %line.peer.ip(),
        request_id = line.request_id.to_str().unwrap_or("-"),
        "access"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plausible_client_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("req-17.a:b_c"));
        assert_eq!(request_id(&h), "req-17.a:b_c");
        for bad in ["", "has space", "a\"b", &"x".repeat(129)] {
            h.insert(REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&h);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert_ne!(id, bad);
        }
        h.remove(&REQUEST_ID);
        assert_ne!(request_id(&h), request_id(&h), "new ids are random");
    }

    #[test]
    fn sampling_keeps_server_errors_unless_off() {
        assert!(wanted(1.0, None, StatusCode::OK));
        assert!(!wanted(0.0, None, StatusCode::INTERNAL_SERVER_ERROR));
        assert!(wanted(0.000001, None, StatusCode::BAD_GATEWAY));
        let n = (0..2000)
            .filter(|_| wanted(0.25, None, StatusCode::OK))
            .count();
        assert!((300..700).contains(&n), "{n} of 2000 at 0.25");
    }
}
