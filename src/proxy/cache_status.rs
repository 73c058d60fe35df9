//! Gatehouse's `Cache-Status` member (RFC 9211): every outcome of a request as one
//! typed value, and the one place that writes its syntax and appends it after the
//! members of the caches nearer the origin.

use std::fmt;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use super::cache_policy::NoCacheReason;
use crate::cache::entry::Entry;

/// The member's name: the cache that writes it (RFC 9211 §2).
const NAME: &str = "gatehouse";

/// The header field (a `HeaderName`, so inserting it allocates nothing).
pub const FIELD: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went forward to the origin (RFC 9211 §2.2 `fwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// Configured not to use the cache for this request (`bypass`).
    Bypass,
    /// The request method is not cacheable (`method`).
    Method,
    /// No stored response for the URI (`uri-miss`).
    UriMiss,
    /// A stored response for the URI, none for this request's variant (`vary-miss`).
    VaryMiss,
    /// Nothing usable stored, the cache cannot tell which kind of miss (`miss`).
    Miss,
    /// Something in the request made the cache go forward (`request`).
    Request,
    /// A stored response was stale (`stale`).
    Stale,
}

impl Fwd {
    fn token(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
        }
    }
}

/// What the member's `detail` says (RFC 9211 §2.8: implementation-specific).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// A cached 404/410 (`Entry::Negative`).
    Negative,
    /// The freshness is heuristic (RFC 9111 §4.2.2).
    Heuristic,
    /// The client accepted a stale answer (`max-stale`).
    MaxStale,
    /// Stale, served while one background refresh runs.
    StaleWhileRevalidate,
    /// Stale, served because the origin failed (RFC 5861 §4).
    StaleIfError,
    /// Another instance of the fleet fetched it.
    Fleet,
    /// A per-user route with no user to key by.
    NoSubject,
    /// An upgrade (WebSocket) relayed, never cached.
    Upgrade,
    /// An error gatehouse made itself.
    Error,
    /// The URL was recently uncacheable: no coalescing for a while.
    HitForPass,
    /// The wait for another request's fetch ran out.
    LockTimeout,
    /// Why the response was not stored, or the request not served from the cache.
    NotStored(NoCacheReason),
}

impl Detail {
    fn token(self) -> &'static str {
        match self {
            Detail::Negative => "negative",
            Detail::Heuristic => "heuristic",
            Detail::MaxStale => "max-stale",
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::StaleIfError => "stale-if-error",
            Detail::Fleet => "fleet",
            Detail::NoSubject => "no-subject",
            Detail::Upgrade => "upgrade",
            Detail::Error => "error",
            Detail::HitForPass => "hit-for-pass",
            Detail::LockTimeout => "lock-timeout",
            Detail::NotStored(reason) => reason.label(),
        }
    }
}

/// Gatehouse's `Cache-Status` member for one answer: a hit, or why it went forward,
/// with the parameters RFC 9211 §2 defines. Written as
/// `gatehouse; <hit | fwd=..>[; fwd-status=..][; stored][; collapsed][; ttl=..][; detail=..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheStatus {
    /// `None`: a hit (answered from the cache without going forward).
    pub fwd: Option<Fwd>,
    /// The status of the origin's answer to the forwarded request.
    pub fwd_status: Option<u16>,
    /// The origin's answer was stored.
    pub stored: bool,
    /// The answer came from another request's fetch.
    pub collapsed: bool,
    /// Seconds of freshness left.
    pub ttl: Option<u64>,
    pub detail: Option<Detail>,
}

impl CacheStatus {
    /// Answered from the cache.
    pub const HIT: CacheStatus = CacheStatus {
        fwd: None,
        fwd_status: None,
        stored: false,
        collapsed: false,
        ttl: None,
        detail: None,
    };

    /// A stale entry answered because the origin failed (RFC 5861 §4).
    pub const STALE_IF_ERROR: CacheStatus =
        CacheStatus::fwd(Fwd::Stale).detail(Detail::StaleIfError);

    /// Went forward to the origin, for this reason.
    pub const fn fwd(fwd: Fwd) -> CacheStatus {
        CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::HIT
        }
    }

    /// A fresh hit with `ttl` seconds left.
    pub const fn hit_for(ttl: u64) -> CacheStatus {
        CacheStatus {
            ttl: Some(ttl),
            ..CacheStatus::HIT
        }
    }

    pub const fn detail(self, detail: Detail) -> CacheStatus {
        CacheStatus {
            detail: Some(detail),
            ..self
        }
    }

    pub const fn stored(self) -> CacheStatus {
        CacheStatus {
            stored: true,
            ..self
        }
    }

    pub const fn collapsed(self) -> CacheStatus {
        CacheStatus {
            collapsed: true,
            ..self
        }
    }

    pub const fn fwd_status(self, status: u16) -> CacheStatus {
        CacheStatus {
            fwd_status: Some(status),
            ..self
        }
    }

    /// The status of an answer from `entry`: `detail=heuristic` added when its
    /// freshness is heuristic (RFC 9111 §4.2.2) and nothing more specific is said.
    pub fn of_entry(self, entry: &Entry) -> CacheStatus {
        if entry.response().flags.heuristic && self.detail.is_none() {
            self.detail(Detail::Heuristic)
        } else {
            self
        }
    }

    /// Appends this member after any the origin (or a cache nearer it) sent
    /// (RFC 9211 §2: members run from the cache nearest the origin to the one
    /// nearest the client).
    pub fn append_to(&self, headers: &mut HeaderMap) {
        let mut text = Text::default();
        let written = match headers.get(FIELD).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => {
                text.push(prev.as_bytes())
                    && fmt::write(&mut text, format_args!(", {self}")).is_ok()
            }
            _ => fmt::write(&mut text, format_args!("{self}")).is_ok(),
        };
        let value = if written {
            HeaderValue::from_bytes(text.as_bytes())
        } else {
            // Longer than the stack buffer: an origin's long list before ours.
            let prev = headers.get(FIELD).and_then(|v| v.to_str().ok());
            HeaderValue::try_from(match prev {
                Some(prev) if !prev.is_empty() => format!("{prev}, {self}"),
                _ => self.to_string(),
            })
        };
        if let Ok(v) = value {
            headers.insert(FIELD, v);
        }
    }

    /// Sets the field to this member alone (an answer gatehouse made itself).
    pub fn replace_in(&self, headers: &mut HeaderMap) {
        let mut text = Text::default();
        let value = if fmt::write(&mut text, format_args!("{self}")).is_ok() {
            HeaderValue::from_bytes(text.as_bytes())
        } else {
            HeaderValue::try_from(self.to_string())
        };
        if let Ok(v) = value {
            headers.insert(FIELD, v);
        }
    }
}

/// A field value written on the stack: the header value is then one exact copy
/// instead of a `String` grown by each `write!` and copied again (three to four
/// allocations per answer on the hit path).
struct Text {
    buf: [u8; 256],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl Text {
    /// Appends `bytes`; false when they do not fit.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)?;
        match self.fwd {
            None => f.write_str("; hit")?,
            Some(fwd) => write!(f, "; fwd={}", fwd.token())?,
        }
        if let Some(status) = self.fwd_status {
            write!(f, "; fwd-status={status}")?;
        }
        if self.stored {
            f.write_str("; stored")?;
        }
        if self.collapsed {
            f.write_str("; collapsed")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, "; ttl={ttl}")?;
        }
        if let Some(detail) = self.detail {
            write!(f, "; detail={}", detail.token())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value gatehouse writes (docs/http-caching.md, "Cache-Status"), spelled
    /// exactly as clients and `metrics::CacheResult::of` read it.
    #[test]
    fn display_writes_the_documented_values() {
        use Detail as D;
        use Fwd::*;
        let miss = CacheStatus::fwd(Miss);
        let stale = CacheStatus::fwd(Stale);
        for (status, want) in [
            (CacheStatus::HIT, "gatehouse; hit"),
            (CacheStatus::hit_for(29), "gatehouse; hit; ttl=29"),
            (
                CacheStatus::hit_for(14).detail(D::Negative),
                "gatehouse; hit; ttl=14; detail=negative",
            ),
            (
                CacheStatus::hit_for(0).detail(D::Heuristic),
                "gatehouse; hit; ttl=0; detail=heuristic",
            ),
            (
                CacheStatus::HIT.detail(D::MaxStale),
                "gatehouse; hit; detail=max-stale",
            ),
            (
                CacheStatus::HIT.detail(D::StaleWhileRevalidate),
                "gatehouse; hit; detail=stale-while-revalidate",
            ),
            (miss.stored(), "gatehouse; fwd=miss; stored"),
            (
                miss.stored().detail(D::Heuristic),
                "gatehouse; fwd=miss; stored; detail=heuristic",
            ),
            (
                miss.stored().detail(D::HitForPass),
                "gatehouse; fwd=miss; stored; detail=hit-for-pass",
            ),
            (miss.collapsed(), "gatehouse; fwd=miss; collapsed"),
            (
                miss.collapsed().detail(D::Fleet),
                "gatehouse; fwd=miss; collapsed; detail=fleet",
            ),
            (
                stale.fwd_status(304).stored(),
                "gatehouse; fwd=stale; fwd-status=304; stored",
            ),
            (
                stale.fwd_status(304),
                "gatehouse; fwd=stale; fwd-status=304",
            ),
            (
                stale.fwd_status(503).detail(D::StaleIfError),
                "gatehouse; fwd=stale; fwd-status=503; detail=stale-if-error",
            ),
            (
                stale.detail(D::StaleIfError),
                "gatehouse; fwd=stale; detail=stale-if-error",
            ),
            (
                stale.collapsed().detail(D::StaleIfError),
                "gatehouse; fwd=stale; collapsed; detail=stale-if-error",
            ),
            (
                miss.detail(D::NotStored(NoCacheReason::NoStore)),
                "gatehouse; fwd=miss; detail=no-store",
            ),
            (
                miss.detail(D::NotStored(NoCacheReason::Range)),
                "gatehouse; fwd=miss; detail=range",
            ),
            (
                miss.detail(D::HitForPass),
                "gatehouse; fwd=miss; detail=hit-for-pass",
            ),
            (
                miss.detail(D::LockTimeout),
                "gatehouse; fwd=miss; detail=lock-timeout",
            ),
            (miss, "gatehouse; fwd=miss"),
            (miss.detail(D::Error), "gatehouse; fwd=miss; detail=error"),
            (CacheStatus::fwd(Method), "gatehouse; fwd=method"),
            (CacheStatus::fwd(Bypass), "gatehouse; fwd=bypass"),
            (
                CacheStatus::fwd(Bypass).detail(D::NoSubject),
                "gatehouse; fwd=bypass; detail=no-subject",
            ),
            (
                CacheStatus::fwd(Bypass).detail(D::Upgrade),
                "gatehouse; fwd=bypass; detail=upgrade",
            ),
            (
                CacheStatus::fwd(Request).detail(D::NotStored(NoCacheReason::RequestBody)),
                "gatehouse; fwd=request; detail=request-body",
            ),
            (CacheStatus::fwd(UriMiss), "gatehouse; fwd=uri-miss"),
            (CacheStatus::fwd(VaryMiss), "gatehouse; fwd=vary-miss"),
        ] {
            assert_eq!(status.to_string(), want);
        }
    }

    #[test]
    fn the_member_goes_after_the_origins_and_replaces_only_when_asked() {
        let mut h = HeaderMap::new();
        CacheStatus::HIT.append_to(&mut h);
        assert_eq!(h[FIELD], "gatehouse; hit");
        let mut h = HeaderMap::new();
        h.insert(FIELD, HeaderValue::from_static("origin-cache; hit"));
        CacheStatus::fwd(Fwd::Miss).stored().append_to(&mut h);
        assert_eq!(h[FIELD], "origin-cache; hit, gatehouse; fwd=miss; stored");
        CacheStatus::fwd(Fwd::Miss)
            .detail(Detail::Error)
            .replace_in(&mut h);
        assert_eq!(h[FIELD], "gatehouse; fwd=miss; detail=error");
    }

    #[test]
    fn a_list_longer_than_the_stack_buffer_is_kept_whole() {
        // Nearer caches can send any number of members; past the 256-byte buffer
        // the member is still appended, not dropped nor cut.
        let prev = (0..40)
            .map(|i| format!("cache-{i}; hit"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(prev.len() > 256);
        let mut h = HeaderMap::new();
        h.insert(FIELD, HeaderValue::from_str(&prev).unwrap());
        CacheStatus::fwd(Fwd::Miss).stored().append_to(&mut h);
        assert_eq!(
            h[FIELD],
            format!("{prev}, gatehouse; fwd=miss; stored").as_str()
        );
        // Just under the buffer: written on the stack, same text.
        let prev = "x".repeat(256 - ", gatehouse; hit".len());
        h.insert(FIELD, HeaderValue::from_str(&prev).unwrap());
        CacheStatus::HIT.append_to(&mut h);
        assert_eq!(h[FIELD], format!("{prev}, gatehouse; hit").as_str());
    }

    #[test]
    fn heuristic_freshness_is_said_only_when_nothing_more_specific_is() {
        let mut e = crate::cache::entry::tests::sample(false);
        e.response_mut().flags.heuristic = false;
        assert_eq!(CacheStatus::HIT.of_entry(&e), CacheStatus::HIT);
        e.response_mut().flags.heuristic = true;
        assert_eq!(
            CacheStatus::HIT.of_entry(&e),
            CacheStatus::HIT.detail(Detail::Heuristic)
        );
        let collapsed = CacheStatus::fwd(Fwd::Miss)
            .collapsed()
            .detail(Detail::Fleet);
        assert_eq!(collapsed.of_entry(&e), collapsed);
    }
}
