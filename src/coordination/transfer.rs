//! One-time transfers: a payload handed from one party to another through a token
//! of 256 random bits (base64url). The store keeps the payload only under the
//! token's SHA-256, for at most 300 s, bound to an audience. A claim checks the
//! audience and deletes in one atomic step, so exactly one claim wins and a claim
//! for the wrong audience consumes nothing. A claim of a used, expired or unknown
//! token is counted and logged (at info: the caller's mistake or a replay, not a
//! fault of gatehouse), never with the token.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::store::coord::TransferClaim;
use crate::store::Store;

use super::{check_id, random_token, sha256_hex, CoordError};

/// Random bytes in a transfer token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// Longest life of a transfer.
pub const MAX_TTL_MS: u64 = 300_000;

/// A transfer just created: the token (shown once) and its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub token: String,
    pub expires_ms: u64,
}

/// What a claim did.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    Claimed(Value),
    AudienceMismatch,
    Gone,
}

/// Stores `payload` for one claim by `audience` within `ttl_ms` (1..=300000).
pub async fn create(
    store: &Store,
    payload: &Value,
    ttl_ms: u64,
    audience: &str,
) -> Result<Created, CoordError> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(CoordError::invalid(
            "ttlMs",
            format!("must be between 1 and {MAX_TTL_MS}"),
        ));
    }
    check_id("audience", audience)?;
    let token = random_token(TOKEN_BYTES);
    let expires_ms = store
        .transfer_create(
            &sha256_hex(&token),
            audience,
            payload.to_string().as_bytes(),
            Duration::from_millis(ttl_ms),
        )
        .await?;
    Ok(Created { token, expires_ms })
}

/// Claims the transfer of `token` for `audience`. Counted in
/// `gatehouse_transfer_claims_total{result}`.
pub async fn claim(
    store: &Store,
    metrics: &Metrics,
    token: &str,
    audience: &str,
) -> Result<Claim, CoordError> {
    check_id("audience", audience)?;
    let hash = sha256_hex(token);
    let result = store.transfer_claim(&hash, audience).await;
    let label = match &result {
        Ok(TransferClaim::Claimed(_)) => "claimed",
        Ok(TransferClaim::AudienceMismatch) => "audience_mismatch",
        Ok(TransferClaim::Gone) => "gone",
        Err(_) => "error",
    };
    metrics
        .transfer_claims_total
        .with_label_values(&[label])
        .inc();
    match result? {
        TransferClaim::Claimed(bytes) => Ok(Claim::Claimed(parse_payload(bytes))),
        TransferClaim::AudienceMismatch => {
            tracing::info!(%audience, "transfer claimed for the wrong audience; not consumed");
            Ok(Claim::AudienceMismatch)
        }
        TransferClaim::Gone => {
            // A replay, a late claim or a guess: worth a look, but the token is a
            // secret and stays out of the log (a hash prefix lets claims be correlated).
            tracing::info!(%audience, token_sha256_prefix = &hash[..12], "transfer claim refused: used, expired or unknown");
            Ok(Claim::Gone)
        }
    }
}

fn parse_payload(bytes: Bytes) -> Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}
