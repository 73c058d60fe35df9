//! The tiered cache: L1 (moka, in-process) over L2 (the store). Knows `Entry` and
//! `CacheKey`, never hyper requests or auth.
//!
//! `lookup` reads L1, then L2 (an L2 hit fills L1 with the remaining lifetime);
//! `store` writes both; `invalidate` removes from both. Store errors never fail a
//! lookup: they count as `{tier="l2",result="error"}` and the request goes on to the
//! origin.

pub mod coalesce;
pub mod entry;
pub mod l1;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::store::Store;
use coalesce::Coalescer;
use entry::{now_ms, Entry};
use l1::L1;

/// The identity of a cached resource: method class, authority, normalized path and
/// query, and the request headers the route varies on (plus the user for per-user
/// routes). `primary` is the L1 key; L2 uses its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub primary: Arc<str>,
    /// The normalized path (no query), for purges by path and prefix.
    pub path: String,
}

impl CacheKey {
    /// The logical L2 key (the store adds its prefix).
    pub fn l2_key(&self) -> String {
        let digest = Sha256::digest(self.primary.as_bytes());
        format!("cache:{}", hex::encode(&digest[..16]))
    }
}

/// Which tier answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
        }
    }
}

/// The result of a lookup: an entry (fresh or not — the caller judges) or a miss.
#[derive(Clone, Debug)]
pub enum Lookup {
    Hit { entry: Arc<Entry>, tier: Tier },
    Miss,
}

pub struct Cache {
    l1: L1,
    store: Store,
    metrics: Arc<Metrics>,
    pub coalescer: Arc<Coalescer>,
}

impl Cache {
    pub fn new(cfg: &CacheConfig, store: Store, metrics: Arc<Metrics>) -> Cache {
        Cache {
            l1: L1::new(cfg.max_bytes),
            store,
            metrics,
            coalescer: Arc::new(Coalescer::default()),
        }
    }

    fn count(&self, tier: Tier, result: &str) {
        self.metrics
            .cache_lookups_total
            .with_label_values(&[tier.label(), result])
            .inc();
    }

    /// L1, then L2. An L2 hit is copied into L1 for its remaining lifetime.
    pub async fn lookup(&self, key: &CacheKey) -> Lookup {
        if let Some(slot) = self.l1.get(&key.primary) {
            let result = if slot.entry.is_negative() {
                "negative_hit"
            } else {
                "hit"
            };
            self.count(Tier::L1, result);
            return Lookup::Hit {
                entry: slot.entry,
                tier: Tier::L1,
            };
        }
        self.count(Tier::L1, "miss");
        match self.store.cache_get(&key.l2_key()).await {
            Ok(Some(bytes)) => match entry::decode(bytes) {
                Ok(e) if e.response().hard_ttl_at(now_ms()) > 0 => {
                    let e = Arc::new(e);
                    self.count(
                        Tier::L2,
                        if e.is_negative() {
                            "negative_hit"
                        } else {
                            "hit"
                        },
                    );
                    self.l1.insert(key.primary.clone(), e.clone());
                    Lookup::Hit {
                        entry: e,
                        tier: Tier::L2,
                    }
                }
                Ok(_) => {
                    self.count(Tier::L2, "miss");
                    Lookup::Miss
                }
                Err(err) => {
                    tracing::debug!(?err, "L2 entry unreadable; treated as a miss");
                    self.count(Tier::L2, "miss");
                    Lookup::Miss
                }
            },
            Ok(None) => {
                self.count(Tier::L2, "miss");
                Lookup::Miss
            }
            Err(err) => {
                tracing::debug!(error = %err, "L2 lookup failed; going to the origin");
                self.count(Tier::L2, "error");
                Lookup::Miss
            }
        }
    }

    /// Only L1 (for callers that must not wait on the store).
    pub fn lookup_l1(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.l1.get(&key.primary).map(|s| s.entry)
    }

    /// Writes L1 now and L2 before returning; an L2 failure is logged, not raised.
    pub async fn store(&self, key: &CacheKey, entry: Arc<Entry>) {
        let ttl = entry.response().hard_ttl_at(now_ms());
        if ttl == 0 {
            return;
        }
        self.l1.insert(key.primary.clone(), entry.clone());
        let bytes = entry::encode(&entry);
        if let Err(err) = self
            .store
            .cache_put(&key.l2_key(), bytes, std::time::Duration::from_millis(ttl))
            .await
        {
            tracing::debug!(error = %err, "L2 write failed; the entry lives in L1 only");
        }
    }

    /// Removes keys from both tiers.
    pub async fn invalidate(&self, keys: &[CacheKey]) -> u64 {
        for k in keys {
            self.l1.remove(&k.primary);
        }
        let l2: Vec<String> = keys.iter().map(|k| k.l2_key()).collect();
        self.store.cache_delete(&l2).await.unwrap_or(0)
    }

    /// Drops every L1 entry (after a lost invalidation feed).
    pub fn clear_l1(&self) {
        self.l1.clear();
        self.metrics.l1_flushes_total.inc();
    }

    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    pub fn refresh_gauges(&self, m: &Metrics) {
        m.l1_entries.set(self.l1.entry_count() as i64);
        m.l1_bytes.set(self.l1.weighted_size() as i64);
    }

    /// Background tasks owned by the cache (none yet beyond moka's own).
    pub fn spawn_background(&self, _store: &Store) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }
}
