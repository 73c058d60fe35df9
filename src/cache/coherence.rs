//! Coherence of every instance's L1 through the store subscription: invalidation
//! messages drop keys, wake messages release waiters of another instance's fetch,
//! and the loss of the subscription makes L1 untrusted until it returns — then the
//! whole L1 is dropped, since invalidations may have been missed meanwhile.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use super::Cache;
use crate::store::{Channel, EntryId, Store, StoreEvent};

/// Consumes the store's events for the cache until the store shuts down.
pub fn spawn(cache: Arc<Cache>, store: &Store) -> tokio::task::JoinHandle<()> {
    let mut rx = store.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(StoreEvent::Message {
                    channel: Channel::Invalidate,
                    payload,
                }) => cache.apply_invalidation(&payload),
                Ok(StoreEvent::Message {
                    channel: Channel::Wake,
                    payload,
                }) => {
                    let id = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|t| t.parse().ok());
                    if let Some(id) = id {
                        cache.wake(&id);
                    }
                }
                Ok(StoreEvent::Message { .. }) => {}
                Ok(StoreEvent::SubscriptionLost) => cache.feed_lost(),
                Ok(StoreEvent::SubscriptionRestored) => cache.feed_restored(),
                Err(RecvError::Lagged(n)) => {
                    // Messages were dropped: treat it as a lost feed, at once restored.
                    tracing::warn!(missed = n, "invalidation feed lagged; dropping L1");
                    cache.feed_lost();
                    cache.feed_restored();
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}

/// Forgets paths whose entries have all expired from the prefix-purge list, once a
/// minute (a bounded range delete, never a scan).
pub fn spawn_trim(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = store.paths_trim(crate::clock::now_ms()).await {
                tracing::debug!(error = %e, "path list trim skipped");
            }
        }
    })
}

impl Cache {
    pub(super) fn trusted(&self) -> bool {
        match self.lost_at.load(Ordering::Acquire) {
            0 => true,
            since => {
                let lost = self.epoch + Duration::from_millis(since - 1);
                lost.elapsed() <= self.cfg.load().coherence_grace
            }
        }
    }

    /// Drops ids from this L1 and remembers when, so racing fills do not re-insert
    /// (the id, and its path through the path's marker). A path marker drops every
    /// entry of the path.
    pub fn invalidate_local(&self, ids: &[EntryId]) {
        let now = Instant::now();
        for id in ids {
            self.recent.insert(id.marker(), now);
            if id.is_path_marker() {
                self.l1.invalidate_path(id.path());
            } else {
                self.recent.insert(id.clone(), now);
                self.l1.remove(id);
            }
        }
    }

    /// Tells every other instance to drop `ids` from its L1. The first line names
    /// this instance, which ignores its own messages.
    pub(super) async fn publish_invalidation(&self, ids: &[EntryId]) {
        let mut text = format!("@{}", self.instance);
        for id in ids {
            let _ = write!(text, "\n{id}");
        }
        let payload = Bytes::from(text);
        match self.store.publish(Channel::Invalidate, payload).await {
            Ok(()) => self.metrics.invalidations_sent_total.inc(),
            Err(e) => {
                tracing::warn!(error = %e, "invalidation not published; other instances keep their L1 until it expires or their feed is restored")
            }
        }
    }

    /// Applies an invalidation message from another instance.
    pub fn apply_invalidation(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut lines = text.lines().peekable();
        if let Some(from) = lines.peek().and_then(|l| l.strip_prefix('@')) {
            if from == self.instance {
                return;
            }
            lines.next();
        }
        self.metrics.invalidations_received_total.inc();
        // Lines that are no id (none a gatehouse writes) name nothing in L1.
        let ids: Vec<EntryId> = lines.filter_map(|l| l.parse().ok()).collect();
        self.invalidate_local(&ids);
    }

    /// The invalidation feed is down: L1 entries stop counting as fresh after the
    /// coherence grace.
    pub fn feed_lost(&self) {
        // +1 so that a loss in the first millisecond is not read as "live".
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = self
            .lost_at
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The feed is back: drop every L1 entry (invalidations may have been missed)
    /// and refuse inserts from fetches begun before now.
    pub fn feed_restored(&self) {
        let was_lost = self.lost_at.swap(0, Ordering::AcqRel) != 0;
        if was_lost {
            self.clear_l1();
        }
    }

    /// Drops every L1 entry.
    pub fn clear_l1(&self) {
        *self.flushed_at.lock().expect("flushed_at lock") = Instant::now();
        self.l1.clear();
        self.metrics.l1_flushes_total.inc();
    }
}
