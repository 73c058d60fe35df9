//! Joining or leading the fill of a cacheable request the cache could not answer:
//! one fill per key per instance (the coalescer, `cache/coalesce.rs`), and per fleet
//! through a lease in the shared store, with waiters woken by the store's wake-up
//! messages (and a bounded poll). Waiters take the leader's answer when it is their
//! variant; a failed leader hands the fill over to a waiter.

use std::sync::Arc;
use std::time::Duration;

use http::Response;

use super::cache_policy::{self, Reuse};
use super::cache_status::{CacheStatus, Detail, Fwd};
use super::fill::Filled;
use super::miss::Miss;
use crate::body::Body;
use crate::cache::coalesce::{LeaderGuard, Outcome, Role, Waited};
use crate::cache::entry::Entry;
use crate::cache::Lookup;
use crate::clock::now_ms;
use crate::error::Error;
use crate::store::wake::wait_for_wake;

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
        return ctx.finish(None, None, None).await;
    }
    if state.cache.is_hit_for_pass(&ctx.key.id) {
        if ctx.ranged() {
            // Uncacheable for now: the origin answers the range itself.
            return ctx.pass_range().await;
        }
        return ctx.finish(None, None, Some(Detail::HitForPass)).await;
    }
    let mut handed_over = false;
    // Rounds in which the flight we waited for stored another variant than ours.
    let mut other_variant = 0;
    let mut ctx = ctx;
    loop {
        if handed_over || other_variant > 0 {
            // The leader failed, or stored another variant; ours may be stored now.
            if let Some(resp) = ctx
                .fresh_from_cache(CacheStatus::fwd(Fwd::Miss).collapsed())
                .await
            {
                return Ok(resp);
            }
        }
        if other_variant > MAX_VARIANT_ROUNDS {
            return ctx.finish(None, None, None).await;
        }
        // Once the URL's Vary index is known, each variant has a flight of its own.
        ctx.flight = state.cache.flight_key(&ctx.key, &ctx.parts.headers);
        match state.cache.coalescer.join(&ctx.flight, cfg.lock_age) {
            Role::Leader(guard) => {
                // A fill may have finished between our lookup and this join.
                if let Some(entry) = ctx.fresh_entry().await {
                    guard.finish(Outcome::Stored(entry.clone()));
                    return Ok(ctx.answer(&entry, CacheStatus::HIT));
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
                    return Ok(ctx.answer(&entry, CacheStatus::fwd(Fwd::Miss).collapsed()));
                }
                Waited::Outcome(Outcome::Uncacheable) => {
                    if let Some(resp) = ctx.stale_if_error(CacheStatus::STALE_IF_ERROR.collapsed())
                    {
                        return Ok(resp);
                    }
                    if ctx.ranged() {
                        // Nothing stored to slice: fetch just the range.
                        return ctx.pass_range().await;
                    }
                    return ctx.finish(None, None, None).await;
                }
                Waited::TimedOut => {
                    return ctx.finish(None, None, Some(Detail::LockTimeout)).await;
                }
                Waited::Outcome(Outcome::Failed) => {
                    if let Some(resp) = ctx.stale_if_error(CacheStatus::STALE_IF_ERROR.collapsed())
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
    async fn lead(
        &self,
        guard: LeaderGuard,
        cfg: &crate::config::CacheConfig,
    ) -> Result<Response<Body>, Error> {
        if self.state.store.is_memory() {
            return self.finish(Some(guard), None, None).await;
        }
        match self.fleet_turn(cfg).await {
            FleetTurn::Ours(token) => self.finish(Some(guard), Some(token), None).await,
            FleetTurn::Theirs(entry) => {
                guard.finish(Outcome::Stored(entry.clone()));
                self.state.metrics.coalesced_requests_total.inc();
                Ok(self.answer(
                    &entry,
                    CacheStatus::fwd(Fwd::Miss)
                        .collapsed()
                        .detail(Detail::Fleet),
                ))
            }
            FleetTurn::Alone => self.finish(Some(guard), None, None).await,
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

    /// The fill, then the lease released and the fleet woken.
    pub(super) async fn run_fill(
        &self,
        guard: Option<LeaderGuard>,
        lease: Option<String>,
    ) -> Filled {
        let filled = self.fill(guard).await;
        if let Some(token) = lease {
            self.state.cache.release_lease(&self.flight, &token).await;
        }
        filled
    }
}
