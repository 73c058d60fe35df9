//! Fenced locks. gatehouse issues the lock token (128 random bits, base64url) and the
//! store keeps only its SHA-256, so renew and release are checked against the token
//! atomically and a caller cannot choose or guess another's token. Each acquisition
//! gets the next fence of the lock — strictly increasing across every acquisition,
//! expiries included — for the app to check in its own writes (docs/locks.md).
//!
//! `wait > 0` waits for the lock: a release publishes a wake-up on the store's
//! `Wake` channel, which every instance's subscription delivers; a waiter also
//! retries at least every `locks.wait_poll` (and when the holder's lease ends), so a
//! lost message only delays it. `locks.max_hold` caps a lock's whole life:
//! no renewal extends it past acquisition + `max_hold`.
//!
//! `ns` and `id` are validated by the caller (`ApiRequest::segment`).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::LocksConfig;
use crate::metrics::Metrics;
use crate::store::coord::LockAcquire;
pub use crate::store::coord::{LockHolder, LockRelease, LockRenew};
use crate::store::wake::{announced, wait_for_wake};
use crate::store::{Channel, Store};

use super::{random_token, sha256_hex, CoordError};

/// Random bytes in a lock token (128 bits).
pub const TOKEN_BYTES: usize = 16;
/// Largest serialized `owner` accepted.
pub const MAX_OWNER_BYTES: usize = 1024;

/// A lock just acquired.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The secret that renews and releases this acquisition; shown once.
    pub token: String,
    pub fence: u64,
    pub expires_ms: u64,
    pub owner: Value,
}

/// Someone else's hold, as a loser or an observer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    pub owner: Value,
    pub fence: u64,
    pub expires_ms: u64,
    pub remaining: Duration,
}

impl Holder {
    fn from_store(h: LockHolder) -> Holder {
        Holder {
            owner: serde_json::from_str(&h.owner).unwrap_or(Value::String(h.owner)),
            fence: h.fence,
            expires_ms: h.expires_ms,
            remaining: h.remaining,
        }
    }

    /// Whole seconds until the hold ends, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.remaining.as_millis().div_ceil(1000).max(1) as u64
    }
}

/// What an acquire did.
#[derive(Clone, Debug, PartialEq)]
pub enum Acquire {
    Acquired(Lease),
    /// Still held by someone else when the wait (if any) ended.
    Held(Holder),
}

/// Validates `ttl` (1ms..=`locks.max_ttl`), field named `ttlMs`.
fn check_ttl(cfg: &LocksConfig, ttl_ms: u64) -> Result<Duration, CoordError> {
    let max = cfg.max_ttl.as_millis() as u64;
    if ttl_ms == 0 || ttl_ms > max {
        return Err(CoordError::invalid(
            "ttlMs",
            format!("must be between 1 and {max} (locks.max_ttl)"),
        ));
    }
    Ok(Duration::from_millis(ttl_ms))
}

fn count(metrics: &Metrics, op: &str, result: &str) {
    metrics
        .lock_operations_total
        .with_label_values(&[op, result])
        .inc();
}

/// The payload a release publishes on the `Wake` channel.
fn wake_payload(ns: &str, id: &str) -> Bytes {
    Bytes::from(format!("lock:{ns}/{id}"))
}

/// What an acquire asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct AcquireRequest {
    /// A JSON object (at most 1 KiB), shown to others while the lock is held.
    pub owner: Value,
    pub ttl_ms: u64,
    /// How long to wait while the lock is held (0: answer at once).
    pub wait_ms: u64,
}

/// Acquires lock `ns/id` for `ttl_ms`, waiting up to `wait_ms` while it is held.
pub async fn acquire(
    store: &Store,
    metrics: &Metrics,
    cfg: &LocksConfig,
    ns: &str,
    id: &str,
    req: AcquireRequest,
) -> Result<Acquire, CoordError> {
    let AcquireRequest {
        owner,
        ttl_ms,
        wait_ms,
    } = req;
    let ttl = check_ttl(cfg, ttl_ms)?;
    let max_wait = cfg.max_wait.as_millis() as u64;
    if wait_ms > max_wait {
        return Err(CoordError::invalid(
            "waitMs",
            format!("must be between 0 and {max_wait} (locks.max_wait)"),
        ));
    }
    if !owner.is_object() {
        return Err(CoordError::invalid("owner", "must be a JSON object"));
    }
    let owner_json = owner.to_string();
    if owner_json.len() > MAX_OWNER_BYTES {
        return Err(CoordError::invalid(
            "owner",
            format!("must be at most {MAX_OWNER_BYTES} bytes of JSON"),
        ));
    }
    let token = random_token(TOKEN_BYTES);
    let token_hash = sha256_hex(&token);
    // Subscribed before the first attempt, so a release between that attempt and the
    // wait is not missed.
    let mut events = (wait_ms > 0).then(|| store.subscribe());
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let wake = wake_payload(ns, id);
    loop {
        let attempt = store
            .lock_acquire(ns, id, &token_hash, &owner_json, ttl, cfg.max_hold)
            .await;
        match attempt {
            Err(e) => {
                count(metrics, "acquire", "error");
                return Err(e.into());
            }
            Ok(LockAcquire::Acquired { fence, expires_ms }) => {
                count(metrics, "acquire", "acquired");
                return Ok(Acquire::Acquired(Lease {
                    token,
                    fence,
                    expires_ms,
                    owner,
                }));
            }
            Ok(LockAcquire::Held(h)) => {
                let now = Instant::now();
                let Some(events) = events.as_mut().filter(|_| now < deadline) else {
                    count(metrics, "acquire", "held");
                    return Ok(Acquire::Held(Holder::from_store(h)));
                };
                // The holder's lease ending frees the lock without any release message.
                let nap = (deadline - now)
                    .min(cfg.wait_poll)
                    .min(h.remaining.max(Duration::from_millis(1)));
                wait_for_wake(announced(events, &wake), nap).await;
            }
        }
    }
}

/// The holder of lock `ns/id`, or None when it is free.
pub async fn status(
    store: &Store,
    metrics: &Metrics,
    ns: &str,
    id: &str,
) -> Result<Option<Holder>, CoordError> {
    let result = store.lock_status(ns, id).await;
    let label = match &result {
        Ok(Some(_)) => "locked",
        Ok(None) => "not_locked",
        Err(_) => "error",
    };
    count(metrics, "status", label);
    Ok(result?.map(Holder::from_store))
}

/// Extends the lock held with `token` to `ttl_ms` from now (same fence).
pub async fn renew(
    store: &Store,
    metrics: &Metrics,
    cfg: &LocksConfig,
    ns: &str,
    id: &str,
    token: &str,
    ttl_ms: u64,
) -> Result<LockRenew, CoordError> {
    let ttl = check_ttl(cfg, ttl_ms)?;
    let result = store
        .lock_renew(ns, id, &sha256_hex(token), ttl, cfg.max_hold)
        .await;
    let label = match &result {
        Ok(LockRenew::Renewed { .. }) => "renewed",
        Ok(LockRenew::NotLocked) => "not_locked",
        Ok(LockRenew::NotOwner) => "not_owner",
        Err(_) => "error",
    };
    count(metrics, "renew", label);
    Ok(result?)
}

/// Releases the lock held with `token` and wakes its waiters on every instance.
pub async fn release(
    store: &Store,
    metrics: &Metrics,
    ns: &str,
    id: &str,
    token: &str,
) -> Result<LockRelease, CoordError> {
    let result = store.lock_release(ns, id, &sha256_hex(token)).await;
    let label = match &result {
        Ok(LockRelease::Released) => "released",
        Ok(LockRelease::NotLocked) => "not_locked",
        Ok(LockRelease::NotOwner) => "not_owner",
        Err(_) => "error",
    };
    count(metrics, "release", label);
    let result = result?;
    if result == LockRelease::Released {
        if let Err(e) = store.publish(Channel::Wake, wake_payload(ns, id)).await {
            // The release stands; waiters find out at their next poll.
            tracing::debug!(error = %e, "lock released but the wake-up was not published");
        }
    }
    Ok(result)
}
