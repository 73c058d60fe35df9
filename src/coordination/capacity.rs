//! Capacity admission: a counter per `{ns}/{id}` with a capacity, and the set of
//! members admitted to it. Admission is check-and-admit in one atomic store step and
//! idempotent per member: a retry of an admitted member answers `AlreadyAdmitted`
//! and counts nothing. Lowering the capacity below the count is allowed; nobody new
//! is admitted until the count is below it again. Every change bumps the counter's
//! version and marks it for the origin sync ([`super::capacity_sync`]).
//!
//! `ns` and `id` are validated by the caller (`ApiRequest::segment`).

use crate::metrics::Metrics;
pub use crate::store::coord::{Admission, Counter, MemberRelease};
use crate::store::Store;

use super::{check_id, CoordError};

/// Defines counter `ns/id` or changes its capacity.
pub async fn set(store: &Store, ns: &str, id: &str, capacity: u64) -> Result<Counter, CoordError> {
    Ok(store.capacity_set(ns, id, capacity).await?)
}

/// Counter `ns/id` now, or None when it is not defined.
pub async fn status(store: &Store, ns: &str, id: &str) -> Result<Option<Counter>, CoordError> {
    Ok(store.capacity_status(ns, id).await?)
}

/// Admits `member` unless the counter is full; `define` creates the counter with that
/// capacity on first use (ignored once it exists). Counted in
/// `gatehouse_capacity_admissions_total{result}`.
pub async fn admit(
    store: &Store,
    metrics: &Metrics,
    ns: &str,
    id: &str,
    member: &str,
    define: Option<u64>,
) -> Result<Admission, CoordError> {
    check_id("memberId", member)?;
    let result = store.capacity_admit(ns, id, member, define).await;
    let label = match &result {
        Ok(Admission::Admitted(_)) => "admitted",
        Ok(Admission::AlreadyAdmitted(_)) => "already_admitted",
        Ok(Admission::Full(_)) => "full",
        Ok(Admission::NotDefined) => "not_found",
        Err(_) => "error",
    };
    metrics
        .capacity_admissions_total
        .with_label_values(&[label])
        .inc();
    Ok(result?)
}

/// Frees `member`'s place.
pub async fn release(
    store: &Store,
    ns: &str,
    id: &str,
    member: &str,
) -> Result<MemberRelease, CoordError> {
    check_id("memberId", member)?;
    Ok(store.capacity_release(ns, id, member).await?)
}
