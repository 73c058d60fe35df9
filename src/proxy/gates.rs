//! Step 2 of the request path: the route's gates, after authorization and before the
//! cache (docs/api.md, docs/openapi.yaml).
//!
//! - `[routes.capacity]` admits the caller (the verified `sub`, a header, or a path
//!   parameter) to counter `ns/id` in one atomic store step, the same operation as
//!   `POST /v1/capacity/{ns}/{id}/admissions`: a full counter answers 409
//!   `CAPACITY_FULL` and nothing reaches the origin; an undefined one 503
//!   `CAPACITY_NOT_DEFINED`. With `release_on_failure`, a place this request took is
//!   freed again when the origin does not answer 2xx.
//! - `[routes.lock]` holds lock `ns/id` while the request is forwarded (released when
//!   the origin's answer head arrives, or on failure); held by another request → 409
//!   `LOCK_HELD` with the holder and `Retry-After`. The lock's fence is sent to the
//!   origin as `X-Gatehouse-Fence`, for the app to check in its own writes.
//!
//! A store that cannot be asked answers 503 `STORE_UNAVAILABLE`: a gate never guesses.

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use crate::app::AppState;
use crate::config::MemberFrom;
use crate::coordination::capacity::{self, Admission};
use crate::coordination::lock::{self, Acquire, AcquireRequest};
use crate::coordination::CoordError;
use crate::error::Error;
pub use crate::error::Refusal;
use crate::routes::{expand_template, Params, Route};

use super::authorize::Authorized;

/// The header the lock gate's fence is forwarded in.
pub const FENCE_HEADER: &str = "x-gatehouse-fence";

/// What the gates took, to give back once the origin has answered.
#[derive(Debug, Default)]
pub struct Passed {
    /// A place this request took: (ns, id, member), freed if the origin fails.
    admitted: Option<(String, String, String)>,
    /// The lock held: (ns, id, token).
    lock: Option<(String, String, String)>,
}

/// Runs the route's gates; `headers` gain the fence for the origin.
pub async fn enter(
    state: &AppState,
    route: Option<&Route>,
    params: &Params,
    who: &Authorized,
    headers: &mut HeaderMap,
) -> Result<Passed, Error> {
    let mut passed = Passed::default();
    let Some(route) = route else {
        return Ok(passed);
    };
    let name = |t: &str| expand_template(t, params).unwrap_or_default();
    if let Some(gate) = &route.config.capacity {
        let (ns, id) = (name(&gate.ns), name(&gate.id));
        let member = match &gate.member {
            MemberFrom::Sub => who.sub().map(str::to_string),
            MemberFrom::Header(h) => headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string()),
            MemberFrom::Param(p) => params.iter().find(|(n, _)| n == p).map(|(_, v)| v.clone()),
        }
        .filter(|m| !m.is_empty());
        let Some(member) = member else {
            return Err(Refusal::MemberMissing.into());
        };
        let admission = capacity::admit(&state.store, &state.metrics, &ns, &id, &member, None)
            .await
            .map_err(|e| match e {
                CoordError::Invalid { .. } => Refusal::MemberInvalid.into(),
                other => Error::from(other),
            })?;
        match admission {
            Admission::Admitted(_) => {
                if gate.release_on_failure {
                    passed.admitted = Some((ns, id, member));
                }
            }
            Admission::AlreadyAdmitted(_) => {}
            Admission::Full(count) => return Err(Refusal::Full { ns, id, count }.into()),
            Admission::NotDefined => return Err(Refusal::NotDefined { ns, id }.into()),
        }
    }
    if let Some(gate) = &route.config.lock {
        let (ns, id) = (name(&gate.ns), name(&gate.id));
        let cfg = state.runtime.load().config.locks.clone();
        let owner = json!({ "route": route.label(), "sub": who.sub() });
        let req = AcquireRequest {
            owner,
            ttl_ms: gate.ttl.as_millis() as u64,
            wait_ms: gate.wait.as_millis() as u64,
        };
        let acquired = lock::acquire(&state.store, &state.metrics, &cfg, &ns, &id, req).await;
        let acquired = match acquired {
            Ok(a) => a,
            Err(e) => {
                leave_capacity(state, &mut passed).await;
                return Err(e.into());
            }
        };
        match acquired {
            Acquire::Acquired(lease) => {
                headers.insert(FENCE_HEADER, HeaderValue::from(lease.fence));
                passed.lock = Some((ns, id, lease.token));
            }
            Acquire::Held(holder) => {
                leave_capacity(state, &mut passed).await;
                return Err(Refusal::Held { ns, id, holder }.into());
            }
        }
    }
    Ok(passed)
}

/// Frees what the gates took: the lock always, the place when the origin did not
/// answer 2xx (`status` None: no answer at all).
pub async fn leave(state: &AppState, mut passed: Passed, status: Option<StatusCode>) {
    if let Some((ns, id, token)) = passed.lock.take() {
        if let Err(e) = lock::release(&state.store, &state.metrics, &ns, &id, &token).await {
            tracing::warn!(lock = %format!("{ns}/{id}"), error = %e, "gate lock not released; it expires with its ttl");
        }
    }
    if status.is_some_and(|s| s.is_success()) {
        return;
    }
    leave_capacity(state, &mut passed).await;
}

async fn leave_capacity(state: &AppState, passed: &mut Passed) {
    if let Some((ns, id, member)) = passed.admitted.take() {
        if let Err(e) = capacity::release(&state.store, &ns, &id, &member).await {
            tracing::warn!(counter = %format!("{ns}/{id}"), error = %e, "gate admission not released after a failed request");
        }
    }
}
