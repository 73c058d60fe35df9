//! Step 0 of the request path: one meaning per request, before any rule looks at it.
//!
//! - The request target becomes its canonical form (`crate::target`): the URI is
//!   rewritten to the canonical origin-form path and query, so route matching, auth,
//!   gates, `key_by`, the cache key, invalidation and the request the origin gets
//!   all see the same bytes. Spellings the policy refuses are 400 `INVALID_PATH`.
//! - One authority: an absolute-form target wins over `Host` (RFC 9112 §3.2.2) and
//!   `Host` is rewritten to it; on h2 a `host` that disagrees with `:authority` is 400
//!   `AUTHORITY_MISMATCH` (RFC 9113 §8.3.1); several `Host` fields, or none on
//!   HTTP/1.1, are 400; the canonical authority is the one `Host` forwarded. With
//!   `server.hosts` set, any other authority is 421 `HOST_NOT_ALLOWED`.
//! - The client's `Connection` list and the hop-by-hop fields are removed here, from
//!   the client's headers only, before gatehouse adds any of its own (claims headers,
//!   the fence, `Via`, `X-Forwarded-*`), so the list can never remove those; it never
//!   removes `Host` or `Content-Length` either.
//! - Every inbound `X-Gatehouse-*` field and every `auth.claims_to_headers` field
//!   (also spelled with `_` for `-`, which CGI-style servers read as the same name)
//!   is removed on every route: only gatehouse sets them.
//! - Several `Authorization` fields are 400 `DUPLICATE_HEADER` (it is a singleton
//!   field, and the origin might read another value than the one verified).

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri, Version};

use super::origin::strip_hop_by_hop_keeping;
use crate::config::Config;
use crate::error::{Error, ErrorCode};
use crate::metrics::Metrics;
use crate::target::{self, PathError};

/// The methods the proxy listener forwards: every method but `CONNECT` (the `Allow`
/// of its 405). Routes may narrow them (`methods`).
pub const PROXY_ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The prefix of the fields only gatehouse sets (e.g. `X-Gatehouse-Fence`).
pub const OWN_PREFIX: &str = "x-gatehouse-";

/// What `canonicalize` made of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// An origin-form request, made canonical: route and proxy it.
    Target,
    /// `OPTIONS *` (asterisk-form, RFC 9110 §9.3.7): a question about the server, not
    /// a resource, answered by gatehouse itself (`asterisk_options`), never forwarded.
    AsteriskOptions,
}

/// The answer to `OPTIONS *`: 200 with the methods the proxy forwards in `Allow` and
/// `Content-Length: 0` (RFC 9110 §9.3.7).
pub fn asterisk_options() -> http::Response<crate::body::Body> {
    let mut resp = crate::error::empty_response(http::StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(PROXY_ALLOW));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Makes the request canonical in place; the error is the answer to send.
pub fn canonicalize<B>(
    req: &mut Request<B>,
    config: &Config,
    tls: bool,
    metrics: &Metrics,
) -> Result<Canonical, Error> {
    let refuse = |reason: &'static str, code: ErrorCode, msg: &str| {
        metrics
            .request_rejections_total
            .with_label_values(&[reason])
            .inc();
        Error::new(code, msg).with_field("reason", reason)
    };
    // A reverse proxy opens no tunnels (RFC 9110 §9.3.6): CONNECT, h1 or h2, is 405
    // whatever its target, before its authority-form target is looked at.
    if req.method() == http::Method::CONNECT {
        return Err(refuse(
            "connect",
            ErrorCode::MethodNotAllowed,
            "CONNECT is not accepted: gatehouse is a reverse proxy, not a tunnel",
        )
        .with_header(header::ALLOW, HeaderValue::from_static(PROXY_ALLOW)));
    }
    let authority = authority(req, tls).map_err(|(reason, code, msg)| refuse(reason, code, msg))?;
    if !target::host_allowed(&authority, &config.server.hosts) {
        return Err(refuse(
            "host-not-allowed",
            ErrorCode::HostNotAllowed,
            "this gatehouse does not answer for that host (server.hosts)",
        ));
    }
    let path_error = |e: PathError| refuse(e.reason(), ErrorCode::InvalidPath, e.message());
    let uri = req.uri();
    let path = uri.path();
    // `*` is the target of `OPTIONS` alone (RFC 9112 §3.2.4): asked of gatehouse, not
    // of the origin. With any other method it is refused below.
    if path == "*" && uri.query().is_none() && req.method() == http::Method::OPTIONS {
        return Ok(Canonical::AsteriskOptions);
    }
    // Only origin-form targets are proxied: `*` (but for OPTIONS) and authority-form
    // (CONNECT) name no resource of the origin's.
    let canonical_path = target::canonical_path(path, &config.server.path).map_err(path_error)?;
    let query = match uri.query() {
        Some(q) if !q.is_empty() => {
            Some(target::canonical_query(q, &config.server.path).map_err(path_error)?)
        }
        _ => None,
    };
    let unchanged = uri.scheme().is_none()
        && uri.authority().is_none()
        && matches!(canonical_path, Cow::Borrowed(_))
        && matches!(query, None | Some(Cow::Borrowed(_)))
        && (query.is_some() || uri.query().is_none());
    if !unchanged {
        let mut text = canonical_path.into_owned();
        if let Some(q) = query {
            text.push('?');
            text.push_str(&q);
        }
        let pq = PathAndQuery::from_maybe_shared(text)
            .map_err(|_| path_error(PathError::NotOriginForm))?;
        *req.uri_mut() = Uri::from(pq);
    }
    let headers = req.headers_mut();
    if !authority.is_empty()
        && headers.get(header::HOST).map(HeaderValue::as_bytes) != Some(authority.as_bytes())
    {
        let value = HeaderValue::from_str(&authority).map_err(|_| {
            refuse(
                "host-invalid",
                ErrorCode::InvalidHost,
                "the host is not valid",
            )
        })?;
        headers.insert(header::HOST, value);
    }
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(refuse(
            "duplicate-authorization",
            ErrorCode::DuplicateHeader,
            "the request has more than one Authorization field",
        ));
    }
    strip_client_hop_by_hop(headers);
    strip_spoofable(headers, &config.auth.claims_to_headers);
    Ok(Canonical::Target)
}

type Refusal = (&'static str, ErrorCode, &'static str);

/// The request's one canonical authority (empty only for HTTP/1.0 without `Host`).
fn authority<B>(req: &Request<B>, tls: bool) -> Result<String, Refusal> {
    const INVALID: Refusal = (
        "host-invalid",
        ErrorCode::InvalidHost,
        "the host is not a valid authority",
    );
    let default_port = if tls { 443 } else { 80 };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err((
            "host-duplicate",
            ErrorCode::DuplicateHeader,
            "the request has more than one Host field",
        ));
    }
    let host = match host {
        Some(v) => Some(v.to_str().map_err(|_| INVALID)?),
        None => None,
    };
    let canonical = |text: &str| {
        target::canonical_authority(text, default_port)
            .map(Cow::into_owned)
            .map_err(|_| INVALID)
    };
    if let Some(a) = req.uri().authority() {
        let from_target = canonical(a.as_str())?;
        if req.version() == Version::HTTP_2 {
            if let Some(h) = host {
                if canonical(h)? != from_target {
                    return Err((
                        "authority-mismatch",
                        ErrorCode::AuthorityMismatch,
                        "the host field names another authority than :authority",
                    ));
                }
            }
        }
        // HTTP/1.1 absolute-form: the target's authority wins (RFC 9112 §3.2.2).
        return Ok(from_target);
    }
    match host {
        Some(h) => canonical(h),
        None if req.version() == Version::HTTP_11 => Err((
            "host-missing",
            ErrorCode::HostMissing,
            "an HTTP/1.1 request needs a Host field",
        )),
        None => Ok(String::new()),
    }
}

/// Removes the client's hop-by-hop fields, and those its `Connection` list names,
/// except `Host` and `Content-Length` (the request's meaning and framing).
pub fn strip_client_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_keeping(headers, &[header::HOST, header::CONTENT_LENGTH]);
}

/// Removes `X-Gatehouse-*` and the claims headers, in any `-`/`_` spelling.
fn strip_spoofable(headers: &mut HeaderMap, claims: &[(String, String)]) {
    let spoofed = |name: &str| {
        let matches = |n: &str| {
            n.starts_with(OWN_PREFIX) || claims.iter().any(|(_, h)| h.eq_ignore_ascii_case(n))
        };
        if name.contains('_') {
            matches(&name.replace('_', "-"))
        } else {
            matches(name)
        }
    };
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|k| spoofed(k.as_str()))
        .cloned()
        .collect();
    for name in found {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(req: Request<()>) -> Result<Request<()>, Error> {
        let mut req = req;
        let mut cfg = Config::default();
        cfg.auth.claims_to_headers = vec![("sub".into(), "x-user-id".into())];
        assert_eq!(
            canonicalize(&mut req, &cfg, false, &Metrics::new())?,
            Canonical::Target
        );
        Ok(req)
    }

    #[test]
    fn options_asterisk_is_gatehouse_s_and_other_methods_with_it_are_400() {
        let mut req = Request::options("*")
            .header("host", "a.example")
            .body(())
            .unwrap();
        let got = canonicalize(&mut req, &Config::default(), false, &Metrics::new());
        assert_eq!(got.unwrap(), Canonical::AsteriskOptions);
        let resp = asterisk_options();
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert_eq!(resp.headers()[header::ALLOW], PROXY_ALLOW);
        assert_eq!(resp.headers()[header::CONTENT_LENGTH], "0");
        // The host is still checked: an HTTP/1.1 OPTIONS * without one is 400.
        let req = Request::options("*").body(()).unwrap();
        assert_eq!(run(req).unwrap_err().code.as_str(), "HOST_MISSING");
        let req = Request::get("*").header("host", "a").body(()).unwrap();
        assert_eq!(run(req).unwrap_err().code.as_str(), "INVALID_PATH");
    }

    #[test]
    fn absolute_form_wins_over_host_and_host_is_rewritten() {
        let req = Request::get("http://Victim.Example:80/home")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        let req = run(req).unwrap();
        assert_eq!(req.uri(), "/home");
        assert_eq!(req.headers()["host"], "victim.example");
    }

    #[test]
    fn connect_is_405_with_an_allow_naming_no_connect() {
        let req = Request::connect("app.example:443")
            .header("host", "app.example:443")
            .body(())
            .unwrap();
        let e = run(req).unwrap_err();
        assert_eq!(e.status, http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(e.code.as_str(), "METHOD_NOT_ALLOWED");
        let allow = &e
            .headers
            .iter()
            .find(|(k, _)| k == header::ALLOW)
            .unwrap()
            .1;
        assert!(!allow.to_str().unwrap().contains("CONNECT"));
        assert!(allow.to_str().unwrap().contains("GET"));
    }

    #[test]
    fn h2_authority_and_host_must_agree() {
        let req = Request::get("https://a.example/x")
            .version(Version::HTTP_2)
            .header("host", "b.example")
            .body(())
            .unwrap();
        let e = run(req).unwrap_err();
        assert_eq!(e.code.as_str(), "AUTHORITY_MISMATCH");
    }

    #[test]
    fn duplicate_or_missing_host_is_refused() {
        let req = Request::get("/x")
            .header("host", "a.example")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(run(req).unwrap_err().code.as_str(), "DUPLICATE_HEADER");
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(run(req).unwrap_err().code.as_str(), "HOST_MISSING");
        let req = Request::get("/x")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert!(run(req).is_ok());
    }

    #[test]
    fn connection_list_cannot_remove_host_and_spoofed_headers_go() {
        let req = Request::get("/x")
            .header("host", "a.example")
            .header("connection", "host, content-length, x-drop")
            .header("x-drop", "1")
            .header("x_user_id", "admin")
            .header("X-User-Id", "admin")
            .header("x-gatehouse-fence", "999")
            .header("x_gatehouse_fence", "999")
            .header("x-kept", "1")
            .body(())
            .unwrap();
        let req = run(req).unwrap();
        let h = req.headers();
        assert_eq!(h["host"], "a.example");
        for gone in [
            "x-drop",
            "x_user_id",
            "x-user-id",
            "x-gatehouse-fence",
            "x_gatehouse_fence",
            "connection",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn the_uri_is_rewritten_to_its_canonical_form() {
        let req = Request::get("/api/m%65/./x/..?q=%41")
            .header("host", "a.example")
            .body(())
            .unwrap();
        let req = run(req).unwrap();
        assert_eq!(req.uri(), "/api/me/?q=A");
        let req = Request::get("/a%2Fb").header("host", "a").body(()).unwrap();
        assert_eq!(run(req).unwrap_err().code.as_str(), "INVALID_PATH");
    }
}
