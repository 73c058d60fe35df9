//! Coordination: typed operations over the store for the native endpoints —
//! capacity admission ([`capacity`], with its origin sync in [`capacity_sync`]),
//! fenced locks ([`lock`]), one-time transfers ([`transfer`]) and token revocations
//! ([`revocation`], with the in-process view the proxy checks). Validation of
//! values, token generation, hashing and metrics live here; HTTP does not (the api
//! handlers are thin), and Redis commands do not (the store owns them).
//!
//! Every operation is one atomic store step, so no interleaving of instances and
//! clients can overbook a counter, release someone else's lock or claim a transfer
//! twice. A store that cannot be reached is `CoordError::Store` — never a guess.

pub mod capacity;
pub mod capacity_sync;
pub mod lock;
pub mod revocation;
pub mod transfer;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// Why a coordination operation gave no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordError {
    /// A value outside the contract; `field` names it as the request spells it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The store gave no answer; nothing is known to have changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CoordError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> CoordError {
        CoordError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Checks an identifier against the contract's `[A-Za-z0-9._:-]{1,200}`.
pub fn check_id(field: &'static str, value: &str) -> Result<(), CoordError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CoordError::invalid(
            field,
            "must match [A-Za-z0-9._:-]{1,200}",
        ))
    }
}

/// `bytes` random bytes from the operating system, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of a secret, hex: what the store keeps instead of the secret.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_base64url() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, random_token(32));
        assert_eq!(sha256_hex("abc").len(), 64);
    }

    #[test]
    fn ids_follow_the_contract_pattern() {
        assert!(check_id("memberId", "p-17.a_b:c").is_ok());
        assert!(check_id("memberId", "").is_err());
        assert!(check_id("memberId", "a/b").is_err());
        assert!(check_id("memberId", &"x".repeat(201)).is_err());
    }
}
