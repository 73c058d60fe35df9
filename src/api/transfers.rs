//! `/v1/transfers`: create and claim one-time transfers (docs/api.md, docs/openapi.yaml).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiRequest, HandlerFuture};
use crate::app::AppState;
use crate::clock::rfc3339_ms;
use crate::coordination::transfer::{self, Claim};
use crate::error::{json_response, Error, ErrorCode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    payload: Value,
    ttl_ms: u64,
    audience: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimBody {
    token: String,
    audience: String,
}

/// `POST /v1/transfers` `{"payload","ttlMs","audience"}` → 201 `{"token","expiresAt"}`.
pub fn create(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let body: CreateBody = req.json()?;
        let created =
            transfer::create(&state.store, &body.payload, body.ttl_ms, &body.audience).await?;
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"token": created.token, "expiresAt": rfc3339_ms(created.expires_ms)}),
        ))
    })
}

/// `POST /v1/transfers/claim` `{"token","audience"}` → 200 `{"payload"}` once ·
/// 410 `TRANSFER_GONE` · 403 `AUDIENCE_MISMATCH`.
pub fn claim(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let body: ClaimBody = req.json()?;
        match transfer::claim(&state.store, &state.metrics, &body.token, &body.audience).await? {
            Claim::Claimed(payload) => {
                Ok(json_response(StatusCode::OK, &json!({"payload": payload})))
            }
            Claim::AudienceMismatch => Err(Error::new(
                ErrorCode::AudienceMismatch,
                "this transfer is for another audience",
            )),
            Claim::Gone => Err(Error::new(
                ErrorCode::TransferGone,
                "this transfer was already claimed, has expired, or never existed",
            )),
        }
    })
}
