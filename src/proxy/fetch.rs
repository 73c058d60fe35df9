//! Going to the origin: `pass` streams a request through untouched by the cache;
//! `fetch_for_cache` makes one coalesced fill per key — per instance through the
//! coalescer, and per fleet through a lease in the shared store, with waiters woken
//! by the store's wake-up messages (and a bounded poll). The fill runs in its own
//! task, detached from the client that started it, so a client disconnect never
//! wastes the fetch, and waiters are answered from what it stored. A stale entry,
//! when there is one, is revalidated (conditional request, headers updated from a
//! 304) and serves as the `stale-if-error` fallback.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::request::Parts;
use std::time::Duration;

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;

use super::authorize::Authorized;
use super::cache_policy::Reuse;
use super::cache_policy::{self, NoCacheReason};
use super::origin::{self, Origin, OriginError};
use super::respond;
use crate::app::AppState;
use crate::body::{self, Body, BoxError, RequestBody};
use crate::cache::coalesce::{LeaderGuard, Outcome, Role, Waited};
use crate::cache::entry::{Entry, Flags, StoredResponse};
use crate::cache::{Began, CacheKey, EntryId, Lookup};
use crate::clock::now_ms;
use crate::error::Error;
use crate::routes::Route;
use crate::store::wake::wait_for_wake;

/// Forwards a request as-is (streaming both bodies); the cache is not consulted.
///
/// On a route with `revoke_on_success = true`, a 2xx answer from the origin revokes
/// the token the request presented (e.g. `POST /auth/logout`) before the answer is
/// returned, so the client's next request with it is refused on every instance. If
/// the store cannot take the revocation now, the origin's answer is still returned
/// (it has acted), this instance enforces the revocation at once, and it is recorded
/// in the background when the store returns.
#[allow(clippy::too_many_arguments)]
pub async fn pass(
    state: &Arc<AppState>,
    origin: &Origin,
    req: Request<RequestBody>,
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
    // The client's body errors are marked as the client's, so a malformed or cut body
    // is answered 400 rather than blamed on the origin.
    let incoming = incoming.map_err(origin::ClientBodyError);
    let limited = http_body_util::Limited::new(incoming, max_body as usize);
    let out = Request::from_parts(parts, body::boxed(limited));
    match origin.send(out, route).await {
        Ok(resp) => {
            if resp.status().is_success() && route.is_some_and(|r| r.config.revoke_on_success) {
                revoke_presented(state, who).await;
            }
            Ok(respond::from_origin(resp, version, cache_status))
        }
        Err(OriginError::BodyTooLarge) => Err(Error::body_too_large(max_body)),
        Err(e) => Err(e.into_error()),
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

/// What one fill produced.
pub enum Filled {
    /// A new response, stored in L1 and L2, with the `Set-Cookie` lines a
    /// `set_cookie = "strip"` route kept out of the store: for the client whose
    /// request made the fill, and no other.
    Stored(Arc<Entry>, Cookies),
    /// The origin answered 304: the stale entry's headers and freshness were
    /// updated (and stored when still storable), with stripped cookies as above.
    Revalidated(Arc<Entry>, bool, Cookies),
    /// Not storable: the response itself, for the one client that asked.
    Pass(Response<Body>, NoCacheReason),
    Failed(OriginError),
}

/// `Set-Cookie` lines kept out of a stored entry.
pub type Cookies = Vec<http::HeaderValue>;

/// A cacheable request that the cache could not answer: lead a fill, or wait for
/// the one in flight. `stale` is the entry the request could not use as is.
pub async fn fetch_for_cache(ctx: Miss) -> Result<Response<Body>, Error> {
    let state = ctx.state.clone();
    let cfg = state.runtime.load().config.cache.clone();
    // A request with credentials never shares a fill with other callers unless the
    // route is keyed per user: the answer may be for that caller alone.
    let shared = !ctx.credentials
        || ctx
            .route
            .as_ref()
            .is_some_and(|r| r.config.key_by == crate::config::KeyBy::Sub);
    if !shared {
        return ctx.finish(None, None, "").await;
    }
    if state.cache.is_hit_for_pass(&ctx.key.id) {
        if ctx.ranged() {
            // Uncacheable for now: the origin answers the range itself.
            return ctx.pass_range().await;
        }
        return ctx.finish(None, None, "hit-for-pass").await;
    }
    let mut handed_over = false;
    // Rounds in which the flight we waited for stored another variant than ours.
    let mut other_variant = 0;
    let mut ctx = ctx;
    loop {
        if handed_over || other_variant > 0 {
            // The leader failed, or stored another variant; ours may be stored now.
            if let Some(resp) = ctx.fresh_from_cache("gatehouse; fwd=miss; collapsed").await {
                return Ok(resp);
            }
        }
        if other_variant > MAX_VARIANT_ROUNDS {
            return ctx.finish(None, None, "").await;
        }
        // Once the URL's Vary index is known, each variant has a flight of its own.
        ctx.flight = state.cache.flight_key(&ctx.key, &ctx.parts.headers);
        match state.cache.coalescer.join(&ctx.flight, cfg.lock_age) {
            Role::Leader(guard) => {
                // A fill may have finished between our lookup and this join.
                if let Some(entry) = ctx.fresh_entry().await {
                    guard.finish(Outcome::Stored(entry.clone()));
                    return Ok(ctx.answer(&entry, "gatehouse; hit"));
                }
                if handed_over {
                    state.metrics.coalesce_handovers_total.inc();
                }
                return ctx.lead(guard, &cfg).await;
            }
            Role::Waiter(w) => match w.wait(cfg.lock_timeout).await {
                Waited::Outcome(Outcome::Stored(entry)) => {
                    if !crate::cache::selects(&entry, &ctx.parts.headers) {
                        // The leader's request selected another variant (Vary): its
                        // answer is not ours to give.
                        other_variant += 1;
                        continue;
                    }
                    state.metrics.coalesced_requests_total.inc();
                    return Ok(ctx.answer(&entry, "gatehouse; fwd=miss; collapsed"));
                }
                Waited::Outcome(Outcome::Uncacheable) => {
                    if let Some(resp) =
                        ctx.stale_if_error("gatehouse; fwd=stale; collapsed; detail=stale-if-error")
                    {
                        return Ok(resp);
                    }
                    if ctx.ranged() {
                        // Nothing stored to slice: fetch just the range.
                        return ctx.pass_range().await;
                    }
                    return ctx.finish(None, None, "").await;
                }
                Waited::TimedOut => {
                    return ctx.finish(None, None, "lock-timeout").await;
                }
                Waited::Outcome(Outcome::Failed) => {
                    if let Some(resp) =
                        ctx.stale_if_error("gatehouse; fwd=stale; collapsed; detail=stale-if-error")
                    {
                        return Ok(resp);
                    }
                    handed_over = true;
                    continue;
                }
            },
        }
    }
}

/// How many flights of other variants a request waits out before it fetches alone.
const MAX_VARIANT_ROUNDS: u32 = 3;

/// Serves a stale entry in the background-refresh case: starts one refresh per key
/// (per fleet with a shared store) unless one is already running.
pub fn revalidate_in_background(mut ctx: Miss) {
    ctx.interim = None;
    let cfg = ctx.state.runtime.load().config.cache.clone();
    // The refresh of one variant never stands in for another's.
    ctx.flight = ctx.state.cache.flight_key(&ctx.key, &ctx.parts.headers);
    let Role::Leader(guard) = ctx.state.cache.coalescer.join(&ctx.flight, cfg.lock_age) else {
        return;
    };
    tokio::spawn(async move {
        let lease = if ctx.state.store.is_memory() {
            None
        } else {
            let token = lease_token();
            match ctx
                .state
                .cache
                .acquire_lease(&ctx.flight, &token, cfg.lock_age)
                .await
            {
                Ok(true) => Some(token),
                // Another instance refreshes it, or the store is down: leave it.
                _ => return,
            }
        };
        let _ = ctx.run_fill(Some(guard), lease).await;
    });
}

fn lease_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A cacheable request the cache could not answer as is: everything it carries
/// through the fetch.
pub struct Miss {
    pub state: Arc<AppState>,
    /// The request head (its body is never sent on a fill).
    pub parts: Arc<Parts>,
    pub peer: SocketAddr,
    /// Whether the client reached us over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    pub route: Option<Arc<Route>>,
    /// The origin the route sends to, from the runtime the request began with (a fill
    /// or background revalidation finishes on it across a reload).
    pub origin: Arc<Origin>,
    pub key: CacheKey,
    /// The id this request's fetch is coalesced under (per instance and per fleet):
    /// `key.id`, or its variant's id once the URL's Vary index is known.
    pub flight: EntryId,
    /// Microseconds the fill's origin request took (0: none yet), shared with the
    /// detached fill task, for the access log.
    pub origin_time: Arc<std::sync::atomic::AtomicU64>,
    /// The stored entry the request could not use as is: revalidated, and the
    /// `stale-if-error` fallback.
    pub stale: Option<Arc<Entry>>,
    /// The request carried credentials (see `cache_policy::storable`).
    pub credentials: bool,
    /// Where the origin's interim responses to this client's own fill go (none for
    /// a background revalidation: its client has its answer).
    pub interim: Option<crate::server::interim::Interim>,
}

/// Whose turn it is to fetch, fleet-wide.
enum FleetTurn {
    /// We hold the lease (release it after the fill).
    Ours(String),
    /// Another instance stored a fresh entry while we waited.
    Theirs(Arc<Entry>),
    /// The store cannot lease (down) or the wait ran out: fetch without a lease.
    Alone,
}

impl Miss {
    fn head(&self) -> bool {
        self.parts.method == Method::HEAD
    }

    /// A GET with `Range` (HEAD ignores it, RFC 9110 §14.2).
    fn ranged(&self) -> bool {
        self.parts.method == Method::GET && super::range::has_range(&self.parts.headers)
    }

    /// Sends the client's request, `Range` and conditionals included, to the origin
    /// and streams its answer (usually a 206) through, unstored: for a ranged request
    /// whose whole representation the cache cannot keep.
    async fn pass_range(&self) -> Result<Response<Body>, Error> {
        let parts = &self.parts;
        let mut headers = parts.headers.clone();
        origin::prepare_request(&mut headers, parts.version, &parts.uri, self.peer, self.tls);
        let mut req = Request::new(body::empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = headers;
        if let Some(i) = &self.interim {
            req.extensions_mut().insert(i.clone());
        }
        let status = format!(
            "gatehouse; fwd=miss; detail={}",
            NoCacheReason::Range.label()
        );
        match self.origin.send(req, self.route.as_deref()).await {
            Ok(resp) => Ok(respond::from_origin(resp, parts.version, &status)),
            Err(e) => {
                if let Some(stale) =
                    self.stale_if_error("gatehouse; fwd=stale; detail=stale-if-error")
                {
                    return Ok(stale);
                }
                Err(e.into_error())
            }
        }
    }

    fn answer(&self, entry: &Entry, cache_status: &str) -> Response<Body> {
        respond::answer(
            entry,
            &self.parts.headers,
            self.head(),
            self.parts.version,
            &with_heuristic_detail(cache_status, entry),
        )
    }

    /// A fresh cached answer, if the cache has one now.
    async fn fresh_from_cache(&self, cache_status: &str) -> Option<Response<Body>> {
        let entry = self.fresh_entry().await?;
        Some(self.answer(&entry, cache_status))
    }

    /// A cached entry this request may use as is, if there is one now.
    async fn fresh_entry(&self) -> Option<Arc<Entry>> {
        let Lookup::Hit {
            entry,
            trusted: true,
            ..
        } = self
            .state
            .cache
            .recheck(&self.key, &self.parts.headers)
            .await
        else {
            return None;
        };
        let directives = cache_policy::request_directives(&self.parts.headers);
        let usable = !self.credentials || entry.response().flags.auth_ok;
        (usable
            && matches!(
                cache_policy::reuse(entry.response(), &directives, true, now_ms()),
                Reuse::Fresh { .. }
            ))
        .then_some(entry)
    }

    /// The stale entry, when `stale-if-error` lets it answer now.
    fn stale_if_error(&self, cache_status: &str) -> Option<Response<Body>> {
        let stale = self.stale.as_ref()?;
        let req = cache_policy::request_directives(&self.parts.headers);
        cache_policy::stale_if_error_allows(stale.response(), &req, now_ms())
            .then(|| self.answer(stale, cache_status))
    }

    async fn lead(
        &self,
        guard: LeaderGuard,
        cfg: &crate::config::CacheConfig,
    ) -> Result<Response<Body>, Error> {
        if self.state.store.is_memory() {
            return self.finish(Some(guard), None, "").await;
        }
        match self.fleet_turn(cfg).await {
            FleetTurn::Ours(token) => self.finish(Some(guard), Some(token), "").await,
            FleetTurn::Theirs(entry) => {
                guard.finish(Outcome::Stored(entry.clone()));
                self.state.metrics.coalesced_requests_total.inc();
                Ok(self.answer(&entry, "gatehouse; fwd=miss; collapsed; detail=fleet"))
            }
            FleetTurn::Alone => self.finish(Some(guard), None, "").await,
        }
    }

    /// Takes the fleet-wide lease for this key, or waits for the instance that holds
    /// it (woken by its wake-up message, polling every 250ms as a fallback).
    async fn fleet_turn(&self, cfg: &crate::config::CacheConfig) -> FleetTurn {
        let token = lease_token();
        let wake = self.state.cache.wake_handle(&self.flight);
        let deadline = tokio::time::Instant::now() + cfg.lock_timeout;
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self
                .state
                .cache
                .acquire_lease(&self.flight, &token, cfg.lock_age)
                .await
            {
                Ok(true) => return FleetTurn::Ours(token),
                Ok(false) => {}
                Err(_) => return FleetTurn::Alone,
            }
            let nap = deadline.saturating_duration_since(tokio::time::Instant::now());
            wait_for_wake(&mut notified, nap.min(Duration::from_millis(250))).await;
            if let Lookup::Hit { entry, .. } = self
                .state
                .cache
                .recheck(&self.key, &self.parts.headers)
                .await
            {
                if matches!(
                    cache_policy::reuse(entry.response(), &Default::default(), true, now_ms()),
                    Reuse::Fresh { .. }
                ) {
                    return FleetTurn::Theirs(entry);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return FleetTurn::Alone;
            }
        }
    }

    /// Runs the fill in its own task (detached from this client) and answers.
    async fn finish(
        &self,
        guard: Option<LeaderGuard>,
        lease: Option<String>,
        detail: &str,
    ) -> Result<Response<Body>, Error> {
        let mut answer = self.finish_fill(guard, lease, detail).await;
        // The fill ran in its own task: its origin time reaches the access log here.
        let micros = self.origin_time.load(std::sync::atomic::Ordering::Relaxed);
        if let (Ok(resp), true) = (&mut answer, micros > 0) {
            resp.extensions_mut()
                .insert(origin::OriginTime(Duration::from_micros(micros)));
        }
        answer
    }

    async fn finish_fill(
        &self,
        guard: Option<LeaderGuard>,
        lease: Option<String>,
        detail: &str,
    ) -> Result<Response<Body>, Error> {
        let ctx = self.clone_for_task();
        let task = tokio::spawn(async move { ctx.run_fill(guard, lease).await });
        let filled = task
            .await
            .map_err(|e| Error::internal(format!("fill task failed: {e}")))?;
        match filled {
            Filled::Stored(entry, cookies) => {
                self.state.cache.clear_hit_for_pass(&self.key.id);
                let status = if detail.is_empty() {
                    "gatehouse; fwd=miss; stored".to_string()
                } else {
                    format!("gatehouse; fwd=miss; stored; detail={detail}")
                };
                Ok(with_cookies(self.answer(&entry, &status), cookies))
            }
            Filled::Revalidated(entry, stored, cookies) => {
                let status = if stored {
                    "gatehouse; fwd=stale; fwd-status=304; stored"
                } else {
                    "gatehouse; fwd=stale; fwd-status=304"
                };
                Ok(with_cookies(self.answer(&entry, status), cookies))
            }
            Filled::Pass(resp, NoCacheReason::TooLarge) if self.ranged() => {
                // The whole representation was asked for to be stored; too large to
                // keep, it is dropped unread and the origin asked for the range alone.
                drop(resp);
                self.state.cache.mark_hit_for_pass(&self.key.id);
                self.pass_range().await
            }
            Filled::Pass(mut resp, reason) => {
                let code = resp.status();
                if code.is_server_error() {
                    let status = format!(
                        "gatehouse; fwd=stale; fwd-status={}; detail=stale-if-error",
                        code.as_u16()
                    );
                    if let Some(stale) = self.stale_if_error(&status) {
                        return Ok(stale);
                    }
                } else if reason != NoCacheReason::Status {
                    // Remember it: the next requests skip coalescing for a while.
                    self.state.cache.mark_hit_for_pass(&self.key.id);
                }
                if self.head() {
                    *resp.body_mut() = body::empty();
                }
                let fwd = if self.stale.is_some() {
                    "stale"
                } else {
                    "miss"
                };
                let value = if detail.is_empty() {
                    format!("gatehouse; fwd={fwd}; detail={}", reason.label())
                } else {
                    format!("gatehouse; fwd={fwd}; detail={detail}")
                };
                respond::set_cache_status(&mut resp, &value);
                Ok(resp)
            }
            Filled::Failed(e) => {
                if let Some(stale) =
                    self.stale_if_error("gatehouse; fwd=stale; detail=stale-if-error")
                {
                    return Ok(stale);
                }
                Err(e.into_error())
            }
        }
    }

    fn clone_for_task(&self) -> Miss {
        Miss {
            credentials: self.credentials,
            state: self.state.clone(),
            parts: self.parts.clone(),
            peer: self.peer,
            tls: self.tls,
            route: self.route.clone(),
            origin: self.origin.clone(),
            key: self.key.clone(),
            flight: self.flight.clone(),
            origin_time: self.origin_time.clone(),
            stale: self.stale.clone(),
            interim: self.interim.clone(),
        }
    }

    /// The fill, then the lease released and the fleet woken.
    async fn run_fill(&self, guard: Option<LeaderGuard>, lease: Option<String>) -> Filled {
        let filled = self.fill(guard).await;
        if let Some(token) = lease {
            self.state.cache.release_lease(&self.flight, &token).await;
        }
        filled
    }

    /// The request a fill sends: GET for GET and HEAD, forwarding headers added, the
    /// client's conditionals replaced by the stale entry's validators (none when
    /// `conditional` is false), without the client's `Range`: the whole
    /// representation is stored and ranges cut from it.
    fn fill_request(&self, conditional: bool) -> Request<Body> {
        let parts = &self.parts;
        let mut headers: HeaderMap = parts.headers.clone();
        for h in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            headers.remove(h);
        }
        if let Some(stale) = self.stale.as_ref().filter(|_| conditional) {
            let r = stale.response();
            if r.status.is_success() {
                if let Some(etag) = r.header("etag") {
                    headers.insert(header::IF_NONE_MATCH, etag.clone());
                }
                if let Some(lm) = r.header("last-modified") {
                    headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
                }
            }
        }
        origin::prepare_request(&mut headers, parts.version, &parts.uri, self.peer, self.tls);
        let mut req = Request::new(body::empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = headers;
        if let Some(i) = &self.interim {
            req.extensions_mut().insert(i.clone());
        }
        req
    }

    /// Fetches from the origin and stores what may be stored; tells waiters.
    async fn fill(&self, guard: Option<LeaderGuard>) -> Filled {
        let state = &self.state;
        let finish_guard = |outcome: Outcome, guard: Option<LeaderGuard>| {
            if let Some(g) = guard {
                g.finish(outcome);
            }
        };
        let cfg = state.runtime.load().config.cache.clone();
        let route = self.route.as_deref();
        let mut conditional = true;
        let (began, response_time, mut parts, incoming) = loop {
            let began = Began::now();
            let req = self.fill_request(conditional);
            let resp = match self.origin.send(req, route).await {
                Ok(r) => r,
                Err(e) => {
                    // Dropping the guard hands the fill over to a waiter.
                    drop(guard);
                    return Filled::Failed(e);
                }
            };
            if let Some(t) = resp.extensions().get::<origin::OriginTime>() {
                self.origin_time
                    .store(t.0.as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            let response_time = now_ms();
            let (mut parts, incoming) = resp.into_parts();
            origin::strip_hop_by_hop(&mut parts.headers);
            match &self.stale {
                Some(stale) if conditional && parts.status == StatusCode::NOT_MODIFIED => {
                    if identifies(stale.response(), &parts.headers) {
                        return self
                            .revalidated(stale, &parts.headers, began, response_time, &cfg, guard)
                            .await;
                    }
                    // A 304 for another representation than the stored one (RFC 9111
                    // §4.3.4: it updates nothing): ask again, unconditionally.
                    conditional = false;
                }
                _ => break (began, response_time, parts, incoming),
            }
        };

        let decision =
            cache_policy::storable(self.credentials, parts.status, &parts.headers, route, &cfg);
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
                    self.origin.count("body_error");
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
                let prefix = futures_util::stream::once(async move {
                    Ok::<_, BoxError>(Frame::data(buf.freeze()))
                });
                let body = body::boxed(StreamBody::new(prefix.chain(stream)));
                return Filled::Pass(origin_response(parts, body), NoCacheReason::TooLarge);
            }
        }
        let body: Bytes = buf.freeze();
        let initial_age = cache_policy::initial_age(&parts.headers, began.ms, response_time);
        // `Age` was counted into initial_age; it is recomputed whenever served.
        parts.headers.remove(header::AGE);
        let cookies = strip_cookies(route, &mut parts.headers);
        let mut tags: Vec<String> = route
            .map(|r| {
                let params = r.pattern.matches(self.parts.uri.path()).unwrap_or_default();
                r.config
                    .tags
                    .iter()
                    .filter_map(|t| crate::routes::expand_template(t, &params))
                    .collect()
            })
            .unwrap_or_default();
        tags.extend(surrogate_keys(&parts.headers));
        tags.sort();
        tags.dedup();
        let stored = StoredResponse {
            status: parts.status,
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body,
            request_time: began.ms,
            response_time,
            initial_age,
            freshness: storable.freshness.as_millis() as u64,
            stale_while_revalidate: storable.stale_while_revalidate.as_millis() as u64,
            stale_if_error: storable.stale_if_error.as_millis() as u64,
            keep: keep_for(&parts.headers, &storable),
            flags: Flags {
                must_revalidate: storable.must_revalidate,
                no_cache: storable.no_cache,
                auth_ok: storable.auth_ok,
                heuristic: storable.heuristic,
            },
            tags,
            variant: Vec::new(),
        };
        let mut entry = if storable.negative {
            Entry::Negative(stored)
        } else {
            Entry::Response(stored)
        };
        // Waiters check the variant before they take this answer as theirs.
        crate::cache::select_variant(&mut entry, &self.parts.headers);
        count_store(
            state,
            if entry.is_negative() {
                "negative"
            } else {
                "stored"
            },
        );
        let entry_arc = Arc::new(entry.clone());
        state
            .cache
            .store(&self.key, &self.parts.headers, entry, began)
            .await;
        finish_guard(Outcome::Stored(entry_arc.clone()), guard);
        Filled::Stored(entry_arc, cookies)
    }

    /// A 304 from the origin: the stored headers are updated from it (all but the
    /// ones RFC 9111 §3.2 excludes) and freshness recomputed.
    #[allow(clippy::too_many_arguments)]
    async fn revalidated(
        &self,
        stale: &Entry,
        fresh_headers: &HeaderMap,
        began: Began,
        response_time: u64,
        cfg: &crate::config::CacheConfig,
        guard: Option<LeaderGuard>,
    ) -> Filled {
        let old = stale.response();
        let mut merged = HeaderMap::new();
        for (k, v) in &old.headers {
            merged.append(k.clone(), v.clone());
        }
        let mut replaced = std::collections::HashSet::new();
        for (k, v) in fresh_headers {
            if matches!(
                k.as_str(),
                "content-length"
                    | "content-encoding"
                    | "content-range"
                    | "transfer-encoding"
                    | "age"
            ) {
                continue;
            }
            if replaced.insert(k.clone()) {
                merged.remove(k);
            }
            merged.append(k.clone(), v.clone());
        }
        let decision = cache_policy::storable(
            self.credentials,
            old.status,
            &merged,
            self.route.as_deref(),
            cfg,
        );
        let cookies = strip_cookies(self.route.as_deref(), &mut merged);
        let initial_age = cache_policy::initial_age(fresh_headers, began.ms, response_time);
        let mut updated = old.clone();
        updated.headers = merged.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        updated.request_time = began.ms;
        updated.response_time = response_time;
        updated.initial_age = initial_age;
        let storable = match decision {
            Ok(s) => Some(s),
            Err(reason) => {
                count_store(&self.state, reason.label());
                None
            }
        };
        if let Some(s) = &storable {
            updated.freshness = s.freshness.as_millis() as u64;
            updated.stale_while_revalidate = s.stale_while_revalidate.as_millis() as u64;
            updated.stale_if_error = s.stale_if_error.as_millis() as u64;
            updated.keep = keep_for(&merged, s);
            updated.flags = Flags {
                must_revalidate: s.must_revalidate,
                no_cache: s.no_cache,
                auth_ok: s.auth_ok,
                heuristic: s.heuristic,
            };
        } else {
            // Usable for this answer only.
            updated.freshness = 0;
        }
        let mut entry = match stale {
            Entry::Negative(_) => Entry::Negative(updated),
            Entry::Response(_) => Entry::Response(updated),
        };
        crate::cache::select_variant(&mut entry, &self.parts.headers);
        let entry_arc = Arc::new(entry.clone());
        if storable.is_some() {
            count_store(&self.state, "revalidated");
            self.state
                .cache
                .store(&self.key, &self.parts.headers, entry, began)
                .await;
            if let Some(g) = guard {
                g.finish(Outcome::Stored(entry_arc.clone()));
            }
            Filled::Revalidated(entry_arc, true, cookies)
        } else {
            if let Some(g) = guard {
                g.finish(Outcome::Uncacheable);
            }
            Filled::Revalidated(entry_arc, false, cookies)
        }
    }
}

/// Whether a 304 identifies the stored response it was asked about (RFC 9111 §4.3.4):
/// a strong `ETag` must be the stored one, a weak one must match it by weak
/// comparison (RFC 9110 §8.8.3.2); a 304 without an `ETag` is taken as the stored
/// response's (origins often leave validators out of 304s).
fn identifies(stored: &StoredResponse, not_modified: &HeaderMap) -> bool {
    let Some(new) = not_modified
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return true;
    };
    let Some(old) = stored
        .header("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return false;
    };
    match new.strip_prefix("W/") {
        None => new == old,
        Some(opaque) => opaque == old.strip_prefix("W/").unwrap_or(old),
    }
}

/// On a `set_cookie = "strip"` route, takes the `Set-Cookie` lines out of what is
/// about to be stored.
fn strip_cookies(route: Option<&Route>, headers: &mut HeaderMap) -> Cookies {
    if !route.is_some_and(|r| r.config.set_cookie == crate::config::SetCookie::Strip) {
        return Vec::new();
    }
    match headers.entry(header::SET_COOKIE) {
        http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
        http::header::Entry::Vacant(_) => Vec::new(),
    }
}

/// Gives the client whose request made the fill the cookies kept out of the store.
fn with_cookies(mut resp: Response<Body>, cookies: Cookies) -> Response<Body> {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `Cache-Status` of an answer from `entry`: `detail=heuristic` added when its
/// freshness is heuristic (RFC 9111 §4.2.2) and nothing more specific is said.
pub fn with_heuristic_detail(cache_status: &str, entry: &Entry) -> String {
    if entry.response().flags.heuristic && !cache_status.contains("detail=") {
        format!("{cache_status}; detail=heuristic")
    } else {
        cache_status.to_string()
    }
}

/// How long past its stale windows an entry with a validator is kept for
/// revalidation (a 304 is cheaper than a full fetch): its freshness lifetime, at most
/// an hour; an hour for one that is never fresh (`no-cache`, `max-age=0`), which is
/// kept only to be revalidated before each use.
fn keep_for(headers: &HeaderMap, s: &cache_policy::Storable) -> u64 {
    if !cache_policy::has_validator(headers) {
        return 0;
    }
    let keep = if s.no_cache || s.freshness.is_zero() {
        cache_policy::REVALIDATION_KEEP
    } else {
        s.freshness.min(cache_policy::REVALIDATION_KEEP)
    };
    keep.as_millis() as u64
}

/// Tags the origin gives: `Surrogate-Key` (space separated) and `Cache-Tag`
/// (comma separated).
fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    for v in headers.get_all("surrogate-key") {
        if let Ok(v) = v.to_str() {
            tags.extend(v.split_whitespace().map(str::to_string));
        }
    }
    for v in headers.get_all("cache-tag") {
        if let Ok(v) = v.to_str() {
            tags.extend(
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    tags
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
