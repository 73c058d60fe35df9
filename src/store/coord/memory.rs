//! The memory twins of `lua/*.lua`: each function is one critical section under the
//! memory store's mutex, with the same keys, fields and outcomes as its script.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;

use super::{
    Admission, CapKeys, Counter, LockAcquire, LockHolder, LockRelease, LockRenew, MemberRelease,
    TransferClaim,
};
use crate::clock::now_ms;
use crate::store::memory::{Data, MemoryStore, Value};

fn hash<'d>(d: &'d mut Data, key: &str) -> Option<&'d mut HashMap<String, Bytes>> {
    match d.get(key).map(|e| &mut e.value) {
        Some(Value::Hash(h)) => Some(h),
        _ => None,
    }
}

fn set<'d>(d: &'d mut Data, key: &str) -> Option<&'d mut BTreeSet<String>> {
    match d.get(key).map(|e| &mut e.value) {
        Some(Value::Set(s)) => Some(s),
        _ => None,
    }
}

/// The set under `key`, created empty (without expiry) when absent.
fn set_or_new<'d>(d: &'d mut Data, key: &str) -> &'d mut BTreeSet<String> {
    if set(d, key).is_none() {
        d.insert(key, Value::Set(BTreeSet::new()), None);
    }
    set(d, key).expect("just inserted")
}

fn field_u64(h: &HashMap<String, Bytes>, field: &str) -> Option<u64> {
    h.get(field)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
}

fn num(n: u64) -> Bytes {
    Bytes::from(n.to_string())
}

fn card(d: &mut Data, key: &str) -> u64 {
    set(d, key).map_or(0, |s| s.len() as u64)
}

fn mark_dirty(d: &mut Data, k: &CapKeys) {
    set_or_new(d, &k.dirty).insert(k.name.clone());
}

pub(super) fn capacity_admit(
    m: &MemoryStore,
    k: &CapKeys,
    member: &str,
    define: Option<u64>,
) -> Admission {
    m.with(|d| {
        let (capacity, mut version) = match hash(d, &k.counter) {
            Some(h) => (
                field_u64(h, "capacity"),
                field_u64(h, "version").unwrap_or(0),
            ),
            None => (None, 0),
        };
        let mut changed = false;
        let capacity = match (capacity, define) {
            (Some(c), _) => c,
            (None, None) => return Admission::NotDefined,
            (None, Some(c)) => {
                version += 1;
                let h = HashMap::from([
                    ("capacity".to_string(), num(c)),
                    ("version".to_string(), num(version)),
                ]);
                d.insert(&k.counter, Value::Hash(h), None);
                changed = true;
                c
            }
        };
        let members = set_or_new(d, &k.members);
        let mut count = members.len() as u64;
        let admission = if members.contains(member) {
            Admission::AlreadyAdmitted
        } else if count >= capacity {
            Admission::Full
        } else {
            members.insert(member.to_string());
            count += 1;
            version += 1;
            if let Some(h) = hash(d, &k.counter) {
                h.insert("version".into(), num(version));
            }
            changed = true;
            Admission::Admitted
        };
        if changed {
            mark_dirty(d, k);
        }
        admission(Counter {
            capacity,
            count,
            version,
        })
    })
}

pub(super) fn capacity_set(m: &MemoryStore, k: &CapKeys, capacity: u64) -> Counter {
    m.with(|d| {
        let (current, mut version) = match hash(d, &k.counter) {
            Some(h) => (
                field_u64(h, "capacity"),
                field_u64(h, "version").unwrap_or(0),
            ),
            None => (None, 0),
        };
        if current != Some(capacity) {
            version += 1;
            let h = HashMap::from([
                ("capacity".to_string(), num(capacity)),
                ("version".to_string(), num(version)),
            ]);
            d.insert(&k.counter, Value::Hash(h), None);
            mark_dirty(d, k);
        }
        Counter {
            capacity,
            count: card(d, &k.members),
            version,
        }
    })
}

pub(super) fn capacity_release(m: &MemoryStore, k: &CapKeys, member: &str) -> MemberRelease {
    m.with(|d| {
        let removed = set(d, &k.members).is_some_and(|s| s.remove(member));
        if !removed {
            return MemberRelease::NotAdmitted;
        }
        let (capacity, version) = match hash(d, &k.counter) {
            Some(h) => {
                let version = field_u64(h, "version").unwrap_or(0) + 1;
                h.insert("version".into(), num(version));
                (field_u64(h, "capacity").unwrap_or(0), version)
            }
            None => (0, 1),
        };
        mark_dirty(d, k);
        MemberRelease::Released(Counter {
            capacity,
            count: card(d, &k.members),
            version,
        })
    })
}

pub(super) fn capacity_read(m: &MemoryStore, keys: &[&CapKeys]) -> Vec<Option<Counter>> {
    m.with(|d| {
        keys.iter()
            .map(|k| {
                let h = hash(d, &k.counter)?;
                let capacity = field_u64(h, "capacity")?;
                let version = field_u64(h, "version").unwrap_or(0);
                Some(Counter {
                    capacity,
                    count: card(d, &k.members),
                    version,
                })
            })
            .collect()
    })
}

pub(super) fn capacity_sync_take(
    m: &MemoryStore,
    dirty: &str,
    syncing: &str,
    max: usize,
    lease: Duration,
) -> Vec<String> {
    let now = now_ms();
    m.with(|d| {
        // Leases that ran out go back to the dirty set first (see capacity_sync_take.lua).
        let expired: Vec<String> = match hash(d, syncing) {
            Some(h) => {
                let names: Vec<String> = h
                    .iter()
                    .filter(|(_, deadline)| {
                        std::str::from_utf8(deadline)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .is_some_and(|t| t <= now)
                    })
                    .map(|(n, _)| n.clone())
                    .take(max)
                    .collect();
                for n in &names {
                    h.remove(n);
                }
                names
            }
            None => Vec::new(),
        };
        if !expired.is_empty() {
            set_or_new(d, dirty).extend(expired);
        }
        let taken: Vec<String> = match set(d, dirty) {
            Some(s) => {
                let names: Vec<String> = s.iter().take(max).cloned().collect();
                for n in &names {
                    s.remove(n);
                }
                names
            }
            None => Vec::new(),
        };
        if taken.is_empty() {
            return taken;
        }
        let deadline = num(now + super::ms(lease));
        if hash(d, syncing).is_none() {
            d.insert(syncing, Value::Hash(HashMap::new()), None);
        }
        let h = hash(d, syncing).expect("just inserted");
        for n in &taken {
            h.insert(n.clone(), deadline.clone());
        }
        taken
    })
}

pub(super) fn capacity_sync_settle(
    m: &MemoryStore,
    dirty: &str,
    syncing: &str,
    names: &[String],
    delivered: bool,
) {
    m.with(|d| {
        if let Some(h) = hash(d, syncing) {
            for n in names {
                h.remove(n);
            }
        }
        if !delivered {
            set_or_new(d, dirty).extend(names.iter().cloned());
        }
    })
}

pub(super) fn lock_acquire(
    m: &MemoryStore,
    lock: &str,
    fence_key: &str,
    token_hash: &str,
    owner: &str,
    ttl: Duration,
    max_hold: Duration,
) -> LockAcquire {
    m.with(|d| {
        if let Some(holder) = holder(d, lock) {
            return LockAcquire::Held(holder);
        }
        let ttl = if !max_hold.is_zero() && max_hold < ttl {
            max_hold
        } else {
            ttl
        };
        let fence = match d.get(fence_key).map(|e| &e.value) {
            Some(Value::Int(n)) => *n as u64 + 1,
            _ => 1,
        };
        d.insert(fence_key, Value::Int(fence as i64), None);
        let now = now_ms();
        let expires_ms = now + super::ms(ttl);
        let h = HashMap::from([
            (
                "token".to_string(),
                Bytes::copy_from_slice(token_hash.as_bytes()),
            ),
            (
                "owner".to_string(),
                Bytes::copy_from_slice(owner.as_bytes()),
            ),
            ("fence".to_string(), num(fence)),
            ("acquired".to_string(), num(now)),
            ("expires".to_string(), num(expires_ms)),
        ]);
        d.insert(lock, Value::Hash(h), Some(ttl));
        LockAcquire::Acquired { fence, expires_ms }
    })
}

fn holder(d: &mut Data, lock: &str) -> Option<LockHolder> {
    let remaining = d.ttl(lock).unwrap_or_default();
    let h = hash(d, lock)?;
    Some(LockHolder {
        owner: h
            .get("owner")
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default(),
        fence: field_u64(h, "fence").unwrap_or(0),
        expires_ms: field_u64(h, "expires").unwrap_or(0),
        remaining,
    })
}

pub(super) fn lock_renew(
    m: &MemoryStore,
    lock: &str,
    token_hash: &str,
    ttl: Duration,
    max_hold: Duration,
) -> LockRenew {
    m.with(|d| {
        let Some(h) = hash(d, lock) else {
            return LockRenew::NotLocked;
        };
        if h.get("token").map(|b| b.as_ref()) != Some(token_hash.as_bytes()) {
            return LockRenew::NotOwner;
        }
        let now = now_ms();
        let mut expires_ms = now + super::ms(ttl);
        if !max_hold.is_zero() {
            let acquired = field_u64(h, "acquired").unwrap_or(now);
            expires_ms = expires_ms.min(acquired + super::ms(max_hold));
        }
        if expires_ms <= now {
            d.remove(lock);
            return LockRenew::NotLocked;
        }
        let fence = field_u64(h, "fence").unwrap_or(0);
        h.insert("expires".into(), num(expires_ms));
        d.expire(lock, Some(Duration::from_millis(expires_ms - now)));
        LockRenew::Renewed { fence, expires_ms }
    })
}

pub(super) fn lock_release(m: &MemoryStore, lock: &str, token_hash: &str) -> LockRelease {
    m.with(|d| {
        let Some(h) = hash(d, lock) else {
            return LockRelease::NotLocked;
        };
        if h.get("token").map(|b| b.as_ref()) != Some(token_hash.as_bytes()) {
            return LockRelease::NotOwner;
        }
        d.remove(lock);
        LockRelease::Released
    })
}

pub(super) fn lock_status(m: &MemoryStore, lock: &str) -> Option<LockHolder> {
    m.with(|d| holder(d, lock))
}

pub(super) fn transfer_create(
    m: &MemoryStore,
    key: &str,
    audience: &str,
    payload: &[u8],
    ttl: Duration,
) -> u64 {
    let h = HashMap::from([
        (
            "audience".to_string(),
            Bytes::copy_from_slice(audience.as_bytes()),
        ),
        ("payload".to_string(), Bytes::copy_from_slice(payload)),
    ]);
    m.with(|d| d.insert(key, Value::Hash(h), Some(ttl)));
    now_ms() + super::ms(ttl)
}

pub(super) fn transfer_claim(m: &MemoryStore, key: &str, audience: &str) -> TransferClaim {
    m.with(|d| {
        let Some(h) = hash(d, key) else {
            return TransferClaim::Gone;
        };
        if h.get("audience").map(|b| b.as_ref()) != Some(audience.as_bytes()) {
            return TransferClaim::AudienceMismatch;
        }
        let payload = h.get("payload").cloned().unwrap_or_default();
        d.remove(key);
        TransferClaim::Claimed(payload)
    })
}
