//! The embedded memory backend: one instance, nothing else installed. Every operation
//! runs under one mutex, so each is as atomic as its Lua twin on Redis; expiry is
//! checked on every read and swept in the background. Pub/sub is a local broadcast
//! whose subscription is always live.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::StoreEvent;

/// A value the memory store holds, shaped like the Redis types the scripts use.
#[derive(Clone, Debug)]
pub enum Value {
    Bytes(Bytes),
    Int(i64),
    Hash(HashMap<String, Bytes>),
    Set(BTreeSet<String>),
    /// Member -> score, ordered by member (lexicographic range reads).
    Sorted(std::collections::BTreeMap<String, u64>),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    pub expires: Option<Instant>,
}

/// The data under the lock; operations get `&mut Data` for their whole duration.
#[derive(Default, Debug)]
pub struct Data {
    map: HashMap<String, Entry>,
}

impl Data {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.map
            .get(key)
            .filter(|e| e.expires.is_none_or(|t| t > now))
    }

    /// The live entry for a key (expired entries are removed first).
    pub fn get(&mut self, key: &str) -> Option<&mut Entry> {
        let now = Instant::now();
        if self.live(key, now).is_none() {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    pub fn contains(&mut self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: &str, value: Value, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        self.map.insert(key.to_string(), Entry { value, expires });
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let now = Instant::now();
        let e = self.map.remove(key)?;
        e.expires.is_none_or(|t| t > now).then_some(e)
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

    fn sweep(&mut self) {
        let now = Instant::now();
        self.map.retain(|_, e| e.expires.is_none_or(|t| t > now));
    }
}

pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl MemoryStore {
    pub fn new(events: broadcast::Sender<StoreEvent>) -> MemoryStore {
        let data = Arc::new(Mutex::new(Data::default()));
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
        MemoryStore { data, sweeper }
    }

    /// Runs `f` atomically over the whole data set.
    pub fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let mut guard = self.data.lock().expect("memory store lock");
        f(&mut guard)
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Bytes(b)) => Some(b.clone()),
            Some(Value::Int(i)) => Some(Bytes::from(i.to_string())),
            _ => None,
        })
    }

    pub fn set(&self, key: &str, value: Bytes, ttl: Option<Duration>) {
        self.with(|d| d.insert(key, Value::Bytes(value), ttl))
    }

    pub fn set_nx(&self, key: &str, value: Bytes, ttl: Duration) -> bool {
        self.with(|d| {
            if d.contains(key) {
                false
            } else {
                d.insert(key, Value::Bytes(value), Some(ttl));
                true
            }
        })
    }

    pub fn del_if_eq(&self, key: &str, expected: &[u8]) -> bool {
        self.with(|d| {
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
        self.with(|d| {
            let purged_at = match d.get(tomb).map(|e| &e.value) {
                Some(Value::Int(t)) => Some(*t as u64),
                _ => None,
            };
            if purged_at.is_some_and(|t| t >= started_ms) {
                return false;
            }
            d.insert(key, Value::Bytes(value), Some(ttl));
            true
        })
    }

    pub fn purge(&self, pairs: &[(String, String)], now_ms: u64, tomb_ttl: Duration) -> u64 {
        self.with(|d| {
            let mut existed = 0;
            for (key, tomb) in pairs {
                if d.remove(key).is_some() {
                    existed += 1;
                }
                d.insert(tomb, Value::Int(now_ms as i64), Some(tomb_ttl));
            }
            existed
        })
    }

    pub fn index_add(&self, key: &str, members: &[String], ttl: Duration) -> u64 {
        self.with(|d| {
            let current_ttl = d.ttl(key);
            let mut set = match d.remove(key).map(|e| e.value) {
                Some(Value::Set(s)) => s,
                _ => BTreeSet::new(),
            };
            set.extend(members.iter().cloned());
            let n = set.len() as u64;
            let ttl = current_ttl.map_or(ttl, |c| c.max(ttl));
            d.insert(key, Value::Set(set), Some(ttl));
            n
        })
    }

    pub fn set_members(&self, key: &str) -> Vec<String> {
        self.with(|d| match d.get(key).map(|e| &e.value) {
            Some(Value::Set(s)) => s.iter().cloned().collect(),
            _ => Vec::new(),
        })
    }

    pub fn set_remove(&self, key: &str, members: &[String]) {
        self.with(|d| {
            if let Some(Value::Set(s)) = d.get(key).map(|e| &mut e.value) {
                for m in members {
                    s.remove(m);
                }
            }
        })
    }

    pub fn sorted_add(&self, key: &str, member: &str, score: u64) {
        self.with(|d| {
            if !matches!(d.get(key).map(|e| &e.value), Some(Value::Sorted(_))) {
                d.insert(key, Value::Sorted(Default::default()), None);
            }
            if let Some(Value::Sorted(z)) = d.get(key).map(|e| &mut e.value) {
                let s = z.entry(member.to_string()).or_insert(score);
                *s = (*s).max(score);
            }
        })
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

    pub fn sorted_trim(&self, key: &str, below: u64) -> u64 {
        self.with(|d| match d.get(key).map(|e| &mut e.value) {
            Some(Value::Sorted(z)) => {
                let before = z.len();
                z.retain(|_, s| *s >= below);
                (before - z.len()) as u64
            }
            _ => 0,
        })
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
