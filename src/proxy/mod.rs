//! THE request path of the proxy listener, one file per step, in call order:
//!
//! ```text
//! inbound::canonicalize(req)?                       inbound.rs        (400/421)
//!   one target, one authority, client hop-by-hop and spoofable headers removed
//! route = router.find(method, host, path)           routes.rs
//!   matched once; the parameters its gates and tags read travel with it
//! authorize(route, headers)?                        authorize.rs      (401/403)
//! gates: capacity admission, lock (route-declared)   gates.rs          (409/503)
//! request_cacheable(method, headers, route)?        cache_policy.rs   (else: pass.rs,
//!   request directives parsed once, carried         directives.rs      streamed through)
//! key = cache_key::for_request(uri, headers, route) cache_key.rs
//! cache.lookup(key)  -> reuse? fresh: answer (304 when the client's validators match,
//!                       else 206 / 416 for a GET's one byte range)
//!                       stale-while-revalidate: answer + one background refresh
//!                                                   cache/, cache_policy.rs, respond.rs,
//!                                                   range.rs
//! the miss (a `Miss` carries the request through)  miss.rs
//!   coalescing  -> join or lead the fill: one per instance, and per fleet through a
//!                  store lease; waiters wait and cut their own range
//!                                                   coalesce.rs, cache/coalesce.rs
//!   fill        -> the origin asked (revalidating a stale entry; never with the
//!                  client's Range); storable? the entry built and stored (L1 + L2),
//!                  a 304 merged into the stale one: both through one `apply`
//!                                                   fill.rs, cache_policy.rs
//!     directives: the first targeted field (RFC 9213), else Cache-Control
//!                                                   cache_policy.rs, targeted.rs,
//!                                                   directives.rs
//!   answer      -> from the stored entry, the origin's uncacheable answer, or the
//!                  stale entry on failure (stale-if-error); a range whose whole
//!                  representation cannot be stored is asked of the origin as is
//!                                                   miss.rs, pass.rs
//! Cache-Status of every answer                      cache_status.rs
//! successful unsafe method -> invalidate target, Location, invalidate_on routes
//!                                                   invalidate.rs
//! ```
//!
//! An HTTP/1.1 upgrade request (WebSocket), or an h2 extended CONNECT for a WebSocket
//! (RFC 8441), is recognised before `inbound`, and after auth and the gates is
//! relayed, never cached                                upgrade.rs
//!
//! A gRPC request (`content-type: application/grpc*`) is never stored, its deadline
//! (`grpc-timeout`) is enforced on the origin's answer, and gatehouse's own error
//! answers to it are made gRPC (trailers-only, `grpc-status`) last, in `handle`,
//! after they are counted and logged                    grpc.rs, origin.rs
//!
//! Every response carries `Cache-Status` (RFC 9211), one `CacheStatus` value written
//! by cache_status.rs; gatehouse's own targeted field
//! (`cache.targeted_fields`) never leaves.

pub mod access;
pub mod authorize;
pub mod cache_key;
pub mod cache_policy;
pub mod cache_status;
pub mod coalesce;
pub mod directives;
pub mod fill;
pub mod gates;
pub mod grpc;
pub mod inbound;
pub mod invalidate;
pub mod miss;
pub mod origin;
pub mod pass;
pub mod range;
pub mod respond;
pub mod targeted;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use tracing::Instrument;

use crate::app::AppState;
use crate::app::Runtime;
use crate::body::{Body, RequestBody};
use crate::cache::Lookup;
use crate::clock::now_ms;
use crate::error::{Error, ErrorCode};
use crate::routes::Route;
use cache_policy::{NoCacheReason, Reuse};
use cache_status::{CacheStatus, Detail, Fwd};

/// The proxy listener's handler.
pub struct Proxy {
    pub state: Arc<AppState>,
    /// Whether the listener terminates TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
}

impl crate::server::Handler for Proxy {
    async fn call(&self, req: Request<RequestBody>, peer: SocketAddr) -> Response<Body> {
        handle(&self.state, req, peer, self.tls).await
    }
}

/// Handles one proxied request: its id, its metrics and its access line.
pub async fn handle(
    state: &Arc<AppState>,
    mut req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let started = Instant::now();
    let runtime = state.runtime.load_full();
    let id = access::request_id(req.headers());
    req.headers_mut().insert(access::REQUEST_ID, id.clone());
    let method = req.method().clone();
    let grpc = grpc::is_grpc_message(req.headers());
    let span = tracing::info_span!("request", id = id.to_str().unwrap_or("-"));
    let mut user = None;
    let mut target = None;
    let (mut resp, route) =
        route_and_serve(state, &runtime, req, peer, tls, &mut user, &mut target)
            .instrument(span.clone())
            .await;
    let label = route.as_deref().map_or("none", Route::label);
    let elapsed = started.elapsed();
    state.metrics.observe_request(
        label,
        resp.status(),
        resp.headers().get(cache_status::FIELD),
        elapsed,
    );
    let log = &runtime.config.log;
    if log.access && access::wanted(log.access_sample, route.as_deref(), resp.status()) {
        let _in = span.enter();
        let path = target.as_ref().map_or("-", http::uri::PathAndQuery::as_str);
        access::log(
            &access::Line {
                method: &method,
                path,
                route: label,
                status: resp.status(),
                duration: elapsed,
                origin: route
                    .as_deref()
                    .and_then(|r| r.config.origin.as_deref())
                    .unwrap_or(crate::config::DEFAULT_ORIGIN_NAME),
                origin_time: resp.extensions().get::<origin::OriginTime>().map(|t| t.0),
                user: user.as_deref(),
                peer,
                request_id: &id,
            },
            &resp,
        );
    }
    // Counted and logged with the HTTP status of the refusal; a gRPC client gets it
    // in gRPC form.
    if grpc {
        resp = grpc::local_reply(resp);
    }
    resp.headers_mut().insert(access::REQUEST_ID, id);
    resp
}

/// Canonicalises, routes and serves; answers with the route that matched. `user`
/// gets the verified subject, `target` the canonical target (for the access line;
/// kept out of the response's extensions, which would cost three allocations per
/// request).
async fn route_and_serve(
    state: &Arc<AppState>,
    runtime: &Runtime,
    mut req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
    user: &mut Option<String>,
    target: &mut Option<http::uri::PathAndQuery>,
) -> (Response<Body>, Option<Arc<Route>>) {
    // Recognised before `inbound` strips `Connection` and `Upgrade` (h1), or refuses
    // CONNECT (h2's extended CONNECT for a WebSocket, made a GET here).
    let upgrade = upgrade::asked(&req);
    let h2_websocket = upgrade::h2_websocket(&mut req);
    match inbound::canonicalize(&mut req, &runtime.config, tls, &state.metrics) {
        Err(e) => return (e.into_response(), None),
        Ok(inbound::Canonical::AsteriskOptions) => return (inbound::asterisk_options(), None),
        Ok(inbound::Canonical::Target) => {}
    }
    if let Some(ask) = upgrade {
        req.extensions_mut().insert(ask);
    }
    if let Some(ws) = h2_websocket {
        req.extensions_mut().insert(ws);
    }
    *target = req.uri().path_and_query().cloned();
    if runtime.config.cache.purge_method && req.method().as_str() == "PURGE" {
        let resp = purge(state, runtime, req.uri(), peer)
            .await
            .unwrap_or_else(Error::into_response);
        return (resp, None);
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // The one route lookup of the request; its parameters travel with it.
    let (route, params) = match runtime.router.find(req.method(), host, req.uri().path()) {
        Some(m) => (Some(m.route), m.params),
        None => (None, crate::routes::Params::new()),
    };
    let resp = match serve(state, runtime, req, peer, tls, route.clone(), params, user).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.into_response();
            CacheStatus::fwd(Fwd::Miss)
                .detail(Detail::Error)
                .replace_in(r.headers_mut());
            r
        }
    };
    (resp, route)
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    state: &Arc<AppState>,
    runtime: &Runtime,
    mut req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
    params: crate::routes::Params,
    user: &mut Option<String>,
) -> Result<Response<Body>, Error> {
    let who = authorize::authorize(state, runtime, route.as_deref(), req.headers_mut()).await?;
    *user = who.sub().map(str::to_string);
    let has_gates = route
        .as_deref()
        .is_some_and(|r| r.config.capacity.is_some() || r.config.lock.is_some());
    if !has_gates {
        return forward(state, runtime, req, peer, tls, route, params, who).await;
    }
    let passed = gates::enter(state, route.as_deref(), &params, &who, req.headers_mut()).await?;
    let result = forward(state, runtime, req, peer, tls, route, params, who).await;
    gates::leave(state, passed, result.as_ref().ok().map(|r| r.status())).await;
    result
}

/// Everything after the gates: pass-through or the cache. Gatehouse's own targeted
/// field (`cache.targeted_fields`, RFC 9213) is for gatehouse alone: it is removed
/// from every answer, cached or passed, before it leaves.
#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &Arc<AppState>,
    runtime: &Runtime,
    req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
    params: crate::routes::Params,
    who: authorize::Authorized,
) -> Result<Response<Body>, Error> {
    let mut resp =
        forward_to_cache_or_origin(state, runtime, req, peer, tls, route, params, who).await?;
    if let Some(own) = targeted::own_field(&runtime.config.cache.targeted_fields) {
        resp.headers_mut().remove(own);
    }
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn forward_to_cache_or_origin(
    state: &Arc<AppState>,
    runtime: &Runtime,
    mut req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
    params: crate::routes::Params,
    who: authorize::Authorized,
) -> Result<Response<Body>, Error> {
    let origin = runtime.origin_for(route.as_deref()).clone();
    if req
        .extensions_mut()
        .remove::<upgrade::H2WebSocket>()
        .is_some()
    {
        // Never cached; auth and the gates have run.
        return upgrade::pass_h2(state, &origin, req, peer, tls, route.as_deref()).await;
    }
    if let Some(ask) = req.extensions_mut().remove::<upgrade::Ask>() {
        // Never cached; auth and the gates have run.
        return upgrade::pass(state, &origin, req, ask, peer, tls, route.as_deref()).await;
    }
    if let Err(reason) =
        cache_policy::request_cacheable(req.method(), req.headers(), route.as_deref())
    {
        let write = (!req.method().is_safe()).then(|| invalidate::Write::of(&req));
        let resp = pass::pass(
            state,
            &origin,
            req,
            peer,
            tls,
            route.as_deref(),
            &who,
            pass_status(reason),
        )
        .await?;
        if let Some(write) = write {
            if resp.status().is_success() || resp.status().is_redirection() {
                write.invalidate(state, runtime, resp.headers()).await;
            }
        }
        return Ok(resp);
    }
    if route
        .as_deref()
        .is_some_and(|r| r.config.key_by == crate::config::KeyBy::Sub)
        && who.sub().is_none_or(str::is_empty)
    {
        // A per-user route with no user to key by: never shared, never cached.
        return pass::pass(
            state,
            &origin,
            req,
            peer,
            tls,
            route.as_deref(),
            &who,
            CacheStatus::fwd(Fwd::Bypass).detail(Detail::NoSubject),
        )
        .await;
    }
    let key = cache_key::for_request(req.uri(), req.headers(), route.as_deref(), who.sub());
    let directives = directives::request_directives(req.headers());
    let head = req.method() == http::Method::HEAD;
    let version = req.version();
    // A shared entry answers a request with credentials only when the response
    // allowed it (public, s-maxage, must-revalidate) or the route keys per user.
    // Credentials count even when not forwarded (`forward_authorization = false`,
    // or a token from a cookie): the answer may be personalised through claim headers.
    let has_auth = req.headers().contains_key(http::header::AUTHORIZATION) || who.claims.is_some();
    let mut stale = None;
    let mut served_stale = None;
    if let Lookup::Hit { entry, trusted, .. } = state.cache.lookup(&key, req.headers()).await {
        let r = entry.response();
        if !has_auth || r.flags.auth_ok {
            match cache_policy::reuse(r, &directives, trusted, now_ms()) {
                Reuse::Fresh { remaining } => {
                    let hit = CacheStatus::hit_for(remaining / 1000);
                    let status = if entry.is_negative() {
                        hit.detail(Detail::Negative)
                    } else {
                        hit.of_entry(&entry)
                    };
                    return Ok(respond::answer(
                        &entry,
                        req.headers(),
                        head,
                        version,
                        status,
                    ));
                }
                Reuse::StaleAccepted => {
                    return Ok(respond::answer(
                        &entry,
                        req.headers(),
                        head,
                        version,
                        CacheStatus::HIT.detail(Detail::MaxStale),
                    ));
                }
                Reuse::StaleWhileRevalidate => {
                    served_stale = Some(respond::answer(
                        &entry,
                        req.headers(),
                        head,
                        version,
                        CacheStatus::HIT.detail(Detail::StaleWhileRevalidate),
                    ));
                    stale = Some(entry);
                }
                Reuse::Revalidate => stale = Some(entry),
            }
        }
    }
    if served_stale.is_none() && directives.only_if_cached {
        return Err(Error::new(
            ErrorCode::NotCached,
            "only-if-cached was asked and nothing usable is cached",
        ));
    }
    let (mut parts, _body) = req.into_parts();
    let interim = parts.extensions.remove::<crate::server::interim::Interim>();
    let miss = miss::Miss {
        interim,
        state: state.clone(),
        parts: Arc::new(parts),
        peer,
        tls,
        route,
        params,
        origin,
        flight: key.id.clone(),
        origin_time: Default::default(),
        key,
        stale,
        directives,
        credentials: has_auth,
    };
    if let Some(resp) = served_stale {
        coalesce::revalidate_in_background(miss);
        return Ok(resp);
    }
    coalesce::fetch_for_cache(miss).await
}

/// `PURGE <path>` (with `cache.purge_method`): drops the canonical path's entries for
/// every host and variant, on every instance, as `POST /v1/cache/purge` does for a
/// URL; only from `cache.purge_allow` networks (else 403 `PURGE_NOT_ALLOWED`).
async fn purge(
    state: &AppState,
    runtime: &Runtime,
    uri: &http::Uri,
    peer: SocketAddr,
) -> Result<Response<Body>, Error> {
    if !runtime
        .config
        .cache
        .purge_allow
        .iter()
        .any(|net| net.contains(peer.ip()))
    {
        return Err(Error::new(
            ErrorCode::PurgeNotAllowed,
            "PURGE is accepted only from cache.purge_allow networks",
        ));
    }
    let path = cache_key::path_and_query(uri);
    let purged = state.cache.purge_path(&path, false).await.map_err(|e| {
        tracing::warn!(error = %e, "PURGE could not reach the store");
        Error::from(e)
    })?;
    state
        .metrics
        .purges_total
        .with_label_values(&["method"])
        .inc();
    Ok(crate::error::json_response(
        http::StatusCode::OK,
        &serde_json::json!({ "purged": purged }),
    ))
}

fn pass_status(reason: NoCacheReason) -> CacheStatus {
    match reason {
        NoCacheReason::Method => CacheStatus::fwd(Fwd::Method),
        NoCacheReason::RouteDisabled => CacheStatus::fwd(Fwd::Bypass),
        NoCacheReason::RequestBody => {
            CacheStatus::fwd(Fwd::Request).detail(Detail::NotStored(reason))
        }
        _ => CacheStatus::fwd(Fwd::Miss),
    }
}
