//! The Redis side: every operation is one script from `lua/` (EVALSHA; a script
//! missing after a Redis restart or `SCRIPT FLUSH` is loaded again on NOSCRIPT by
//! `RedisStore::script`).

use std::time::Duration;

use bytes::Bytes;

use super::{
    Admission, CapKeys, Counter, LockAcquire, LockHolder, LockRelease, LockRenew, MemberRelease,
    TransferClaim,
};
use crate::store::redis::RedisStore;
use crate::store::scripts;
use crate::store::{StoreError, StoreResult};

fn unexpected(script: &str, reply: impl std::fmt::Debug) -> StoreError {
    StoreError::Protocol(format!("{script}: unexpected reply {reply:?}"))
}

fn counter(count: i64, capacity: i64, version: i64) -> Counter {
    Counter {
        capacity: capacity.max(0) as u64,
        count: count.max(0) as u64,
        version: version.max(0) as u64,
    }
}

fn cap_keys(k: &CapKeys) -> [&str; 3] {
    [&k.counter, &k.members, &k.dirty]
}

pub(super) async fn capacity_admit(
    r: &RedisStore,
    k: &CapKeys,
    member: &str,
    define: Option<u64>,
) -> StoreResult<Admission> {
    let define = define.map(|c| c.to_string()).unwrap_or_default();
    let (outcome, count, capacity, version): (i64, i64, i64, i64) = r
        .script(
            &scripts::CAPACITY_ADMIT,
            &cap_keys(k),
            &[member.as_bytes(), define.as_bytes(), k.name.as_bytes()],
        )
        .await?;
    let c = counter(count, capacity, version);
    match outcome {
        1 => Ok(Admission::Admitted(c)),
        2 => Ok(Admission::AlreadyAdmitted(c)),
        3 => Ok(Admission::Full(c)),
        0 => Ok(Admission::NotDefined),
        other => Err(unexpected("capacity_admit", other)),
    }
}

pub(super) async fn capacity_set(
    r: &RedisStore,
    k: &CapKeys,
    capacity: u64,
) -> StoreResult<Counter> {
    let capacity = capacity.to_string();
    let (count, capacity, version): (i64, i64, i64) = r
        .script(
            &scripts::CAPACITY_SET,
            &cap_keys(k),
            &[capacity.as_bytes(), k.name.as_bytes()],
        )
        .await?;
    Ok(counter(count, capacity, version))
}

pub(super) async fn capacity_release(
    r: &RedisStore,
    k: &CapKeys,
    member: &str,
) -> StoreResult<MemberRelease> {
    let (outcome, count, capacity, version): (i64, i64, i64, i64) = r
        .script(
            &scripts::CAPACITY_RELEASE,
            &cap_keys(k),
            &[member.as_bytes(), k.name.as_bytes()],
        )
        .await?;
    match outcome {
        1 => Ok(MemberRelease::Released(counter(count, capacity, version))),
        0 => Ok(MemberRelease::NotAdmitted),
        other => Err(unexpected("capacity_release", other)),
    }
}

/// Reads counters of ONE shard (their keys share a hash tag) in one script.
pub(super) async fn capacity_read(
    r: &RedisStore,
    keys: &[&CapKeys],
) -> StoreResult<Vec<Option<Counter>>> {
    let flat: Vec<&str> = keys
        .iter()
        .flat_map(|k| [k.counter.as_str(), k.members.as_str()])
        .collect();
    let reply: Vec<i64> = r.script(&scripts::CAPACITY_READ, &flat, &[]).await?;
    if reply.len() != keys.len() * 4 {
        return Err(unexpected("capacity_read", reply.len()));
    }
    Ok(reply
        .chunks(4)
        .map(|c| (c[0] == 1).then(|| counter(c[1], c[2], c[3])))
        .collect())
}

pub(super) async fn capacity_sync_take(
    r: &RedisStore,
    dirty: &str,
    syncing: &str,
    max: usize,
    lease_ms: u64,
) -> StoreResult<Vec<String>> {
    let (max, lease) = (max.to_string(), lease_ms.to_string());
    r.script(
        &scripts::CAPACITY_SYNC_TAKE,
        &[dirty, syncing],
        &[max.as_bytes(), lease.as_bytes()],
    )
    .await
}

pub(super) async fn capacity_sync_settle(
    r: &RedisStore,
    dirty: &str,
    syncing: &str,
    names: &[String],
    delivered: bool,
) -> StoreResult<()> {
    let flag: &[u8] = if delivered { b"1" } else { b"0" };
    let args: Vec<&[u8]> = std::iter::once(flag)
        .chain(names.iter().map(|n| n.as_bytes()))
        .collect();
    let _: i64 = r
        .script(&scripts::CAPACITY_SYNC_SETTLE, &[dirty, syncing], &args)
        .await?;
    Ok(())
}

pub(super) async fn lock_acquire(
    r: &RedisStore,
    lock: &str,
    fence_key: &str,
    token_hash: &str,
    owner: &str,
    ttl_ms: u64,
    max_hold_ms: u64,
) -> StoreResult<LockAcquire> {
    let (ttl, hold) = (ttl_ms.to_string(), max_hold_ms.to_string());
    let (outcome, fence, expires_ms, remaining_ms, owner): (i64, i64, i64, i64, String) = r
        .script(
            &scripts::LOCK_ACQUIRE,
            &[lock, fence_key],
            &[
                token_hash.as_bytes(),
                owner.as_bytes(),
                ttl.as_bytes(),
                hold.as_bytes(),
            ],
        )
        .await?;
    match outcome {
        1 => Ok(LockAcquire::Acquired {
            fence: fence as u64,
            expires_ms: expires_ms as u64,
        }),
        0 => Ok(LockAcquire::Held(LockHolder {
            owner,
            fence: fence.max(0) as u64,
            expires_ms: expires_ms.max(0) as u64,
            remaining: Duration::from_millis(remaining_ms.max(0) as u64),
        })),
        other => Err(unexpected("lock_acquire", other)),
    }
}

pub(super) async fn lock_renew(
    r: &RedisStore,
    lock: &str,
    token_hash: &str,
    ttl_ms: u64,
    max_hold_ms: u64,
) -> StoreResult<LockRenew> {
    let (ttl, hold) = (ttl_ms.to_string(), max_hold_ms.to_string());
    let (outcome, fence, expires_ms): (i64, i64, i64) = r
        .script(
            &scripts::LOCK_RENEW,
            &[lock],
            &[token_hash.as_bytes(), ttl.as_bytes(), hold.as_bytes()],
        )
        .await?;
    match outcome {
        1 => Ok(LockRenew::Renewed {
            fence: fence as u64,
            expires_ms: expires_ms as u64,
        }),
        0 => Ok(LockRenew::NotLocked),
        -1 => Ok(LockRenew::NotOwner),
        other => Err(unexpected("lock_renew", other)),
    }
}

pub(super) async fn lock_release(
    r: &RedisStore,
    lock: &str,
    token_hash: &str,
) -> StoreResult<LockRelease> {
    let outcome: i64 = r
        .script(&scripts::LOCK_RELEASE, &[lock], &[token_hash.as_bytes()])
        .await?;
    match outcome {
        1 => Ok(LockRelease::Released),
        0 => Ok(LockRelease::NotLocked),
        -1 => Ok(LockRelease::NotOwner),
        other => Err(unexpected("lock_release", other)),
    }
}

pub(super) async fn lock_status(r: &RedisStore, lock: &str) -> StoreResult<Option<LockHolder>> {
    let (held, fence, expires_ms, remaining_ms, owner): (i64, i64, i64, i64, String) =
        r.script(&scripts::LOCK_STATUS, &[lock], &[]).await?;
    Ok((held == 1).then(|| LockHolder {
        owner,
        fence: fence.max(0) as u64,
        expires_ms: expires_ms.max(0) as u64,
        remaining: Duration::from_millis(remaining_ms.max(0) as u64),
    }))
}

pub(super) async fn transfer_create(
    r: &RedisStore,
    key: &str,
    audience: &str,
    payload: &[u8],
    ttl_ms: u64,
) -> StoreResult<u64> {
    let ttl = ttl_ms.to_string();
    let expires: i64 = r
        .script(
            &scripts::TRANSFER_CREATE,
            &[key],
            &[audience.as_bytes(), payload, ttl.as_bytes()],
        )
        .await?;
    Ok(expires.max(0) as u64)
}

pub(super) async fn transfer_claim(
    r: &RedisStore,
    key: &str,
    audience: &str,
) -> StoreResult<TransferClaim> {
    let (outcome, payload): (i64, Vec<u8>) = r
        .script(&scripts::TRANSFER_CLAIM, &[key], &[audience.as_bytes()])
        .await?;
    match outcome {
        1 => Ok(TransferClaim::Claimed(Bytes::from(payload))),
        0 => Ok(TransferClaim::Gone),
        -1 => Ok(TransferClaim::AudienceMismatch),
        other => Err(unexpected("transfer_claim", other)),
    }
}
