//! `/v1/locks/{ns}/{id}`: acquire, status, renew, release (docs/api.md, docs/openapi.yaml).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiRequest, HandlerFuture};
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::coordination::lock::{self, Acquire, AcquireRequest, Holder, LockRelease, LockRenew};
use crate::error::{empty_response, json_response, Error, ErrorCode};

/// The header that carries the lock token on release.
pub const LOCK_TOKEN: &str = "lock-token";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AcquireBody {
    ttl_ms: u64,
    owner: Value,
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RenewBody {
    lock_token: String,
    ttl_ms: u64,
}

fn held(ns: &str, id: &str, h: &Holder) -> Error {
    Error::lock_held(format!("{ns}/{id} is held by someone else"), h)
}

fn not_locked(ns: &str, id: &str) -> Error {
    Error::new(ErrorCode::NotLocked, format!("{ns}/{id} is not locked"))
}

fn not_owner(ns: &str, id: &str) -> Error {
    Error::new(
        ErrorCode::NotOwner,
        format!("{ns}/{id} is held with another lock token"),
    )
}

/// `POST /v1/locks/{ns}/{id}` `{"ttlMs", "owner", "waitMs"?}` → 201 with the token
/// and fence · 409 `LOCK_HELD` with the holder and `Retry-After`.
pub fn acquire(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let body: AcquireBody = req.json()?;
        let cfg = state.runtime.load().config.locks.clone();
        let outcome = lock::acquire(
            &state.store,
            &state.metrics,
            &cfg,
            &ns,
            &id,
            AcquireRequest {
                owner: body.owner,
                ttl_ms: body.ttl_ms,
                wait_ms: body.wait_ms,
            },
        )
        .await?;
        match outcome {
            Acquire::Acquired(l) => Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "lockToken": l.token,
                    "fence": l.fence,
                    "expiresAt": rfc3339_ms(l.expires_ms),
                    "owner": l.owner,
                }),
            )),
            Acquire::Held(h) => Err(held(&ns, &id, &h)),
        }
    })
}

/// `GET /v1/locks/{ns}/{id}` → 200 `{"owner","expiresAt","fence"}` · 404 `NOT_LOCKED`.
pub fn status(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        match lock::status(&state.store, &state.metrics, &ns, &id).await? {
            Some(h) => Ok(json_response(
                StatusCode::OK,
                &json!({
                    "owner": h.owner,
                    "expiresAt": rfc3339_ms(h.expires_ms),
                    "fence": h.fence,
                }),
            )),
            None => Err(not_locked(&ns, &id)),
        }
    })
}

/// `POST /v1/locks/{ns}/{id}/renew` `{"lockToken","ttlMs"}` → 200 · 404 · 409 `NOT_OWNER`.
pub fn renew(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let body: RenewBody = req.json()?;
        let cfg = state.runtime.load().config.locks.clone();
        let outcome = lock::renew(
            &state.store,
            &state.metrics,
            &cfg,
            &ns,
            &id,
            &body.lock_token,
            body.ttl_ms,
        )
        .await?;
        match outcome {
            LockRenew::Renewed { fence, expires_ms } => Ok(json_response(
                StatusCode::OK,
                &json!({"expiresAt": rfc3339_ms(expires_ms), "fence": fence}),
            )),
            LockRenew::NotLocked => Err(not_locked(&ns, &id)),
            LockRenew::NotOwner => Err(not_owner(&ns, &id)),
        }
    })
}

/// `DELETE /v1/locks/{ns}/{id}` with `Lock-Token` → 204 · 404 · 409 `NOT_OWNER` ·
/// 400 without the header.
pub fn release(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let token = req
            .headers
            .get(LOCK_TOKEN)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::bad_request("Lock-Token", "the Lock-Token header is required"))?
            .to_string();
        match lock::release(&state.store, &state.metrics, &ns, &id, &token).await? {
            LockRelease::Released => Ok(empty_response(StatusCode::NO_CONTENT)),
            LockRelease::NotLocked => Err(not_locked(&ns, &id)),
            LockRelease::NotOwner => Err(not_owner(&ns, &id)),
        }
    })
}
