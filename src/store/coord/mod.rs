//! The store's coordination operations: capacity counters, fenced locks and one-time
//! transfers. Each operation is ONE atomic step on either backend — a Lua script from
//! `lua/` on Redis, one critical section under the memory store's mutex — and both
//! backends answer with the same enums, so the same tests run on both.
//!
//! # Keys (logical; the store prepends `store.key_prefix`)
//!
//! | key | type | what |
//! |---|---|---|
//! | `cap:{capNN}:<ns>/<id>` | hash | `capacity`, `version` of one counter |
//! | `cap:{capNN}:<ns>/<id>/members` | set | its admitted member ids (the count is its size) |
//! | `cap:{capNN}:dirty` | set | names of the shard's counters changed since the last sync |
//! | `cap:{capNN}:syncing` | zset | names leased to a sync task, by lease deadline |
//! | `lock:{<ns>/<id>}` | hash | `token` (SHA-256), `owner`, `fence`, `acquired`, `expires`; expires with the lock |
//! | `lock:{<ns>/<id>}:fence` | string | the lock's fence counter; never expires |
//! | `xfer:{<sha256 of token>}` | hash | `audience`, `payload`; expires with the transfer |
//!
//! Every script touches keys of one Redis Cluster hash tag only. Counters are spread
//! over [`CAPACITY_SHARDS`] tags (`{cap00}`..`{cap15}`, chosen by a hash of the name)
//! rather than one tag per counter, so that a change and its mark in the dirty set
//! are one atomic script even on a cluster, and the sync task finds every change by
//! reading 16 known sets, never by scanning the keyspace. `<ns>` and `<id>` cannot
//! contain `/`, `{` or `}`, so no name can forge another key or hash tag.

mod memory;
mod redis;

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Backend, Store, StoreResult};

/// How many hash tags (and dirty sets) capacity counters are spread over.
pub const CAPACITY_SHARDS: usize = 16;

/// A counter as one atomic step saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub capacity: u64,
    pub count: u64,
    /// Bumped by every change (definition, capacity change, admission, release).
    pub version: u64,
}

impl Counter {
    /// Places left; 0 when the count is at or above the capacity.
    pub fn remaining(&self) -> u64 {
        self.capacity.saturating_sub(self.count)
    }
}

/// What an admission did. Every variant is a normal outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The member took a place (counted once).
    Admitted(Counter),
    /// The member already had a place; nothing was counted.
    AlreadyAdmitted(Counter),
    /// No place left; nothing changed.
    Full(Counter),
    /// No counter is defined under this name (and the call did not define one).
    NotDefined,
}

/// What releasing a member did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRelease {
    Released(Counter),
    NotAdmitted,
}

/// The holder of a lock, as others may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// The owner metadata given at acquisition (JSON text).
    pub owner: String,
    pub fence: u64,
    /// Expiry instant, in milliseconds since the Unix epoch (the store's clock).
    pub expires_ms: u64,
    /// Time left until expiry, as the store counts it.
    pub remaining: Duration,
}

/// What an acquisition did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAcquire {
    Acquired { fence: u64, expires_ms: u64 },
    Held(LockHolder),
}

/// What a renewal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockRenew {
    /// Same fence, new expiry (never past acquisition + the hold cap).
    Renewed {
        fence: u64,
        expires_ms: u64,
    },
    NotLocked,
    NotOwner,
}

/// What a release did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockRelease {
    Released,
    NotLocked,
    NotOwner,
}

/// What a transfer claim did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferClaim {
    /// The payload; the transfer no longer exists.
    Claimed(Bytes),
    /// The transfer exists but for another audience; it was not consumed.
    AudienceMismatch,
    /// Used, expired or never issued.
    Gone,
}

/// A counter leased to the sync task: its name and current state (None when the
/// counter no longer exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncItem {
    pub name: String,
    pub counter: Option<Counter>,
}

/// The logical keys of one counter.
pub(super) struct CapKeys {
    pub name: String,
    pub counter: String,
    pub members: String,
    pub dirty: String,
}

/// Which shard a counter name lives in (stable across instances and versions).
pub fn capacity_shard(name: &str) -> usize {
    let d = Sha256::digest(name.as_bytes());
    u16::from_be_bytes([d[0], d[1]]) as usize % CAPACITY_SHARDS
}

fn shard_tag(shard: usize) -> String {
    format!("cap:{{cap{shard:02}}}")
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Store {
    fn cap_keys(&self, ns: &str, id: &str) -> CapKeys {
        let name = format!("{ns}/{id}");
        let tag = shard_tag(capacity_shard(&name));
        CapKeys {
            counter: self.key(&format!("{tag}:{name}")),
            members: self.key(&format!("{tag}:{name}/members")),
            dirty: self.key(&format!("{tag}:dirty")),
            name,
        }
    }

    fn cap_shard_keys(&self, shard: usize) -> (String, String) {
        let tag = shard_tag(shard);
        (
            self.key(&format!("{tag}:dirty")),
            self.key(&format!("{tag}:syncing")),
        )
    }

    fn lock_keys(&self, ns: &str, id: &str) -> (String, String) {
        let lock = self.key(&format!("lock:{{{ns}/{id}}}"));
        let fence = format!("{lock}:fence");
        (lock, fence)
    }

    fn transfer_key(&self, token_sha256_hex: &str) -> String {
        self.key(&format!("xfer:{{{token_sha256_hex}}}"))
    }

    /// Admits `member` to counter `ns/id` unless it is full; idempotent per member.
    /// `define` gives the capacity to create the counter with when it does not exist
    /// (ignored when it does).
    pub async fn capacity_admit(
        &self,
        ns: &str,
        id: &str,
        member: &str,
        define: Option<u64>,
    ) -> StoreResult<Admission> {
        let k = self.cap_keys(ns, id);
        self.run("capacity_admit", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::capacity_admit(m, &k, member, define)),
                Backend::Redis(r) => redis::capacity_admit(r, &k, member, define).await,
            }
        })
        .await
    }

    /// Defines counter `ns/id` or changes its capacity; answers its state after.
    pub async fn capacity_set(&self, ns: &str, id: &str, capacity: u64) -> StoreResult<Counter> {
        let k = self.cap_keys(ns, id);
        self.run("capacity_set", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::capacity_set(m, &k, capacity)),
                Backend::Redis(r) => redis::capacity_set(r, &k, capacity).await,
            }
        })
        .await
    }

    /// Frees `member`'s place in counter `ns/id`.
    pub async fn capacity_release(
        &self,
        ns: &str,
        id: &str,
        member: &str,
    ) -> StoreResult<MemberRelease> {
        let k = self.cap_keys(ns, id);
        self.run("capacity_release", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::capacity_release(m, &k, member)),
                Backend::Redis(r) => redis::capacity_release(r, &k, member).await,
            }
        })
        .await
    }

    /// Counter `ns/id` now, or None when it is not defined.
    pub async fn capacity_status(&self, ns: &str, id: &str) -> StoreResult<Option<Counter>> {
        let k = self.cap_keys(ns, id);
        self.run("capacity_status", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::capacity_read(m, &[&k]).remove(0)),
                Backend::Redis(r) => Ok(redis::capacity_read(r, &[&k]).await?.remove(0)),
            }
        })
        .await
    }

    /// Leases up to `max` changed counters of one shard to the caller for `lease`,
    /// with their current state. The caller must `capacity_sync_settle` them; a lease
    /// that runs out puts them back (at-least-once delivery across crashes).
    pub async fn capacity_sync_take(
        &self,
        shard: usize,
        max: usize,
        lease: Duration,
    ) -> StoreResult<Vec<SyncItem>> {
        let (dirty, syncing) = self.cap_shard_keys(shard);
        self.run("capacity_sync_take", async {
            let names = match &self.inner.backend {
                Backend::Memory(m) => memory::capacity_sync_take(m, &dirty, &syncing, max, lease),
                Backend::Redis(r) => {
                    redis::capacity_sync_take(r, &dirty, &syncing, max, ms(lease)).await?
                }
            };
            let keys: Vec<CapKeys> = names
                .iter()
                .filter_map(|n| n.split_once('/'))
                .map(|(ns, id)| self.cap_keys(ns, id))
                .collect();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let refs: Vec<&CapKeys> = keys.iter().collect();
            let counters = match &self.inner.backend {
                Backend::Memory(m) => memory::capacity_read(m, &refs),
                Backend::Redis(r) => redis::capacity_read(r, &refs).await?,
            };
            Ok(keys
                .into_iter()
                .zip(counters)
                .map(|(k, counter)| SyncItem {
                    name: k.name,
                    counter,
                })
                .collect())
        })
        .await
    }

    /// Ends the lease of names taken from `shard`: delivered, or put back as changed.
    pub async fn capacity_sync_settle(
        &self,
        shard: usize,
        names: &[String],
        delivered: bool,
    ) -> StoreResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let (dirty, syncing) = self.cap_shard_keys(shard);
        self.run("capacity_sync_settle", async {
            match &self.inner.backend {
                Backend::Memory(m) => {
                    memory::capacity_sync_settle(m, &dirty, &syncing, names, delivered);
                    Ok(())
                }
                Backend::Redis(r) => {
                    redis::capacity_sync_settle(r, &dirty, &syncing, names, delivered).await
                }
            }
        })
        .await
    }

    /// Takes lock `ns/id` if it is free, under the SHA-256 of the caller's token,
    /// with the next fence. `max_hold` (zero: none) caps the lock's whole life.
    pub async fn lock_acquire(
        &self,
        ns: &str,
        id: &str,
        token_sha256_hex: &str,
        owner_json: &str,
        ttl: Duration,
        max_hold: Duration,
    ) -> StoreResult<LockAcquire> {
        let (lock, fence) = self.lock_keys(ns, id);
        self.run("lock_acquire", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::lock_acquire(
                    m,
                    &lock,
                    &fence,
                    token_sha256_hex,
                    owner_json,
                    ttl,
                    max_hold,
                )),
                Backend::Redis(r) => {
                    redis::lock_acquire(
                        r,
                        &lock,
                        &fence,
                        token_sha256_hex,
                        owner_json,
                        ms(ttl),
                        ms(max_hold),
                    )
                    .await
                }
            }
        })
        .await
    }

    /// Extends lock `ns/id` to `ttl` from now if this token holds it.
    pub async fn lock_renew(
        &self,
        ns: &str,
        id: &str,
        token_sha256_hex: &str,
        ttl: Duration,
        max_hold: Duration,
    ) -> StoreResult<LockRenew> {
        let (lock, _) = self.lock_keys(ns, id);
        self.run("lock_renew", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::lock_renew(
                    m,
                    &lock,
                    token_sha256_hex,
                    ttl,
                    max_hold,
                )),
                Backend::Redis(r) => {
                    redis::lock_renew(r, &lock, token_sha256_hex, ms(ttl), ms(max_hold)).await
                }
            }
        })
        .await
    }

    /// Frees lock `ns/id` if this token holds it.
    pub async fn lock_release(
        &self,
        ns: &str,
        id: &str,
        token_sha256_hex: &str,
    ) -> StoreResult<LockRelease> {
        let (lock, _) = self.lock_keys(ns, id);
        self.run("lock_release", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::lock_release(m, &lock, token_sha256_hex)),
                Backend::Redis(r) => redis::lock_release(r, &lock, token_sha256_hex).await,
            }
        })
        .await
    }

    /// The holder of lock `ns/id`, or None when it is free.
    pub async fn lock_status(&self, ns: &str, id: &str) -> StoreResult<Option<LockHolder>> {
        let (lock, _) = self.lock_keys(ns, id);
        self.run("lock_status", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::lock_status(m, &lock)),
                Backend::Redis(r) => redis::lock_status(r, &lock).await,
            }
        })
        .await
    }

    /// Stores a one-time payload under the SHA-256 of its token for `ttl`; answers
    /// its expiry in ms since the Unix epoch.
    pub async fn transfer_create(
        &self,
        token_sha256_hex: &str,
        audience: &str,
        payload: &[u8],
        ttl: Duration,
    ) -> StoreResult<u64> {
        let key = self.transfer_key(token_sha256_hex);
        self.run("transfer_create", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::transfer_create(m, &key, audience, payload, ttl)),
                Backend::Redis(r) => {
                    redis::transfer_create(r, &key, audience, payload, ms(ttl)).await
                }
            }
        })
        .await
    }

    /// Hands out the payload once, to its audience only, deleting it in the same step.
    pub async fn transfer_claim(
        &self,
        token_sha256_hex: &str,
        audience: &str,
    ) -> StoreResult<TransferClaim> {
        let key = self.transfer_key(token_sha256_hex);
        self.run("transfer_claim", async {
            match &self.inner.backend {
                Backend::Memory(m) => Ok(memory::transfer_claim(m, &key, audience)),
                Backend::Redis(r) => redis::transfer_claim(r, &key, audience).await,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(
            capacity_shard("sessions/s-1"),
            capacity_shard("sessions/s-1")
        );
        let used: std::collections::BTreeSet<usize> = (0..200)
            .map(|i| capacity_shard(&format!("ns/{i}")))
            .collect();
        assert_eq!(used.len(), CAPACITY_SHARDS);
        assert_eq!(shard_tag(3), "cap:{cap03}");
    }
}
