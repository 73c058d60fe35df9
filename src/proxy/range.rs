//! Range requests answered from a cached complete response (RFC 9110 §14, §13.1.5;
//! RFC 9111 §3.3–3.4).
//!
//! - One `bytes` range (`first-last`, `first-`, `-suffix`) of a cached 200 is answered
//!   206 with `Content-Range`; a range that lies past the end is 416 with
//!   `Content-Range: bytes */<length>`.
//! - Everything else gets the whole representation, as RFC 9110 §14.2 lets a server
//!   ignore `Range`: another unit, invalid syntax, several field lines, and several
//!   ranges (no `multipart/byteranges`: Varnish's choice, and the whole answer is
//!   cheaper than a multipart one for most range sets clients send); a HEAD; a
//!   negative or other non-200 entry; an `If-Range` that does not hold.
//! - `If-Range` holds for a strong entity tag equal to the entry's strong `ETag`, or
//!   for a date equal to the entry's `Last-Modified` when that is a strong validator
//!   (at least one second before the entry's `Date`, RFC 9110 §8.8.2.2).
//!
//! Nothing here stores anything: 206 answers from the origin are never stored
//! (`cache_policy::storable`), so there are no partial entries to combine.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Version};

use super::cache_status::CacheStatus;
use crate::body::{self, Body};
use crate::cache::entry::{Entry, StoredResponse};
use crate::clock::now_ms;

/// One byte range as the client wrote it (RFC 9110 §14.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, with `first <= last`.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// What a request's `Range` field asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// No `Range`, or one to ignore (another unit, invalid syntax, several lines).
    Whole,
    /// Exactly one byte range.
    One(ByteRange),
    /// Several byte ranges: answered with the whole representation.
    Several,
}

impl ByteRange {
    /// The inclusive byte positions this range selects in a representation of `len`
    /// bytes, or None when it is unsatisfiable (RFC 9110 §14.1.1).
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::FromTo(first, last) if first < len => Some((first, last.min(len - 1))),
            ByteRange::From(first) if first < len => Some((first, len - 1)),
            ByteRange::Suffix(n) if n > 0 && len > 0 => Some((len - n.min(len), len - 1)),
            _ => None,
        }
    }
}

/// Digits to a number; saturates rather than overflows (a position past any length
/// is simply unsatisfiable). None for anything but `1*DIGIT`.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn range_spec(s: &str) -> Option<ByteRange> {
    let (first, last) = s.split_once('-')?;
    if first.is_empty() {
        return digits(last).map(ByteRange::Suffix);
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(ByteRange::From(first));
    }
    let last = digits(last)?;
    (first <= last).then_some(ByteRange::FromTo(first, last))
}

/// Parses one `Range` field value (`bytes=0-99`, `bytes=-500`, `bytes=500-`, lists).
/// Never panics; whatever is not a valid `bytes` range set is `Whole`.
pub fn parse_value(value: &[u8]) -> Requested {
    let Ok(value) = std::str::from_utf8(value) else {
        return Requested::Whole;
    };
    let Some((unit, set)) = value.split_once('=') else {
        return Requested::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Requested::Whole;
    }
    let mut found = None;
    let mut count = 0usize;
    // Empty list elements are ignored (RFC 9110 §5.6.1).
    for spec in set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
    {
        let Some(r) = range_spec(spec) else {
            return Requested::Whole;
        };
        found = Some(r);
        count += 1;
    }
    match (found, count) {
        (Some(r), 1) => Requested::One(r),
        (Some(_), _) => Requested::Several,
        (None, _) => Requested::Whole,
    }
}

/// What the request's `Range` field(s) ask for.
pub fn requested(req: &HeaderMap) -> Requested {
    let mut lines = req.get_all(header::RANGE).iter();
    match (lines.next(), lines.next()) {
        (Some(v), None) => parse_value(v.as_bytes()),
        _ => Requested::Whole,
    }
}

/// Whether the request carries a `Range` the cache could act on (or forward).
pub fn has_range(req: &HeaderMap) -> bool {
    req.contains_key(header::RANGE)
}

fn header_date(r: &StoredResponse, name: &str) -> Option<std::time::SystemTime> {
    r.header(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
}

/// RFC 9110 §13.1.5: `If-Range` holds (or is absent) for the entry.
pub fn if_range_holds(r: &StoredResponse, req: &HeaderMap) -> bool {
    let mut lines = req.get_all(header::IF_RANGE).iter();
    let value = match (lines.next(), lines.next()) {
        (None, _) => return true,
        (Some(v), None) => v,
        _ => return false,
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // Strong comparison: both strong, same opaque tag.
        let Some(etag) = r.header("etag").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let etag = etag.trim();
        return !value.starts_with("W/") && !etag.starts_with("W/") && value == etag;
    }
    let Ok(asked) = httpdate::parse_http_date(value) else {
        return false;
    };
    let (Some(modified), Some(date)) = (header_date(r, "last-modified"), header_date(r, "date"))
    else {
        return false;
    };
    let strong = date
        .duration_since(modified)
        .is_ok_and(|d| d >= std::time::Duration::from_secs(1));
    strong && asked == modified
}

/// Answers a GET's single byte range from a cached complete 200: 206 or 416. None
/// when the range is to be ignored and the whole entry answers.
pub fn answer(
    entry: &Entry,
    req: &HeaderMap,
    version: Version,
    cache_status: CacheStatus,
) -> Option<Response<Body>> {
    let Entry::Response(r) = entry else {
        return None;
    };
    if r.status != StatusCode::OK {
        return None;
    }
    let Requested::One(range) = requested(req) else {
        return None;
    };
    if !if_range_holds(r, req) {
        return None;
    }
    let len = r.body.len() as u64;
    let mut resp = match range.resolve(len) {
        Some((first, last)) => partial(r, first, last),
        None => unsatisfiable(r, len),
    };
    let h = resp.headers_mut();
    h.insert(header::AGE, HeaderValue::from(r.age_at(now_ms()) / 1000));
    super::origin::add_via(h, version);
    cache_status.append_to(resp.headers_mut());
    Some(resp)
}

/// 206 with one part: the entry's headers, its length fields for the part.
fn partial(r: &StoredResponse, first: u64, last: u64) -> Response<Body> {
    let part: Bytes = r.body.slice(first as usize..=last as usize);
    let mut resp = Response::new(body::full(part.clone()));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.reserve(r.headers.len() + 6);
    for (k, v) in &r.headers {
        if !matches!(
            *k,
            header::CONTENT_LENGTH | header::CONTENT_RANGE | header::ACCEPT_RANGES
        ) {
            h.append(k.clone(), v.clone());
        }
    }
    let range = format!("bytes {first}-{last}/{}", r.body.len());
    h.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&range).expect("digits are a header value"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

/// 416 `RANGE_NOT_SATISFIABLE` (JSON, like every answer gatehouse makes itself) with
/// `Content-Range: bytes */<length>` and the entry's validators.
fn unsatisfiable(r: &StoredResponse, len: u64) -> Response<Body> {
    let mut resp = crate::error::Error::new(
        crate::error::ErrorCode::RangeNotSatisfiable,
        format!("the range lies outside the representation's {len} bytes"),
    )
    .into_response();
    let h = resp.headers_mut();
    for (k, v) in &r.headers {
        if matches!(*k, header::DATE | header::ETAG | header::LAST_MODIFIED) {
            h.append(k.clone(), v.clone());
        }
    }
    h.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{len}")).expect("digits are a header value"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_grammar_and_what_is_ignored() {
        use ByteRange::*;
        use Requested::*;
        for (value, want) in [
            ("bytes=0-499", One(FromTo(0, 499))),
            ("bytes=500-", One(From(500))),
            ("bytes=-500", One(Suffix(500))),
            ("BYTES=1-1", One(FromTo(1, 1))),
            (" bytes = 3-4 ", One(FromTo(3, 4))),
            ("bytes=, 3-4,", One(FromTo(3, 4))),
            ("bytes=0-0,-1", Several),
            ("bytes=0-1, 5-", Several),
            ("bytes=99999999999999999999999-", One(From(u64::MAX))),
            ("bytes=-99999999999999999999999", One(Suffix(u64::MAX))),
            ("bytes=5-1", Whole),
            ("bytes=a-b", Whole),
            ("bytes=-", Whole),
            ("bytes=--1", Whole),
            ("bytes=1--2", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=1 -2", Whole),
            ("bytes=", Whole),
            ("bytes=,", Whole),
            ("bytes=0-1,x", Whole),
            ("bytes 0-1", Whole),
            ("items=0-1", Whole),
            ("", Whole),
            ("=0-1", Whole),
        ] {
            assert_eq!(parse_value(value.as_bytes()), want, "{value:?}");
        }
        assert_eq!(parse_value(b"bytes=\xff-1"), Whole);
        let mut h = HeaderMap::new();
        assert_eq!(requested(&h), Whole);
        h.append(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert_eq!(requested(&h), One(FromTo(0, 1)));
        // Range is a singleton field: two lines are ignored, not merged.
        h.append(header::RANGE, HeaderValue::from_static("bytes=2-3"));
        assert_eq!(requested(&h), Whole);
    }

    #[test]
    fn resolving_against_a_length() {
        use ByteRange::*;
        assert_eq!(FromTo(0, 4).resolve(10), Some((0, 4)));
        assert_eq!(FromTo(5, 100).resolve(10), Some((5, 9)));
        assert_eq!(FromTo(10, 12).resolve(10), None);
        assert_eq!(From(9).resolve(10), Some((9, 9)));
        assert_eq!(From(10).resolve(10), None);
        assert_eq!(Suffix(3).resolve(10), Some((7, 9)));
        assert_eq!(Suffix(30).resolve(10), Some((0, 9)));
        assert_eq!(Suffix(0).resolve(10), None);
        assert_eq!(Suffix(1).resolve(0), None);
        assert_eq!(From(0).resolve(0), None);
        assert_eq!(From(u64::MAX).resolve(u64::MAX), None);
        assert_eq!(Suffix(u64::MAX).resolve(u64::MAX), Some((0, u64::MAX - 1)));
    }

    fn entry(headers: &[(&'static str, &str)]) -> StoredResponse {
        StoredResponse {
            status: StatusCode::OK,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        http::HeaderName::from_static(k),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
            body: Bytes::from_static(b"0123456789"),
            request_time: 0,
            response_time: 0,
            initial_age: 0,
            freshness: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            keep: 0,
            flags: Default::default(),
            tags: Vec::new(),
            variant: Vec::new(),
        }
    }

    fn if_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn if_range_needs_a_strong_validator() {
        let lm = "Tue, 01 Oct 2024 10:00:00 GMT";
        let later = "Tue, 01 Oct 2024 10:00:01 GMT";
        let strong = entry(&[("etag", "\"v1\""), ("last-modified", lm), ("date", later)]);
        assert!(if_range_holds(&strong, &HeaderMap::new()));
        assert!(if_range_holds(&strong, &if_range("\"v1\"")));
        assert!(!if_range_holds(&strong, &if_range("\"v2\"")));
        assert!(!if_range_holds(&strong, &if_range("W/\"v1\"")));
        assert!(if_range_holds(&strong, &if_range(lm)));
        assert!(!if_range_holds(&strong, &if_range(later)));
        assert!(!if_range_holds(&strong, &if_range("yesterday")));
        let weak_tag = entry(&[("etag", "W/\"v1\"")]);
        assert!(!if_range_holds(&weak_tag, &if_range("\"v1\"")));
        // Modified in the second it was sent: the date is weak.
        let weak_date = entry(&[("last-modified", lm), ("date", lm)]);
        assert!(!if_range_holds(&weak_date, &if_range(lm)));
        let no_date = entry(&[("last-modified", lm)]);
        assert!(!if_range_holds(&no_date, &if_range(lm)));
        let mut two = if_range("\"v1\"");
        two.append(header::IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert!(!if_range_holds(&strong, &two));
    }

    proptest! {
        #[test]
        fn parsing_and_resolving_never_panic(value in proptest::collection::vec(any::<u8>(), 0..40), len in any::<u64>()) {
            if let Requested::One(r) = parse_value(&value) {
                if let Some((first, last)) = r.resolve(len) {
                    prop_assert!(first <= last && last < len);
                }
            }
        }

        #[test]
        fn range_shaped_input_never_panics(value in "(?i:bytes)?[ =,0-9-]{0,30}", len in 0u64..64) {
            let e = Entry::Response(StoredResponse { body: Bytes::from(vec![b'x'; len as usize]), ..entry(&[]) });
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::RANGE, v);
            }
            if let Some(resp) = answer(&e, &h, Version::HTTP_11, CacheStatus::HIT) {
                let s = resp.status();
                prop_assert!(s == StatusCode::PARTIAL_CONTENT || s == StatusCode::RANGE_NOT_SATISFIABLE);
            }
        }
    }
}
