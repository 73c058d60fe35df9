//! Building client responses: from a cached entry (with `Age`) or from an origin
//! response (hop-by-hop removed), each with `Via` and `Cache-Status`.

use http::{header, HeaderValue, Response, Version};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::cache::entry::{now_ms, Entry};

/// Replays a cached entry. HEAD gets the headers without the body.
pub fn from_entry(
    entry: &Entry,
    head: bool,
    version: Version,
    cache_status: &str,
) -> Response<Body> {
    let r = entry.response();
    let body = if head {
        body::empty()
    } else {
        body::full(r.body.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.reserve(r.headers.len() + 4);
    for (k, v) in &r.headers {
        h.append(k.clone(), v.clone());
    }
    if !h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    }
    h.insert(header::AGE, HeaderValue::from(r.age_at(now_ms()) / 1000));
    super::origin::add_via(h, version);
    set_cache_status(&mut resp, cache_status);
    resp
}

/// Passes an origin response through (streamed).
pub fn from_origin(
    resp: Response<Incoming>,
    version: Version,
    cache_status: &str,
) -> Response<Body> {
    let (mut parts, incoming) = resp.into_parts();
    super::origin::prepare_response(&mut parts.headers, version);
    let mut resp = Response::from_parts(parts, body::boxed(incoming));
    set_cache_status(&mut resp, cache_status);
    resp
}

/// Adds our `Cache-Status` entry after any the origin sent (RFC 9211: members run
/// from the cache nearest the origin to the one nearest the client).
pub fn set_cache_status(resp: &mut Response<Body>, value: &str) {
    let h = resp.headers_mut();
    let combined = match h.get("cache-status").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {value}"),
        _ => value.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&combined) {
        h.insert("cache-status", v);
    }
}
