//! Step 1 of the request path: who is calling.
//!
//! - Inbound headers named in `auth.claims_to_headers` were already stripped on every
//!   request (`inbound`), so a client can never forge them, whatever the route's mode.
//! - `auth = "off"` (and requests matching no route): nothing else is checked.
//! - `auth = "optional"`: a request without a token passes anonymously; a token that
//!   is present must verify (Envoy's `allow_missing`, not `allow_missing_or_failed`).
//! - `auth = "required"`: 401 `TOKEN_MISSING` / `TOKEN_INVALID` / `TOKEN_EXPIRED`,
//!   403 `AUDIENCE_NOT_ALLOWED`, each JSON with `WWW-Authenticate`.
//! - A token that verified is then checked for revocation (`coordination::revocation`):
//!   401 `TOKEN_REVOKED` with `WWW-Authenticate`. The in-process view answers in the
//!   common case; when the store must be asked and cannot answer, the route's
//!   `on_store_error` (else `auth.on_store_error`) decides: `deny` answers 503
//!   `STORE_UNAVAILABLE` with `Retry-After` (the token may be fine; we cannot tell, and
//!   a 401 would make clients drop a good token), `allow` lets the request through.
//!
//! On success the verified claims are forwarded as headers (`claims_to_headers`), the
//! verified credential is the only one forwarded (other `Authorization` /
//! `auth.token_header` values are removed), and `Authorization` is removed when the
//! route sets `forward_authorization = false`.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::app::AppState;
use crate::app::Runtime;
use crate::auth::{find_token, Claims, Rejection, TokenSource};
use crate::config::{AuthMode, StoreErrorPolicy};
use crate::coordination::revocation::{Lifetimes, Verdict};
use crate::error::{Error, ErrorCode};
use crate::routes::Route;

/// The outcome of authorization for one request.
#[derive(Clone, Debug, Default)]
pub struct Authorized {
    /// The verified claims, when a valid token was presented. `revoke_on_success`
    /// revokes by these (the raw token is never kept).
    pub claims: Option<Arc<Claims>>,
}

impl Authorized {
    /// The verified subject, for per-user cache keys.
    pub fn sub(&self) -> Option<&str> {
        self.claims.as_ref().and_then(|c| c.sub.as_deref())
    }
}

/// Authorizes a request for its route, editing its headers for the origin.
pub async fn authorize(
    state: &AppState,
    runtime: &Runtime,
    route: Option<&Route>,
    headers: &mut HeaderMap,
) -> Result<Authorized, Error> {
    let auth_cfg = &runtime.config.auth;
    let mode = route.map(|r| r.config.auth).unwrap_or(AuthMode::Off);
    if mode == AuthMode::Off {
        return Ok(Authorized::default());
    }
    let Some(verifier) = runtime.verifier.as_ref() else {
        // Validation refuses auth routes without keys; a reload cannot get here either.
        return Err(Error::internal(
            "auth is on for this route but no keys are configured",
        ));
    };
    let Some(found) = find_token(headers, auth_cfg) else {
        return match mode {
            AuthMode::Optional => Ok(Authorized::default()),
            _ => Err(reject(state, Rejection::Missing)),
        };
    };
    let source = found.source;
    // Kept only when the token came from `auth.token_header`, to forward it alone.
    let header_value = (source == TokenSource::Header).then(|| found.value.clone());
    let claims = verifier
        .verify(found.token)
        .await
        .map_err(|r| reject(state, r))?;
    match state
        .revocations
        .check(&claims, Lifetimes::of(auth_cfg))
        .await
    {
        Ok(Verdict::NotRevoked) => {}
        Ok(Verdict::Revoked) => return Err(reject(state, Rejection::Revoked)),
        Err(e) => {
            let policy = route
                .and_then(|r| r.config.on_store_error)
                .unwrap_or(auth_cfg.on_store_error);
            match policy {
                StoreErrorPolicy::Allow => {
                    tracing::debug!(error = %e, "revocation status unknown; allowed by on_store_error");
                }
                StoreErrorPolicy::Deny => return Err(unchecked(state)),
            }
        }
    }
    for (claim, header) in &auth_cfg.claims_to_headers {
        if let Some(value) = claims.header_value(claim) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(header.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
    }
    forward_only_verified(headers, auth_cfg, source, header_value);
    if route.is_some_and(|r| !r.config.forward_authorization) {
        headers.remove(http::header::AUTHORIZATION);
    }
    Ok(Authorized {
        claims: Some(claims),
    })
}

/// Leaves the verified credential as the only one the origin sees: another carrier
/// (a `Basic` Authorization next to a verified cookie, a second `auth.token_header`
/// value) could name someone else, and the origin might read it instead.
fn forward_only_verified(
    headers: &mut HeaderMap,
    cfg: &crate::config::AuthConfig,
    source: TokenSource,
    header_value: Option<HeaderValue>,
) {
    if source != TokenSource::Authorization {
        headers.remove(http::header::AUTHORIZATION);
    }
    let Some(name) = cfg.token_header.as_deref() else {
        return;
    };
    match header_value {
        Some(verified) => {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                headers.insert(name, verified);
            }
        }
        _ => {
            headers.remove(name);
        }
    }
}

/// 503 `STORE_UNAVAILABLE` for a token whose revocation status cannot be learned,
/// counted as `gatehouse_auth_rejections_total{reason="store_unavailable"}`.
fn unchecked(state: &AppState) -> Error {
    state
        .metrics
        .auth_rejections_total
        .with_label_values(&["store_unavailable"])
        .inc();
    Error::new(
        ErrorCode::StoreUnavailable,
        "the token's revocation status cannot be checked: the store cannot be reached",
    )
}

/// The JSON answer for a rejection, counted by reason.
pub fn reject(state: &AppState, r: Rejection) -> Error {
    state
        .metrics
        .auth_rejections_total
        .with_label_values(&[r.reason()])
        .inc();
    r.into()
}
