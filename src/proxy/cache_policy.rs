//! RFC 9111 as a shared cache: may this response be stored, how long is it fresh,
//! and what may it be served for. Normal outcomes are enum variants: a response
//! that is not stored says why (`NoCacheReason`), which also lands in
//! `Cache-Status` and in `gatehouse_cache_stores_total{result}`.

use std::time::Duration;

use http::{header, HeaderMap, Method, StatusCode};

use crate::config::{CacheConfig, KeyBy};
use crate::routes::Route;

/// Parsed `Cache-Control` directives that matter to a shared cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<Delta>,
    pub s_maxage: Option<Delta>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub stale_while_revalidate: Option<Delta>,
    pub stale_if_error: Option<Delta>,
    pub only_if_cached: bool,
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<Delta>,
}

/// A delta-seconds argument: valid seconds, or invalid (unparsable, negative, or
/// given twice with different values), which makes the response stale (RFC 9111
/// §4.2.1, §1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta {
    Seconds(u64),
    Invalid,
}

impl Delta {
    pub fn seconds(self) -> u64 {
        match self {
            Delta::Seconds(s) => s,
            Delta::Invalid => 0,
        }
    }
}

/// RFC 9111 §1.2.2: values above 2^31 count as 2^31.
const DELTA_MAX: u64 = 1 << 31;

fn parse_delta(v: Option<&str>) -> Delta {
    match v {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Delta::Seconds(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
        }
        _ => Delta::Invalid,
    }
}

fn set_delta(slot: &mut Option<Delta>, v: Delta) {
    *slot = match *slot {
        None => Some(v),
        Some(prev) if prev == v => Some(prev),
        Some(_) => Some(Delta::Invalid),
    };
}

/// Splits a header list on commas outside quoted strings.
fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Parses every `Cache-Control` field line. Quoted arguments are accepted
/// (`max-age="60"`), directive names are case-insensitive.
pub fn parse_cache_control(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for part in split_list(value) {
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => {
                    let a = a.trim();
                    let a = a
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .unwrap_or(a);
                    (n.trim(), Some(a))
                }
                None => (part, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "max-age" => set_delta(&mut d.max_age, parse_delta(arg)),
                "s-maxage" => set_delta(&mut d.s_maxage, parse_delta(arg)),
                "stale-while-revalidate" => {
                    set_delta(&mut d.stale_while_revalidate, parse_delta(arg))
                }
                "stale-if-error" => set_delta(&mut d.stale_if_error, parse_delta(arg)),
                "min-fresh" => set_delta(&mut d.min_fresh, parse_delta(arg)),
                "max-stale" => d.max_stale = Some(arg.map(|a| parse_delta(Some(a)).seconds())),
                "no-store" => d.no_store = true,
                // Qualified no-cache="field" is treated like unqualified: stricter.
                "no-cache" => d.no_cache = true,
                // Qualified private="field" is treated like unqualified: never shared.
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "only-if-cached" => d.only_if_cached = true,
                _ => {}
            }
        }
    }
    d
}

/// Request directives (RFC 9111 §5.2.1), with `Pragma: no-cache` honoured when the
/// request has no `Cache-Control` (§5.4).
pub fn request_directives(headers: &HeaderMap) -> Directives {
    let mut d = parse_cache_control(headers);
    if !headers.contains_key(header::CACHE_CONTROL)
        && headers
            .get_all(header::PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
            })
    {
        d.no_cache = true;
    }
    d
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
pub fn reuse(
    entry: &crate::cache::entry::StoredResponse,
    req: &Directives,
    trusted: bool,
    now: u64,
) -> Reuse {
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

/// Whether a stale entry may answer because the origin (or store) failed
/// (`stale-if-error`, RFC 5861 §4), never for must-revalidate / no-cache entries.
pub fn stale_if_error_allows(entry: &crate::cache::entry::StoredResponse, now: u64) -> bool {
    if entry.flags.must_revalidate || entry.flags.no_cache {
        return false;
    }
    let age = entry.age_at(now);
    age < entry.freshness || age - entry.freshness < entry.stale_if_error
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
    let cc = parse_cache_control(response_headers);
    let rc = route.map(|r| &r.config);
    let override_ttl = rc.is_some_and(|r| r.override_ttl);
    if cc.no_store && !override_ttl {
        return Err(NoCacheReason::NoStore);
    }
    if cc.private {
        return Err(NoCacheReason::Private);
    }
    if response_headers.contains_key(header::SET_COOKIE) {
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
    let freshness = match (explicit, route_ttl) {
        (_, Some(ttl)) if override_ttl => ttl,
        (Some(f), _) => f,
        (None, Some(ttl)) if heuristically_cacheable(status) => ttl,
        (None, _) if !cfg.default_ttl.is_zero() && heuristically_cacheable(status) && !negative => {
            cfg.default_ttl
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
    })
}

/// Freshness the origin gave: `s-maxage` over `max-age` over `Expires - Date`
/// (RFC 9111 §4.2.1). An invalid value means zero (stale), not absent.
pub fn explicit_freshness(cc: &Directives, headers: &HeaderMap) -> Option<Duration> {
    if let Some(d) = cc.s_maxage {
        return Some(Duration::from_secs(d.seconds()));
    }
    if let Some(d) = cc.max_age {
        return Some(Duration::from_secs(d.seconds()));
    }
    let expires: Vec<_> = headers.get_all(header::EXPIRES).iter().collect();
    if expires.is_empty() {
        return None;
    }
    if expires.len() > 1 {
        return Some(Duration::ZERO);
    }
    let Some(exp) = expires[0]
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
    else {
        // An invalid Expires (e.g. "0") means already expired.
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(exp.duration_since(date).unwrap_or(Duration::ZERO))
}

/// RFC 9111 §4.2.3 `corrected_initial_age` in ms, from the response's `Age` and
/// `Date` and the request/response times (Unix ms).
pub fn initial_age(headers: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .min(DELTA_MAX)
        * 1000;
    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let apparent_age = date.map(|d| response_time.saturating_sub(d)).unwrap_or(0);
    let response_delay = response_time.saturating_sub(request_time);
    apparent_age.max(age_value + response_delay)
}

#[cfg(test)]
mod tests {
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
        assert!(!stale_if_error_allows(&strict, 70_000));
    }

    #[test]
    fn initial_age_takes_the_larger_of_apparent_and_corrected_age() {
        let h = headers(&[("age", "5")]);
        assert_eq!(initial_age(&h, 1_000, 1_200), 5_200);
    }
}
