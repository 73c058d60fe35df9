//! L1: the in-process moka tier, weighted by bytes (`cache.max_bytes`), each entry
//! expiring when nothing can use it any more (freshness plus stale windows).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache as Moka;

use super::entry::Record;
use crate::clock::now_ms;
use crate::store::{EntryId, PathHash};

/// An L1 slot: the record and when it was put here.
#[derive(Clone, Debug)]
pub struct Slot {
    pub record: Arc<Record>,
    pub inserted: Instant,
}

struct Expiry;

impl moka::Expiry<EntryId, Slot> for Expiry {
    fn expire_after_create(&self, _key: &EntryId, slot: &Slot, _now: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            slot.record.hard_ttl_at(now_ms()).max(1),
        ))
    }

    fn expire_after_update(
        &self,
        key: &EntryId,
        slot: &Slot,
        now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, slot, now)
    }
}

#[derive(Clone)]
pub struct L1 {
    cache: Moka<EntryId, Slot>,
}

impl L1 {
    pub fn new(max_bytes: u64) -> L1 {
        let cache = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &EntryId, s: &Slot| {
                // The key weighs what its text would.
                s.record.weight().saturating_add(k.text_len() as u32)
            })
            .expire_after(Expiry)
            .support_invalidation_closures()
            .build();
        L1 { cache }
    }

    pub fn get(&self, key: &EntryId) -> Option<Slot> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: EntryId, record: Arc<Record>) {
        self.cache.insert(
            key,
            Slot {
                record,
                inserted: Instant::now(),
            },
        );
    }

    pub fn remove(&self, key: &EntryId) {
        self.cache.invalidate(key);
    }

    /// Drops every entry of a path (every id with its path hash); moka applies it to
    /// the entries present now, lazily.
    pub fn invalidate_path(&self, path: PathHash) {
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |k: &EntryId, _| k.path() == path)
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
