//! The api listener: thin HTTP handlers over `coordination/` and the cache, on
//! `/v1/...`. The route table below IS the router (and `docs/openapi.yaml` must list
//! every entry — a test compares them):
//!
//! | method | path | handler |
//! |---|---|---|
//! | POST | `/v1/cache/purge` | [`cache::purge`] |
//! | GET | `/v1/cache/entries`, `/v1/cache/entries/{id}` | list entries by path prefix / show one ([`cache::entries`], [`cache::entry`]) |
//! | GET | `/v1/cache/stats` | L1 / L2 figures ([`cache::stats`]) |
//! | PUT, GET | `/v1/capacity/{ns}/{id}` | define / read a counter |
//! | POST | `/v1/capacity/{ns}/{id}/admissions` | admit a member |
//! | DELETE | `/v1/capacity/{ns}/{id}/admissions/{memberId}` | release a member |
//! | POST, GET, DELETE | `/v1/locks/{ns}/{id}` | acquire / status / release |
//! | POST | `/v1/locks/{ns}/{id}/renew` | renew |
//! | POST | `/v1/transfers`, `/v1/transfers/claim` | create / claim a transfer |
//! | POST | `/v1/revocations` | revoke a token, a jti or a subject |
//! | GET | `/v1/revocations/{jti}` | revocation status |
//!
//! Every error is JSON `{"error": "CODE", "message": "..."}`; a malformed body is
//! 400 `BAD_REQUEST` naming the field; `{ns}` / `{id}` segments must match
//! `[A-Za-z0-9._:-]{1,200}`; when `api.token` is set, every call needs
//! `Authorization: Bearer <token>`.

pub mod cache;
mod capacity;
mod locks;
pub mod revocations;
mod transfers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::body::{Body, RequestBody};
use crate::error::{Error, ErrorCode};
use crate::routes::{Params, PathPattern};

/// Largest request body the api accepts.
pub const MAX_API_BODY: usize = 1 << 20;

/// What a handler gets.
pub struct ApiRequest {
    pub params: Params,
    pub headers: HeaderMap,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub body: Bytes,
}

impl ApiRequest {
    /// A path parameter, validated against `[A-Za-z0-9._:-]{1,200}`.
    pub fn segment(&self, name: &str) -> Result<String, Error> {
        let v = self
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| Error::bad_request(name, format!("{name} is not valid UTF-8")))?;
        if decoded.is_empty()
            || decoded.len() > 200
            || !decoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(Error::bad_request(
                name,
                format!("{name} must match [A-Za-z0-9._:-]{{1,200}}"),
            ));
        }
        Ok(decoded.into_owned())
    }

    /// The body as JSON; errors name the field.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse_json(&self.body)
    }
}

/// Parses a JSON body; a problem is 400 `BAD_REQUEST` naming the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::bad_request("body", "a JSON body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        // "missing field `x`" names the field in the message, not the path (an
        // unknown field's path already ends with it).
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field"))
            .map(|f| {
                if path == "." || path.is_empty() {
                    f.to_string()
                } else if path == f || path.ends_with(&format!(".{f}")) {
                    // An unknown field's path already ends with its name.
                    path.clone()
                } else {
                    format!("{path}.{f}")
                }
            })
            .unwrap_or_else(|| {
                if path == "." {
                    "body".to_string()
                } else {
                    path
                }
            });
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        Error::bad_request(&field, format!("{field}: {msg}"))
    })
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Error>> + Send>>;
pub type HandlerFn = fn(Arc<AppState>, ApiRequest) -> HandlerFuture;

/// One api route.
pub struct ApiRoute {
    pub method: Method,
    pub path: &'static str,
    pub pattern: PathPattern,
    pub handler: HandlerFn,
}

fn route(method: Method, path: &'static str, handler: HandlerFn) -> ApiRoute {
    ApiRoute {
        method,
        path,
        pattern: PathPattern::parse(path).expect("api route patterns are valid"),
        handler,
    }
}

/// The route table: every api endpoint, in match order.
pub static ROUTES: LazyLock<Vec<ApiRoute>> = LazyLock::new(|| {
    vec![
        route(Method::POST, "/v1/cache/purge", cache::purge),
        route(Method::GET, "/v1/cache/entries", cache::entries),
        route(Method::GET, "/v1/cache/entries/{id}", cache::entry),
        route(Method::GET, "/v1/cache/stats", cache::stats),
        route(Method::PUT, "/v1/capacity/{ns}/{id}", capacity::put),
        route(Method::GET, "/v1/capacity/{ns}/{id}", capacity::get),
        route(
            Method::POST,
            "/v1/capacity/{ns}/{id}/admissions",
            capacity::admit,
        ),
        route(
            Method::DELETE,
            "/v1/capacity/{ns}/{id}/admissions/{memberId}",
            capacity::release,
        ),
        route(Method::POST, "/v1/locks/{ns}/{id}", locks::acquire),
        route(Method::GET, "/v1/locks/{ns}/{id}", locks::status),
        route(Method::POST, "/v1/locks/{ns}/{id}/renew", locks::renew),
        route(Method::DELETE, "/v1/locks/{ns}/{id}", locks::release),
        route(Method::POST, "/v1/transfers", transfers::create),
        route(Method::POST, "/v1/transfers/claim", transfers::claim),
        route(Method::POST, "/v1/revocations", revocations::post),
        route(Method::GET, "/v1/revocations/{jti}", revocations::get),
    ]
});

pub struct Api {
    pub state: Arc<AppState>,
}

impl crate::server::Handler for Api {
    async fn call(
        &self,
        req: http::Request<RequestBody>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        match handle(&self.state, req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }
}

fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), Error> {
    let runtime = state.runtime.load();
    let Some(expected) = runtime.config.api.token.as_deref() else {
        return Ok(());
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::Unauthorized,
            "this api needs Authorization: Bearer <api.token>",
        )
        .with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"gatehouse-api\""),
        ))
    }
}

/// Compares secrets without leaking their common prefix length through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    state: &Arc<AppState>,
    req: http::Request<RequestBody>,
) -> Result<http::Response<Body>, Error> {
    check_token(state, req.headers())?;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // The methods the path takes, for a 405's `Allow` (RFC 9110 §15.5.6).
    let mut allowed: Vec<&str> = Vec::new();
    let mut found = None;
    for r in ROUTES.iter() {
        // Api paths are exact: a path without `{name}` is not a prefix here.
        let exact = r.path.contains('{') || r.path == path;
        if let Some(params) = r.pattern.matches(&path).filter(|_| exact) {
            if r.method == method {
                found = Some((r, params));
                break;
            }
            if !allowed.contains(&r.method.as_str()) {
                allowed.push(r.method.as_str());
            }
        }
    }
    let Some((r, params)) = found else {
        return Err(if !allowed.is_empty() {
            let allow = allowed.join(", ");
            Error::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path} (allowed: {allow})"),
            )
            .with_header(
                http::header::ALLOW,
                http::HeaderValue::from_str(&allow).expect("method names are header-safe"),
            )
        } else {
            Error::new(ErrorCode::NoRoute, format!("no api endpoint at {path}"))
        });
    };
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, MAX_API_BODY)
        .collect()
        .await
        .map_err(|_| Error::body_too_large(MAX_API_BODY as u64))?
        .to_bytes();
    (r.handler)(
        state.clone(),
        ApiRequest {
            params,
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        },
    )
    .await
}
