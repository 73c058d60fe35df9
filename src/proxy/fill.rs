//! Building the entry from the origin's answer: the fill's request (the stale
//! entry's validators, never the client's `Range`), then either a new answer, read
//! up to `cache.max_object` and stored when `cache_policy::storable` allows, or a
//! 304 merged into the stale entry (`cache_policy::merge_not_modified`). Both write
//! the origin's answer into the stored response through one step, `apply`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyStream, StreamBody};
use hyper::body::Frame;

use super::cache_policy::{self, NoCacheReason, Storable};
use super::miss::Miss;
use super::origin::{self, OriginError};
use crate::app::AppState;
use crate::body::{self, Body, BoxError};
use crate::cache::coalesce::{LeaderGuard, Outcome};
use crate::cache::entry::{Entry, StoredResponse};
use crate::cache::Began;
use crate::clock::now_ms;
use crate::routes::Route;

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

/// When the fill's request went and its answer came (Unix ms), and the age the
/// answer had on arrival (RFC 9111 §4.2.3, from its `Age` and `Date`).
#[derive(Clone, Copy)]
struct Timing {
    request_time: u64,
    response_time: u64,
    initial_age: u64,
}

impl Timing {
    fn of(answer: &HeaderMap, began: Began, response_time: u64) -> Timing {
        Timing {
            request_time: began.ms,
            response_time,
            initial_age: cache_policy::initial_age(answer, began.ms, response_time),
        }
    }
}

/// Writes an origin's answer into a stored response: its headers, its times and
/// how it is kept (`storable`), or, when it may not be stored, no freshness (usable
/// for the one answer it makes). The one step a new answer and a 304 share.
fn apply(r: &mut StoredResponse, headers: &HeaderMap, timing: Timing, storable: Option<&Storable>) {
    r.headers = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    r.request_time = timing.request_time;
    r.response_time = timing.response_time;
    r.initial_age = timing.initial_age;
    let Some(s) = storable else {
        r.freshness = 0;
        return;
    };
    r.freshness = s.freshness.as_millis() as u64;
    r.stale_while_revalidate = s.stale_while_revalidate.as_millis() as u64;
    r.stale_if_error = s.stale_if_error.as_millis() as u64;
    r.keep = keep_for(headers, s);
    r.flags = s.flags();
}

impl Miss {
    /// The request a fill sends: GET for GET and HEAD, forwarding headers added, the
    /// client's conditionals replaced by the stale entry's validators (none when
    /// `conditional` is false), without the client's `Range`: the whole
    /// representation is stored and ranges cut from it.
    fn fill_request(&self, conditional: bool) -> Request<Body> {
        let mut headers: HeaderMap = self.parts.headers.clone();
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
        self.origin_get(headers)
    }

    /// Fetches from the origin and stores what may be stored; tells waiters.
    pub(super) async fn fill(&self, guard: Option<LeaderGuard>) -> Filled {
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
                    if cache_policy::identifies(stale.response(), &parts.headers) {
                        let timing = Timing::of(&parts.headers, began, response_time);
                        return self
                            .revalidated(stale, &parts.headers, began, timing, &cfg, guard)
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
        let timing = Timing::of(&parts.headers, began, response_time);
        // `Age` was counted into the initial age; it is recomputed whenever served.
        parts.headers.remove(header::AGE);
        let cookies = strip_cookies(route, &mut parts.headers);
        let mut stored = StoredResponse {
            status: parts.status,
            body,
            tags: self.tags(&parts.headers),
            ..StoredResponse::default()
        };
        apply(&mut stored, &parts.headers, timing, Some(&storable));
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

    /// The purge tags of a new entry: the route's templates, with the request's path
    /// parameters, and the origin's own (`Surrogate-Key`, `Cache-Tag`).
    fn tags(&self, answer: &HeaderMap) -> Vec<String> {
        let mut tags: Vec<String> = self
            .route
            .as_deref()
            .map(|r| {
                r.config
                    .tags
                    .iter()
                    .filter_map(|t| crate::routes::expand_template(t, &self.params))
                    .collect()
            })
            .unwrap_or_default();
        tags.extend(surrogate_keys(answer));
        tags.sort();
        tags.dedup();
        tags
    }

    /// A 304 from the origin for the stale entry: its fields merged into the stored
    /// ones (`cache_policy::merge_not_modified`) and freshness recomputed; stored
    /// again when still storable.
    async fn revalidated(
        &self,
        stale: &Entry,
        not_modified: &HeaderMap,
        began: Began,
        timing: Timing,
        cfg: &crate::config::CacheConfig,
        guard: Option<LeaderGuard>,
    ) -> Filled {
        let old = stale.response();
        let mut merged = cache_policy::merge_not_modified(&old.headers, not_modified);
        let decision = cache_policy::storable(
            self.credentials,
            old.status,
            &merged,
            self.route.as_deref(),
            cfg,
        );
        let cookies = strip_cookies(self.route.as_deref(), &mut merged);
        let storable = match decision {
            Ok(s) => Some(s),
            Err(reason) => {
                count_store(&self.state, reason.label());
                None
            }
        };
        let mut entry = stale.clone();
        apply(entry.response_mut(), &merged, timing, storable.as_ref());
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
pub(super) fn with_cookies(mut resp: Response<Body>, cookies: Cookies) -> Response<Body> {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// How long past its stale windows an entry with a validator is kept for
/// revalidation (a 304 is cheaper than a full fetch): its freshness lifetime, at most
/// an hour; an hour for one that is never fresh (`no-cache`, `max-age=0`), which is
/// kept only to be revalidated before each use.
fn keep_for(headers: &HeaderMap, s: &Storable) -> u64 {
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
