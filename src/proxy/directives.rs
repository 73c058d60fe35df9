//! Cache directives (RFC 9111 §5.2): the parsed form gatehouse reasons with, read
//! from `Cache-Control` (and, for a request, `Pragma`). Targeted fields (RFC 9213,
//! `targeted.rs`) produce the same `Directives`; `cache_policy.rs` decides with them.

use http::{header, HeaderMap};

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
    /// The directives came from a targeted field (RFC 9213), not `Cache-Control`:
    /// `Expires` is then ignored too.
    pub targeted: bool,
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
pub(super) const DELTA_MAX: u64 = 1 << 31;

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
