//! Request -> `CacheKey`: the canonical authority and the canonical path and query
//! (`proxy::inbound` made both canonical before routing, so nothing is normalised
//! again here), plus the route's `vary` request headers and, for `key_by = "sub"`
//! routes, the verified subject; and, for a route sent to a named origin
//! (`routes[].origin`), that origin's name, so two origins never share an entry
//! whatever the hosts and methods of their routes (and a reload that moves a route to
//! another origin never answers from what the old one gave). `[origin]`'s keys carry
//! no name: they stay what they were before named origins existed. GET and HEAD
//! share a key: HEAD is answered from a cached GET.

use http::{header, HeaderMap, Uri};
use sha2::{Digest, Sha256};

use crate::cache::{normalize_header, CacheKey};
use crate::config::KeyBy;
use crate::routes::Route;

/// The request's canonical authority (its one `Host`, set by `proxy::inbound`).
pub fn host(headers: &HeaderMap) -> &str {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The key for a cacheable request; `sub` is the verified subject when the route is
/// keyed per user.
pub fn for_request(
    uri: &Uri,
    headers: &HeaderMap,
    route: Option<&Route>,
    sub: Option<&str>,
) -> CacheKey {
    let host = host(headers);
    let path = path_and_query(uri);
    SCRATCH.with_borrow_mut(|primary| {
        primary.clear();
        write_primary(primary, host, &path, route, headers, sub);
        CacheKey::new(primary, path)
    })
}

thread_local! {
    /// Where the primary key is written before its one copy into the shared key, so
    /// a request costs one allocation for it, not a growing `String` and a copy.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn write_primary(
    primary: &mut String,
    host: &str,
    path: &str,
    route: Option<&Route>,
    headers: &HeaderMap,
    sub: Option<&str>,
) {
    primary.push_str(host);
    primary.push_str(path);
    if let Some(r) = route {
        if let Some(origin) = r
            .config
            .origin
            .as_deref()
            .filter(|o| *o != crate::config::DEFAULT_ORIGIN_NAME)
        {
            primary.push_str("\u{1}origin=");
            primary.push_str(origin);
        }
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
}

/// The canonical path and query of a canonical request URI (what purges by URL and
/// prefix match).
pub fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query().map_or("/", |p| p.as_str()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn key_uses_host_path_query_and_route_vary() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        h.insert("accept-language", HeaderValue::from_static("EN,  fr"));
        let uri: Uri = "/p/A?x=1".parse().unwrap();
        let route = crate::routes::Router::new(
            &[crate::config::RouteConfig {
                vary: vec!["accept-language".into()],
                ..crate::config::RouteConfig::new("/p")
            }],
            Default::default(),
        )
        .unwrap();
        let r = route.routes()[0].clone();
        let k = for_request(&uri, &h, Some(&r), None);
        assert_eq!(&*k.primary, "app.example/p/A?x=1\u{1}accept-language=en,fr");
        // The route's vary headers are normalised as Vary's are: equivalent lists
        // make one key.
        h.insert("accept-language", HeaderValue::from_static("fr;q=1.0, en"));
        assert_eq!(for_request(&uri, &h, Some(&r), None).primary, k.primary);
        assert_eq!(k.path, "/p/A?x=1");
        let k2 = for_request(&uri, &h, None, None);
        assert_eq!(&*k2.primary, "app.example/p/A?x=1");
    }

    #[test]
    fn a_named_origin_is_part_of_the_key_and_default_is_not() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        let uri: Uri = "/p?x=1".parse().unwrap();
        let route = |origin: Option<&str>| {
            crate::routes::Router::new(
                &[crate::config::RouteConfig {
                    origin: origin.map(str::to_string),
                    ..crate::config::RouteConfig::new("/p")
                }],
                Default::default(),
            )
            .unwrap()
            .routes()[0]
                .clone()
        };
        let plain = for_request(&uri, &h, Some(&route(None)), None);
        let default = for_request(&uri, &h, Some(&route(Some("default"))), None);
        let auth = for_request(&uri, &h, Some(&route(Some("auth"))), None);
        let other = for_request(&uri, &h, Some(&route(Some("other"))), None);
        // Same host, path and query: only the origin tells them apart.
        assert_eq!(plain.id, default.id, "[origin] keys are unchanged");
        assert_eq!(&*plain.primary, "app.example/p?x=1");
        assert_ne!(plain.id, auth.id);
        assert_ne!(auth.id, other.id);
        // Purges by path still find every origin's entry.
        assert_eq!(auth.path_hash(), plain.path_hash());
    }
}
