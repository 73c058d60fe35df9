//! THE request path of the proxy listener, one file per step, in call order:
//!
//! ```text
//! route = router.find(method, path)                 routes.rs
//! authorize(route, headers)?                        authorize.rs      (401/403)
//! request_cacheable(method, headers, route)?        cache_policy.rs   (else: pass)
//! key = cache_key::for_request(uri, headers, route) cache_key.rs
//! cache.lookup(key)  -> fresh hit: answer           cache/ (L1, then L2)
//! coalesced fetch    -> leader fills, waiters wait  fetch.rs, cache/coalesce.rs
//! storable(response)? store L1 + L2 : pass          cache_policy.rs
//! ```
//!
//! Every response carries `Cache-Status` (RFC 9211).

pub mod authorize;
pub mod cache_key;
pub mod cache_policy;
pub mod fetch;
pub mod origin;
pub mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::app::AppState;
use crate::body::Body;
use crate::cache::entry::{now_ms, Freshness};
use crate::cache::Lookup;
use crate::config::reload::Runtime;
use crate::error::Error;
use crate::routes::Route;
use cache_policy::NoCacheReason;

/// The proxy listener's handler.
pub struct Proxy {
    pub state: Arc<AppState>,
    /// Whether the listener terminates TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
}

impl crate::server::Handler for Proxy {
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        handle(&self.state, req, peer, self.tls).await
    }
}

/// Handles one proxied request and records its metrics.
pub async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let started = Instant::now();
    let runtime = state.runtime.load_full();
    let route = runtime
        .router
        .find(req.method(), req.uri().path())
        .map(|(r, _)| r);
    let label = route
        .as_ref()
        .map(|r| r.label().to_string())
        .unwrap_or_else(|| "none".to_string());
    let resp = match serve(state, &runtime, req, peer, tls, route).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut().insert(
                "cache-status",
                HeaderValue::from_static("gatehouse; fwd=miss; detail=error"),
            );
            r
        }
    };
    state
        .metrics
        .requests_total
        .with_label_values(&[&label, resp.status().as_str()])
        .inc();
    state
        .metrics
        .request_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    resp
}

async fn serve(
    state: &Arc<AppState>,
    runtime: &Runtime,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
) -> Result<Response<Body>, Error> {
    let who = authorize::authorize(state, runtime, route.as_deref(), req.headers_mut()).await?;
    if let Err(reason) =
        cache_policy::request_cacheable(req.method(), req.headers(), route.as_deref())
    {
        return fetch::pass(
            state,
            req,
            peer,
            tls,
            route.as_deref(),
            &who,
            pass_status(reason),
        )
        .await;
    }
    let key = cache_key::for_request(req.uri(), req.headers(), route.as_deref(), who.sub());
    let has_auth = req.headers().contains_key(http::header::AUTHORIZATION);
    let head = req.method() == http::Method::HEAD;
    if let Lookup::Hit { entry, .. } = state.cache.lookup(&key).await {
        let r = entry.response();
        let usable = !has_auth || r.flags.auth_ok;
        if usable {
            if let Freshness::Fresh { remaining } = r.freshness_at(now_ms()) {
                let status = format!("gatehouse; hit; ttl={}", remaining / 1000);
                return Ok(respond::from_entry(&entry, head, req.version(), &status));
            }
        }
    }
    let (parts, _body) = req.into_parts();
    fetch::fetch_for_cache(state, parts, peer, tls, route, key).await
}

fn pass_status(reason: NoCacheReason) -> &'static str {
    match reason {
        NoCacheReason::Method => "gatehouse; fwd=method",
        NoCacheReason::RouteDisabled => "gatehouse; fwd=bypass",
        NoCacheReason::RequestBody => "gatehouse; fwd=request; detail=request-body",
        NoCacheReason::Range => "gatehouse; fwd=request; detail=range",
        _ => "gatehouse; fwd=miss",
    }
}
