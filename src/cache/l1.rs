//! L1: the in-process moka tier, weighted by bytes (`cache.max_bytes`), each entry
//! expiring when nothing can use it any more (freshness plus stale windows).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use super::entry::Record;
use crate::clock::now_ms;

/// An L1 slot: the record and when it was put here.
#[derive(Clone, Debug)]
pub struct Slot {
    pub record: Arc<Record>,
    pub inserted: Instant,
}

struct Expiry;

impl moka::Expiry<Arc<str>, Slot> for Expiry {
    fn expire_after_create(&self, _key: &Arc<str>, slot: &Slot, _now: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            slot.record.hard_ttl_at(now_ms()).max(1),
        ))
    }

    fn expire_after_update(
        &self,
        key: &Arc<str>,
        slot: &Slot,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, slot, now)
    }
}

#[derive(Clone)]
pub struct L1 {
    cache: Moka<Arc<str>, Slot>,
}

impl L1 {
    pub fn new(max_bytes: u64) -> L1 {
        let cache = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, s: &Slot| s.record.weight().saturating_add(k.len() as u32))
            .expire_after(Expiry)
            .support_invalidation_closures()
            .build();
        L1 { cache }
    }

    pub fn get(&self, key: &str) -> Option<Slot> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: Arc<str>, record: Arc<Record>) {
        self.cache.insert(
            key,
            Slot {
                record,
                inserted: Instant::now(),
            },
        );
    }

    pub fn remove(&self, key: &str) {
        self.cache.invalidate(key);
    }

    /// Drops every entry of a path (ids are `<path hash>:<entry hash>`); moka
    /// applies it to the entries present now, lazily.
    pub fn invalidate_path(&self, path_hash: &str) {
        let prefix = format!("{path_hash}:");
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |k: &Arc<str>, _| k.starts_with(&prefix))
        {
            tracing::warn!(error = %e, "path invalidation not registered");
        }
    }

    /// Drops every entry (moka drops entries inserted before this call).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}
