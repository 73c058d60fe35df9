//! What the cache holds. `Entry` has an explicit `Negative` variant for cached 404/410
//! answers, so "the origin said not found" is never confused with "nothing cached"
//! in any tier: a miss is `Lookup::Miss`, never an entry. L2 stores entries in a
//! versioned binary encoding (`encode` / `decode`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};

/// What one cache id holds: an entry, or (for responses with `Vary`) the list of
/// request headers that select among the URL's variants, each stored under its own
/// id.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Entry(std::sync::Arc<Entry>),
    Vary(VaryIndex),
}

/// The request headers a URL's responses vary on, and until when the index is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaryIndex {
    pub headers: Vec<String>,
    /// Unix ms after which the index is useless (its variants have expired).
    pub expires_at: u64,
}

impl Record {
    /// Milliseconds from `now` until nothing can use the record.
    pub fn hard_ttl_at(&self, now: u64) -> u64 {
        match self {
            Record::Entry(e) => e.response().hard_ttl_at(now),
            Record::Vary(v) => v.expires_at.saturating_sub(now),
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Record::Entry(e) => e.weight(),
            Record::Vary(v) => 128 + v.headers.iter().map(|h| h.len() as u32 + 8).sum::<u32>(),
        }
    }
}

/// A cached answer: a full response, or a negative one (404/410).
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Response(StoredResponse),
    Negative(StoredResponse),
}

/// Everything needed to replay a response and to judge its freshness
/// (RFC 9111 §4.2). Times are Unix milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredResponse {
    pub status: StatusCode,
    /// End-to-end headers as received (hop-by-hop and `Age` removed).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// When the request that produced this response was sent.
    pub request_time: u64,
    /// When its head was received.
    pub response_time: u64,
    /// RFC 9111 §4.2.3 `corrected_initial_age`, in ms.
    pub initial_age: u64,
    /// How long the response is fresh, from its generation, in ms.
    pub freshness: u64,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
    /// Extra time a stale entry with a validator is kept for revalidation.
    pub keep: u64,
    pub flags: Flags,
    /// Tags for purge (route templates and `Surrogate-Key` / `Cache-Tag`).
    pub tags: Vec<String>,
    /// The request header values this variant was selected by (name, value).
    pub variant: Vec<(String, Option<String>)>,
}

/// Boolean properties of a stored response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `must-revalidate` / `proxy-revalidate` / `s-maxage`: never served stale.
    pub must_revalidate: bool,
    /// `no-cache` on the response: revalidate before every reuse.
    pub no_cache: bool,
    /// May answer a request that carried `Authorization` (`public`, `s-maxage`,
    /// `must-revalidate`, or a per-user key).
    pub auth_ok: bool,
    /// Its freshness is heuristic (RFC 9111 §4.2.2): `Cache-Status` says so.
    pub heuristic: bool,
}

impl Flags {
    fn bits(self) -> u8 {
        (self.must_revalidate as u8)
            | (self.no_cache as u8) << 1
            | (self.auth_ok as u8) << 2
            | (self.heuristic as u8) << 3
    }
    fn from_bits(b: u8) -> Flags {
        Flags {
            must_revalidate: b & 1 != 0,
            no_cache: b & 2 != 0,
            auth_ok: b & 4 != 0,
            heuristic: b & 8 != 0,
        }
    }
}

/// How an entry stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Usable; `remaining` ms of freshness left.
    Fresh { remaining: u64 },
    /// Past its freshness by `stale_for` ms.
    Stale { stale_for: u64 },
}

impl Entry {
    pub fn response(&self) -> &StoredResponse {
        match self {
            Entry::Response(r) | Entry::Negative(r) => r,
        }
    }

    pub fn response_mut(&mut self) -> &mut StoredResponse {
        match self {
            Entry::Response(r) | Entry::Negative(r) => r,
        }
    }

    pub fn is_negative(&self) -> bool {
        matches!(self, Entry::Negative(_))
    }

    /// Bytes this entry costs in L1 (body, headers, bookkeeping).
    pub fn weight(&self) -> u32 {
        let r = self.response();
        let headers: usize = r
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 16)
            .sum();
        let tags: usize = r.tags.iter().map(|t| t.len() + 8).sum();
        (r.body.len() + headers + tags + 256).min(u32::MAX as usize) as u32
    }
}

impl StoredResponse {
    /// RFC 9111 §4.2.3 `current_age` at `now`, in ms.
    pub fn age_at(&self, now: u64) -> u64 {
        self.initial_age + now.saturating_sub(self.response_time)
    }

    pub fn freshness_at(&self, now: u64) -> Freshness {
        let age = self.age_at(now);
        if self.flags.no_cache || age >= self.freshness {
            Freshness::Stale {
                stale_for: age.saturating_sub(self.freshness),
            }
        } else {
            Freshness::Fresh {
                remaining: self.freshness - age,
            }
        }
    }

    /// Milliseconds from `now` until nothing can use the entry any more (fresh, then
    /// stale-while-revalidate / stale-if-error / keep-for-revalidation).
    pub fn hard_ttl_at(&self, now: u64) -> u64 {
        let extra = if self.flags.must_revalidate {
            self.keep
        } else {
            self.stale_while_revalidate
                .max(self.stale_if_error)
                .max(self.keep)
        };
        (self.freshness + extra).saturating_sub(self.age_at(now))
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

const MAGIC: &[u8; 2] = b"GH";
/// Bump when the layout changes; older bytes then decode as a miss.
pub const ENCODING_VERSION: u8 = 1;

/// Why L2 bytes could not be read back (treated as a miss and overwritten).
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    BadMagic,
    UnknownVersion(u8),
    Truncated,
    Invalid(&'static str),
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s);
}

/// Encodes a record: entries as `encode`, a Vary index as kind 2.
pub fn encode_record(record: &Record) -> Bytes {
    match record {
        Record::Entry(e) => encode(e),
        Record::Vary(v) => {
            let mut buf = BytesMut::with_capacity(64);
            buf.put_slice(MAGIC);
            buf.put_u8(ENCODING_VERSION);
            buf.put_u8(2);
            buf.put_u64(v.expires_at);
            buf.put_u32(v.headers.len() as u32);
            for h in &v.headers {
                put_str(&mut buf, h.as_bytes());
            }
            buf.freeze()
        }
    }
}

/// Decodes what `encode_record` wrote.
pub fn decode_record(bytes: Bytes) -> Result<Record, DecodeError> {
    if bytes.len() >= 4 && &bytes[..2] == MAGIC && bytes[2] == ENCODING_VERSION && bytes[3] == 2 {
        let mut r = Reader(bytes.slice(4..));
        let expires_at = r.u64()?;
        let n = r.u32()? as usize;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            headers.push(r.string()?);
        }
        return Ok(Record::Vary(VaryIndex {
            headers,
            expires_at,
        }));
    }
    decode(bytes).map(|e| Record::Entry(std::sync::Arc::new(e)))
}

/// The L2 encoding: magic, version, kind, then fixed fields and length-prefixed parts.
pub fn encode(entry: &Entry) -> Bytes {
    let r = entry.response();
    let mut buf = BytesMut::with_capacity(r.body.len() + 256);
    buf.put_slice(MAGIC);
    buf.put_u8(ENCODING_VERSION);
    buf.put_u8(if entry.is_negative() { 1 } else { 0 });
    buf.put_u16(r.status.as_u16());
    for v in [
        r.request_time,
        r.response_time,
        r.initial_age,
        r.freshness,
        r.stale_while_revalidate,
        r.stale_if_error,
        r.keep,
    ] {
        buf.put_u64(v);
    }
    buf.put_u8(r.flags.bits());
    buf.put_u32(r.headers.len() as u32);
    for (k, v) in &r.headers {
        put_str(&mut buf, k.as_str().as_bytes());
        put_str(&mut buf, v.as_bytes());
    }
    buf.put_u32(r.tags.len() as u32);
    for t in &r.tags {
        put_str(&mut buf, t.as_bytes());
    }
    buf.put_u32(r.variant.len() as u32);
    for (k, v) in &r.variant {
        put_str(&mut buf, k.as_bytes());
        match v {
            Some(v) => {
                buf.put_u8(1);
                put_str(&mut buf, v.as_bytes());
            }
            None => buf.put_u8(0),
        }
    }
    put_str(&mut buf, &r.body);
    buf.freeze()
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.0.remaining() < n {
            Err(DecodeError::Truncated)
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.need(n)?;
        Ok(self.0.split_to(n))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Invalid("utf-8"))
    }
}

pub fn decode(bytes: Bytes) -> Result<Entry, DecodeError> {
    let mut r = Reader(bytes);
    r.need(3)?;
    if &r.0[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    r.0.advance(2);
    let version = r.u8()?;
    if version != ENCODING_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let kind = r.u8()?;
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError::Invalid("status"))?;
    let request_time = r.u64()?;
    let response_time = r.u64()?;
    let initial_age = r.u64()?;
    let freshness = r.u64()?;
    let stale_while_revalidate = r.u64()?;
    let stale_if_error = r.u64()?;
    let keep = r.u64()?;
    let flags = Flags::from_bits(r.u8()?);
    let n = r.u32()? as usize;
    let mut headers = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let k =
            HeaderName::from_bytes(&r.bytes()?).map_err(|_| DecodeError::Invalid("header name"))?;
        let v = HeaderValue::from_maybe_shared(r.bytes()?)
            .map_err(|_| DecodeError::Invalid("header value"))?;
        headers.push((k, v));
    }
    let n = r.u32()? as usize;
    let mut tags = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        tags.push(r.string()?);
    }
    let n = r.u32()? as usize;
    let mut variant = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = r.string()?;
        let v = match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(DecodeError::Invalid("variant")),
        };
        variant.push((k, v));
    }
    let body = r.bytes()?;
    let resp = StoredResponse {
        status,
        headers,
        body,
        request_time,
        response_time,
        initial_age,
        freshness,
        stale_while_revalidate,
        stale_if_error,
        keep,
        flags,
        tags,
        variant,
    };
    match kind {
        0 => Ok(Entry::Response(resp)),
        1 => Ok(Entry::Negative(resp)),
        _ => Err(DecodeError::Invalid("kind")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(negative: bool) -> Entry {
        let r = StoredResponse {
            status: if negative {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            },
            headers: vec![
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("application/json"),
                ),
                (
                    HeaderName::from_static("etag"),
                    HeaderValue::from_static("\"v1\""),
                ),
            ],
            body: Bytes::from_static(b"{\"id\":1}"),
            request_time: 1_000,
            response_time: 1_010,
            initial_age: 10,
            freshness: 60_000,
            stale_while_revalidate: 5_000,
            stale_if_error: 0,
            keep: 0,
            flags: Flags {
                must_revalidate: false,
                no_cache: false,
                auth_ok: true,
                heuristic: true,
            },
            tags: vec!["participant:1".into()],
            variant: vec![
                ("accept-language".into(), Some("en".into())),
                ("x-a".into(), None),
            ],
        };
        if negative {
            Entry::Negative(r)
        } else {
            Entry::Response(r)
        }
    }

    #[test]
    fn encoding_round_trips_both_variants() {
        for negative in [false, true] {
            let e = sample(negative);
            let back = decode(encode(&e)).unwrap();
            assert_eq!(back, e);
            assert_eq!(back.is_negative(), negative);
        }
    }

    #[test]
    fn vary_index_records_round_trip() {
        let r = Record::Vary(VaryIndex {
            headers: vec!["accept-language".into(), "accept".into()],
            expires_at: 99,
        });
        assert_eq!(decode_record(encode_record(&r)).unwrap(), r);
        let e = Record::Entry(std::sync::Arc::new(sample(true)));
        assert_eq!(decode_record(encode_record(&e)).unwrap(), e);
    }

    #[test]
    fn foreign_or_truncated_bytes_are_rejected() {
        assert_eq!(
            decode(Bytes::from_static(b"xx")),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(Bytes::from_static(b"nope")),
            Err(DecodeError::BadMagic)
        );
        assert_eq!(
            decode(Bytes::from_static(b"GH\x09")),
            Err(DecodeError::UnknownVersion(9))
        );
        let full = encode(&sample(false));
        assert_eq!(
            decode(full.slice(..full.len() - 3)),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn freshness_counts_initial_age_and_resident_time() {
        let e = sample(false);
        let r = e.response();
        assert_eq!(r.age_at(1_010), 10);
        assert_eq!(
            r.freshness_at(1_010),
            Freshness::Fresh { remaining: 59_990 }
        );
        assert_eq!(r.freshness_at(61_000), Freshness::Stale { stale_for: 0 });
        assert_eq!(
            r.freshness_at(62_000),
            Freshness::Stale { stale_for: 1_000 }
        );
        assert_eq!(r.hard_ttl_at(1_010), 64_990);
    }
}
