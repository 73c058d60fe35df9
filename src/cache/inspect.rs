//! Looking inside the cache (the api listener's `/v1/cache/entries` and
//! `/v1/cache/stats`): the entries of cached paths under a prefix, paged by path, each
//! with the tiers that hold it; one entry with its stored headers; L1 and L2 figures.
//! Reads go through the store's path list and purge indexes (bounded by what
//! matches, never a keyspace scan) and never change what is cached.

use std::sync::Arc;

use super::entry::{self, Entry, Record};
use super::key::path_hash;
use super::{Cache, Tier};
use crate::store::{EntryId, Index, StoreError};

/// One cached response, as the listing shows it.
#[derive(Clone, Debug)]
pub struct EntryView {
    pub id: EntryId,
    /// The canonical path and query it was cached for.
    pub path: Option<String>,
    /// The tiers that hold it now.
    pub tiers: Vec<Tier>,
    pub entry: Arc<Entry>,
}

/// One page of the listing: entries of the paths after the cursor, and the cursor of
/// the next page (the last path of this one) when there may be more.
#[derive(Debug, Default)]
pub struct Page {
    pub entries: Vec<EntryView>,
    pub next: Option<String>,
}

/// Lookups per tier, as counted in `gatehouse_cache_lookups_total`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TierCounts {
    pub hits: u64,
    pub misses: u64,
}

impl TierCounts {
    /// Hits over hits and misses (None before the first lookup).
    pub fn hit_ratio(&self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

impl Cache {
    /// Entries of the cached paths starting with `prefix` (canonical), `paths` paths
    /// at most, beginning after the path `after`.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        paths: usize,
    ) -> Result<Page, StoreError> {
        let found = self.store.paths_page(prefix, after, paths).await?;
        let mut page = Page {
            next: (found.len() == paths)
                .then(|| found.last().cloned())
                .flatten(),
            ..Page::default()
        };
        for path in found {
            let ids = self
                .store
                .index_members(&Index::Path(path_hash(&path)))
                .await?;
            for id in ids {
                self.collect(&id, Some(&path), &mut page.entries).await?;
            }
        }
        Ok(page)
    }

    /// One entry by id (an id from the listing), if it is cached; text that is no
    /// record's id names none.
    pub async fn inspect(&self, id: &str) -> Result<Option<EntryView>, StoreError> {
        let Some(id) = id.parse::<EntryId>().ok().filter(|i| !i.is_path_marker()) else {
            return Ok(None);
        };
        let Some((record, tiers)) = self.peek(&id).await? else {
            return Ok(None);
        };
        Ok(match &*record {
            Record::Entry(e) => Some(EntryView {
                id,
                path: None,
                tiers,
                entry: e.clone(),
            }),
            Record::Vary(_) => None,
        })
    }

    /// Hits and misses counted per tier since start.
    pub fn counts(&self, tier: Tier) -> TierCounts {
        let get = |r: &str| self.lookups.get(&(tier, r)).map_or(0, |c| c.get());
        TierCounts {
            hits: get("hit") + get("negative_hit"),
            misses: get("miss") + get("vary_miss"),
        }
    }

    /// Entries and weighted bytes held by L1.
    pub fn l1_size(&self) -> (u64, u64) {
        (self.l1.entry_count(), self.l1.weighted_size())
    }

    /// The entry under `id`, or each variant when `id` holds a URL's Vary index.
    async fn collect(
        &self,
        id: &EntryId,
        path: Option<&str>,
        out: &mut Vec<EntryView>,
    ) -> Result<(), StoreError> {
        let Some((record, tiers)) = self.peek(id).await? else {
            return Ok(());
        };
        match &*record {
            Record::Entry(e) => out.push(EntryView {
                id: id.clone(),
                path: path.map(str::to_string),
                tiers,
                entry: e.clone(),
            }),
            Record::Vary(_) => {
                let variants = self
                    .store
                    .index_members(&Index::Variants(id.clone()))
                    .await?;
                for vid in variants {
                    if let Some((r, tiers)) = self.peek(&vid).await? {
                        if let Record::Entry(e) = &*r {
                            out.push(EntryView {
                                id: vid,
                                path: path.map(str::to_string),
                                tiers,
                                entry: e.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A record and the tiers holding it, without filling L1 or counting a lookup.
    async fn peek(&self, id: &EntryId) -> Result<Option<(Arc<Record>, Vec<Tier>)>, StoreError> {
        let now = crate::clock::now_ms();
        let in_l1 = self
            .l1
            .get(id)
            .map(|s| s.record)
            .filter(|r| r.hard_ttl_at(now) > 0);
        let in_l2 = match self.store.cache_get(id).await? {
            Some(bytes) => entry::decode_record(bytes)
                .ok()
                .filter(|r| r.hard_ttl_at(now) > 0)
                .map(Arc::new),
            None => None,
        };
        let mut tiers = Vec::new();
        if in_l1.is_some() {
            tiers.push(Tier::L1);
        }
        if in_l2.is_some() {
            tiers.push(Tier::L2);
        }
        Ok(in_l2.or(in_l1).map(|r| (r, tiers)))
    }
}
