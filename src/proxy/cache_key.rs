//! Request -> `CacheKey`: authority (lower-cased, default port dropped), normalized
//! path and query (percent-encoding of unreserved characters decoded, hex digits
//! upper-cased), plus the route's `vary` request headers and, for `key_by = "sub"`
//! routes, the verified subject. GET and HEAD share a key: HEAD is answered from a
//! cached GET.

use http::{header, HeaderMap, Uri};
use sha2::{Digest, Sha256};

use crate::cache::{normalize_header, CacheKey};
use crate::config::KeyBy;
use crate::routes::Route;

/// Normalizes percent-encoding: `%41` -> `A` for unreserved characters, `%2f` -> `%2F`.
pub fn normalize_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = &raw[i + 1..i + 3];
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                let c = v as char;
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
                    out.push(c);
                } else {
                    out.push('%');
                    out.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The request's authority, lower-cased, without a default port.
pub fn authority(uri: &Uri, headers: &HeaderMap) -> String {
    let raw = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    raw.strip_suffix(":80").map(str::to_string).unwrap_or(raw)
}

/// The key for a cacheable request; `sub` is the verified subject when the route is
/// keyed per user.
pub fn for_request(
    uri: &Uri,
    headers: &HeaderMap,
    route: Option<&Route>,
    sub: Option<&str>,
) -> CacheKey {
    let host = authority(uri, headers);
    let path = path_and_query(uri);
    let mut primary = String::with_capacity(host.len() + path.len() + 32);
    primary.push_str(&host);
    primary.push_str(&path);
    if let Some(r) = route {
        for name in &r.config.vary {
            primary.push('\u{1}');
            primary.push_str(name);
            primary.push('=');
            if let Some(v) = normalize_header(headers, name) {
                primary.push_str(&v.to_ascii_lowercase());
            }
        }
        if r.config.key_by == KeyBy::Sub {
            // The subject is hashed so keys never carry user identifiers verbatim.
            let digest = Sha256::digest(sub.unwrap_or("").as_bytes());
            primary.push_str("\u{1}sub=");
            primary.push_str(&hex::encode(&digest[..12]));
        }
    }
    CacheKey::new(primary, path)
}

/// The normalized path and query of a URI (what purges by URL and prefix match).
pub fn path_and_query(uri: &Uri) -> String {
    let mut path = normalize_path(uri.path());
    if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(&normalize_path(q));
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn percent_encoding_is_normalized() {
        assert_eq!(normalize_path("/a%2fb/%7Euser/%41"), "/a%2Fb/~user/A");
        assert_eq!(normalize_path("/100%"), "/100%");
        assert_eq!(normalize_path(""), "/");
    }

    #[test]
    fn key_uses_host_path_query_and_route_vary() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("App.Example:80"));
        h.insert("accept-language", HeaderValue::from_static("EN,  fr"));
        let uri: Uri = "/p/%41?x=1".parse().unwrap();
        let route = crate::routes::Router::new(&[crate::config::RouteConfig {
            vary: vec!["accept-language".into()],
            ..crate::config::RouteConfig::new("/p")
        }])
        .unwrap();
        let r = route.routes()[0].clone();
        let k = for_request(&uri, &h, Some(&r), None);
        assert_eq!(
            &*k.primary,
            "app.example/p/A?x=1\u{1}accept-language=en, fr"
        );
        assert_eq!(k.path, "/p/A?x=1");
        let k2 = for_request(&uri, &h, None, None);
        assert_eq!(&*k2.primary, "app.example/p/A?x=1");
    }
}
