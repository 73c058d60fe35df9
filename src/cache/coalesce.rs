//! Coalescing: one origin fetch per key, on one instance and across the fleet.
//!
//! On one instance (Pingora's cache-lock model, not moka's `get_with`): the first
//! request for a key becomes the leader; later ones wait, woken by notification (a
//! `watch` channel), each wait bounded by `cache.lock_timeout`. Outcomes:
//!
//! - `Stored(entry)`: every waiter answers from it (`collapsed`);
//! - `Uncacheable`: waiters are released to fetch on their own;
//! - `Failed` (leader errored, was dropped, or aged out): one waiter becomes the new
//!   leader — the handover — and the others wait on it.
//!
//! A flight older than `cache.lock_age` is not joined: the next request leads anew.
//!
//! Across the fleet (a shared store), a leader takes the fetch lease on the flight's
//! id (`Cache::acquire_lease`); the other instances' leaders wait for the store's
//! wake-up on that id (`Cache::wake_handle`), sent when the lease is released
//! (`Cache::release_lease`). Flights are keyed by `Cache::flight_key`: the variant's
//! id once the URL's Vary index is known. Hit-for-pass marks keys whose last answer
//! was uncacheable, so they skip coalescing for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{watch, Notify};

use super::entry::{Entry, Record};
use super::key::{variant_id, variant_values, CacheKey};
use super::Cache;
use crate::store::{Channel, EntryId, StoreResult};

/// What a finished flight tells its waiters.
#[derive(Clone, Debug)]
pub enum Outcome {
    Stored(Arc<Entry>),
    Uncacheable,
    Failed,
}

struct Flight {
    tx: watch::Sender<Option<Outcome>>,
    started: Instant,
}

#[derive(Default)]
pub struct Coalescer {
    flights: Mutex<HashMap<EntryId, Arc<Flight>>>,
}

/// The caller's part in a flight.
pub enum Role {
    Leader(LeaderGuard),
    Waiter(Waiter),
}

/// Held by the leader; dropping it without `finish` tells waiters `Failed`.
pub struct LeaderGuard {
    coalescer: Arc<Coalescer>,
    key: EntryId,
    flight: Arc<Flight>,
    done: bool,
}

pub struct Waiter {
    rx: watch::Receiver<Option<Outcome>>,
}

/// What a waiter learned.
#[derive(Debug)]
pub enum Waited {
    Outcome(Outcome),
    TimedOut,
}

impl Coalescer {
    /// Joins the flight for `key`, or starts one.
    pub fn join(self: &Arc<Self>, key: &EntryId, lock_age: Duration) -> Role {
        let mut flights = self.flights.lock().expect("coalescer lock");
        if let Some(f) = flights.get(key) {
            if f.started.elapsed() < lock_age && f.tx.borrow().is_none() {
                return Role::Waiter(Waiter {
                    rx: f.tx.subscribe(),
                });
            }
        }
        let (tx, _) = watch::channel(None);
        let flight = Arc::new(Flight {
            tx,
            started: Instant::now(),
        });
        flights.insert(key.clone(), flight.clone());
        Role::Leader(LeaderGuard {
            coalescer: self.clone(),
            key: key.clone(),
            flight,
            done: false,
        })
    }

    /// Flights in progress (for tests and gauges).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().expect("coalescer lock").len()
    }

    /// Requests waiting for another request's flight, over all flights (for tests:
    /// the moment concurrent misses are waiting is observed, not guessed).
    pub fn waiting(&self) -> usize {
        let flights = self.flights.lock().expect("coalescer lock");
        flights.values().map(|f| f.tx.receiver_count()).sum()
    }

    fn end(&self, key: &EntryId, flight: &Arc<Flight>, outcome: Outcome) {
        let mut flights = self.flights.lock().expect("coalescer lock");
        // Only remove our own flight: an aged-out one may have been replaced.
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
        drop(flights);
        flight.tx.send_replace(Some(outcome));
    }
}

impl LeaderGuard {
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.coalescer.end(&self.key, &self.flight, outcome);
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.done {
            self.coalescer.end(&self.key, &self.flight, Outcome::Failed);
        }
    }
}

impl Waiter {
    /// Waits for the leader's outcome, at most `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Waited {
        let result = tokio::time::timeout(timeout, self.rx.wait_for(|o| o.is_some())).await;
        match result {
            Ok(Ok(o)) => Waited::Outcome(o.clone().expect("waited for Some")),
            // The sender vanished without an outcome: treat as a failed leader.
            Ok(Err(_)) => Waited::Outcome(Outcome::Failed),
            Err(_) => Waited::TimedOut,
        }
    }
}

impl Cache {
    /// The id one fetch for this request is coalesced under: the variant's own id
    /// when this instance knows the URL's Vary index, else the URL's. Requests that
    /// select different variants then never wait for each other's fetch.
    pub fn flight_key(&self, key: &CacheKey, req: &HeaderMap) -> EntryId {
        match self.l1.get(&key.id).map(|s| s.record) {
            Some(r) => match &*r {
                Record::Vary(index) => variant_id(key, &variant_values(&index.headers, req)),
                Record::Entry(_) => key.id.clone(),
            },
            None => key.id.clone(),
        }
    }

    /// Wakes local waiters for another instance's fetch of `id`.
    pub fn wake(&self, id: &EntryId) {
        if let Some(n) = self.wakes.lock().expect("wakes lock").get(id) {
            n.notify_waiters();
        }
    }

    /// A notifier for `id`'s wake-ups (register before checking, then wait).
    pub fn wake_handle(&self, id: &EntryId) -> Arc<Notify> {
        let mut w = self.wakes.lock().expect("wakes lock");
        w.retain(|_, n| Arc::strong_count(n) > 1);
        w.entry(id.clone()).or_default().clone()
    }

    /// Takes the fleet's fetch lease on the flight `id` for `ttl`; true when this
    /// caller holds it now.
    pub async fn acquire_lease(
        &self,
        id: &EntryId,
        token: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.store.lease_acquire(id, token, ttl).await
    }

    /// Releases the lease `token` holds on `id` and wakes every instance waiting for
    /// that flight.
    pub async fn release_lease(&self, id: &EntryId, token: &str) {
        let _ = self.store.lease_release(id, token).await;
        let _ = self
            .store
            .publish(Channel::Wake, Bytes::from(id.to_string()))
            .await;
    }

    pub fn mark_hit_for_pass(&self, id: &EntryId) {
        self.hit_for_pass.insert(id.clone(), ());
    }

    pub fn is_hit_for_pass(&self, id: &EntryId) -> bool {
        self.hit_for_pass.contains_key(id)
    }

    pub fn clear_hit_for_pass(&self, id: &EntryId) {
        self.hit_for_pass.invalidate(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> EntryId {
        crate::cache::CacheKey::new(&format!("example.com/{s}"), format!("/{s}")).id
    }

    #[tokio::test]
    async fn one_leader_many_waiters_all_get_the_outcome() {
        let c = Arc::new(Coalescer::default());
        let k = key("a");
        let Role::Leader(leader) = c.join(&k, Duration::from_secs(10)) else {
            panic!("first caller leads")
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match c.join(&k, Duration::from_secs(10)) {
                Role::Waiter(w) => tokio::spawn(w.wait(Duration::from_secs(5))),
                Role::Leader(_) => panic!("second caller must wait"),
            })
            .collect();
        leader.finish(Outcome::Uncacheable);
        for w in waiters {
            assert!(matches!(
                w.await.unwrap(),
                Waited::Outcome(Outcome::Uncacheable)
            ));
        }
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_to_a_waiter() {
        let c = Arc::new(Coalescer::default());
        let k = key("b");
        let leader = c.join(&k, Duration::from_secs(10));
        let Role::Waiter(w) = c.join(&k, Duration::from_secs(10)) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(
            w.wait(Duration::from_secs(1)).await,
            Waited::Outcome(Outcome::Failed)
        ));
        assert!(matches!(
            c.join(&k, Duration::from_secs(10)),
            Role::Leader(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_bounded_and_old_flights_are_not_joined() {
        let c = Arc::new(Coalescer::default());
        let k = key("c");
        let _leader = c.join(&k, Duration::from_secs(10));
        let Role::Waiter(w) = c.join(&k, Duration::from_secs(10)) else {
            panic!()
        };
        assert!(matches!(
            w.wait(Duration::from_millis(100)).await,
            Waited::TimedOut
        ));
        // A zero lock age means the existing flight is too old to join.
        assert!(matches!(c.join(&k, Duration::ZERO), Role::Leader(_)));
    }
}
