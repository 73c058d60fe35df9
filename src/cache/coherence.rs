//! Coherence of every instance's L1 through the store subscription: invalidation
//! messages drop keys, wake messages release waiters of another instance's fetch,
//! and the loss of the subscription makes L1 untrusted until it returns — then the
//! whole L1 is dropped, since invalidations may have been missed meanwhile.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::Cache;
use crate::store::{Channel, Store, StoreEvent};

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
                }) => cache.wake(&String::from_utf8_lossy(&payload)),
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
