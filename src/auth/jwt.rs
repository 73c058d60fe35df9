//! JWT verification at the edge (RFC 7519 / RFC 7515 compact JWS).
//!
//! A `Verifier` is built from `[auth]` and replaced whole on config reload (which also
//! empties its verified-token cache). It accepts a token only if:
//! - the header's `alg` is one of `auth.algorithms` (`none` never is), and a key of the
//!   matching kind verifies the signature: the key named by `kid` when the token has
//!   one, otherwise every key that fits the algorithm. HMAC algorithms are only ever
//!   tried with `auth.hs_secret`, never with a public key's bytes (algorithm confusion);
//! - `exp` is present and now < `exp` + leeway; `nbf` (when present) ≤ now + leeway;
//!   `iat` (when present) ≤ now + leeway;
//! - `iss` equals `auth.issuer` when that is set;
//! - one of the `aud` values (a string or an array) is in `auth.audiences` when that is
//!   non-empty (otherwise 403 `AUDIENCE_NOT_ALLOWED`).
//!
//! A token that passed is cached under the SHA-256 of its bytes until its `exp` (at most
//! `MAX_CACHE_TTL`), so a repeat skips parsing and signature checks; the time claims are
//! still checked against the clock on every hit. Tokens and secrets are never logged.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::jwks::{FetchHook, HttpFetcher, JwksFetcher, RemoteJwks, REFRESH_RETRY};
use super::keys::{self, KeyKind, KeySet, VerifyKey};
use super::Rejection;
use crate::clock::Clock;
use crate::config::AuthConfig;

/// Tokens longer than this are refused as malformed before any parsing.
pub const MAX_TOKEN_BYTES: usize = 32 << 10;
/// The default bound of the verified-token cache, in entries.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// The longest a verified token stays cached, even when its `exp` is later. Bounds how
/// long a token signed by a key that has since left the JWKS keeps passing unchecked.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(600);
/// The default minimum spacing of unknown-`kid` JWKS re-fetches.
pub const DEFAULT_UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// A problem in `[auth]` that stops a `Verifier` from being built, named by key path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AuthError {
    pub key: String,
    pub message: String,
}

fn auth_error(key: impl Into<String>, message: impl Into<String>) -> AuthError {
    AuthError {
        key: key.into(),
        message: message.into(),
    }
}

/// What the caller supplies besides `[auth]`.
#[derive(Clone)]
pub struct VerifierOptions {
    /// The clock for `exp`/`nbf`/`iat` and the re-fetch rate limit.
    pub clock: Clock,
    /// Counts JWKS fetches (`"ok"` / `"error"`).
    pub on_jwks_fetch: Option<FetchHook>,
    /// How the JWKS URL is fetched; `HttpFetcher` (http and https) when `None`.
    pub fetcher: Option<Arc<dyn JwksFetcher>>,
    /// Bound of the verified-token cache, in entries.
    pub cache_capacity: u64,
    /// Minimum spacing of JWKS re-fetches caused by an unknown `kid`.
    pub unknown_kid_refetch_interval: Duration,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            clock: Clock::System,
            on_jwks_fetch: None,
            fetcher: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            unknown_kid_refetch_interval: DEFAULT_UNKNOWN_KID_REFETCH_INTERVAL,
        }
    }
}

/// Per-entry expiry of the verified-token cache: at the token's `exp`, capped.
struct TokenExpiry {
    clock: Clock,
}

impl TokenExpiry {
    fn ttl(&self, claims: &Claims) -> Duration {
        let now = self.clock.now_secs();
        let left = claims.exp.saturating_sub(now).max(0) as u64;
        Duration::from_secs(left).min(MAX_CACHE_TTL)
    }
}

impl moka::Expiry<[u8; 32], Arc<Claims>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Claims>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.ttl(value))
    }

    fn expire_after_update(
        &self,
        _key: &[u8; 32],
        value: &Arc<Claims>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(value))
    }
}

/// Verifies bearer tokens against `[auth]`. Cheap to share behind an `Arc`.
pub struct Verifier {
    algorithms: Vec<Algorithm>,
    /// From `hs_secret`, `public_key_files` and `jwks_file`: fixed for the Verifier's life.
    local: KeySet,
    remote: Option<Arc<RemoteJwks>>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: i64,
    jwks_refresh: Duration,
    cache: moka::sync::Cache<[u8; 32], Arc<Claims>>,
    clock: Clock,
    signature_checks: AtomicU64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .field("local_keys", &self.local.keys)
            .field("remote", &self.remote.is_some())
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with the system clock, the built-in JWKS fetcher and default bounds.
    pub fn new(cfg: &AuthConfig) -> Result<Verifier, AuthError> {
        Verifier::with_options(cfg, VerifierOptions::default())
    }

    /// Builds the verifier: pins the algorithms and loads the secret, PEM files and
    /// JWKS file now. A JWKS URL is not fetched here; call `refresh_jwks` or
    /// `spawn_jwks_refresh`, or let the first token with an unknown `kid` fetch it.
    ///
    /// Refuses what `AuthConfig::algorithm_problems` finds (unknown algorithms, none,
    /// HS* combined with public keys), no keys at all, and key files that do not load or that fit none of
    /// the pinned algorithms.
    pub fn with_options(cfg: &AuthConfig, opts: VerifierOptions) -> Result<Verifier, AuthError> {
        Verifier::build(cfg, opts).map_err(|mut errors| errors.remove(0))
    }

    /// Like `with_options`, answering every problem of the key files at once (the
    /// problems of the algorithms stop it: keys cannot be judged without them).
    /// Never empty on error.
    pub fn build(cfg: &AuthConfig, opts: VerifierOptions) -> Result<Verifier, Vec<AuthError>> {
        let problems = cfg.algorithm_problems();
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|p| auth_error(p.key, p.message))
                .collect());
        }
        // Every name is known now (`config::KNOWN_ALGORITHMS`, jsonwebtoken's names).
        let mut algorithms = Vec::with_capacity(cfg.algorithms.len());
        for alg in cfg
            .algorithms
            .iter()
            .filter_map(|n| Algorithm::from_str(n).ok())
        {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let pins_hmac = algorithms.iter().any(|a| KeyKind::Hmac.fits(*a));
        let mut errors = Vec::new();
        let fits_some = |k: &VerifyKey| algorithms.iter().any(|a| k.fits(*a));

        let mut local = KeySet::default();
        if let Some(secret) = &cfg.hs_secret {
            if pins_hmac {
                local.keys.push(keys::hmac_key(secret));
            } else {
                tracing::warn!("auth.hs_secret is set but auth.algorithms lists no HS* algorithm; it is not used");
            }
        }
        for (i, path) in cfg.public_key_files.iter().enumerate() {
            let key_path = format!("auth.public_key_files[{i}]");
            match keys::load_pem_file(path) {
                Err(m) => errors.push(auth_error(&key_path, format!("{}: {m}", path.display()))),
                Ok(key) if !fits_some(&key) => errors.push(auth_error(
                    key_path,
                    format!(
                        "{} holds a {} key, which verifies none of auth.algorithms",
                        path.display(),
                        key.kind.name()
                    ),
                )),
                Ok(key) => local.keys.push(key),
            }
        }
        if let Some(path) = &cfg.jwks_file {
            let set = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| super::jwks::parse_jwks(&bytes));
            match set {
                Err(m) => errors.push(auth_error(
                    "auth.jwks_file",
                    format!("{}: {m}", path.display()),
                )),
                Ok(set) => {
                    let usable: Vec<VerifyKey> = set.keys.into_iter().filter(fits_some).collect();
                    if usable.is_empty() {
                        errors.push(auth_error(
                            "auth.jwks_file",
                            format!("{} holds no key for any of auth.algorithms", path.display()),
                        ));
                    }
                    local.keys.extend(usable);
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let remote = cfg.jwks_url.as_ref().map(|url| {
            let fetcher = opts.fetcher.clone().unwrap_or_else(|| {
                Arc::new(HttpFetcher::with_roots(
                    super::jwks::DEFAULT_FETCH_TIMEOUT,
                    cfg.jwks_ca_file.as_deref(),
                ))
            });
            Arc::new(RemoteJwks::new(
                url.clone(),
                fetcher,
                opts.unknown_kid_refetch_interval,
                opts.clock.clone(),
                opts.on_jwks_fetch.clone(),
            ))
        });
        if local.is_empty() && remote.is_none() {
            return Err(vec![auth_error(
                "auth",
                "no verification keys: set auth.hs_secret, auth.public_key_files, auth.jwks_file or auth.jwks_url",
            )]);
        }

        let cache = moka::sync::Cache::builder()
            .max_capacity(opts.cache_capacity)
            .expire_after(TokenExpiry {
                clock: opts.clock.clone(),
            })
            .build();
        Ok(Verifier {
            algorithms,
            local,
            remote,
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            leeway: i64::try_from(cfg.leeway.as_secs()).unwrap_or(i64::MAX),
            jwks_refresh: cfg.jwks_refresh,
            cache,
            clock: opts.clock,
            signature_checks: AtomicU64::new(0),
        })
    }

    /// Verifies a token, re-fetching the JWKS first when the token names a `kid` not yet
    /// known (or no JWKS has been fetched yet) and a re-fetch is allowed. Awaits only in
    /// that case; otherwise this is `verify_sync`.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, Rejection> {
        let Some(remote) = &self.remote else {
            return self.verify_sync(token);
        };
        let seen = remote.attempts();
        match self.verify_sync(token) {
            Err(why @ (Rejection::UnknownKey | Rejection::KeysUnavailable)) => {
                if remote.refetch_for_unknown_kid(seen).await {
                    self.verify_sync(token)
                } else {
                    Err(why)
                }
            }
            other => other,
        }
    }

    /// Verifies a token with the keys at hand, never fetching: the hot path. A token
    /// seen before is answered from the cache after re-checking its time claims.
    pub fn verify_sync(&self, token: &str) -> Result<Arc<Claims>, Rejection> {
        if token.is_empty() {
            return Err(Rejection::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = self.clock.now_secs();
        if let Some(claims) = self.cache.get(&digest) {
            self.check_times(&claims, now)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_uncached(token, now)?);
        if claims.exp > now {
            self.cache.insert(digest, claims.clone());
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, Rejection> {
        let claims = self.signed_claims(token)?;
        self.check_times(&claims, now)?;
        if let Some(want) = &self.issuer {
            if claims.iss.as_deref() != Some(want.as_str()) {
                return Err(Rejection::IssuerMismatch);
            }
        }
        if !self.audiences.is_empty() && !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(Rejection::AudienceNotAllowed);
        }
        Ok(claims)
    }

    /// Verifies only what proves who made the token — its form, the pinned algorithm
    /// and the signature (re-fetching the JWKS on an unknown `kid` as `verify` does) —
    /// and returns its claims whatever its times, issuer and audience say. For
    /// revoking a presented token: a token that is expired or not yet valid may still
    /// be revoked, a forged one may not. Never cached.
    pub async fn verify_signature(&self, token: &str) -> Result<Claims, Rejection> {
        if token.is_empty() {
            return Err(Rejection::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let Some(remote) = &self.remote else {
            return self.signed_claims(token);
        };
        let seen = remote.attempts();
        match self.signed_claims(token) {
            Err(why @ (Rejection::UnknownKey | Rejection::KeysUnavailable)) => {
                if remote.refetch_for_unknown_kid(seen).await {
                    self.signed_claims(token)
                } else {
                    Err(why)
                }
            }
            other => other,
        }
    }

    /// Form, algorithm and signature; then the typed claims (with `exp` required).
    fn signed_claims(&self, token: &str) -> Result<Claims, Rejection> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = decode_object(h64)?;
        if header.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions we do not understand make the token invalid,
            // and we understand none.
            return Err(Rejection::Malformed);
        }
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.as_str(),
            _ => return Err(Rejection::Malformed),
        };
        // `none`, unknown names and algorithms outside the pinned list all end here.
        let alg = Algorithm::from_str(alg).map_err(|_| Rejection::AlgorithmNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::AlgorithmNotAllowed);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(Rejection::Malformed),
        };
        let payload = decode_object(p64)?;
        if s64.is_empty() || URL_SAFE_NO_PAD.decode(s64).is_err() {
            return Err(Rejection::Malformed);
        }

        let message = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        self.check_signature(alg, kid, message, s64)?;
        claims_from(payload, message)
    }

    /// Finds the candidate keys and tries them in order.
    fn check_signature(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<(), Rejection> {
        let remote = self.remote.as_ref().map(|r| r.keys());
        let all = || {
            self.local
                .keys
                .iter()
                .chain(remote.iter().flat_map(|s| s.keys.iter()))
        };
        let no_keys = if remote.as_ref().is_some_and(|s| s.is_empty()) {
            Rejection::KeysUnavailable
        } else {
            Rejection::UnknownKey
        };
        let named = kid.is_some_and(|k| all().any(|key| key.kid.as_deref() == Some(k)));
        let candidates: Vec<&VerifyKey> = match kid {
            Some(k) if named => {
                let c: Vec<_> = all()
                    .filter(|key| key.kid.as_deref() == Some(k) && key.fits(alg))
                    .collect();
                if c.is_empty() {
                    // The named key cannot verify this algorithm: an RSA key asked to
                    // check an ES256 or HS256 signature, say.
                    return Err(Rejection::AlgorithmNotAllowed);
                }
                c
            }
            // A `kid` we do not know may still be meant for a key configured without
            // one (a PEM file, the shared secret).
            Some(_) => all()
                .filter(|key| key.kid.is_none() && key.fits(alg))
                .collect(),
            None => all().filter(|key| key.fits(alg)).collect(),
        };
        if candidates.is_empty() {
            return Err(no_keys);
        }
        for key in candidates {
            self.signature_checks.fetch_add(1, Ordering::Relaxed);
            if let Ok(true) = jsonwebtoken::crypto::verify(signature, message, &key.key, alg) {
                return Ok(());
            }
        }
        // A token naming an unknown `kid` that no anonymous key verified was signed by
        // a key we lack (a re-fetch may bring it), not with a bad signature.
        if kid.is_some() && !named {
            return Err(no_keys);
        }
        Err(Rejection::BadSignature)
    }

    /// `exp`, `nbf` and `iat` against `now` with the leeway.
    fn check_times(&self, c: &Claims, now: i64) -> Result<(), Rejection> {
        if now >= c.exp.saturating_add(self.leeway) {
            return Err(Rejection::Expired);
        }
        let latest = now.saturating_add(self.leeway);
        if c.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(Rejection::NotYetValid);
        }
        if c.iat.is_some_and(|iat| iat > latest) {
            return Err(Rejection::IssuedInFuture);
        }
        Ok(())
    }

    /// The allowed clock skew on `exp`, `nbf` and `iat`, in seconds: a token is accepted
    /// until `exp` + this.
    pub fn leeway_secs(&self) -> i64 {
        self.leeway
    }

    /// Now, in whole seconds since the epoch, by this verifier's clock.
    pub fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    /// Whether keys come from `auth.jwks_url`.
    pub fn has_remote_jwks(&self) -> bool {
        self.remote.is_some()
    }

    /// Fetches the JWKS URL now (after any fetch in progress), not rate-limited.
    /// `None` without a JWKS URL; otherwise the number of usable keys or why the fetch
    /// failed (the previous keys then stay in use).
    pub async fn refresh_jwks(&self) -> Option<Result<usize, String>> {
        Some(self.remote.as_ref()?.refresh().await)
    }

    /// Starts the periodic JWKS refresh on the current tokio runtime: a fetch at once,
    /// then every `auth.jwks_refresh` (after a failure, within `REFRESH_RETRY`). The
    /// task ends by itself once this Verifier is dropped (e.g. replaced on reload).
    /// `None` without a JWKS URL.
    pub fn spawn_jwks_refresh(&self) -> Option<tokio::task::JoinHandle<()>> {
        let weak = Arc::downgrade(self.remote.as_ref()?);
        let every = self.jwks_refresh.max(Duration::from_secs(1));
        Some(tokio::spawn(async move {
            loop {
                let Some(remote) = weak.upgrade() else { return };
                let ok = remote.refresh().await.is_ok();
                // Not holding the Arc while asleep lets the Verifier's drop end us.
                drop(remote);
                tokio::time::sleep(if ok { every } else { every.min(REFRESH_RETRY) }).await;
            }
        }))
    }

    /// How many signature verifications have run (cache hits run none).
    pub fn signature_verifications(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Entries in the verified-token cache (approximate, as moka counts).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// A base64url (unpadded, canonical) JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}

/// The typed claims; wrong types are malformed (RFC 7519 §4.1), `exp` is required.
fn claims_from(all: Map<String, Value>, signing_input: &[u8]) -> Result<Claims, Rejection> {
    let string = |name: &str| -> Result<Option<String>, Rejection> {
        match all.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Rejection::Malformed),
        }
    };
    let date = |name: &str| -> Result<Option<i64>, Rejection> {
        match all.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Ok(Some(i))
                } else {
                    // NumericDate may be fractional (RFC 7519 §2); huge values saturate.
                    let f = n.as_f64().ok_or(Rejection::Malformed)?;
                    Ok(Some(f.floor() as i64))
                }
            }
            Some(_) => Err(Rejection::Malformed),
        }
    };
    let aud = match all.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(Rejection::Malformed))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Rejection::Malformed),
    };
    Ok(Claims {
        sub: string("sub")?,
        jti: string("jti")?,
        iss: string("iss")?,
        aud,
        exp: date("exp")?.ok_or(Rejection::MissingExpiry)?,
        nbf: date("nbf")?,
        iat: date("iat")?,
        signing_input_sha256: hex::encode(Sha256::digest(signing_input)),
        all,
    })
}
