//! RFC 9111 as a shared cache: may this response be stored, how long is it fresh,
//! and what may it be served for. Normal outcomes are enum variants: a response
//! that is not stored says why (`NoCacheReason`), which also lands in
//! `Cache-Status` and in `gatehouse_cache_stores_total{result}`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::directives::{parse_cache_control, Directives, DELTA_MAX};
use crate::cache::entry::{Flags, StoredResponse};
use crate::clock::Clock;
use crate::config::{CacheConfig, KeyBy, SetCookie};
use crate::routes::Route;

/// The directives a response gives gatehouse: those of the first valid targeted
/// field of `cache.targeted_fields` (RFC 9213 §2.1: `Cache-Control` and `Expires`
/// are then ignored), else its `Cache-Control`.
pub fn response_directives(headers: &HeaderMap, cfg: &CacheConfig) -> Directives {
    super::targeted::select(headers, &cfg.targeted_fields)
        .unwrap_or_else(|| parse_cache_control(headers))
}

/// What may be done with a stored entry for a request, at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it; `remaining` ms of freshness left.
    Fresh { remaining: u64 },
    /// Stale within `stale-while-revalidate`: serve it, refresh in the background.
    StaleWhileRevalidate,
    /// Stale, but the client accepts it (`max-stale`).
    StaleAccepted,
    /// Must go to the origin (revalidating when the entry has a validator).
    Revalidate,
}

/// Decides how a stored response may answer a request (RFC 9111 §4, §4.2.4, §5.2;
/// RFC 5861). `trusted` is false for an L1 entry that may have missed invalidations.
pub fn reuse(entry: &StoredResponse, req: &Directives, trusted: bool, now: u64) -> Reuse {
    let age = entry.age_at(now);
    let fresh_for = entry.freshness.saturating_sub(age);
    let fresh = trusted && !entry.flags.no_cache && age < entry.freshness;
    let request_ok = !req.no_cache
        && req.max_age.is_none_or(|m| age <= m.seconds() * 1000)
        && req
            .min_fresh
            .is_none_or(|m| fresh_for >= m.seconds() * 1000);
    if fresh && request_ok {
        return Reuse::Fresh {
            remaining: fresh_for,
        };
    }
    if fresh || entry.flags.must_revalidate || entry.flags.no_cache || req.no_cache || !trusted {
        return Reuse::Revalidate;
    }
    let stale_for = age - entry.freshness;
    if let Some(max_stale) = req.max_stale {
        if max_stale.is_none_or(|m| stale_for <= m * 1000) && req.max_age.is_none() {
            return Reuse::StaleAccepted;
        }
    }
    if stale_for < entry.stale_while_revalidate && req.max_age.is_none() {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Revalidate
}

/// Whether a stale entry may answer because the origin (or store) failed: an
/// error status, a timeout, a refused, closed or reset connection, or a body that
/// broke off (`stale-if-error`, RFC 5861 §4). The window is the response's (or the
/// route's), or the request's own `stale-if-error` ("its scope of application is
/// the request it appears in"). Never for `must-revalidate`, `proxy-revalidate`,
/// `s-maxage` or `no-cache` entries (RFC 9111 §4.2.4: "MUST NOT generate a stale
/// response if it is prohibited by an explicit in-protocol directive").
pub fn stale_if_error_allows(entry: &StoredResponse, req: &Directives, now: u64) -> bool {
    if entry.flags.must_revalidate || entry.flags.no_cache {
        return false;
    }
    let age = entry.age_at(now);
    if age < entry.freshness {
        return true;
    }
    let stale_for = age - entry.freshness;
    let requested = req
        .stale_if_error
        .map_or(0, |d| d.seconds().saturating_mul(1000));
    stale_for < entry.stale_if_error || stale_for < requested
}

/// Why a response was not stored (or a request not served from cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCacheReason {
    Method,
    RequestBody,
    Range,
    RouteDisabled,
    NoStore,
    Private,
    SetCookie,
    Authorization,
    Status,
    NoFreshness,
    VaryStar,
    TooLarge,
    /// A gRPC response (`content-type: application/grpc*`): a call, never a document.
    Grpc,
}

impl NoCacheReason {
    pub fn label(self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::RequestBody => "request-body",
            NoCacheReason::Range => "range",
            NoCacheReason::RouteDisabled => "route-disabled",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::Status => "status",
            NoCacheReason::NoFreshness => "no-freshness",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::Grpc => "grpc",
        }
    }
}

/// Statuses a cache may store with heuristic (route-given) freshness
/// (RFC 9110 §15.1: "heuristically cacheable").
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether a request may use the cache at all.
pub fn request_cacheable(
    method: &Method,
    headers: &HeaderMap,
    route: Option<&Route>,
) -> Result<(), NoCacheReason> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NoCacheReason::Method);
    }
    if route.is_some_and(|r| !r.config.cache) {
        return Err(NoCacheReason::RouteDisabled);
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        return Err(NoCacheReason::RequestBody);
    }
    // A `Range` uses the cache: answered from a complete stored response
    // (`proxy::range`), or filled with the whole representation.
    Ok(())
}

/// How a storable response is to be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storable {
    pub negative: bool,
    /// Freshness lifetime.
    pub freshness: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub must_revalidate: bool,
    pub no_cache: bool,
    pub auth_ok: bool,
    /// The freshness is heuristic (RFC 9111 §4.2.2, `cache.heuristic_fraction`).
    pub heuristic: bool,
}

impl Storable {
    /// The entry flags this decision gives.
    pub fn flags(&self) -> Flags {
        Flags {
            must_revalidate: self.must_revalidate,
            no_cache: self.no_cache,
            auth_ok: self.auth_ok,
            heuristic: self.heuristic,
        }
    }
}

/// Decides whether a response may be stored and for how long (RFC 9111 §3, §4.2.1),
/// with route settings: `ttl` when the origin gives no freshness (or always with
/// `override`), `negative_ttl` for 404/410, stale windows. `credentials` is whether
/// the request carried credentials: an `Authorization` header, or a token gatehouse
/// verified (from any header or cookie, even one not forwarded to the origin).
pub fn storable(
    credentials: bool,
    status: StatusCode,
    response_headers: &HeaderMap,
    route: Option<&Route>,
    cfg: &CacheConfig,
) -> Result<Storable, NoCacheReason> {
    if super::grpc::is_grpc_message(response_headers) {
        return Err(NoCacheReason::Grpc);
    }
    let cc = response_directives(response_headers, cfg);
    let rc = route.map(|r| &r.config);
    let override_ttl = rc.is_some_and(|r| r.override_ttl);
    if cc.no_store && !override_ttl {
        return Err(NoCacheReason::NoStore);
    }
    if cc.private {
        return Err(NoCacheReason::Private);
    }
    let set_cookie = rc.map_or(crate::config::DEFAULT_ROUTE_SET_COOKIE, |r| r.set_cookie);
    if response_headers.contains_key(header::SET_COOKIE) && set_cookie == SetCookie::Pass {
        return Err(NoCacheReason::SetCookie);
    }
    if status == StatusCode::PARTIAL_CONTENT
        || status.is_informational()
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NoCacheReason::Status);
    }
    if response_headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*")
    {
        return Err(NoCacheReason::VaryStar);
    }
    let per_user = rc.is_some_and(|r| r.key_by == KeyBy::Sub);
    let auth_ok = per_user || cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    if credentials && !auth_ok {
        return Err(NoCacheReason::Authorization);
    }
    let negative = matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE);
    let explicit = explicit_freshness(&cc, response_headers);
    let route_ttl = if negative {
        rc.and_then(|r| r.negative_ttl.or(r.ttl.map(|_| cfg.negative_ttl)))
    } else {
        rc.and_then(|r| r.ttl)
    };
    let heuristic = match (explicit, route_ttl) {
        (None, None) => heuristic_freshness(status, response_headers, cfg),
        _ => None,
    };
    let freshness = match (explicit, route_ttl) {
        (_, Some(ttl)) if override_ttl => ttl,
        (Some(f), _) => f,
        (None, Some(ttl)) if heuristically_cacheable(status) => ttl,
        (None, None) if heuristic.is_some() => heuristic.unwrap_or_default(),
        (None, _) if !cfg.default_ttl.is_zero() && heuristically_cacheable(status) && !negative => {
            cfg.default_ttl
        }
        // `no-cache` with a validator: stored, never fresh, revalidated before each use
        // (RFC 9111 §5.2.2.4) rather than fetched whole every time.
        (None, _)
            if cc.no_cache
                && has_validator(response_headers)
                && heuristically_cacheable(status) =>
        {
            Duration::ZERO
        }
        _ => return Err(NoCacheReason::NoFreshness),
    };
    let swr = cc
        .stale_while_revalidate
        .map(|d| Duration::from_secs(d.seconds()))
        .or(rc.and_then(|r| r.stale_while_revalidate))
        .unwrap_or_default();
    let sie = cc
        .stale_if_error
        .map(|d| Duration::from_secs(d.seconds()))
        .or(rc.and_then(|r| r.stale_if_error))
        .unwrap_or_default();
    let must_revalidate =
        cc.must_revalidate || cc.proxy_revalidate || (cc.s_maxage.is_some() && !override_ttl);
    Ok(Storable {
        negative,
        freshness,
        stale_while_revalidate: swr,
        stale_if_error: sie,
        must_revalidate,
        no_cache: cc.no_cache && !override_ttl,
        auth_ok,
        heuristic: heuristic.is_some(),
    })
}

/// How long an entry with a validator is kept past its freshness, at most, to be
/// revalidated (a 304 is cheaper than a full fetch); never-fresh ones (`no-cache`,
/// `max-age=0`) are kept this long.
pub const REVALIDATION_KEEP: Duration = Duration::from_secs(3600);

/// Whether a response carries a validator (`ETag` or `Last-Modified`).
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED)
}

/// Heuristic freshness (RFC 9111 §4.2.2), opt-in by `cache.heuristic_fraction`: that
/// fraction of the time between `Last-Modified` and `Date` (the response time when
/// `Date` is absent or invalid), at most `cache.heuristic_max`, for a heuristically
/// cacheable status. The caller applies it only when the response gives no explicit
/// freshness and no route ttl applies. A `Last-Modified` after `Date` gives none.
pub fn heuristic_freshness(
    status: StatusCode,
    headers: &HeaderMap,
    cfg: &CacheConfig,
) -> Option<Duration> {
    if cfg.heuristic_fraction <= 0.0 || !heuristically_cacheable(status) {
        return None;
    }
    let modified = header_date(headers, header::LAST_MODIFIED)?;
    let date = header_date(headers, header::DATE).unwrap_or_else(SystemTime::now);
    let since = date.duration_since(modified).ok()?;
    let lifetime = since.mul_f64(cfg.heuristic_fraction).min(cfg.heuristic_max);
    (lifetime >= Duration::from_secs(1)).then_some(lifetime)
}

/// Freshness the origin gave: `s-maxage` over `max-age` over `Expires - Date`
/// (RFC 9111 §4.2.1); directives from a targeted field ignore `Expires` (RFC 9213
/// §2.1). An invalid value means zero (stale), not absent.
pub fn explicit_freshness(cc: &Directives, headers: &HeaderMap) -> Option<Duration> {
    if let Some(d) = cc.s_maxage {
        return Some(Duration::from_secs(d.seconds()));
    }
    if let Some(d) = cc.max_age {
        return Some(Duration::from_secs(d.seconds()));
    }
    if cc.targeted {
        return None;
    }
    let expires: Vec<_> = headers.get_all(header::EXPIRES).iter().collect();
    if expires.is_empty() {
        return None;
    }
    if expires.len() > 1 {
        return Some(Duration::ZERO);
    }
    let Some(exp) = expires[0].to_str().ok().and_then(parse_http_date) else {
        // An invalid Expires (e.g. "0") means already expired (§5.3).
        return Some(Duration::ZERO);
    };
    let date = header_date(headers, header::DATE).unwrap_or_else(SystemTime::now);
    Some(
        exp.duration_since(date)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(DELTA_MAX)),
    )
}

/// A date-valued header (`Date`, `Last-Modified`): its first field line as an
/// HTTP-date, `None` when absent or invalid.
pub fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
}

/// An HTTP-date (RFC 9110 §5.6.7) in any of its three formats: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// HTTP-date is case-sensitive, and the weekday must be the date's. An RFC 850
/// two-digit year that would be more than 50 years in the future is the most recent
/// past year with those digits (§5.6.7's MUST; `httpdate` alone fixes the century at
/// 1970, which reads `01-Jan-71` as 1971).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    parse_http_date_at(text, &Clock::System)
}

/// `parse_http_date`, with the clock whose year places an RFC 850 date's century.
fn parse_http_date_at(text: &str, clock: &Clock) -> Option<SystemTime> {
    let text = text.trim();
    rfc850_as_imf_fixdate(text, clock)
        .and_then(|imf| httpdate::parse_http_date(&imf).ok())
        .or_else(|| httpdate::parse_http_date(text).ok())
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// An RFC 850 date (`rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT`,
/// `date2 = day "-" month "-" 2DIGIT`) written as the IMF-fixdate it means, its year
/// placed by §5.6.7: `httpdate` then checks the day, month, time and weekday.
fn rfc850_as_imf_fixdate(text: &str, clock: &Clock) -> Option<String> {
    let (name, rest) = text.split_once(", ")?;
    let b = rest.as_bytes();
    if !WEEKDAYS.contains(&name)
        || !rest.is_ascii()
        || b.len() != 22
        || b[2] != b'-'
        || b[6] != b'-'
        || !b[7..9].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let yy = i32::from(b[7] - b'0') * 10 + i32::from(b[8] - b'0');
    let this_year = clock.year();
    let mut year = this_year - this_year.rem_euclid(100) + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    Some(format!(
        "{}, {} {} {year:04}{}",
        &name[..3],
        &rest[..2],
        &rest[3..6],
        &rest[9..]
    ))
}

/// Whether a 304 identifies the stored response it was asked about (RFC 9111 §4.3.4):
/// a strong `ETag` must be the stored one, a weak one must match it by weak
/// comparison (RFC 9110 §8.8.3.2); a 304 without an `ETag` is taken as the stored
/// response's (origins often leave validators out of 304s).
pub fn identifies(stored: &StoredResponse, not_modified: &HeaderMap) -> bool {
    let Some(new) = not_modified
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return true;
    };
    let Some(old) = stored
        .header("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return false;
    };
    match new.strip_prefix("W/") {
        None => new == old,
        Some(opaque) => opaque == old.strip_prefix("W/").unwrap_or(old),
    }
}

/// The stored fields updated by a 304 (RFC 9111 §4.3.4, §3.2): each field the 304
/// carries replaces every stored line of that field and new fields are added, except
/// `Content-Length`, `Content-Encoding`, `Content-Range` and `Transfer-Encoding` (the
/// stored body keeps its own) and `Age` (counted into the new age). Hop-by-hop fields
/// are gone from the 304 before it gets here (`origin::strip_hop_by_hop`).
pub fn merge_not_modified(
    stored: &[(HeaderName, HeaderValue)],
    not_modified: &HeaderMap,
) -> HeaderMap {
    let mut merged = HeaderMap::new();
    for (k, v) in stored {
        merged.append(k.clone(), v.clone());
    }
    let mut replaced = HashSet::new();
    for (k, v) in not_modified {
        if matches!(
            *k,
            header::CONTENT_LENGTH
                | header::CONTENT_ENCODING
                | header::CONTENT_RANGE
                | header::TRANSFER_ENCODING
                | header::AGE
        ) {
            continue;
        }
        if replaced.insert(k.clone()) {
            merged.remove(k);
        }
        merged.append(k.clone(), v.clone());
    }
    merged
}

/// The `Age` field (RFC 9111 §5.1) in seconds: a list-based value (`Age: 5, 10`, or
/// two field lines) counts by its first member; a first member that is not a
/// non-negative integer (`5s`, `-1`, `abc`) makes the field ignored; values beyond
/// 2^31 count as 2^31 (§1.2.2).
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(header::AGE)?.to_str().ok()?;
    let member = first.split(',').next()?.trim();
    if member.is_empty() || !member.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(member.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// RFC 9111 §4.2.3 `corrected_initial_age` in ms, from the response's `Age` and
/// `Date` and the request/response times (Unix ms).
pub fn initial_age(headers: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    let age_value = age_value(headers).unwrap_or(0) * 1000;
    let date = header_date(headers, header::DATE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let apparent_age = date.map(|d| response_time.saturating_sub(d)).unwrap_or(0);
    let response_delay = response_time.saturating_sub(request_time);
    apparent_age.max(age_value + response_delay)
}

#[cfg(test)]
mod tests {
    use super::super::directives::Delta;
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn cfg() -> CacheConfig {
        crate::config::Config::default().cache
    }

    #[test]
    fn s_maxage_wins_over_max_age_over_expires() {
        let h = headers(&[("cache-control", "max-age=10, s-maxage=20")]);
        let d = parse_cache_control(&h);
        assert_eq!(explicit_freshness(&d, &h), Some(Duration::from_secs(20)));
        let h = headers(&[
            ("cache-control", "max-age=10"),
            ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
        ]);
        assert_eq!(
            explicit_freshness(&parse_cache_control(&h), &h),
            Some(Duration::from_secs(10))
        );
        let h = headers(&[
            ("date", "Thu, 01 Jan 2037 00:00:00 GMT"),
            ("expires", "Thu, 01 Jan 2037 00:01:00 GMT"),
        ]);
        assert_eq!(
            explicit_freshness(&parse_cache_control(&h), &h),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn quoted_duplicated_and_invalid_values_follow_the_rfc() {
        let h = headers(&[("cache-control", "max-age=\"60\"")]);
        assert_eq!(parse_cache_control(&h).max_age, Some(Delta::Seconds(60)));
        let h = headers(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "max-age=30"),
        ]);
        assert_eq!(parse_cache_control(&h).max_age, Some(Delta::Invalid));
        let h = headers(&[("cache-control", "max-age=-1")]);
        let d = parse_cache_control(&h);
        assert_eq!(explicit_freshness(&d, &h), Some(Duration::ZERO));
        let h = headers(&[("expires", "0")]);
        assert_eq!(
            explicit_freshness(&parse_cache_control(&h), &h),
            Some(Duration::ZERO)
        );
        let h = headers(&[("cache-control", "max-age=99999999999")]);
        assert_eq!(
            parse_cache_control(&h).max_age,
            Some(Delta::Seconds(1 << 31))
        );
    }

    #[test]
    fn never_stored_no_store_private_set_cookie_and_authorization() {
        let c = cfg();
        for (h, reason) in [
            ("no-store, max-age=60", NoCacheReason::NoStore),
            ("private, max-age=60", NoCacheReason::Private),
        ] {
            let resp = headers(&[("cache-control", h)]);
            assert_eq!(
                storable(false, StatusCode::OK, &resp, None, &c).unwrap_err(),
                reason
            );
        }
        let resp = headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
        assert_eq!(
            storable(false, StatusCode::OK, &resp, None, &c).unwrap_err(),
            NoCacheReason::SetCookie
        );
        let resp = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            storable(true, StatusCode::OK, &resp, None, &c).unwrap_err(),
            NoCacheReason::Authorization
        );
        let resp = headers(&[("cache-control", "public, max-age=60")]);
        assert!(
            storable(true, StatusCode::OK, &resp, None, &c)
                .unwrap()
                .auth_ok
        );
    }

    #[test]
    fn no_freshness_without_a_route_ttl() {
        assert_eq!(
            storable(false, StatusCode::OK, &HeaderMap::new(), None, &cfg()).unwrap_err(),
            NoCacheReason::NoFreshness
        );
    }

    fn stored(
        freshness: u64,
        swr: u64,
        must_revalidate: bool,
    ) -> crate::cache::entry::StoredResponse {
        let mut e = crate::cache::entry::tests::sample(false);
        let r = e.response_mut();
        r.freshness = freshness;
        r.stale_while_revalidate = swr;
        r.initial_age = 0;
        r.response_time = 0;
        r.flags.must_revalidate = must_revalidate;
        r.clone()
    }

    #[test]
    fn reuse_honours_request_directives_and_stale_windows() {
        let none = Directives::default();
        let r = stored(60_000, 30_000, false);
        assert_eq!(
            reuse(&r, &none, true, 10_000),
            Reuse::Fresh { remaining: 50_000 }
        );
        // Untrusted L1 entries are never fresh.
        assert_eq!(reuse(&r, &none, false, 10_000), Reuse::Revalidate);
        let min_fresh = Directives {
            min_fresh: Some(Delta::Seconds(55)),
            ..Default::default()
        };
        assert_eq!(reuse(&r, &min_fresh, true, 10_000), Reuse::Revalidate);
        let max_age = Directives {
            max_age: Some(Delta::Seconds(5)),
            ..Default::default()
        };
        assert_eq!(reuse(&r, &max_age, true, 10_000), Reuse::Revalidate);
        assert_eq!(reuse(&r, &none, true, 70_000), Reuse::StaleWhileRevalidate);
        assert_eq!(reuse(&r, &none, true, 95_000), Reuse::Revalidate);
        let max_stale = Directives {
            max_stale: Some(Some(100)),
            ..Default::default()
        };
        assert_eq!(reuse(&r, &max_stale, true, 95_000), Reuse::StaleAccepted);
        let strict = stored(60_000, 30_000, true);
        assert_eq!(reuse(&strict, &none, true, 70_000), Reuse::Revalidate);
        assert_eq!(reuse(&strict, &max_stale, true, 70_000), Reuse::Revalidate);
        assert!(!stale_if_error_allows(&strict, &none, 70_000));
        // The request's own stale-if-error (RFC 5861 §4), never past must-revalidate.
        let asks = Directives {
            stale_if_error: Some(Delta::Seconds(60)),
            ..Default::default()
        };
        assert!(!stale_if_error_allows(&r, &none, 95_000));
        assert!(stale_if_error_allows(&r, &asks, 95_000));
        assert!(!stale_if_error_allows(&r, &asks, 130_000));
        assert!(!stale_if_error_allows(&strict, &asks, 70_000));
    }

    #[test]
    fn http_dates_parse_in_all_three_formats_case_sensitively() {
        let imf = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(imf));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(imf));
        assert_eq!(
            parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT "),
            Some(imf)
        );
        // RFC 9110 §5.6.7: a two-digit year is at most 50 years ahead.
        let y2070 = UNIX_EPOCH + Duration::from_secs(3_155_760_000);
        assert_eq!(
            parse_http_date("Wednesday, 01-Jan-70 00:00:00 GMT"),
            Some(y2070)
        );
        let y2037 = UNIX_EPOCH + Duration::from_secs(2_114_380_800);
        assert_eq!(
            parse_http_date("Thursday, 01-Jan-37 00:00:00 GMT"),
            Some(y2037)
        );
        for bad in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Monday, 06-Nov-94 08:49:37 GMT",
            "Sunday, 31-Feb-94 08:49:37 GMT",
            "Sunday, 06-Nov-94 24:49:37 GMT",
            "0",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_rfc850_year_is_placed_by_the_clock_at_most_50_years_ahead() {
        let y2070 = Some(UNIX_EPOCH + Duration::from_secs(3_155_760_000));
        let wednesday = "Wednesday, 01-Jan-70 00:00:00 GMT";
        // 1 December 2026 and 1 June 2019 (Unix ms).
        let (in_2026, in_2019) = (
            Clock::manual(1_796_169_600_000),
            Clock::manual(1_559_347_200_000),
        );
        assert_eq!(parse_http_date_at(wednesday, &in_2026), y2070);
        // From 2019, 2070 is more than 50 years ahead: 1970, whose 1 January was a
        // Thursday, so the weekday is wrong.
        assert_eq!(parse_http_date_at(wednesday, &in_2019), None);
        assert_eq!(
            parse_http_date_at("Thursday, 01-Jan-70 00:00:00 GMT", &in_2019),
            Some(UNIX_EPOCH)
        );
        for bad in [
            "Sunday, 31-Feb-94 08:49:37 GMT",
            "Sunday, 06-Nov-94 24:49:37 GMT",
            "Sunday, 06-nov-94 08:49:37 GMT",
            "Sunday, 06-Nov-9x 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 UTC",
            "Sun, 06-Nov-94 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date_at(bad, &in_2026), None, "{bad:?}");
        }
    }

    #[test]
    fn age_uses_the_first_member_and_ignores_invalid_values() {
        for (lines, want) in [
            (&["30"][..], Some(30)),
            (&["30, 50"][..], Some(30)),
            (&["30", "50"][..], Some(30)),
            (&[" 7 "][..], Some(7)),
            (&["30abc"][..], None),
            (&["-1"][..], None),
            (&["abc, 30"][..], None),
            (&[""][..], None),
            (&["99999999999999999999999"][..], Some(1 << 31)),
        ] {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(header::AGE, HeaderValue::from_str(l).unwrap());
            }
            assert_eq!(age_value(&h), want, "{lines:?}");
        }
        let h = headers(&[("age", "5, 100")]);
        assert_eq!(initial_age(&h, 1_000, 1_200), 5_200);
    }

    #[test]
    fn a_304_replaces_the_fields_it_carries_but_not_the_bodys_own() {
        let stored: Vec<_> = headers(&[
            ("cache-control", "max-age=10"),
            ("cache-control", "public"),
            ("content-type", "text/plain"),
            ("content-length", "5"),
            ("content-encoding", "gzip"),
            ("x-kept", "1"),
        ])
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
        let not_modified = headers(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("content-range", "bytes 0-0/1"),
            ("age", "7"),
            ("x-new", "a"),
            ("x-new", "b"),
        ]);
        let merged = merge_not_modified(&stored, &not_modified);
        let all = |name: &str| -> Vec<&str> {
            merged
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("cache-control"), ["max-age=60"]);
        assert_eq!(all("content-type"), ["text/plain"]);
        assert_eq!(all("content-length"), ["5"]);
        assert_eq!(all("content-encoding"), ["gzip"]);
        assert_eq!(all("x-kept"), ["1"]);
        assert_eq!(all("x-new"), ["a", "b"]);
        assert!(all("content-range").is_empty() && all("age").is_empty());
    }

    #[test]
    fn a_304_identifies_the_stored_response_by_its_etag() {
        let mut r = crate::cache::entry::tests::sample(false).response().clone();
        r.headers = vec![(header::ETAG, HeaderValue::from_static("\"v1\""))];
        assert!(identifies(&r, &HeaderMap::new()));
        assert!(identifies(&r, &headers(&[("etag", "\"v1\"")])));
        assert!(identifies(&r, &headers(&[("etag", "W/\"v1\"")])));
        assert!(!identifies(&r, &headers(&[("etag", "\"v2\"")])));
        r.headers.clear();
        assert!(!identifies(&r, &headers(&[("etag", "\"v1\"")])));
    }

    #[test]
    fn initial_age_takes_the_larger_of_apparent_and_corrected_age() {
        let h = headers(&[("age", "5")]);
        assert_eq!(initial_age(&h, 1_000, 1_200), 5_200);
    }
}
