//! The store: the ONE place that talks to Redis or to the embedded memory store.
//!
//! Callers name logical keys (`cache:<hash>`, `cap:{ns/id}`); the store prepends
//! `store.key_prefix`, so every key gatehouse writes starts with it. Every operation
//! is typed (no raw command leaks out), timed into
//! `gatehouse_store_command_duration_seconds{command}`, bounded by
//! `store.command_timeout`, and fails with `StoreError` rather than guessing.
//!
//! The store also owns the one subscription per instance (`subscribe`): invalidations,
//! revocations and wake-ups arrive as `StoreEvent`s, and the loss and return of the
//! subscription are events too, so the L1 and the revocation view can distrust
//! themselves while it is down.

pub mod coord;
pub mod id;
pub mod memory;
pub mod redis;
pub mod scripts;
pub mod wake;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::config::{StoreBackend, StoreConfig};
use crate::metrics::Metrics;
pub use id::{EntryId, PathHash};

/// Why a store operation gave no answer. Never a wrong answer: callers turn this
/// into 503 `STORE_UNAVAILABLE` (coordination) or a degraded path (cache).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store command timed out")]
    Timeout,
    #[error("store answered unexpectedly: {0}")]
    Protocol(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The pub/sub channels gatehouse uses; each is `<key_prefix>:<name>` in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Cache invalidations: drop these keys from L1.
    Invalidate,
    /// Token revocations: update the in-process revocation view.
    Revoke,
    /// Wake-ups: a lease or lock named in the payload was released.
    Wake,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Invalidate, Channel::Revoke, Channel::Wake];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Invalidate => "inval",
            Channel::Revoke => "revoke",
            Channel::Wake => "wake",
        }
    }
}

/// What the subscription delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreEvent {
    Message {
        channel: Channel,
        payload: Bytes,
    },
    /// The subscription is down: messages may be missed from now on.
    SubscriptionLost,
    /// The subscription is live again (also sent once at first subscribe).
    SubscriptionRestored,
}

enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

/// The shared store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<StoreEvent>,
}

impl Store {
    /// Builds the store. The Redis backend connects in the background: gatehouse
    /// starts even when Redis is down, and connects when it comes back.
    pub fn new(cfg: &StoreConfig, metrics: Arc<Metrics>) -> Store {
        let (events, _) = broadcast::channel(4096);
        let backend = match cfg.backend {
            StoreBackend::Memory => {
                metrics.store_up.set(1);
                metrics.subscription_up.set(1);
                metrics
                    .store_memory_budget_bytes
                    .set(to_gauge(cfg.memory_max_bytes));
                Backend::Memory(memory::MemoryStore::new(
                    events.clone(),
                    cfg.memory_max_bytes,
                    metrics.store_evictions_total.clone(),
                ))
            }
            StoreBackend::Redis => {
                Backend::Redis(redis::RedisStore::new(cfg, metrics.clone(), events.clone()))
            }
        };
        Store {
            inner: Arc::new(Inner {
                backend,
                prefix: cfg.key_prefix.clone(),
                timeout: cfg.command_timeout,
                metrics,
                events,
            }),
        }
    }

    /// The full key for a logical key.
    pub fn key(&self, logical: &str) -> String {
        format!("{}:{logical}", self.inner.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn is_memory(&self) -> bool {
        matches!(self.inner.backend, Backend::Memory(_))
    }

    /// Tells `hook` the ids of cache records the memory store evicts for its byte
    /// budget (`store.memory_max_bytes`), as they go: the L1 must drop them, since
    /// the indexes purges use to find them may go next. The hook runs inside the
    /// store's critical section and must not call the store. Nothing is ever
    /// evicted by the redis backend (Redis's own `maxmemory` policy is the
    /// operator's).
    pub fn on_cache_evict(&self, hook: impl Fn(&[EntryId]) + Send + Sync + 'static) {
        if let Backend::Memory(m) = &self.inner.backend {
            let prefix = format!("{}:", self.inner.prefix);
            m.on_evict(Arc::new(move |keys: &[String]| {
                let ids: Vec<EntryId> = keys
                    .iter()
                    .filter_map(|k| EntryId::from_record_key(k.strip_prefix(&prefix)?))
                    .collect();
                hook(&ids);
            }));
        }
    }

    /// Whether the memory store holds the cache record `id` now; None with redis
    /// (where nothing is evicted behind the cache's back).
    pub fn holds_record(&self, id: &EntryId) -> Option<bool> {
        match &self.inner.backend {
            Backend::Memory(m) => Some(m.contains(&self.key(&id.record_key()))),
            Backend::Redis(_) => None,
        }
    }

    /// Updates the gauges read at scrape time.
    /// The cache bytes the memory store holds (None on Redis, which accounts its own).
    pub fn memory_bytes(&self) -> Option<u64> {
        match &self.inner.backend {
            Backend::Memory(m) => Some(m.accounted_bytes()),
            Backend::Redis(_) => None,
        }
    }

    pub fn refresh_gauges(&self) {
        if let Backend::Memory(m) = &self.inner.backend {
            self.inner
                .metrics
                .store_memory_bytes
                .set(to_gauge(m.accounted_bytes()));
        }
    }

    /// Whether the last health check reached the store.
    pub fn is_up(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.is_up(),
        }
    }

    /// Waits until the store answers or `timeout` passes; true when it is up.
    /// Start-up uses this so a reachable Redis is connected before the first
    /// request, while an unreachable one does not stop gatehouse from starting.
    pub async fn wait_until_up(&self, timeout: Duration) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.wait_until_up(timeout).await,
        }
    }

    /// Every event of the instance's one subscription, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    /// Whether the subscription is live now.
    pub fn subscription_live(&self) -> bool {
        match &self.inner.backend {
            Backend::Memory(_) => true,
            Backend::Redis(r) => r.subscription_live(),
        }
    }

    /// Runs one operation with the command timeout, timing and error counting.
    async fn run<T, F>(&self, command: &'static str, fut: F) -> StoreResult<T>
    where
        F: Future<Output = StoreResult<T>>,
    {
        let started = Instant::now();
        let out = match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        let m = &self.inner.metrics;
        m.store_command_duration_seconds
            .with_label_values(&[command])
            .observe(started.elapsed().as_secs_f64());
        if out.is_err() {
            m.store_errors_total.with_label_values(&[command]).inc();
        }
        out
    }

    /// Reads a cache record's bytes (L2) by cache id.
    pub async fn cache_get(&self, id: &EntryId) -> StoreResult<Option<Bytes>> {
        let key = self.key(&id.record_key());
        self.run("cache_get", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.get(&key)),
                Backend::Redis(r) => r.get(&key).await,
            }
        })
        .await
    }

    /// Writes a cache record unconditionally (index records, soft purges).
    pub async fn cache_put(&self, id: &EntryId, value: Bytes, ttl: Duration) -> StoreResult<()> {
        let key = self.key(&id.record_key());
        let ttl = ttl.max(Duration::from_millis(1));
        self.run("cache_put", async {
            match &self.inner.backend {
                Backend::Memory(m) => {
                    m.set(&key, value, ttl);
                    Ok(())
                }
                Backend::Redis(r) => r.set_px(&key, value, ttl).await,
            }
        })
        .await
    }

    /// Writes a cache entry unless its path was purged at or after `started_ms`
    /// (the moment the fetch that produced it began); true when stored.
    pub async fn cache_put_guarded(
        &self,
        id: &EntryId,
        value: Bytes,
        ttl: Duration,
        started_ms: u64,
    ) -> StoreResult<bool> {
        let key = self.key(&id.record_key());
        let tomb = self.key(&id.path().tomb_key());
        let ttl = ttl.max(Duration::from_millis(1));
        self.run("cache_put", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.put_unless_purged(&key, &tomb, value, ttl, started_ms)),
                Backend::Redis(r) => {
                    r.cache_put_guarded(&key, &tomb, value, ttl, started_ms)
                        .await
                }
            }
        })
        .await
    }

    /// Deletes cache records and leaves a tombstone on each one's path (purge time
    /// `now_ms`, kept for `tomb_ttl`) so fetches of the path begun before the purge
    /// cannot store afterwards. A path marker only tombstones the path.
    /// Answers how many records existed.
    pub async fn cache_purge(
        &self,
        ids: &[EntryId],
        now_ms: u64,
        tomb_ttl: Duration,
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let pairs: Vec<(String, String)> = ids
            .iter()
            .map(|id| (self.key(&id.record_key()), self.key(&id.path().tomb_key())))
            .collect();
        self.run("cache_purge", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.purge(&pairs, now_ms, tomb_ttl)),
                Backend::Redis(r) => r.cache_purge(&pairs, now_ms, tomb_ttl).await,
            }
        })
        .await
    }

    /// Adds members to a purge index (a set), keeping it alive at least `ttl`;
    /// answers the set's size.
    pub async fn index_add(
        &self,
        index: &Index,
        members: &[EntryId],
        ttl: Duration,
    ) -> StoreResult<u64> {
        let key = self.key(&index.logical());
        let members = texts(members);
        self.run("index_add", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.index_add(&key, &members, ttl)),
                Backend::Redis(r) => r.index_add(&key, &members, ttl).await,
            }
        })
        .await
    }

    /// Every member of a purge index (gatehouse writes only ids there: anything
    /// else is skipped).
    pub async fn index_members(&self, index: &Index) -> StoreResult<Vec<EntryId>> {
        let key = self.key(&index.logical());
        let members = self
            .run("index_members", async {
                match &self.inner.backend {
                    Backend::Memory(m) => Ok(m.set_members(&key)),
                    Backend::Redis(r) => r.smembers(&key).await,
                }
            })
            .await?;
        Ok(members.iter().filter_map(|m| m.parse().ok()).collect())
    }

    /// Removes members from a purge index.
    pub async fn index_remove(&self, index: &Index, members: &[EntryId]) -> StoreResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let key = self.key(&index.logical());
        let members = texts(members);
        self.run("index_remove", async {
            match &self.inner.backend {
                Backend::Memory(m) => {
                    m.set_remove(&key, &members);
                    Ok(())
                }
                Backend::Redis(r) => r.srem(&key, &members).await,
            }
        })
        .await
    }

    /// Records a cached path (with query) in the path list used by prefix purges,
    /// to be forgotten after `expires_ms` (Unix ms).
    pub async fn paths_add(&self, path: &str, expires_ms: u64) -> StoreResult<()> {
        let key = self.key(PATHS_KEY);
        self.run("paths_add", async {
            match &self.inner.backend {
                Backend::Memory(m) => {
                    m.sorted_add(&key, path, expires_ms);
                    Ok(())
                }
                Backend::Redis(r) => {
                    let script = &scripts::PATHS_ADD;
                    let exp = self.key(PATHS_EXPIRY_KEY);
                    let expires = expires_ms.to_string();
                    let _: i64 = r
                        .script(
                            script,
                            &[&key, &exp],
                            &[path.as_bytes(), expires.as_bytes()],
                        )
                        .await?;
                    Ok(())
                }
            }
        })
        .await
    }

    /// Cached paths starting with `prefix`, at most `limit` (a lexicographic range
    /// read: bounded by what matches, never a keyspace scan).
    pub async fn paths_with_prefix(&self, prefix: &str, limit: usize) -> StoreResult<Vec<String>> {
        let key = self.key(PATHS_KEY);
        self.run("paths_with_prefix", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.sorted_prefix(&key, prefix, limit)),
                Backend::Redis(r) => r.zrange_prefix(&key, prefix, limit).await,
            }
        })
        .await
    }

    /// One page of cached paths starting with `prefix`, in order, beginning after
    /// `after` (exclusive) when given: the cache listing's cursor.
    pub async fn paths_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let key = self.key(PATHS_KEY);
        self.run("paths_page", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.sorted_prefix_after(&key, prefix, after, limit)),
                Backend::Redis(r) => r.zrange_prefix_after(&key, prefix, after, limit).await,
            }
        })
        .await
    }

    /// Forgets paths whose entries have all expired; answers how many.
    pub async fn paths_trim(&self, now_ms: u64) -> StoreResult<u64> {
        let key = self.key(PATHS_KEY);
        self.run("paths_trim", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.sorted_trim(&key, now_ms)),
                Backend::Redis(r) => {
                    let script = &scripts::PATHS_TRIM;
                    const BATCH: i64 = 1000;
                    let exp = self.key(PATHS_EXPIRY_KEY);
                    let (now, batch) = (now_ms.to_string(), BATCH.to_string());
                    let mut total = 0;
                    loop {
                        let n: i64 = r
                            .script(script, &[&key, &exp], &[now.as_bytes(), batch.as_bytes()])
                            .await?;
                        total += n as u64;
                        if n < BATCH {
                            return Ok(total);
                        }
                    }
                }
            }
        })
        .await
    }

    /// Takes a fetch lease on a cache id (set only when absent, expiring after
    /// `ttl`); true when this caller got it. Fleet-wide fetch coalescing.
    pub async fn lease_acquire(
        &self,
        id: &EntryId,
        token: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let key = self.key(&id.lease_key());
        self.run("lease_acquire", async {
            match &self.inner.backend {
                Backend::Memory(m) => {
                    Ok(m.set_nx(&key, Bytes::copy_from_slice(token.as_bytes()), ttl))
                }
                Backend::Redis(r) => r.set_nx_px(&key, token, ttl).await,
            }
        })
        .await
    }

    /// Releases a lease only if `token` still holds it; true when released.
    pub async fn lease_release(&self, id: &EntryId, token: &str) -> StoreResult<bool> {
        let key = self.key(&id.lease_key());
        self.run("lease_release", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.del_if_eq(&key, token.as_bytes())),
                Backend::Redis(r) => r.del_if_eq(&key, token).await,
            }
        })
        .await
    }

    /// Publishes to every instance's subscription (this one included).
    pub async fn publish(&self, channel: Channel, payload: Bytes) -> StoreResult<()> {
        self.run("publish", async {
            match &self.inner.backend {
                Backend::Memory(_) => {
                    let _ = self
                        .inner
                        .events
                        .send(StoreEvent::Message { channel, payload });
                    Ok(())
                }
                Backend::Redis(r) => r.publish(channel, payload).await,
            }
        })
        .await
    }

    /// Stops background tasks (connection monitor, subscription).
    pub fn shutdown(&self) {
        match &self.inner.backend {
            Backend::Memory(m) => m.shutdown(),
            Backend::Redis(r) => r.shutdown(),
        }
    }

    /// Records a revocation of `name` at `instant_ms` (a token's expiry, or a
    /// subject's `issuedBefore`), kept for `keep`. Keeps the latest: the stored
    /// instant only moves forward and the record's lifetime only grows. Answers the
    /// instant stored after the call. One atomic operation (Lua on Redis).
    pub async fn revocation_put(
        &self,
        kind: RevocationKind,
        name: &str,
        instant_ms: i64,
        keep: Duration,
    ) -> StoreResult<i64> {
        let key = self.key(&kind.logical_key(name));
        let keep_ms = keep.as_millis().clamp(1, i64::MAX as u128) as i64;
        self.run("revocation_put", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(m.with(|d| {
                    let current = match d.get(&key).map(|e| &e.value) {
                        Some(memory::Value::Int(i)) => Some(*i),
                        _ => None,
                    };
                    let left = d.ttl(&key).map_or(0, |t| t.as_millis() as i64);
                    let stored = current.map_or(instant_ms, |c| c.max(instant_ms));
                    let keep = Duration::from_millis(keep_ms.max(left) as u64);
                    d.insert(&key, memory::Value::Int(stored), Some(keep));
                    stored
                })),
                Backend::Redis(r) => {
                    let instant = instant_ms.to_string();
                    let keep = keep_ms.to_string();
                    r.script(
                        &scripts::REVOCATION_PUT,
                        &[&key],
                        &[instant.as_bytes(), keep.as_bytes()],
                    )
                    .await
                }
            }
        })
        .await
    }

    /// The instant recorded by `revocation_put` for `name`, or `None` when there is
    /// no live record.
    pub async fn revocation_get(
        &self,
        kind: RevocationKind,
        name: &str,
    ) -> StoreResult<Option<i64>> {
        let key = self.key(&kind.logical_key(name));
        self.run("revocation_get", async {
            let raw = match &self.inner.backend {
                Backend::Memory(m) => m.get(&key),
                Backend::Redis(r) => r.get(&key).await?,
            };
            raw.map(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| StoreError::Protocol("revocation record is not a number".into()))
            })
            .transpose()
        })
        .await
    }
}

/// What a revocation record names; each kind has its own keyspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// A token's `jti`; the record holds the token's expiry.
    Jti,
    /// The SHA-256 hex of a token's signing input (a token without `jti`).
    SigningInput,
    /// A subject (`sub`); the record holds the `issuedBefore` instant.
    Subject,
}

impl RevocationKind {
    /// `revoked:<kind>:<sha256 hex of the name>`: names come from tokens and callers,
    /// so they are hashed to bound the key's length and keep it printable.
    fn logical_key(self, name: &str) -> String {
        use sha2::{Digest, Sha256};
        let kind = match self {
            RevocationKind::Jti => "jti",
            RevocationKind::SigningInput => "sig",
            RevocationKind::Subject => "sub",
        };
        format!(
            "revoked:{kind}:{}",
            hex::encode(Sha256::digest(name.as_bytes()))
        )
    }
}

/// The text form of ids, as index sets hold them.
fn texts(ids: &[EntryId]) -> Vec<String> {
    ids.iter().map(EntryId::to_string).collect()
}

fn to_gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The cached paths, for prefix purges. On Redis every member has score 0 (a
/// lexicographic range is defined only over one score) and the expiries are kept in
/// `PATHS_EXPIRY_KEY`; both share a Cluster slot (`{paths}`) for the scripts.
const PATHS_KEY: &str = "{paths}";
const PATHS_EXPIRY_KEY: &str = "{paths}:exp";

/// A purge index: which cache ids to purge for a tag, a path, or a URL's variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Index {
    Tag(String),
    /// By the hash of the normalized path and query (every host).
    Path(PathHash),
    /// The variants of one URL (same slot as its record).
    Variants(EntryId),
}

impl Index {
    fn logical(&self) -> String {
        match self {
            Index::Tag(t) => format!("tag:{{{t}}}"),
            Index::Path(h) => h.index_key(),
            Index::Variants(id) => id.variants_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_keys_are_pinned() {
        use super::{EntryId, Index};
        let id: EntryId = "0123456789abcdef:00112233445566778899aabbccddeeff"
            .parse()
            .unwrap();
        assert_eq!(
            Index::Tag("participant:1".into()).logical(),
            "tag:{participant:1}"
        );
        assert_eq!(Index::Path(id.path()).logical(), "path:{0123456789abcdef}");
        assert_eq!(
            Index::Variants(id.clone()).logical(),
            "cache:{0123456789abcdef}:00112233445566778899aabbccddeeff:variants"
        );
        assert_eq!(
            EntryId::from_record_key(&Index::Variants(id).logical()),
            None
        );
    }
}
