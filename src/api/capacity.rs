//! `/v1/capacity/{ns}/{id}`: define, read, admit, release (docs/api.md, docs/openapi.yaml).

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiRequest, HandlerFuture};
use crate::app::AppState;
use crate::coordination::capacity::{self, Admission, Counter, MemberRelease};
use crate::error::{empty_response, json_response, Error, ErrorCode};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SetBody {
    capacity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdmitBody {
    member_id: String,
    #[serde(default)]
    capacity: Option<u32>,
}

fn counter_json(c: &Counter) -> Value {
    json!({
        "capacity": c.capacity,
        "count": c.count,
        "remaining": c.remaining(),
        "version": c.version,
    })
}

fn admitted_json(c: &Counter) -> Value {
    let mut v = counter_json(c);
    v["admitted"] = Value::Bool(true);
    v
}

/// `PUT /v1/capacity/{ns}/{id}` `{"capacity": n}` → 200 with the counter.
pub fn put(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let body: SetBody = req.json()?;
        let c = capacity::set(&state.store, &ns, &id, body.capacity.into()).await?;
        Ok(json_response(StatusCode::OK, &counter_json(&c)))
    })
}

/// `GET /v1/capacity/{ns}/{id}` → 200 with the counter · 404 `NOT_FOUND`.
pub fn get(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        match capacity::status(&state.store, &ns, &id).await? {
            Some(c) => Ok(json_response(StatusCode::OK, &counter_json(&c))),
            None => Err(not_defined(&ns, &id)),
        }
    })
}

/// `POST /v1/capacity/{ns}/{id}/admissions` `{"memberId", "capacity"?}` → 201
/// admitted · 200 already admitted · 409 `CAPACITY_FULL` · 404 `NOT_FOUND`.
pub fn admit(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let body: AdmitBody = req.json()?;
        let outcome = capacity::admit(
            &state.store,
            &state.metrics,
            &ns,
            &id,
            &body.member_id,
            body.capacity.map(u64::from),
        )
        .await?;
        match outcome {
            Admission::Admitted(c) => Ok(json_response(StatusCode::CREATED, &admitted_json(&c))),
            Admission::AlreadyAdmitted(c) => Ok(json_response(StatusCode::OK, &admitted_json(&c))),
            Admission::Full(c) => Err(Error::capacity_full(
                format!("{ns}/{id} is full ({} of {})", c.count, c.capacity),
                &c,
            )),
            Admission::NotDefined => Err(not_defined(&ns, &id)),
        }
    })
}

/// `DELETE /v1/capacity/{ns}/{id}/admissions/{memberId}` → 204 · 404 `NOT_ADMITTED`.
pub fn release(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let (ns, id) = (req.segment("ns")?, req.segment("id")?);
        let member = req.segment("memberId")?;
        match capacity::release(&state.store, &ns, &id, &member).await? {
            MemberRelease::Released(_) => Ok(empty_response(StatusCode::NO_CONTENT)),
            MemberRelease::NotAdmitted => Err(Error::new(
                ErrorCode::NotAdmitted,
                format!("{member} is not admitted to {ns}/{id}"),
            )),
        }
    })
}

fn not_defined(ns: &str, id: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("no capacity is defined for {ns}/{id}; PUT one first"),
    )
}
