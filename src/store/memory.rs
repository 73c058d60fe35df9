//! The embedded memory backend: one instance, nothing else installed. Every operation
//! runs under one mutex, so each is as atomic as its Lua twin on Redis; expiry is
//! checked on every read and swept in the background. Pub/sub is a local broadcast
//! whose subscription is always live.
//!
//! # The cache's byte budget
//!
//! What the cache writes (records, tombstones, leases, purge indexes, the `paths`
//! sorted set — every `MemoryStore` method but `with`) is accounted against
//! `store.memory_max_bytes`; what coordination writes through `with` / `Data::insert`
//! (capacity counters, locks, fences, transfers, revocations) is never counted and
//! never evicted. Over the budget, units are evicted oldest write first (no touch on
//! read). A unit is a whole key, except the members of a sorted set, which are a unit
//! each (the one `paths` set is shared by every cached path).
//!
//! The order keeps purges complete. `Cache::store` writes a record before the index
//! members and the `paths` member that find it, and every add moves the set (or the
//! member) to the newest place; a record keeps the place of its first write when it is
//! written again (a refresh or a soft purge rewrites it without re-indexing). So an
//! index or a `paths` member is always newer than every live record it refers to, and
//! evicting oldest first removes records before the indexes that find them. An evicted
//! tombstone leaves its purge time as a floor: a guarded write of a fetch begun at or
//! before the newest evicted purge is refused, as the tombstone would have refused it.
//! Evicted records are reported to the eviction hooks inside the critical section, so
//! the L1 drops them before any purge can look for them.
//!
//! A unit's size is an estimate of what it costs here, so that the budget tracks the
//! process's memory: key and value bytes plus `ENTRY_OVERHEAD` per key, `SET_OVERHEAD`
//! and `SET_MEMBER_OVERHEAD` per member for an index set, and for a sorted-set member
//! its bytes, its set's key and `SORTED_MEMBER_OVERHEAD`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::StoreEvent;

/// Estimated bytes a key costs beyond its key and value bytes: its map slot, its
/// place in the eviction order with the key's second copy, allocation headers.
/// Measured with the cache's keys (about 76 bytes) and 100-byte values: 522 bytes
/// allocated per record, 498 estimated.
pub const ENTRY_OVERHEAD: u64 = 320;
/// Estimated bytes an index set costs before its first member (a B-tree node).
pub const SET_OVERHEAD: u64 = 224;
/// Estimated bytes a member of an index set costs beyond its own bytes.
pub const SET_MEMBER_OVERHEAD: u64 = 48;
/// Estimated bytes a sorted-set member costs beyond its own bytes and its set's key
/// (copied into the eviction order): measured 245 allocated per `paths` member, 242
/// estimated.
pub const SORTED_MEMBER_OVERHEAD: u64 = 192;

/// A value the memory store holds, shaped like the Redis types the scripts use.
#[derive(Clone, Debug)]
pub enum Value {
    Bytes(Bytes),
    Int(i64),
    Hash(HashMap<String, Bytes>),
    Set(BTreeSet<String>),
    /// Member -> score, ordered by member (lexicographic range reads).
    Sorted(BTreeMap<String, Scored>),
}

/// A sorted-set member's score, and its place in the budget's order.
#[derive(Clone, Copy, Debug)]
pub struct Scored {
    pub score: u64,
    seq: u64,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    pub expires: Option<Instant>,
    /// The entry's place and size in the budget; None for what is not counted.
    charge: Option<Charge>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

#[derive(Clone, Copy, Debug)]
struct Charge {
    seq: u64,
    bytes: u64,
    kind: Kind,
}

/// What a counted key is to the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A cache record (entry or Vary index): reported to the eviction hooks.
    Record,
    /// A path's tombstone (`Value::Int` purge time): evicting it raises the floor.
    Tomb,
    /// A purge index (set) or a fetch lease.
    Other,
}

/// One eviction unit.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unit {
    Key(String),
    /// A member of the sorted set at the key.
    Member(String, String),
}

/// The cache's byte budget: what is counted, in the order it was written.
#[derive(Debug)]
struct Budget {
    max: u64,
    used: u64,
    next_seq: u64,
    /// Oldest write first.
    order: BTreeMap<u64, Unit>,
    /// Keys of records evicted in the current critical section.
    evicted: Vec<String>,
    /// The newest purge time of an evicted tombstone (Unix ms).
    tomb_floor_ms: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max: u64::MAX,
            used: 0,
            next_seq: 0,
            order: BTreeMap::new(),
            evicted: Vec::new(),
            tomb_floor_ms: 0,
        }
    }
}

fn key_bytes(key: &str, value: &Value) -> u64 {
    let value = match value {
        Value::Bytes(b) => b.len() as u64,
        Value::Int(_) => 8,
        Value::Hash(h) => h
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64 + SET_MEMBER_OVERHEAD)
            .sum(),
        Value::Set(s) => {
            SET_OVERHEAD
                + s.iter()
                    .map(|m| m.len() as u64 + SET_MEMBER_OVERHEAD)
                    .sum::<u64>()
        }
        // Members are units of their own.
        Value::Sorted(_) => 0,
    };
    key.len() as u64 + value + ENTRY_OVERHEAD
}

fn member_bytes(key: &str, member: &str) -> u64 {
    (key.len() + member.len()) as u64 + 8 + SORTED_MEMBER_OVERHEAD
}

/// The data under the lock; operations get `&mut Data` for their whole duration.
#[derive(Default, Debug)]
pub struct Data {
    map: HashMap<String, Entry>,
    budget: Budget,
}

impl Data {
    /// An empty data set whose cache writes are bounded by `max_bytes`.
    fn with_budget(max_bytes: u64) -> Data {
        Data {
            map: HashMap::new(),
            budget: Budget {
                max: max_bytes,
                ..Budget::default()
            },
        }
    }

    /// The live entry for a key (expired entries are removed first).
    pub fn get(&mut self, key: &str) -> Option<&mut Entry> {
        let now = Instant::now();
        if !self.map.get(key)?.live(now) {
            self.take(key);
            return None;
        }
        self.map.get_mut(key)
    }

    pub fn contains(&mut self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Writes a key that the budget does not count (coordination records).
    pub fn insert(&mut self, key: &str, value: Value, ttl: Option<Duration>) {
        self.take(key);
        let expires = ttl.map(|t| Instant::now() + t);
        self.map.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                charge: None,
            },
        );
    }

    /// Removes a key; answers it when it was live.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let now = Instant::now();
        self.take(key).filter(|e| e.live(now))
    }

    /// Sets (or clears with None) the expiry of a live key.
    pub fn expire(&mut self, key: &str, ttl: Option<Duration>) {
        if let Some(e) = self.get(key) {
            e.expires = ttl.map(|t| Instant::now() + t);
        }
    }

    /// Remaining lifetime of a live key (None: no expiry or absent).
    pub fn ttl(&mut self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.get(key)
            .and_then(|e| e.expires)
            .map(|t| t.saturating_duration_since(now))
    }

    /// The bytes the budget counts now.
    pub fn accounted_bytes(&self) -> u64 {
        self.budget.used
    }

    /// Removes a key, live or not, and gives back what the budget counted for it.
    fn take(&mut self, key: &str) -> Option<Entry> {
        let e = self.map.remove(key)?;
        if let Some(c) = e.charge {
            self.budget.order.remove(&c.seq);
            self.budget.used -= c.bytes;
        }
        if let Value::Sorted(z) = &e.value {
            for (m, s) in z {
                self.budget.order.remove(&s.seq);
                self.budget.used -= member_bytes(key, m);
            }
        }
        Some(e)
    }

    fn next_seq(&mut self) -> u64 {
        self.budget.next_seq += 1;
        self.budget.next_seq
    }

    /// Writes a counted key. `keep_place`: a live key of the same kind keeps its place
    /// in the order (see the module doc); otherwise the key becomes the newest.
    fn put(
        &mut self,
        key: &str,
        value: Value,
        expires: Option<Instant>,
        kind: Kind,
        keep_place: bool,
    ) {
        let now = Instant::now();
        let kept = match self.map.get(key) {
            Some(e) if keep_place && e.live(now) => {
                e.charge.filter(|c| c.kind == kind).map(|c| c.seq)
            }
            _ => None,
        };
        self.take(key);
        let seq = kept.unwrap_or_else(|| self.next_seq());
        let bytes = key_bytes(key, &value);
        self.budget.order.insert(seq, Unit::Key(key.to_string()));
        self.budget.used += bytes;
        self.map.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                charge: Some(Charge { seq, bytes, kind }),
            },
        );
    }

    fn put_ttl(&mut self, key: &str, value: Value, ttl: Duration, kind: Kind, keep_place: bool) {
        let expires = Some(Instant::now() + ttl);
        self.put(key, value, expires, kind, keep_place);
    }

    /// Adds (or moves to the newest place) a member of the sorted set at `key`.
    fn sorted_put(&mut self, key: &str, member: &str, score: u64) {
        let seq = self.next_seq();
        if !matches!(self.get(key).map(|e| &e.value), Some(Value::Sorted(_))) {
            self.take(key);
            self.map.insert(
                key.to_string(),
                Entry {
                    value: Value::Sorted(BTreeMap::new()),
                    expires: None,
                    charge: None,
                },
            );
        }
        let Some(Entry {
            value: Value::Sorted(z),
            ..
        }) = self.map.get_mut(key)
        else {
            return;
        };
        let score = match z.insert(member.to_string(), Scored { score, seq }) {
            Some(old) => {
                self.budget.order.remove(&old.seq);
                self.budget.used -= member_bytes(key, member);
                old.score.max(score)
            }
            None => score,
        };
        if let Some(s) = z.get_mut(member) {
            s.score = score;
        }
        self.budget
            .order
            .insert(seq, Unit::Member(key.to_string(), member.to_string()));
        self.budget.used += member_bytes(key, member);
    }

    /// Removes the sorted-set members scored below `below`; answers how many.
    fn sorted_remove_below(&mut self, key: &str, below: u64) -> u64 {
        let Some(Entry {
            value: Value::Sorted(z),
            ..
        }) = self.get(key)
        else {
            return 0;
        };
        let gone: Vec<(String, u64)> = z
            .iter()
            .filter(|(_, s)| s.score < below)
            .map(|(m, s)| (m.clone(), s.seq))
            .collect();
        for (m, _) in &gone {
            z.remove(m);
        }
        for (m, seq) in &gone {
            self.budget.order.remove(seq);
            self.budget.used -= member_bytes(key, m);
        }
        gone.len() as u64
    }

    /// Evicts oldest units until the counted bytes fit the budget; answers how many
    /// live units went.
    fn evict_over_budget(&mut self) -> u64 {
        let now = Instant::now();
        let mut evicted = 0;
        while self.budget.used > self.budget.max {
            let Some((seq, unit)) = self.budget.order.pop_first() else {
                break;
            };
            match unit {
                Unit::Key(key) => {
                    let Some(e) = self.map.remove(&key) else {
                        continue;
                    };
                    let Some(c) = e.charge.filter(|c| c.seq == seq) else {
                        // Not this unit's entry (cannot happen): keep it and its place.
                        self.map.insert(key, e);
                        continue;
                    };
                    self.budget.used -= c.bytes;
                    if !e.live(now) {
                        continue;
                    }
                    evicted += 1;
                    match (c.kind, &e.value) {
                        (Kind::Record, _) => self.budget.evicted.push(key),
                        (Kind::Tomb, Value::Int(t)) => {
                            let t = (*t).max(0) as u64;
                            self.budget.tomb_floor_ms = self.budget.tomb_floor_ms.max(t);
                        }
                        _ => {}
                    }
                }
                Unit::Member(key, member) => {
                    let now_empty = match self.map.get_mut(&key) {
                        Some(Entry {
                            value: Value::Sorted(z),
                            ..
                        }) => {
                            if z.get(&member).is_some_and(|s| s.seq == seq) {
                                z.remove(&member);
                                self.budget.used -= member_bytes(&key, &member);
                                evicted += 1;
                            }
                            z.is_empty()
                        }
                        _ => false,
                    };
                    if now_empty {
                        self.map.remove(&key);
                    }
                }
            }
        }
        evicted
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .map
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.take(&k);
        }
    }
}

/// Called with the keys of evicted cache records, inside the store's critical
/// section: it must not call the store.
pub type EvictHook = Arc<dyn Fn(&[String]) + Send + Sync>;

pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    evictions: prometheus::IntCounter,
    hooks: RwLock<Vec<EvictHook>>,
}

impl MemoryStore {
    /// A memory store whose cache writes are bounded by `max_bytes`; evictions are
    /// counted on `evictions`.
    pub fn new(
        events: broadcast::Sender<StoreEvent>,
        max_bytes: u64,
        evictions: prometheus::IntCounter,
    ) -> MemoryStore {
        let data = Arc::new(Mutex::new(Data::with_budget(max_bytes)));
        let weak = Arc::downgrade(&data);
        let sweeper = tokio::runtime::Handle::try_current().ok().map(|h| {
            h.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(data) = weak.upgrade() else { return };
                    data.lock().expect("memory store lock").sweep();
                }
            })
        });
        let _ = events.send(StoreEvent::SubscriptionRestored);
        MemoryStore {
            data,
            sweeper,
            evictions,
            hooks: RwLock::new(Vec::new()),
        }
    }

    /// Runs `f` atomically over the whole data set. What `f` writes through
    /// `Data::insert` is not counted in the budget (coordination records).
    pub fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let mut guard = self.data.lock().expect("memory store lock");
        f(&mut guard)
    }

    /// Runs a cache operation atomically, then evicts what is over the budget and
    /// tells the hooks which records went, before the lock is released.
    fn cache_op<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let mut d = self.data.lock().expect("memory store lock");
        let out = f(&mut d);
        let n = d.evict_over_budget();
        if n > 0 {
            self.evictions.inc_by(n);
        }
        if !d.budget.evicted.is_empty() {
            let keys = std::mem::take(&mut d.budget.evicted);
            for hook in self.hooks.read().expect("hooks lock").iter() {
                hook(&keys);
            }
        }
        out
    }

    /// Registers a hook told the keys of evicted cache records.
    pub fn on_evict(&self, hook: EvictHook) {
        self.hooks.write().expect("hooks lock").push(hook);
    }

    /// The bytes of cache writes held now.
    pub fn accounted_bytes(&self) -> u64 {
        self.with(|d| d.accounted_bytes())
    }

    /// Whether a live key is held.
    pub fn contains(&self, key: &str) -> bool {
        self.with(|d| d.contains(key))
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Bytes(b)) => Some(b.clone()),
            Some(Value::Int(i)) => Some(Bytes::from(i.to_string())),
            _ => None,
        })
    }

    /// Writes a cache record (a live record keeps its place in the order).
    pub fn set(&self, key: &str, value: Bytes, ttl: Duration) {
        self.cache_op(|d| d.put_ttl(key, Value::Bytes(value), ttl, Kind::Record, true))
    }

    /// Takes a lease: writes only when the key is absent.
    pub fn set_nx(&self, key: &str, value: Bytes, ttl: Duration) -> bool {
        self.cache_op(|d| {
            if d.contains(key) {
                false
            } else {
                d.put_ttl(key, Value::Bytes(value), ttl, Kind::Other, false);
                true
            }
        })
    }

    pub fn del_if_eq(&self, key: &str, expected: &[u8]) -> bool {
        self.cache_op(|d| {
            let matches = matches!(d.get(key).map(|e| &e.value), Some(Value::Bytes(b)) if b.as_ref() == expected);
            if matches {
                d.remove(key);
            }
            matches
        })
    }

    pub fn put_unless_purged(
        &self,
        key: &str,
        tomb: &str,
        value: Bytes,
        ttl: Duration,
        started_ms: u64,
    ) -> bool {
        self.cache_op(|d| {
            let purged_at = match d.get(tomb).map(|e| &e.value) {
                Some(Value::Int(t)) => (*t).max(0) as u64,
                // The tombstone may have been evicted: the newest evicted purge stands in.
                _ => d.budget.tomb_floor_ms,
            };
            if purged_at >= started_ms {
                return false;
            }
            d.put_ttl(key, Value::Bytes(value), ttl, Kind::Record, true);
            true
        })
    }

    pub fn purge(&self, pairs: &[(String, String)], now_ms: u64, tomb_ttl: Duration) -> u64 {
        self.cache_op(|d| {
            let mut existed = 0;
            for (key, tomb) in pairs {
                if d.remove(key).is_some() {
                    existed += 1;
                }
                d.put_ttl(tomb, Value::Int(now_ms as i64), tomb_ttl, Kind::Tomb, false);
            }
            existed
        })
    }

    /// Adds members to an index set (which becomes the newest unit), keeping it alive
    /// at least `ttl`; answers the set's size.
    pub fn index_add(&self, key: &str, members: &[String], ttl: Duration) -> u64 {
        self.cache_op(|d| {
            let current_ttl = d.ttl(key);
            let mut set = match d.remove(key).map(|e| e.value) {
                Some(Value::Set(s)) => s,
                _ => BTreeSet::new(),
            };
            set.extend(members.iter().cloned());
            let n = set.len() as u64;
            let ttl = current_ttl.map_or(ttl, |c| c.max(ttl));
            d.put_ttl(key, Value::Set(set), ttl, Kind::Other, false);
            n
        })
    }

    pub fn set_members(&self, key: &str) -> Vec<String> {
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Set(s)) => s.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    /// Removes members from an index set (an emptied set is deleted, as in Redis).
    pub fn set_remove(&self, key: &str, members: &[String]) {
        self.cache_op(|d| {
            let Some(Entry {
                value: Value::Set(s),
                expires,
                ..
            }) = d.get(key)
            else {
                return;
            };
            let mut set = std::mem::take(s);
            let expires = *expires;
            for m in members {
                set.remove(m);
            }
            if set.is_empty() {
                d.take(key);
            } else {
                d.put(key, Value::Set(set), expires, Kind::Other, true);
            }
        })
    }

    /// Adds a member with `score`, keeping the larger of its old and new scores.
    pub fn sorted_add(&self, key: &str, member: &str, score: u64) {
        self.cache_op(|d| d.sorted_put(key, member, score))
    }

    pub fn sorted_prefix(&self, key: &str, prefix: &str, limit: usize) -> Vec<String> {
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Sorted(z)) => z
                .range(prefix.to_string()..)
                .take_while(|(m, _)| m.starts_with(prefix))
                .take(limit)
                .map(|(m, _)| m.clone())
                .collect(),
            _ => Vec::new(),
        })
    }

    pub fn sorted_prefix_after(
        &self,
        key: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<String> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Sorted(z)) => z
                .range((start, Bound::Unbounded))
                .take_while(|(m, _)| m.starts_with(prefix))
                .take(limit)
                .map(|(m, _)| m.clone())
                .collect(),
            _ => Vec::new(),
        })
    }

    pub fn sorted_trim(&self, key: &str, below: u64) -> u64 {
        self.cache_op(|d| d.sorted_remove_below(key, below))
    }

    pub fn shutdown(&self) {
        if let Some(s) = &self.sweeper {
            s.abort();
        }
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: u64) -> MemoryStore {
        let (events, _) = broadcast::channel(16);
        let evictions = prometheus::IntCounter::new("evictions", "test").unwrap();
        MemoryStore::new(events, max, evictions)
    }

    fn record_bytes(key: &str, len: usize) -> u64 {
        (key.len() + len) as u64 + ENTRY_OVERHEAD
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn body(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn accounting_follows_overwrite_delete_and_set_changes() {
        let m = store(u64::MAX);
        m.set("r", body(100), HOUR);
        assert_eq!(m.accounted_bytes(), record_bytes("r", 100));
        m.set("r", body(300), HOUR);
        assert_eq!(m.accounted_bytes(), record_bytes("r", 300));
        assert!(m.set_nx("lease", body(10), HOUR));
        assert!(!m.set_nx("lease", body(10), HOUR));
        assert!(m.del_if_eq("lease", &[b'x'; 10]));
        assert_eq!(m.accounted_bytes(), record_bytes("r", 300));
        assert_eq!(m.purge(&[("r".into(), "t".into())], 5, HOUR), 1);
        assert_eq!(
            m.accounted_bytes(),
            ENTRY_OVERHEAD + 1 + 8,
            "only the tombstone"
        );
        m.purge(&[("r".into(), "t".into())], 6, HOUR);
        assert_eq!(m.accounted_bytes(), ENTRY_OVERHEAD + 1 + 8, "overwritten");

        let m = store(u64::MAX);
        let members = |ms: &[&str]| ms.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        m.index_add("i", &members(&["aa", "bbb"]), HOUR);
        let set = |n: u64| 1 + ENTRY_OVERHEAD + SET_OVERHEAD + n;
        assert_eq!(m.accounted_bytes(), set(5 + 2 * SET_MEMBER_OVERHEAD));
        m.index_add("i", &members(&["aa", "c"]), HOUR);
        assert_eq!(m.accounted_bytes(), set(6 + 3 * SET_MEMBER_OVERHEAD));
        m.set_remove("i", &members(&["bbb", "nope"]));
        assert_eq!(m.accounted_bytes(), set(3 + 2 * SET_MEMBER_OVERHEAD));
        m.set_remove("i", &members(&["aa", "c"]));
        assert_eq!(m.accounted_bytes(), 0, "an emptied set is gone");

        m.sorted_add("z", "/a", 10);
        m.sorted_add("z", "/bb", 20);
        m.sorted_add("z", "/a", 5);
        assert_eq!(
            m.accounted_bytes(),
            member_bytes("z", "/a") + member_bytes("z", "/bb")
        );
        assert_eq!(m.sorted_trim("z", 15), 1, "the larger score was kept");
        assert_eq!(m.accounted_bytes(), member_bytes("z", "/bb"));
        assert_eq!(m.sorted_prefix("z", "/", 10), vec!["/bb".to_string()]);
        m.sorted_trim("z", 100);
        assert_eq!(m.accounted_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_gives_bytes_back_on_read_and_on_sweep() {
        let m = store(u64::MAX);
        m.set("read", body(100), Duration::from_millis(10));
        m.set("swept", body(100), Duration::from_millis(10));
        m.set("kept", body(100), HOUR);
        tokio::time::advance(Duration::from_millis(20)).await;
        assert_eq!(m.get("read"), None);
        assert_eq!(
            m.accounted_bytes(),
            record_bytes("swept", 100) + record_bytes("kept", 100)
        );
        m.with(|d| d.sweep());
        assert_eq!(m.accounted_bytes(), record_bytes("kept", 100));
        // An expired key written again is a new key (it takes the newest place).
        m.set("read", body(1), HOUR);
        assert_eq!(
            m.accounted_bytes(),
            record_bytes("kept", 100) + record_bytes("read", 1)
        );
    }

    #[test]
    fn the_oldest_write_is_evicted_first_and_rewrites_keep_a_records_place() {
        let one = record_bytes("r1", 1000);
        let m = store(3 * one);
        let evicted = Arc::new(Mutex::new(Vec::new()));
        let seen = evicted.clone();
        m.on_evict(Arc::new(move |keys: &[String]| {
            seen.lock().unwrap().extend(keys.iter().cloned())
        }));
        for k in ["r1", "r2", "r3"] {
            m.set(k, body(1000), HOUR);
        }
        // Reading does not touch; rewriting a record does not move it.
        assert!(m.get("r1").is_some());
        m.set("r1", body(1000), HOUR);
        m.set("r4", body(1000), HOUR);
        assert_eq!(m.get("r1"), None, "r1 was the oldest write");
        assert!(m.get("r2").is_some());
        assert_eq!(*evicted.lock().unwrap(), vec!["r1".to_string()]);
        assert_eq!(m.evictions.get(), 1);
        assert!(m.accounted_bytes() <= 3 * one);

        // An index add moves the index to the newest place: records go before it.
        let m = store(4 * one);
        m.set("r1", body(1000), HOUR);
        m.index_add("tag", &["r1".into()], HOUR);
        m.set("r2", body(1000), HOUR);
        m.index_add("tag", &["r2".into()], HOUR);
        m.set("r3", body(1000), HOUR);
        m.set("r4", body(1000), HOUR);
        assert_eq!(m.get("r1"), None);
        assert_eq!(m.set_members("tag").len(), 2, "the index outlives r1");
        m.set("r5", body(1000), HOUR);
        assert_eq!(m.get("r2"), None);
        m.set("r6", body(1000), HOUR);
        assert!(m.set_members("tag").is_empty(), "then the index, before r3");
        assert!(m.get("r3").is_some());
    }

    #[test]
    fn paths_members_are_evicted_one_by_one_oldest_first() {
        let unit = member_bytes("paths", "/p/00");
        let m = store(3 * unit);
        for i in 0..5 {
            m.sorted_add("paths", &format!("/p/{i:02}"), 99);
        }
        assert_eq!(
            m.sorted_prefix("paths", "/p/", 10),
            ["/p/02", "/p/03", "/p/04"]
        );
        // Adding again makes a member the newest.
        m.sorted_add("paths", "/p/02", 99);
        m.sorted_add("paths", "/p/05", 99);
        assert_eq!(
            m.sorted_prefix("paths", "/p/", 10),
            ["/p/02", "/p/04", "/p/05"]
        );
        assert_eq!(m.accounted_bytes(), 3 * unit);
    }

    #[test]
    fn an_evicted_tombstone_still_refuses_fetches_begun_before_its_purge() {
        let m = store(record_bytes("rec", 1000) + 100);
        m.purge(&[("rec".into(), "tomb".into())], 1_000, HOUR);
        // Fills the budget: the tombstone (the oldest write) goes.
        assert!(m.put_unless_purged("other", "tomb2", body(1000), HOUR, 2_000));
        assert_eq!(m.get("tomb"), None);
        assert!(!m.put_unless_purged("rec", "tomb", body(10), HOUR, 999));
        assert!(!m.put_unless_purged("rec", "tomb", body(10), HOUR, 1_000));
        assert!(m.put_unless_purged("rec", "tomb", body(10), HOUR, 1_001));
    }

    #[test]
    fn coordination_records_are_neither_counted_nor_evicted() {
        let m = store(record_bytes("r00", 1000));
        m.with(|d| {
            d.insert("cap", Value::Hash(HashMap::new()), None);
            d.insert("fence", Value::Int(7), None);
            d.insert("lock", Value::Bytes(body(5000)), Some(HOUR));
        });
        assert_eq!(m.accounted_bytes(), 0);
        for i in 0..20 {
            m.set(&format!("r{i:02}"), body(1000), HOUR);
        }
        assert_eq!(m.accounted_bytes(), record_bytes("r00", 1000));
        assert_eq!(m.evictions.get(), 19);
        m.with(|d| {
            assert!(d.contains("cap") && d.contains("fence") && d.contains("lock"));
        });
        // A coordination write over a counted key takes it out of the budget.
        m.with(|d| d.insert("r19", Value::Int(1), None));
        assert_eq!(m.accounted_bytes(), 0);
        m.set("big", body(5000), HOUR);
        m.with(|d| assert!(d.contains("r19") && d.contains("lock")));
    }
}
