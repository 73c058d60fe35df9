//! Step 1 of the request path: who is calling.
//!
//! - Inbound headers named in `auth.claims_to_headers` are stripped on every request,
//!   so a client can never forge them, whatever the route's mode.
//! - `auth = "off"` (and requests matching no route): nothing else is checked.
//! - `auth = "optional"`: a request without a token passes anonymously; a token that
//!   is present must verify (Envoy's `allow_missing`, not `allow_missing_or_failed`).
//! - `auth = "required"`: 401 `TOKEN_MISSING` / `TOKEN_INVALID` / `TOKEN_EXPIRED`,
//!   403 `AUDIENCE_NOT_ALLOWED`, each JSON with `WWW-Authenticate`.
//!
//! On success the verified claims are forwarded as headers (`claims_to_headers`) and
//! `Authorization` is removed when the route sets `forward_authorization = false`.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::app::AppState;
use crate::auth::{extract_token, Claims, Rejection};
use crate::config::reload::Runtime;
use crate::config::AuthMode;
use crate::error::{Error, Source};
use crate::routes::Route;

/// The outcome of authorization for one request.
#[derive(Clone, Debug, Default)]
pub struct Authorized {
    /// The verified claims, when a valid token was presented.
    pub claims: Option<Arc<Claims>>,
    /// The presented token (kept only for the life of the request, e.g. for
    /// `revoke_on_success`; never logged or stored raw).
    pub token: Option<String>,
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
    for (_, header) in &auth_cfg.claims_to_headers {
        headers.remove(header.as_str());
    }
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
    let token = extract_token(headers, auth_cfg).map(str::to_string);
    let Some(token) = token else {
        return match mode {
            AuthMode::Optional => Ok(Authorized::default()),
            _ => Err(reject(state, Rejection::Missing)),
        };
    };
    let claims = verifier
        .verify(&token)
        .await
        .map_err(|r| reject(state, r))?;
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
    if route.is_some_and(|r| !r.config.forward_authorization) {
        headers.remove(http::header::AUTHORIZATION);
    }
    Ok(Authorized {
        claims: Some(claims),
        token: Some(token),
    })
}

/// The JSON answer for a rejection, counted by reason.
pub fn reject(state: &AppState, r: Rejection) -> Error {
    state
        .metrics
        .auth_rejections_total
        .with_label_values(&[r.reason()])
        .inc();
    let mut e = Error::new(r.status(), r.code(), r.message(), Source::Client);
    if let Ok(v) = HeaderValue::from_str(&r.www_authenticate()) {
        e = e.with_header(http::header::WWW_AUTHENTICATE, v);
    }
    e
}
