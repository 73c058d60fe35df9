//! Purges: by id (with a URL's variants), by path (every host and variant, with a
//! path marker and a tombstone), by prefix and by tag, hard or soft; and the trim of
//! a URL's variants to `cache.max_variants`. L2 first (tombstones refuse racing
//! fills), this L1 at once, other instances' L1 through `coherence`.

use std::sync::Arc;
use std::time::Duration;

use super::entry::{self, Record};
use super::key::path_hash;
use super::Cache;
use crate::clock::now_ms;
use crate::config::CacheConfig;
use crate::store::{EntryId, Index, StoreError};

/// Tombstones outlive any fetch that could race the purge.
pub(super) fn tomb_ttl(cfg: &CacheConfig) -> Duration {
    (cfg.lock_age * 2).max(Duration::from_secs(60))
}

impl Cache {
    /// Keeps at most `cache.max_variants` variants of a URL: purges the others
    /// (never the one just stored).
    pub(super) async fn trim_variants(&self, variants: &Index, keep: &EntryId) {
        let Ok(members) = self.store.index_members(variants).await else {
            return;
        };
        let excess = members
            .len()
            .saturating_sub(self.cfg.load().max_variants as usize);
        let victims: Vec<EntryId> = members
            .into_iter()
            .filter(|m| m != keep)
            .take(excess)
            .collect();
        let _ = self.store.index_remove(variants, &victims).await;
        let _ = self.purge_ids(victims, false).await;
    }

    /// Purges ids (and the variants of any URL among them) everywhere. `soft`
    /// marks entries stale instead of removing them.
    pub async fn purge_ids(&self, ids: Vec<EntryId>, soft: bool) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut all = ids.clone();
        let mut lookup_error = None;
        for id in &ids {
            match self.store.index_members(&Index::Variants(id.clone())).await {
                Ok(v) => all.extend(v),
                Err(e) => lookup_error = Some(e),
            }
        }
        all.sort();
        all.dedup();
        // Locally first: even with the store down, this instance stops serving them.
        self.invalidate_local(&all);
        if let Some(e) = lookup_error {
            return Err(e);
        }
        let purged = if soft {
            self.soften(&all).await?
        } else {
            self.store
                .cache_purge(&all, now_ms(), tomb_ttl(&self.cfg.load()))
                .await?
        };
        self.publish_invalidation(&all).await;
        Ok(purged)
    }

    /// Marks entries stale in L2 (kept as long as before, so they can be
    /// revalidated or served under stale rules).
    async fn soften(&self, ids: &[EntryId]) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut n = 0;
        for id in ids {
            let Some(bytes) = self.store.cache_get(id).await? else {
                continue;
            };
            let Ok(Record::Entry(e)) = entry::decode_record(bytes) else {
                continue;
            };
            let mut e = Arc::unwrap_or_clone(e);
            let ttl = e.response().hard_ttl_at(now);
            if ttl == 0 {
                continue;
            }
            let r = e.response_mut();
            r.freshness = r.freshness.min(r.age_at(now));
            r.keep = r.keep.max(ttl);
            self.store
                .cache_put(id, entry::encode(&e), Duration::from_millis(ttl))
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Purges every cached entry of a path (with query) for every host and variant;
    /// a hard purge also tombstones the path, so fetches of it already on their way
    /// are not stored.
    pub async fn purge_path(&self, path: &str, soft: bool) -> Result<u64, StoreError> {
        let ph = path_hash(path);
        // The path marker drops the path's L1 entries (every host and variant) here
        // at once, store or no store, and on every instance the purge reaches.
        let marker = EntryId::path_marker(ph);
        let index = Index::Path(ph);
        let ids = match self.store.index_members(&index).await {
            Ok(ids) => ids,
            Err(e) => {
                self.invalidate_local(&[marker]);
                return Err(e);
            }
        };
        let mut all = ids.clone();
        all.push(marker);
        let n = self.purge_ids(all, soft).await?;
        if !soft {
            let _ = self.store.index_remove(&index, &ids).await;
        }
        Ok(n)
    }

    /// Purges every entry whose path starts with `prefix`.
    pub async fn purge_prefix(&self, prefix: &str, soft: bool) -> Result<u64, StoreError> {
        const BATCH: usize = 1000;
        let mut total = 0;
        let mut seen = std::collections::HashSet::new();
        loop {
            let paths = self
                .store
                .paths_with_prefix(prefix, BATCH + seen.len())
                .await?;
            let fresh: Vec<String> = paths
                .into_iter()
                .filter(|p| seen.insert(p.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for p in &fresh {
                total += self.purge_path(p, soft).await?;
            }
            if fresh.len() < BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// Purges every entry carrying a tag.
    pub async fn purge_tag(&self, tag: &str, soft: bool) -> Result<u64, StoreError> {
        let index = Index::Tag(tag.to_string());
        let ids = self.store.index_members(&index).await?;
        let n = self.purge_ids(ids.clone(), soft).await?;
        if !soft {
            let _ = self.store.index_remove(&index, &ids).await;
        }
        Ok(n)
    }
}
