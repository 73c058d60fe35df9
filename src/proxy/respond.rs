//! Building client responses: from a cached entry (with `Age`) or from an origin
//! response (hop-by-hop removed), each with `Via` and `Cache-Status`.

use http::{header, HeaderMap, HeaderValue, Response, Version};

use super::cache_status::CacheStatus;
use crate::body::{self, Body};
use crate::cache::entry::Entry;
use crate::clock::now_ms;

/// Answers a request from a cached entry: 304 when the client's validators match
/// (RFC 9110 §13.1.2 `If-None-Match` with weak comparison, else §13.1.3
/// `If-Modified-Since`), then a GET's byte range (206 / 416, `range.rs`: evaluated
/// after the validators, RFC 9110 §13.2.2), otherwise the entry itself.
pub fn answer(
    entry: &Entry,
    req: &HeaderMap,
    head: bool,
    version: Version,
    cache_status: CacheStatus,
) -> Response<Body> {
    if not_modified(entry, req) {
        return not_modified_response(entry, version, cache_status);
    }
    if !head {
        if let Some(partial) = super::range::answer(entry, req, version, cache_status) {
            return partial;
        }
    }
    from_entry(entry, head, version, cache_status)
}

fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// Whether the client's conditional headers match the entry.
pub fn not_modified(entry: &Entry, req: &HeaderMap) -> bool {
    let r = entry.response();
    if !r.status.is_success() {
        return false;
    }
    let inm: Vec<&str> = req
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !inm.is_empty() {
        let Some(etag) = r.header("etag").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return inm
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || opaque(t) == opaque(etag));
    }
    let Some(ims) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
    else {
        return false;
    };
    let last = r
        .header("last-modified")
        .or_else(|| r.header("date"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
    last.is_some_and(|l| l <= ims)
}

/// 304 with the fields RFC 9110 §15.4.5 asks for.
fn not_modified_response(
    entry: &Entry,
    version: Version,
    cache_status: CacheStatus,
) -> Response<Body> {
    let r = entry.response();
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = http::StatusCode::NOT_MODIFIED;
    let h = resp.headers_mut();
    for (k, v) in &r.headers {
        if matches!(
            k.as_str(),
            "cache-control"
                | "content-location"
                | "date"
                | "etag"
                | "expires"
                | "vary"
                | "last-modified"
        ) {
            h.append(k.clone(), v.clone());
        }
    }
    h.insert(header::AGE, decimal(r.age_at(now_ms()) / 1000));
    super::origin::add_via(h, version);
    cache_status.append_to(resp.headers_mut());
    resp
}

/// Replays a cached entry. HEAD gets the headers without the body. A complete 200
/// says `Accept-Ranges: bytes`: the cache answers ranges of it, whatever the origin
/// does.
pub fn from_entry(
    entry: &Entry,
    head: bool,
    version: Version,
    cache_status: CacheStatus,
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
    if matches!(entry, Entry::Response(_)) && r.status == http::StatusCode::OK {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    h.insert(header::AGE, decimal(r.age_at(now_ms()) / 1000));
    super::origin::add_via(h, version);
    cache_status.append_to(resp.headers_mut());
    resp
}

/// `n` as a header value in one exact allocation (`HeaderValue::from(u64)` makes two:
/// a growable buffer, then the shared one it is frozen into).
fn decimal(n: u64) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&digits[at..]).expect("digits are a valid header value")
}

/// Passes an origin response through (streamed).
pub fn from_origin(
    resp: Response<Body>,
    version: Version,
    cache_status: CacheStatus,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    super::origin::prepare_response(&mut parts.headers, version);
    let mut resp = Response::from_parts(parts, body);
    cache_status.append_to(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_writes_every_digit() {
        for n in [0, 7, 10, 99, 100, 3599, 86_400, u64::MAX] {
            assert_eq!(decimal(n), n.to_string().as_str());
        }
    }
}
