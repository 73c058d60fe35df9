//! A request the cache does not take, streamed to the origin and back untouched
//! by the cache: `pass` (uncacheable requests, with revoke-on-success), and a
//! ranged request whose whole representation the cache cannot keep.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response};
use http_body_util::BodyExt;

use super::authorize::Authorized;
use super::cache_policy::NoCacheReason;
use super::cache_status::{CacheStatus, Detail, Fwd};
use super::miss::Miss;
use super::origin::{self, Origin, OriginError};
use super::respond;
use crate::app::AppState;
use crate::body::{self, Body, RequestBody};
use crate::error::Error;
use crate::routes::Route;

/// Forwards a request as-is (streaming both bodies); the cache is not consulted.
///
/// On a route with `revoke_on_success = true`, a 2xx answer from the origin revokes
/// the token the request presented (e.g. `POST /auth/logout`) before the answer is
/// returned, so the client's next request with it is refused on every instance. If
/// the store cannot take the revocation now, the origin's answer is still returned
/// (it has acted), this instance enforces the revocation at once, and it is recorded
/// in the background when the store returns.
#[allow(clippy::too_many_arguments)]
pub async fn pass(
    state: &Arc<AppState>,
    origin: &Origin,
    req: Request<RequestBody>,
    peer: SocketAddr,
    tls: bool,
    route: Option<&Route>,
    who: &Authorized,
    cache_status: CacheStatus,
) -> Result<Response<Body>, Error> {
    let max_body = state.runtime.load().config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(Error::body_too_large(max_body));
    }
    let version = req.version();
    let (mut parts, incoming) = req.into_parts();
    origin::prepare_request(&mut parts.headers, version, &parts.uri, peer, tls);
    // The client's body errors are marked as the client's, so a malformed or cut body
    // is answered 400 rather than blamed on the origin.
    let incoming = incoming.map_err(origin::ClientBodyError);
    let limited = http_body_util::Limited::new(incoming, max_body as usize);
    let out = Request::from_parts(parts, body::boxed(limited));
    match origin.send(out, route).await {
        Ok(resp) => {
            if resp.status().is_success() && route.is_some_and(|r| r.config.revoke_on_success) {
                revoke_presented(state, who).await;
            }
            Ok(respond::from_origin(resp, version, cache_status))
        }
        Err(OriginError::BodyTooLarge) => Err(Error::body_too_large(max_body)),
        Err(e) => Err(Error::from(e)),
    }
}

/// `revoke_on_success`: revokes the verified token of the request, if it had one.
async fn revoke_presented(state: &Arc<AppState>, who: &Authorized) {
    let Some(claims) = who.claims.as_deref() else {
        return;
    };
    let life = crate::coordination::revocation::Lifetimes::of(&state.runtime.load().config.auth);
    if let Err(e) = state.revocations.revoke_token_or_retry(claims, life).await {
        tracing::warn!(error = %e, "revoke_on_success: enforced here, recorded fleet-wide when the store returns");
    }
}

impl Miss {
    /// Sends the client's request, `Range` and conditionals included, to the origin
    /// and streams its answer (usually a 206) through, unstored: for a ranged request
    /// whose whole representation the cache cannot keep.
    pub(super) async fn pass_range(&self) -> Result<Response<Body>, Error> {
        let req = self.origin_get(self.parts.headers.clone());
        let status = CacheStatus::fwd(Fwd::Miss).detail(Detail::NotStored(NoCacheReason::Range));
        match self.origin.send(req, self.route.as_deref()).await {
            Ok(resp) => Ok(respond::from_origin(resp, self.parts.version, status)),
            Err(e) => {
                if let Some(stale) = self.stale_if_error(CacheStatus::STALE_IF_ERROR) {
                    return Ok(stale);
                }
                Err(Error::from(e))
            }
        }
    }
}
