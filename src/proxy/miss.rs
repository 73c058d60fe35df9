//! A cacheable request the cache could not answer as is: what it carries through
//! the miss path (`Miss`), and its answer made from what the fill produced: the
//! stored entry, the 304-refreshed one, the origin's uncacheable answer, or the
//! stale entry when `stale-if-error` lets it stand in for a failure. The fill runs
//! in its own task, detached from the client that started it, so a client
//! disconnect never wastes the fetch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response};

use super::cache_policy::{self, NoCacheReason, Reuse};
use super::cache_status::{CacheStatus, Detail, Fwd};
use super::directives::Directives;
use super::fill::{with_cookies, Filled};
use super::origin::{self, Origin};
use super::respond;
use crate::app::AppState;
use crate::body::{self, Body};
use crate::cache::coalesce::LeaderGuard;
use crate::cache::entry::Entry;
use crate::cache::{CacheKey, EntryId, Lookup};
use crate::clock::now_ms;
use crate::error::Error;
use crate::routes::{Params, Route};

/// A cacheable request the cache could not answer as is: everything it carries
/// through the fetch.
#[derive(Clone)]
pub struct Miss {
    pub state: Arc<AppState>,
    /// The request head (its body is never sent on a fill).
    pub parts: Arc<Parts>,
    pub peer: SocketAddr,
    /// Whether the client reached us over TLS (`X-Forwarded-Proto`).
    pub tls: bool,
    pub route: Option<Arc<Route>>,
    /// The path parameters the route's steps read (`routes::Matched`).
    pub params: Params,
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
    /// The request's own directives (RFC 9111 §5.2.1), parsed once.
    pub directives: Directives,
    /// The request carried credentials (see `cache_policy::storable`).
    pub credentials: bool,
    /// Where the origin's interim responses to this client's own fill go (none for
    /// a background revalidation: its client has its answer).
    pub interim: Option<crate::server::interim::Interim>,
}

impl Miss {
    fn head(&self) -> bool {
        self.parts.method == Method::HEAD
    }

    /// A GET with `Range` (HEAD ignores it, RFC 9110 §14.2).
    pub(super) fn ranged(&self) -> bool {
        self.parts.method == Method::GET && super::range::has_range(&self.parts.headers)
    }

    /// A GET of the request's target for the origin, with `headers` and the
    /// forwarding fields; the origin's interim responses go to this client.
    pub(super) fn origin_get(&self, mut headers: HeaderMap) -> Request<Body> {
        let parts = &self.parts;
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

    pub(super) fn answer(&self, entry: &Entry, cache_status: CacheStatus) -> Response<Body> {
        respond::answer(
            entry,
            &self.parts.headers,
            self.head(),
            self.parts.version,
            cache_status.of_entry(entry),
        )
    }

    /// A fresh cached answer, if the cache has one now.
    pub(super) async fn fresh_from_cache(
        &self,
        cache_status: CacheStatus,
    ) -> Option<Response<Body>> {
        let entry = self.fresh_entry().await?;
        Some(self.answer(&entry, cache_status))
    }

    /// A cached entry this request may use as is, if there is one now.
    pub(super) async fn fresh_entry(&self) -> Option<Arc<Entry>> {
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
        let usable = !self.credentials || entry.response().flags.auth_ok;
        (usable
            && matches!(
                cache_policy::reuse(entry.response(), &self.directives, true, now_ms()),
                Reuse::Fresh { .. }
            ))
        .then_some(entry)
    }

    /// The stale entry, when `stale-if-error` lets it answer now.
    pub(super) fn stale_if_error(&self, cache_status: CacheStatus) -> Option<Response<Body>> {
        let stale = self.stale.as_ref()?;
        cache_policy::stale_if_error_allows(stale.response(), &self.directives, now_ms())
            .then(|| self.answer(stale, cache_status))
    }

    /// Runs the fill in its own task (detached from this client) and answers.
    pub(super) async fn finish(
        &self,
        guard: Option<LeaderGuard>,
        lease: Option<String>,
        detail: Option<Detail>,
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
        detail: Option<Detail>,
    ) -> Result<Response<Body>, Error> {
        let ctx = self.clone();
        let task = tokio::spawn(async move { ctx.run_fill(guard, lease).await });
        let filled = task
            .await
            .map_err(|e| Error::internal(format!("fill task failed: {e}")))?;
        match filled {
            Filled::Stored(entry, cookies) => {
                self.state.cache.clear_hit_for_pass(&self.key.id);
                let mut status = CacheStatus::fwd(Fwd::Miss).stored();
                status.detail = detail;
                Ok(with_cookies(self.answer(&entry, status), cookies))
            }
            Filled::Revalidated(entry, stored, cookies) => {
                let status = CacheStatus::fwd(Fwd::Stale).fwd_status(304);
                let status = if stored { status.stored() } else { status };
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
                    let status = CacheStatus::STALE_IF_ERROR.fwd_status(code.as_u16());
                    if let Some(stale) = self.stale_if_error(status) {
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
                    Fwd::Stale
                } else {
                    Fwd::Miss
                };
                CacheStatus::fwd(fwd)
                    .detail(detail.unwrap_or(Detail::NotStored(reason)))
                    .append_to(resp.headers_mut());
                Ok(resp)
            }
            Filled::Failed(e) => {
                if let Some(stale) = self.stale_if_error(CacheStatus::STALE_IF_ERROR) {
                    return Ok(stale);
                }
                Err(Error::from(e))
            }
        }
    }
}
