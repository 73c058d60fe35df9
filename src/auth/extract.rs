//! Finding the bearer token in a request.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::config::AuthConfig;

/// The request's bearer token, looked for in this order:
/// 1. `Authorization: Bearer <token>` (scheme matched case-insensitively, RFC 9110 §11.1);
/// 2. the cookie named `auth.token_cookie`, when set;
/// 3. the header named `auth.token_header`, when set (an optional `Bearer ` prefix is
///    removed).
///
/// An `Authorization` header with another scheme (e.g. `Basic`) is not a bearer token
/// and the search goes on. Empty values count as absent. `None` means the request
/// carries no token (`Rejection::Missing`).
pub fn extract_token<'h>(headers: &'h HeaderMap, cfg: &AuthConfig) -> Option<&'h str> {
    find_token(headers, cfg).map(|f| f.token)
}

/// A token found in a request: the token, where, and the field value it came from.
#[derive(Clone, Copy, Debug)]
pub struct Found<'h> {
    pub token: &'h str,
    pub source: TokenSource,
    pub value: &'h http::HeaderValue,
}

/// Where a request's token was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Authorization,
    Cookie,
    /// The header named `auth.token_header`.
    Header,
}

/// `extract_token`, and where the token came from.
pub fn find_token<'h>(headers: &'h HeaderMap, cfg: &AuthConfig) -> Option<Found<'h>> {
    let found = |token, source, value| Found {
        token,
        source,
        value,
    };
    for value in headers.get_all(AUTHORIZATION) {
        if let Some(token) = value.to_str().ok().and_then(strip_bearer) {
            return Some(found(token, TokenSource::Authorization, value));
        }
    }
    if let Some(name) = cfg.token_cookie.as_deref() {
        for value in headers.get_all(COOKIE) {
            if let Some(token) = value.to_str().ok().and_then(|v| find_cookie(v, name)) {
                return Some(found(token, TokenSource::Cookie, value));
            }
        }
    }
    if let Some(name) = cfg.token_header.as_deref() {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            let token = strip_bearer(text).unwrap_or(text.trim());
            if !token.is_empty() {
                return Some(found(token, TokenSource::Header, value));
            }
        }
    }
    None
}

/// `Bearer <token>` → `<token>`, any case of the scheme, surrounding spaces ignored.
fn strip_bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// The value of cookie `name` in one `Cookie` header (RFC 6265 §4.2.1: `a=1; b=2`).
fn find_cookie<'v>(header: &'v str, name: &str) -> Option<&'v str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if k.trim() != name {
            return None;
        }
        // RFC 6265 allows a value in double quotes.
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http::HeaderValue;

    fn cfg(cookie: Option<&str>, header: Option<&str>) -> AuthConfig {
        let mut a = Config::default().auth;
        a.token_cookie = cookie.map(String::from);
        a.token_header = header.map(String::from);
        a
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let c = cfg(None, None);
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi  ",
        ] {
            assert_eq!(
                extract_token(&headers(&[("authorization", v)]), &c),
                Some("abc.def.ghi"),
                "{v}"
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_values_are_not_tokens() {
        let c = cfg(None, None);
        assert_eq!(extract_token(&headers(&[]), &c), None);
        assert_eq!(
            extract_token(&headers(&[("authorization", "Basic dXNlcjpwdw==")]), &c),
            None
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearer ")]), &c),
            None
        );
        assert_eq!(
            extract_token(&headers(&[("authorization", "Bearerx")]), &c),
            None
        );
    }

    #[test]
    fn cookie_then_header_are_used_when_configured() {
        let h = headers(&[
            ("cookie", "theme=dark; session=\"c.o.okie\""),
            ("x-token", "h.e.ader"),
        ]);
        assert_eq!(extract_token(&h, &cfg(None, None)), None);
        assert_eq!(
            extract_token(&h, &cfg(Some("session"), Some("x-token"))),
            Some("c.o.okie")
        );
        assert_eq!(
            extract_token(&h, &cfg(Some("nope"), Some("x-token"))),
            Some("h.e.ader")
        );
        let h = headers(&[("x-token", "Bearer p.r.efixed")]);
        assert_eq!(
            extract_token(&h, &cfg(None, Some("x-token"))),
            Some("p.r.efixed")
        );
    }

    #[test]
    fn authorization_wins_over_cookie_and_header() {
        let h = headers(&[
            ("cookie", "session=c"),
            ("x-token", "h"),
            ("authorization", "Basic xyz"),
            ("authorization", "Bearer a"),
        ]);
        assert_eq!(
            extract_token(&h, &cfg(Some("session"), Some("x-token"))),
            Some("a")
        );
    }
}
