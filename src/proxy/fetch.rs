//! Going to the origin: `pass` streams a request through untouched by the cache;
//! `fetch_for_cache` makes one coalesced fill per key. The fill runs in its own task,
//! detached from the client that started it, so a client disconnect never wastes
//! the fetch, and waiters are answered from what it stored.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::request::Parts;
use http::{header, HeaderMap, Method, Request, Response};
use http_body_util::{BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};

use super::authorize::Authorized;
use super::cache_policy::{self, NoCacheReason};
use super::origin::{self, OriginError};
use super::respond;
use crate::app::AppState;
use crate::body::{self, Body, BoxError};
use crate::cache::coalesce::{LeaderGuard, Outcome, Role, Waited};
use crate::cache::entry::{now_ms, Entry, Flags, StoredResponse};
use crate::cache::CacheKey;
use crate::error::Error;
use crate::routes::Route;

/// Forwards a request as-is (streaming both bodies); the cache is not consulted.
///
/// On a route with `revoke_on_success = true`, a 2xx answer from the origin revokes
/// the token the request presented (e.g. `POST /auth/logout`) before the answer is
/// returned, so the client's next request with it is refused on every instance. If
/// the store cannot take the revocation now, the origin's answer is still returned
/// (it has acted), this instance enforces the revocation at once, and it is recorded
/// in the background when the store returns.
pub async fn pass(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
    route: Option<&Route>,
    who: &Authorized,
    cache_status: &str,
) -> Result<Response<Body>, Error> {
    let max_body = state.runtime.load().config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(Error::body_too_large(max_body));
    }
    let version = req.version();
    let (mut parts, incoming) = req.into_parts();
    origin::prepare_request(&mut parts.headers, version, &parts.uri, peer, tls);
    let limited = http_body_util::Limited::new(incoming, max_body as usize);
    let out = Request::from_parts(parts, body::boxed(limited));
    match state.origin.send(out).await {
        Ok(resp) => {
            count_origin(state, "ok");
            if resp.status().is_success() && route.is_some_and(|r| r.config.revoke_on_success) {
                revoke_presented(state, who).await;
            }
            Ok(respond::from_origin(resp, version, cache_status))
        }
        Err(OriginError::Unreachable(d)) if d.contains("length limit") => {
            Err(Error::body_too_large(max_body))
        }
        Err(e) => {
            count_origin(state, origin_label(&e));
            Err(e.into_error())
        }
    }
}

/// `revoke_on_success`: revokes the verified token of the request, if it had one.
async fn revoke_presented(state: &Arc<AppState>, who: &Authorized) {
    let Some(claims) = who.claims.as_deref() else {
        return;
    };
    let life = crate::coordination::revocation::Lifetimes::of(&state.runtime.load().config.auth);
    if let Err(e) = state.revocations.revoke_token_or_retry(claims, life).await {
        tracing::warn!(error = %e, "revoke_on_success: enforced here, recorded fleet-wide when the store returns");
    }
}

fn count_origin(state: &AppState, result: &str) {
    state
        .metrics
        .origin_requests_total
        .with_label_values(&[result])
        .inc();
}

fn origin_label(e: &OriginError) -> &'static str {
    match e {
        OriginError::Timeout => "timeout",
        OriginError::Unreachable(_) => "unreachable",
    }
}

/// What one fill produced.
pub enum Filled {
    /// Stored in L1 and L2.
    Stored(Arc<Entry>),
    /// Not storable: the response itself, for the one client that asked.
    Pass(Response<Body>, NoCacheReason),
    Failed(OriginError),
}

/// A cacheable miss: lead a fill, or wait for the one in flight.
pub async fn fetch_for_cache(
    state: &Arc<AppState>,
    parts: Parts,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
    key: CacheKey,
) -> Result<Response<Body>, Error> {
    let head = parts.method == Method::HEAD;
    let version = parts.version;
    let cfg = state.runtime.load().config.cache.clone();
    // A request with credentials never shares a fill with other callers unless the
    // route is keyed per user: the answer may be for that caller alone.
    let shared = !parts.headers.contains_key(header::AUTHORIZATION)
        || route
            .as_ref()
            .is_some_and(|r| r.config.key_by == crate::config::KeyBy::Sub);
    let mut handed_over = false;
    loop {
        let role = if shared {
            state.cache.coalescer.join(&key.primary, cfg.lock_age)
        } else {
            // Not shared: fill on our own.
            return finish(
                state, &parts, peer, tls, route, key, None, head, version, false,
            )
            .await;
        };
        match role {
            Role::Leader(guard) => {
                if handed_over {
                    state.metrics.coalesce_handovers_total.inc();
                }
                return finish(
                    state,
                    &parts,
                    peer,
                    tls,
                    route,
                    key,
                    Some(guard),
                    head,
                    version,
                    false,
                )
                .await;
            }
            Role::Waiter(w) => match w.wait(cfg.lock_timeout).await {
                Waited::Outcome(Outcome::Stored(entry)) => {
                    state.metrics.coalesced_requests_total.inc();
                    return Ok(respond::from_entry(
                        &entry,
                        head,
                        version,
                        "gatehouse; fwd=miss; collapsed",
                    ));
                }
                Waited::Outcome(Outcome::Uncacheable) | Waited::TimedOut => {
                    // Released (or tired of waiting): fetch on our own.
                    return finish(
                        state, &parts, peer, tls, route, key, None, head, version, true,
                    )
                    .await;
                }
                Waited::Outcome(Outcome::Failed) => {
                    // The leader failed: loop to join again; one of us leads now.
                    handed_over = true;
                    continue;
                }
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &Arc<AppState>,
    parts: &Parts,
    peer: SocketAddr,
    tls: bool,
    route: Option<Arc<Route>>,
    key: CacheKey,
    guard: Option<LeaderGuard>,
    head: bool,
    version: http::Version,
    released: bool,
) -> Result<Response<Body>, Error> {
    let req = fill_request(parts, peer, tls);
    let st = state.clone();
    // Detached: the fill completes even if this client goes away.
    let task = tokio::spawn(async move { fill(&st, req, route.as_deref(), &key, guard).await });
    let filled = task
        .await
        .map_err(|e| Error::internal(format!("fill task failed: {e}")))?;
    match filled {
        Filled::Stored(entry) => {
            let status = if released {
                "gatehouse; fwd=miss; stored; detail=lock-timeout"
            } else {
                "gatehouse; fwd=miss; stored"
            };
            Ok(respond::from_entry(&entry, head, version, status))
        }
        Filled::Pass(mut resp, reason) => {
            if head {
                *resp.body_mut() = body::empty();
            }
            let value = format!("gatehouse; fwd=miss; detail={}", reason.label());
            respond::set_cache_status(&mut resp, &value);
            Ok(resp)
        }
        Filled::Failed(e) => Err(e.into_error()),
    }
}

/// The request a fill sends: GET for GET and HEAD, forwarding headers added, and
/// the client's conditionals removed (we want a full response to store).
fn fill_request(parts: &Parts, peer: SocketAddr, tls: bool) -> Request<Body> {
    let mut headers: HeaderMap = parts.headers.clone();
    for h in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        headers.remove(h);
    }
    origin::prepare_request(&mut headers, parts.version, &parts.uri, peer, tls);
    let mut req = Request::new(body::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = headers;
    req
}

/// Fetches from the origin and stores what may be stored; tells waiters.
pub async fn fill(
    state: &Arc<AppState>,
    req: Request<Body>,
    route: Option<&Route>,
    key: &CacheKey,
    guard: Option<LeaderGuard>,
) -> Filled {
    let finish_guard = |outcome: Outcome, guard: Option<LeaderGuard>| {
        if let Some(g) = guard {
            g.finish(outcome);
        }
    };
    let cfg = state.runtime.load().config.cache.clone();
    let request_headers = req.headers().clone();
    let request_time = now_ms();
    let resp = match state.origin.send(req).await {
        Ok(r) => r,
        Err(e) => {
            count_origin(state, origin_label(&e));
            // Dropping the guard hands the fill over to a waiter.
            drop(guard);
            return Filled::Failed(e);
        }
    };
    count_origin(state, "ok");
    let response_time = now_ms();
    let (mut parts, incoming) = resp.into_parts();
    origin::strip_hop_by_hop(&mut parts.headers);
    let decision =
        cache_policy::storable(&request_headers, parts.status, &parts.headers, route, &cfg);
    let declared_len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let storable = match decision {
        Ok(s) if declared_len.is_none_or(|n| n <= cfg.max_object) => s,
        other => {
            let reason = other.err().unwrap_or(NoCacheReason::TooLarge);
            count_store(state, reason.label());
            finish_guard(Outcome::Uncacheable, guard);
            return Filled::Pass(origin_response(parts, body::boxed(incoming)), reason);
        }
    };
    // Read the body up to max_object; beyond that, stream the rest uncached.
    let mut stream = BodyStream::new(incoming);
    let mut buf = BytesMut::new();
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(_) => {
                count_origin(state, "body_error");
                drop(guard);
                return Filled::Failed(OriginError::Unreachable(
                    "the origin broke off the response body".into(),
                ));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() as u64 > cfg.max_object {
            count_store(state, NoCacheReason::TooLarge.label());
            finish_guard(Outcome::Uncacheable, guard);
            let prefix =
                futures_util::stream::once(
                    async move { Ok::<_, BoxError>(Frame::data(buf.freeze())) },
                );
            let rest = stream.map(|f| f.map_err(BoxError::from));
            let body = body::boxed(StreamBody::new(prefix.chain(rest)));
            return Filled::Pass(origin_response(parts, body), NoCacheReason::TooLarge);
        }
    }
    let body: Bytes = buf.freeze();
    parts.headers.remove(header::AGE);
    let initial_age = cache_policy::initial_age(&parts.headers, request_time, response_time);
    // `Age` was taken into account above; it is recomputed when served.
    let tags = route
        .map(|r| {
            let params = r.pattern.matches(&key.path).unwrap_or_default();
            r.config
                .tags
                .iter()
                .filter_map(|t| crate::routes::expand_template(t, &params))
                .collect()
        })
        .unwrap_or_default();
    let stored = StoredResponse {
        status: parts.status,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body,
        request_time,
        response_time,
        initial_age,
        freshness: storable.freshness.as_millis() as u64,
        stale_while_revalidate: storable.stale_while_revalidate.as_millis() as u64,
        stale_if_error: storable.stale_if_error.as_millis() as u64,
        keep: 0,
        flags: Flags {
            must_revalidate: storable.must_revalidate,
            no_cache: storable.no_cache,
            auth_ok: storable.auth_ok,
        },
        tags,
        variant: Vec::new(),
    };
    let entry = Arc::new(if storable.negative {
        Entry::Negative(stored)
    } else {
        Entry::Response(stored)
    });
    count_store(
        state,
        if entry.is_negative() {
            "negative"
        } else {
            "stored"
        },
    );
    state.cache.store(key, entry.clone()).await;
    finish_guard(Outcome::Stored(entry.clone()), guard);
    Filled::Stored(entry)
}

fn count_store(state: &AppState, result: &str) {
    state
        .metrics
        .cache_stores_total
        .with_label_values(&[result])
        .inc();
}

fn origin_response(parts: http::response::Parts, body: Body) -> Response<Body> {
    let mut resp = Response::from_parts(parts, body);
    origin::add_via(resp.headers_mut(), http::Version::HTTP_11);
    resp
}
