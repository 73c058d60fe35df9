//! Token revocation (docs/api.md, docs/openapi.yaml): records in the store, and the
//! in-process view every instance checks on the proxy path.
//!
//! # Records
//!
//! - By `jti`, until the token's expiry plus `auth.leeway` (the verifier accepts a token
//!   until then).
//! - By the SHA-256 of the signing input, for a token without `jti`: never the raw token
//!   nor a hash of the whole token, whose signature part can be re-encoded (ECDSA
//!   signatures are malleable) into other bytes that still verify.
//! - By subject: every token of `sub` whose `iat` is earlier than `issuedBefore` is
//!   revoked, and so is every token of that subject that has no `iat`. Kept for
//!   `auth.max_token_lifetime` + `auth.leeway` after `issuedBefore`, by when every such
//!   token has expired (if the issuer keeps to that lifetime).
//!
//! A record only grows: revoking again keeps the later instant and the longer life, so
//! repeating a call is harmless. Revoking writes the store, then learns the revocation
//! locally, then announces it on `Channel::Revoke` to every instance.
//!
//! # The view
//!
//! - *Known revocations* (jti / signing input → expiry, subject → `issuedBefore`), learned
//!   from this instance's revocations, from every instance's announcements and from store
//!   reads. Records are never withdrawn, so a known revocation is never doubted; it is
//!   forgotten when the tokens it names have expired.
//! - *Checked tokens*: a token the store said is not revoked, remembered (by its signing
//!   input) with the generation of the subscription it was read in. Believed only while
//!   the subscription is live and in that same generation: `SubscriptionLost`,
//!   `SubscriptionRestored`, a receiver that fell behind, and known revocations pushed
//!   out for room each start a new generation. So an instance that may have missed an
//!   announcement reads the store again before it trusts a token, and the common case —
//!   a token seen before, with the subscription live — does no store round trip.
//!
//! A check that needs the store while the store cannot answer is `Err(StoreError)`; the
//! caller applies `on_store_error`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Claims, RevocationId};
use crate::backoff::Backoff;
use crate::clock::now_ms;
use crate::config::AuthConfig;
use crate::metrics::Metrics;
use crate::store::{Channel, RevocationKind, Store, StoreError, StoreEvent};

/// Known revocations kept per kind. Beyond this, the least recently used are forgotten
/// and checked tokens are re-read (a new generation), so forgetting is never wrong.
pub const KNOWN_CAPACITY: u64 = 100_000;
/// Checked tokens kept.
pub const CHECKED_CAPACITY: u64 = 100_000;
/// The longest a checked token is believed without a new store read, even while the
/// subscription stays live.
pub const MAX_CHECKED_TTL: Duration = Duration::from_secs(600);
/// The first and the longest pause between attempts of a background revocation.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long records live, from `[auth]` (reloadable, so passed per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// `auth.leeway`: a token is accepted until its `exp` plus this.
    pub leeway: Duration,
    /// `auth.max_token_lifetime`: the longest `exp - iat` of a token.
    pub max_token_lifetime: Duration,
}

impl Lifetimes {
    pub fn of(auth: &AuthConfig) -> Lifetimes {
        Lifetimes {
            leeway: auth.leeway,
            max_token_lifetime: auth.max_token_lifetime,
        }
    }

    /// How long after its instant a record is kept.
    fn keep(self, kind: RevocationKind) -> i64 {
        let d = match kind {
            RevocationKind::Jti | RevocationKind::SigningInput => self.leeway,
            RevocationKind::Subject => self.max_token_lifetime.saturating_add(self.leeway),
        };
        millis(d)
    }
}

/// Whether a verified token may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    NotRevoked,
    Revoked,
}

/// What an accepted revocation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Recorded and announced; `instant_ms` is what the record now holds (a later
    /// instant recorded before wins).
    Recorded { instant_ms: i64 },
    /// Every token it names has already expired: nothing to record.
    AlreadyExpired,
}

/// Why a revocation was not (fully) made.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The store could not be written: nothing was recorded.
    #[error("the revocation could not be recorded: {0}")]
    NotRecorded(StoreError),
    /// Recorded (and enforced here), but the announcement to the other instances
    /// failed; they learn it when they next read the store. Repeating the call is safe.
    #[error("the revocation was recorded but not announced: {0}")]
    NotAnnounced(StoreError),
}

/// A known revocation.
#[derive(Clone, Copy, Debug)]
struct Known {
    /// A token's expiry (jti, signing input) or a subject's `issuedBefore`.
    instant_ms: i64,
    forget_at_ms: i64,
}

/// A token the store said was not revoked.
#[derive(Clone, Copy, Debug)]
struct Checked {
    generation: u64,
    forget_at_ms: i64,
}

trait ForgetAt {
    fn forget_at_ms(&self) -> i64;
}

impl ForgetAt for Known {
    fn forget_at_ms(&self) -> i64 {
        self.forget_at_ms
    }
}

impl ForgetAt for Checked {
    fn forget_at_ms(&self) -> i64 {
        self.forget_at_ms
    }
}

/// Per-entry expiry at the value's `forget_at_ms`.
struct Forget;

impl Forget {
    fn left<V: ForgetAt>(v: &V) -> Duration {
        Duration::from_millis(v.forget_at_ms().saturating_sub(now_ms() as i64).max(0) as u64)
    }
}

impl<V: ForgetAt> moka::Expiry<String, V> for Forget {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Forget::left(value))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &V,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(Forget::left(value))
    }
}

/// Whether checked tokens may be believed.
#[derive(Default)]
struct Trust {
    generation: AtomicU64,
    live: AtomicBool,
}

impl Trust {
    fn new_generation(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// What every instance hears on `Channel::Revoke`. Names a jti, a signing-input hash or
/// a subject; never a token.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Announcement {
    kind: String,
    name: String,
    at: i64,
    forget: i64,
}

fn kind_label(kind: RevocationKind) -> &'static str {
    match kind {
        RevocationKind::Jti => "jti",
        RevocationKind::SigningInput => "sig",
        RevocationKind::Subject => "sub",
    }
}

fn kind_from_label(label: &str) -> Option<RevocationKind> {
    match label {
        "jti" => Some(RevocationKind::Jti),
        "sig" => Some(RevocationKind::SigningInput),
        "sub" => Some(RevocationKind::Subject),
        _ => None,
    }
}

/// The record that names this token itself.
fn id_of(claims: &Claims) -> (RevocationKind, &str) {
    match claims.revocation_id() {
        RevocationId::Jti(j) => (RevocationKind::Jti, j),
        RevocationId::SigningInput(s) => (RevocationKind::SigningInput, s),
    }
}

/// Whether a subject revocation at `before_ms` covers a token issued at `iat` (seconds):
/// an earlier `iat`, or none at all.
fn subject_revokes(iat: Option<i64>, before_ms: i64) -> bool {
    iat.is_none_or(|iat| iat.saturating_mul(1000) < before_ms)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The revocation records and this instance's view of them. One per process, in
/// `AppState`.
pub struct Revocations {
    store: Store,
    metrics: Arc<Metrics>,
    jtis: Cache<String, Known>,
    signing_inputs: Cache<String, Known>,
    subjects: Cache<String, Known>,
    checked: Cache<String, Checked>,
    trust: Arc<Trust>,
}

impl Revocations {
    /// An empty view over `store`. Checked tokens are not believed until
    /// `spawn_subscriber` has found the subscription live.
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Revocations {
        let trust = Arc::new(Trust::default());
        let known = || {
            let t = Arc::downgrade(&trust);
            Cache::builder()
                .max_capacity(KNOWN_CAPACITY)
                // Every new revocation is admitted (TinyLFU could refuse one).
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(Forget)
                .eviction_listener(move |_k, _v: Known, cause| {
                    // A checked token may be revoked by what was pushed out: check
                    // tokens again rather than believe them.
                    if cause == RemovalCause::Size {
                        if let Some(t) = t.upgrade() {
                            t.new_generation();
                        }
                    }
                })
                .build()
        };
        Revocations {
            store,
            metrics,
            jtis: known(),
            signing_inputs: known(),
            subjects: known(),
            checked: Cache::builder()
                .max_capacity(CHECKED_CAPACITY)
                .expire_after(Forget)
                .build(),
            trust,
        }
    }

    fn known(&self, kind: RevocationKind) -> &Cache<String, Known> {
        match kind {
            RevocationKind::Jti => &self.jtis,
            RevocationKind::SigningInput => &self.signing_inputs,
            RevocationKind::Subject => &self.subjects,
        }
    }

    /// Adds a revocation to the view, keeping the later instant and the later forget
    /// time of what it already knew.
    fn learn(&self, kind: RevocationKind, name: &str, instant_ms: i64, forget_at_ms: i64) {
        if forget_at_ms <= now_ms() as i64 {
            return;
        }
        self.known(kind)
            .entry(name.to_string())
            .and_upsert_with(|old| match old.map(|e| e.into_value()) {
                Some(k) => Known {
                    instant_ms: k.instant_ms.max(instant_ms),
                    forget_at_ms: k.forget_at_ms.max(forget_at_ms),
                },
                None => Known {
                    instant_ms,
                    forget_at_ms,
                },
            });
    }

    /// The verdict the view can give without the store, if any: revoked by a known
    /// revocation, or not revoked by a checked token still believed.
    pub fn check_local(&self, claims: &Claims) -> Option<Verdict> {
        let (kind, name) = id_of(claims);
        if self.known(kind).get(name).is_some() {
            return Some(Verdict::Revoked);
        }
        if let Some(sub) = claims.sub.as_deref() {
            if let Some(k) = self.subjects.get(sub) {
                if subject_revokes(claims.iat, k.instant_ms) {
                    return Some(Verdict::Revoked);
                }
            }
        }
        let checked = self.checked.get(claims.signing_input_sha256.as_str())?;
        let believed = self.trust.live.load(Ordering::SeqCst)
            && checked.generation == self.trust.generation.load(Ordering::SeqCst);
        believed.then_some(Verdict::NotRevoked)
    }

    /// Whether a verified token is revoked: from the view when it knows, otherwise from
    /// the store (remembering the answer). `Err` when the store had to be asked and
    /// could not answer.
    pub async fn check(&self, claims: &Claims, life: Lifetimes) -> Result<Verdict, StoreError> {
        if let Some(v) = self.check_local(claims) {
            return Ok(v);
        }
        // Read before the store: an announcement or a loss after this point starts a
        // new generation, and what we remember below is then not believed.
        let generation = self.trust.generation.load(Ordering::SeqCst);
        let live = self.trust.live.load(Ordering::SeqCst);
        let (kind, name) = id_of(claims);
        let by_subject = async {
            match claims.sub.as_deref() {
                Some(sub) => {
                    self.store
                        .revocation_get(RevocationKind::Subject, sub)
                        .await
                }
                None => Ok(None),
            }
        };
        let (by_id, by_subject) = tokio::join!(self.store.revocation_get(kind, name), by_subject);
        let (by_id, by_subject) = (by_id?, by_subject?);
        let mut verdict = Verdict::NotRevoked;
        if let Some(at) = by_id {
            self.learn(kind, name, at, at.saturating_add(life.keep(kind)));
            verdict = Verdict::Revoked;
        }
        if let (Some(sub), Some(before)) = (claims.sub.as_deref(), by_subject) {
            let keep = life.keep(RevocationKind::Subject);
            self.learn(
                RevocationKind::Subject,
                sub,
                before,
                before.saturating_add(keep),
            );
            if subject_revokes(claims.iat, before) {
                verdict = Verdict::Revoked;
            }
        }
        if verdict == Verdict::NotRevoked && live {
            let token_end = claims
                .exp
                .saturating_mul(1000)
                .saturating_add(millis(life.leeway));
            let forget_at_ms =
                token_end.min((now_ms() as i64).saturating_add(millis(MAX_CHECKED_TTL)));
            self.checked.insert(
                claims.signing_input_sha256.clone(),
                Checked {
                    generation,
                    forget_at_ms,
                },
            );
        }
        Ok(verdict)
    }

    /// Revokes a token by its `jti` until `expires_at_ms` (plus the leeway).
    pub async fn revoke_jti(
        &self,
        jti: &str,
        expires_at_ms: i64,
        life: Lifetimes,
    ) -> Result<Revoked, RevokeError> {
        let r = self
            .record(RevocationKind::Jti, jti, expires_at_ms, life)
            .await;
        self.count("jti", &r);
        r
    }

    /// Revokes a verified token: by its `jti`, or by its signing input when it has
    /// none, until its `exp` (plus the leeway).
    pub async fn revoke_token(
        &self,
        claims: &Claims,
        life: Lifetimes,
    ) -> Result<Revoked, RevokeError> {
        let (kind, name) = id_of(claims);
        let r = self
            .record(kind, name, claims.exp.saturating_mul(1000), life)
            .await;
        self.count("token", &r);
        r
    }

    /// Revokes every token of `sub` issued before `issued_before_ms` (and every one of
    /// its tokens without `iat`).
    pub async fn revoke_subject(
        &self,
        sub: &str,
        issued_before_ms: i64,
        life: Lifetimes,
    ) -> Result<Revoked, RevokeError> {
        let r = self
            .record(RevocationKind::Subject, sub, issued_before_ms, life)
            .await;
        self.count("subject", &r);
        r
    }

    /// Revokes a verified token and, when the store cannot take it now, keeps trying
    /// in the background (until the token expires) while this instance already
    /// enforces it. For `revoke_on_success`, where the origin has already acted.
    pub async fn revoke_token_or_retry(
        self: &Arc<Self>,
        claims: &Claims,
        life: Lifetimes,
    ) -> Result<Revoked, RevokeError> {
        let r = self.revoke_token(claims, life).await;
        if let Err(e) = &r {
            let (kind, name) = id_of(claims);
            let at = claims.exp.saturating_mul(1000);
            if matches!(e, RevokeError::NotRecorded(_)) {
                self.learn(kind, name, at, at.saturating_add(life.keep(kind)));
            }
            self.retry_in_background(kind, name.to_string(), at, life);
        }
        r
    }

    fn retry_in_background(
        self: &Arc<Self>,
        kind: RevocationKind,
        name: String,
        at: i64,
        life: Lifetimes,
    ) {
        let weak: Weak<Revocations> = Arc::downgrade(self);
        let forget_at = at.saturating_add(life.keep(kind));
        tokio::spawn(async move {
            let mut pause = Backoff::new(RETRY_FIRST, RETRY_MAX);
            loop {
                tokio::time::sleep(pause.next_delay()).await;
                // Ends with the instance, or when the token would be rejected anyway.
                let Some(view) = weak.upgrade() else { return };
                if (now_ms() as i64) >= forget_at {
                    return;
                }
                match view.record(kind, &name, at, life).await {
                    Ok(_) => {
                        tracing::info!("a revocation delayed by a store outage is now recorded");
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "revocation retry failed"),
                }
            }
        });
    }

    fn count(&self, label: &str, r: &Result<Revoked, RevokeError>) {
        if r.is_ok() {
            self.metrics
                .revocations_total
                .with_label_values(&[label])
                .inc();
        }
    }

    /// Store, view, announcement — in that order, so that whoever hears the
    /// announcement and reads the store finds the record.
    async fn record(
        &self,
        kind: RevocationKind,
        name: &str,
        instant_ms: i64,
        life: Lifetimes,
    ) -> Result<Revoked, RevokeError> {
        let keep = life.keep(kind);
        let now = now_ms() as i64;
        let forget_at = instant_ms.saturating_add(keep);
        if forget_at <= now {
            return Ok(Revoked::AlreadyExpired);
        }
        let stored = self
            .store
            .revocation_put(
                kind,
                name,
                instant_ms,
                Duration::from_millis((forget_at - now) as u64),
            )
            .await
            .map_err(RevokeError::NotRecorded)?;
        let forget_at = forget_at.max(stored.saturating_add(keep));
        self.learn(kind, name, stored, forget_at);
        let announcement = Announcement {
            kind: kind_label(kind).to_string(),
            name: name.to_string(),
            at: stored,
            forget: forget_at,
        };
        let payload = serde_json::to_vec(&announcement).expect("announcements serialize");
        self.store
            .publish(Channel::Revoke, Bytes::from(payload))
            .await
            .map_err(RevokeError::NotAnnounced)?;
        Ok(Revoked::Recorded { instant_ms: stored })
    }

    /// The expiry recorded for a revoked `jti`, or `None` when it is not revoked. The
    /// store answers; what this instance knows counts too (e.g. a record the store lost
    /// in a restart). `Err` only when the store cannot answer and the view does not know.
    pub async fn jti_status(&self, jti: &str) -> Result<Option<i64>, StoreError> {
        let local = self.jtis.get(jti).map(|k| k.instant_ms);
        match self.store.revocation_get(RevocationKind::Jti, jti).await {
            Ok(stored) => Ok(stored.max(local)),
            Err(e) => local.map(Some).ok_or(e),
        }
    }

    /// Whether checked tokens are believed now (the subscription is live).
    pub fn is_trusted(&self) -> bool {
        self.trust.live.load(Ordering::SeqCst)
    }

    /// Applies one announcement heard on `Channel::Revoke`; anything malformed is
    /// ignored (and logged) — it cannot name a token we could then wrongly accept.
    fn hear(&self, payload: &[u8]) {
        let Ok(a) = serde_json::from_slice::<Announcement>(payload) else {
            tracing::warn!("ignored a malformed revocation announcement");
            return;
        };
        let Some(kind) = kind_from_label(&a.kind) else {
            tracing::warn!(kind = %a.kind, "ignored a revocation announcement of unknown kind");
            return;
        };
        self.learn(kind, &a.name, a.at, a.forget);
    }

    fn lost(&self) {
        self.trust.live.store(false, Ordering::SeqCst);
        self.trust.new_generation();
        self.checked.invalidate_all();
    }

    fn restored(&self) {
        self.trust.new_generation();
        self.checked.invalidate_all();
        self.trust.live.store(true, Ordering::SeqCst);
    }

    /// Keeps the view current from the store subscription: announcements are learned,
    /// the loss of the subscription stops belief in checked tokens, its return (or a
    /// receiver that fell behind and missed messages) drops them so they are read
    /// again. The task ends when this view is dropped or the store closes.
    pub fn spawn_subscriber(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        // Subscribe first, then read the state: a change after this read arrives as
        // an event, so it cannot be missed.
        let mut events = self.store.subscribe();
        if self.store.subscription_live() {
            self.restored();
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(view) = weak.upgrade() else { return };
                match event {
                    Ok(StoreEvent::Message {
                        channel: Channel::Revoke,
                        payload,
                    }) => view.hear(&payload),
                    Ok(StoreEvent::Message { .. }) => {}
                    Ok(StoreEvent::SubscriptionLost) => {
                        tracing::warn!("revocation feed lost: tokens are checked against the store until it returns");
                        view.lost();
                    }
                    Ok(StoreEvent::SubscriptionRestored) => view.restored(),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "fell behind the store subscription; re-reading revocations"
                        );
                        view.trust.new_generation();
                        view.checked.invalidate_all();
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::Map;

    fn life() -> Lifetimes {
        Lifetimes {
            leeway: Duration::from_secs(60),
            max_token_lifetime: Duration::from_secs(3600),
        }
    }

    fn claims(sub: &str, jti: Option<&str>, iat: Option<i64>, sig: &str) -> Claims {
        let now = (now_ms() as i64) / 1000;
        Claims {
            sub: Some(sub.to_string()),
            jti: jti.map(str::to_string),
            iss: None,
            aud: Vec::new(),
            exp: now + 600,
            nbf: None,
            iat,
            signing_input_sha256: sig.to_string(),
            all: Map::new(),
        }
    }

    fn view() -> Arc<Revocations> {
        let cfg = Config::default();
        let metrics = Arc::new(Metrics::new());
        let store = Store::new(&cfg.store, metrics.clone());
        Arc::new(Revocations::new(store, metrics))
    }

    #[test]
    fn a_subject_revocation_covers_earlier_and_missing_iat_only() {
        assert!(subject_revokes(None, 1_000));
        assert!(subject_revokes(Some(0), 1_000));
        assert!(!subject_revokes(Some(1), 1_000));
        assert!(!subject_revokes(Some(2), 1_000));
    }

    #[tokio::test]
    async fn checked_tokens_are_believed_only_while_the_subscription_is_live() {
        let v = view();
        let _task = v.spawn_subscriber();
        let c = claims("u1", Some("j1"), Some((now_ms() as i64) / 1000), "aa");
        assert_eq!(v.check_local(&c), None, "unknown before the first read");
        assert_eq!(v.check(&c, life()).await.unwrap(), Verdict::NotRevoked);
        assert_eq!(v.check_local(&c), Some(Verdict::NotRevoked));
        v.lost();
        assert_eq!(
            v.check_local(&c),
            None,
            "not believed while the feed is down"
        );
        assert_eq!(v.check(&c, life()).await.unwrap(), Verdict::NotRevoked);
        assert_eq!(
            v.check_local(&c),
            None,
            "not remembered while the feed is down"
        );
        v.restored();
        assert_eq!(v.check_local(&c), None, "re-read after the feed returns");
        assert_eq!(v.check(&c, life()).await.unwrap(), Verdict::NotRevoked);
        assert_eq!(v.check_local(&c), Some(Verdict::NotRevoked));
    }

    #[tokio::test]
    async fn a_known_revocation_wins_over_a_checked_token() {
        let v = view();
        let _task = v.spawn_subscriber();
        let now = now_ms() as i64;
        let old = claims("u2", Some("j2"), Some(now / 1000 - 10), "bb");
        let newer = claims("u2", Some("j3"), Some(now / 1000 + 5), "cc");
        assert_eq!(v.check(&old, life()).await.unwrap(), Verdict::NotRevoked);
        assert_eq!(v.check(&newer, life()).await.unwrap(), Verdict::NotRevoked);
        let r = v.revoke_subject("u2", now, life()).await.unwrap();
        assert_eq!(r, Revoked::Recorded { instant_ms: now });
        assert_eq!(v.check_local(&old), Some(Verdict::Revoked));
        assert_eq!(v.check_local(&newer), Some(Verdict::NotRevoked));
        // An older subject revocation never weakens the newer one.
        let r = v.revoke_subject("u2", now - 60_000, life()).await.unwrap();
        assert_eq!(r, Revoked::Recorded { instant_ms: now });
        assert_eq!(v.check_local(&old), Some(Verdict::Revoked));
    }

    #[tokio::test]
    async fn revocations_of_expired_tokens_record_nothing() {
        let v = view();
        let long_ago = (now_ms() as i64) - 3_600_000;
        assert_eq!(
            v.revoke_jti("gone", long_ago, life()).await.unwrap(),
            Revoked::AlreadyExpired
        );
        assert_eq!(v.jti_status("gone").await.unwrap(), None);
        assert_eq!(
            v.revoke_subject("u3", long_ago - 3_600_000, life())
                .await
                .unwrap(),
            Revoked::AlreadyExpired
        );
        // Within the leeway the token is still accepted, so it is still recorded.
        let r = v
            .revoke_jti("late", (now_ms() as i64) - 1_000, life())
            .await
            .unwrap();
        assert!(matches!(r, Revoked::Recorded { .. }));
    }

    #[tokio::test]
    async fn announcements_are_learned_and_garbage_is_ignored() {
        let v = view();
        let now = now_ms() as i64;
        let c = claims("u4", None, Some(now / 1000), "dd");
        v.hear(b"not json");
        v.hear(br#"{"kind":"nope","name":"dd","at":1,"forget":99999999999999}"#);
        assert_eq!(v.check_local(&c), None);
        let a = Announcement {
            kind: "sig".into(),
            name: "dd".into(),
            at: now + 600_000,
            forget: now + 660_000,
        };
        v.hear(&serde_json::to_vec(&a).unwrap());
        assert_eq!(v.check_local(&c), Some(Verdict::Revoked));
    }
}
