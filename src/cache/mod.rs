//! The tiered cache: L1 (moka, in-process) over L2 (the store). Knows `Entry`,
//! `CacheKey` and request headers, never hyper requests or auth. `Cache` is its one
//! public face; its methods are grouped by job, one module each:
//!
//! - here: `lookup` reads L1, then L2 (an L2 hit fills L1 with the remaining
//!   lifetime), and follows a URL's `Vary` index to the variant the request selects;
//!   `store` writes the entry (and its Vary index) to both tiers, and indexes it for
//!   purges by tag and by path. An L2 write is refused when the entry was purged after
//!   its fetch began (a tombstone), so a fill racing a purge never re-installs the old
//!   answer; the same rule guards L1 against invalidations received meanwhile.
//! - [`key`]: how a request becomes a cache id, and Vary variant selection.
//! - [`purge`]: purges by id, URL, prefix and tag (with tombstones), hard or soft.
//! - [`coherence`]: every instance's L1 kept coherent through the store subscription.
//! - [`coalesce`]: one origin fetch per key, on one instance and across the fleet.
//! - [`entry`] (what is cached and its L2 encoding), [`l1`] (the moka tier),
//!   [`inspect`] (the api's look inside).
//!
//! Store errors never fail a lookup: they count as `{tier="l2",result="error"}` and
//! the request goes on to the origin.

pub mod coalesce;
pub mod coherence;
pub mod entry;
pub mod inspect;
pub mod key;
pub mod l1;
pub mod purge;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::CacheConfig;
use crate::metrics::{Metrics, LOOKUP_RESULTS};
use crate::store::{Index, Store, StoreError};
use coalesce::Coalescer;
use entry::{Entry, Record, VaryIndex};
use key::variant_id;
use l1::L1;
use purge::tomb_ttl;

pub use crate::store::{EntryId, PathHash};
pub use key::{
    accepts_encoding, normalize_header, path_hash, select_variant, selects, variant_values,
    vary_headers, weighted_list, weighted_members, CacheKey,
};

/// Which tier answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// The result of a lookup.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// An entry for the request (fresh or not — the caller judges). `trusted` is
    /// false for an L1 entry while the invalidation feed has been lost longer than
    /// `cache.coherence_grace`: it may then be served only under stale rules.
    Hit {
        entry: Arc<Entry>,
        tier: Tier,
        trusted: bool,
    },
    /// Nothing stored for this request (a URL cached only for other variants
    /// counts as `vary_miss` in the lookup metric).
    Miss,
}

/// When a fetch began, for the purge-race guards of both tiers.
#[derive(Clone, Copy, Debug)]
pub struct Began {
    pub ms: u64,
    pub at: Instant,
}

impl Began {
    pub fn now() -> Began {
        Began {
            ms: now_ms(),
            at: Instant::now(),
        }
    }
}

pub struct Cache {
    l1: L1,
    store: Store,
    metrics: Arc<Metrics>,
    pub coalescer: Arc<Coalescer>,
    /// Recently invalidated ids and when (guards L1 against racing fills); a path
    /// marker stands for its whole path.
    recent: moka::sync::Cache<EntryId, Instant>,
    /// L1 inserts of fetches begun before this instant are refused.
    flushed_at: Mutex<Instant>,
    /// Since when the invalidation feed is down, as ms after `epoch` (0: live).
    /// An atomic, not a lock: every lookup reads it.
    lost_at: AtomicU64,
    epoch: Instant,
    /// `cache_lookups_total` series resolved once (the hot path counts every lookup).
    lookups: HashMap<(Tier, &'static str), prometheus::IntCounter>,
    /// URLs whose last answer was uncacheable: they skip coalescing for a while.
    hit_for_pass: moka::sync::Cache<EntryId, ()>,
    /// Waiters for another instance's fetch, woken by `Channel::Wake`.
    wakes: Mutex<HashMap<EntryId, Arc<Notify>>>,
    /// Names this instance in its invalidation messages.
    instance: String,
    /// `[cache]` as last (re)loaded; `max_bytes` and `hit_for_pass_ttl` are fixed at
    /// start (they size structures built once).
    cfg: arc_swap::ArcSwap<CacheConfig>,
}

impl Cache {
    pub fn new(cfg: &CacheConfig, store: Store, metrics: Arc<Metrics>) -> Cache {
        let lookups = [Tier::L1, Tier::L2]
            .into_iter()
            .flat_map(|t| LOOKUP_RESULTS.iter().map(move |r| (t, *r)))
            .map(|(t, r)| {
                let c = metrics
                    .cache_lookups_total
                    .with_label_values(&[t.label(), r]);
                ((t, r), c)
            })
            .collect();
        let l1 = L1::new(cfg.max_bytes);
        {
            // A record the memory store evicts leaves L1 at once: the indexes a purge
            // would find it by may be evicted next, and L1 must not outlive them.
            let l1 = l1.clone();
            store.on_cache_evict(move |ids| {
                for id in ids {
                    l1.remove(id);
                }
            });
        }
        Cache {
            l1,
            store,
            metrics,
            coalescer: Arc::new(Coalescer::default()),
            recent: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(tomb_ttl(cfg))
                .build(),
            flushed_at: Mutex::new(
                Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now),
            ),
            lost_at: AtomicU64::new(0),
            epoch: Instant::now(),
            lookups,
            hit_for_pass: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.hit_for_pass_ttl.max(Duration::from_millis(1)))
                .build(),
            wakes: Mutex::new(HashMap::new()),
            instance: hex::encode(rand::random::<[u8; 8]>()),
            cfg: arc_swap::ArcSwap::from_pointee(cfg.clone()),
        }
    }

    pub(super) fn count(&self, tier: Tier, result: &'static str) {
        match self.lookups.get(&(tier, result)) {
            Some(c) => c.inc(),
            None => self
                .metrics
                .cache_lookups_total
                .with_label_values(&[tier.label(), result])
                .inc(),
        }
    }

    /// One record by id: L1, then L2 (filling L1). `None` on a miss in both.
    async fn get_record(
        &self,
        id: &EntryId,
        trusted: bool,
        counted: bool,
    ) -> Result<Option<(Arc<Record>, Tier)>, StoreError> {
        let count = |tier, result| {
            if counted {
                self.count(tier, result)
            }
        };
        if trusted {
            if let Some(slot) = self.l1.get(id) {
                return Ok(Some((slot.record, Tier::L1)));
            }
            count(Tier::L1, "miss");
        }
        let began = Instant::now();
        match self.store.cache_get(id).await? {
            None => {
                count(Tier::L2, "miss");
                Ok(None)
            }
            Some(bytes) => match entry::decode_record(bytes) {
                Ok(r) if r.hard_ttl_at(now_ms()) > 0 => {
                    let r = Arc::new(r);
                    self.l1_insert(id, r.clone(), began);
                    Ok(Some((r, Tier::L2)))
                }
                Ok(_) => {
                    count(Tier::L2, "miss");
                    Ok(None)
                }
                Err(err) => {
                    tracing::debug!(?err, "L2 record unreadable; treated as a miss");
                    count(Tier::L2, "miss");
                    Ok(None)
                }
            },
        }
    }

    /// L1, then L2, following the URL's Vary index to the request's variant; counted
    /// in `gatehouse_cache_lookups_total`.
    pub async fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> Lookup {
        self.lookup_as(key, req, true).await
    }

    /// `lookup` again for a request already counted (a leader's or a waiter's
    /// re-check): the lookup metric counts each request's lookup once.
    pub async fn recheck(&self, key: &CacheKey, req: &HeaderMap) -> Lookup {
        self.lookup_as(key, req, false).await
    }

    async fn lookup_as(&self, key: &CacheKey, req: &HeaderMap, counted: bool) -> Lookup {
        let count = |tier, result| {
            if counted {
                self.count(tier, result)
            }
        };
        let trusted = self.trusted();
        let first = match self.get_record(&key.id, trusted, counted).await {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!(error = %err, "L2 lookup failed");
                count(Tier::L2, "error");
                // The store is the truth but cannot be asked: an L1 entry may still
                // serve under stale rules (stale-if-error).
                return match self.l1.get(&key.id).map(|s| s.record) {
                    Some(r) => match &*r {
                        Record::Entry(e) if accepts_encoding(e, req) => Lookup::Hit {
                            entry: e.clone(),
                            tier: Tier::L1,
                            trusted: false,
                        },
                        _ => Lookup::Miss,
                    },
                    None => Lookup::Miss,
                };
            }
        };
        let (record, tier) = match first {
            Some(x) => x,
            None => return Lookup::Miss,
        };
        let (record, tier) = match &*record {
            Record::Entry(_) => (record, tier),
            Record::Vary(index) => {
                let vid = variant_id(key, &variant_values(&index.headers, req));
                match self.get_record(&vid, trusted, counted).await {
                    Ok(Some((r, t))) if matches!(&*r, Record::Entry(_)) => (r, t),
                    _ => {
                        count(tier, "vary_miss");
                        return Lookup::Miss;
                    }
                }
            }
        };
        let Record::Entry(e) = &*record else {
            return Lookup::Miss;
        };
        if !accepts_encoding(e, req) {
            // A coding this client did not ask for (an origin that answered a coding
            // outside the request's Accept-Encoding): not its answer.
            count(tier, "vary_miss");
            return Lookup::Miss;
        }
        count(
            tier,
            if e.is_negative() {
                "negative_hit"
            } else {
                "hit"
            },
        );
        Lookup::Hit {
            entry: e.clone(),
            tier,
            trusted: trusted || tier == Tier::L2,
        }
    }

    /// Inserts into L1 unless an invalidation or flush came after `began`.
    pub(super) fn l1_insert(&self, id: &EntryId, record: Arc<Record>, began: Instant) {
        if *self.flushed_at.lock().expect("flushed_at lock") >= began {
            return;
        }
        if self.recent.get(id).is_some_and(|t| t >= began) {
            return;
        }
        if self.recent.get(&id.marker()).is_some_and(|t| t >= began) {
            return;
        }
        self.l1.insert(id.clone(), record);
        if self.store.holds_record(id) == Some(false) {
            // Evicted from the memory store since it was read or written (the
            // eviction's own L1 removal came before this insert).
            self.l1.remove(id);
        }
    }

    /// Stores an entry for a request (its variant when the response varies), in L1
    /// and L2, and indexes it for purges. Returns false when a purge that came after
    /// the fetch began refused it.
    pub async fn store(
        &self,
        key: &CacheKey,
        req: &HeaderMap,
        mut entry: Entry,
        began: Began,
    ) -> bool {
        let now = now_ms();
        let ttl = entry.response().hard_ttl_at(now);
        if ttl == 0 {
            return false;
        }
        let vary = vary_headers(&entry);
        select_variant(&mut entry, req);
        let target: EntryId = if vary.is_empty() {
            key.id.clone()
        } else {
            variant_id(key, &entry.response().variant)
        };
        let tags = entry.response().tags.clone();
        let bytes = entry::encode(&entry);
        // L1 keeps the decoded form of the encoding: its header values and body are
        // slices of that one exact allocation. The origin's answer would pin hyper's
        // read buffer (several KiB) through every header value it parsed.
        let entry = entry::decode(bytes.clone()).unwrap_or(entry);
        let entry = Arc::new(Record::Entry(Arc::new(entry)));
        let ttl_d = Duration::from_millis(ttl);
        match self
            .store
            .cache_put_guarded(&target, bytes, ttl_d, began.ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Purged after this fetch began: its answer is older than the purge.
                return false;
            }
            Err(err) => {
                tracing::debug!(error = %err, "L2 write failed; the entry lives in L1 only");
            }
        }
        self.l1_insert(&target, entry, began.at);
        if !vary.is_empty() {
            // The index lives as long as its longest-lived variant.
            let index_ttl = match self.l1.get(&key.id) {
                Some(slot) => slot.record.hard_ttl_at(now).max(ttl),
                None => ttl,
            };
            let index = Record::Vary(VaryIndex {
                headers: vary,
                expires_at: now + index_ttl,
            });
            let _ = self
                .store
                .cache_put(
                    &key.id,
                    entry::encode_record(&index),
                    Duration::from_millis(index_ttl),
                )
                .await;
            self.l1_insert(&key.id, Arc::new(index), began.at);
            let variants = Index::Variants(key.id.clone());
            if let Ok(n) = self
                .store
                .index_add(
                    &variants,
                    std::slice::from_ref(&target),
                    Duration::from_millis(index_ttl),
                )
                .await
            {
                if n > self.cfg.load().max_variants {
                    self.trim_variants(&variants, &target).await;
                }
            }
        }
        for tag in &tags {
            let _ = self
                .store
                .index_add(
                    &Index::Tag(tag.clone()),
                    std::slice::from_ref(&target),
                    ttl_d,
                )
                .await;
        }
        let path_index = Index::Path(key.path_hash());
        let _ = self
            .store
            .index_add(&path_index, std::slice::from_ref(&key.id), ttl_d)
            .await;
        let _ = self.store.paths_add(&key.path, now + ttl).await;
        if !self.store.is_memory() {
            // A refresh here makes every other instance's L1 copy old: they drop it
            // and read the new one from L2 when next asked (no read storm).
            let mut ids = vec![target.clone()];
            if target != key.id {
                ids.push(key.id.clone());
            }
            self.publish_invalidation(&ids).await;
        }
        true
    }

    /// Applies a reloaded `[cache]` (all but `max_bytes` and `hit_for_pass_ttl`).
    pub fn reconfigure(&self, cfg: &CacheConfig) {
        self.cfg.store(Arc::new(cfg.clone()));
    }

    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    pub fn refresh_gauges(&self, m: &Metrics) {
        m.l1_entries.set(self.l1.entry_count() as i64);
        m.l1_bytes.set(self.l1.weighted_size() as i64);
    }
}
