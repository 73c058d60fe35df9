//! HTTP/1.1 Upgrade passthrough (RFC 9110 §7.8), WebSocket and any other protocol
//! token.
//!
//! - `asked` recognises `Connection: upgrade` + `Upgrade: <protocols>` on an HTTP/1.1
//!   request BEFORE `inbound` strips the client's hop-by-hop fields; the protocol
//!   list rides in the request's extensions past auth and the gates.
//! - `pass` forwards the request with those two fields put back, never through the
//!   cache (`Cache-Status: gatehouse; fwd=bypass; detail=upgrade`). An answer other
//!   than 101 is relayed as a normal response. A 101 is relayed with the origin's
//!   `Upgrade` (and its end-to-end fields, `Sec-WebSocket-*`), then bytes are copied
//!   both ways until either side closes, no byte moves either way for the route's
//!   origin's `upgrade_idle_timeout`, or shutdown closes it (`Tunnels::close_all`,
//!   after the listeners have drained, within `server.shutdown_grace`).
//!
//! - `h2_websocket` / `pass_h2`: WebSocket over HTTP/2 (RFC 8441 extended CONNECT),
//!   judged as the GET upgrade the origin sees, forwarded as one, and relayed by the
//!   same `relay` between the h2 stream (`server::h2::H2Io`) and the origin's
//!   upgraded connection.
//!
//! An upgraded connection leaves hyper's HTTP connection (and so its idle and
//! header-read watchdog, and `max_connections`); it is counted in
//! `gatehouse_upgrades_open` while it lasts.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cache_status::{CacheStatus, Detail, Fwd};
use super::{origin, respond};
use crate::app::AppState;
use crate::body::{self, Body, RequestBody};
use crate::error::Error;
use crate::routes::Route;
use crate::server::conn::{IoObserver, Tracked};

/// The `Cache-Status` of every upgrade request's answer.
pub const CACHE_STATUS: CacheStatus = CacheStatus::fwd(Fwd::Bypass).detail(Detail::Upgrade);

/// The protocols an upgrade request asked for (its `Upgrade` field).
#[derive(Clone, Debug)]
pub struct Ask(pub HeaderValue);

/// Whether `req` asks to upgrade: HTTP/1.1, a `Connection` list naming `upgrade`,
/// and a non-empty `Upgrade`.
pub fn asked<B>(req: &Request<B>) -> Option<Ask> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let named = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocols = req.headers().get(header::UPGRADE)?;
    (named && !protocols.as_bytes().iter().all(u8::is_ascii_whitespace))
        .then(|| Ask(protocols.clone()))
}

/// An RFC 8441 extended CONNECT (h2, `:protocol websocket`), marked in the
/// request's extensions past auth and the gates.
#[derive(Clone, Copy, Debug)]
pub struct H2WebSocket;

/// Whether `req` is an extended CONNECT for `websocket` on h2. If so, its method is
/// made GET, so the routes, auth and gates see the request the origin will (an
/// HTTP/1.1 upgrade); any other CONNECT stays one (and is refused 405).
pub fn h2_websocket<B>(req: &mut Request<B>) -> Option<H2WebSocket> {
    if req.version() != Version::HTTP_2 || req.method() != http::Method::CONNECT {
        return None;
    }
    let protocol = req.extensions().get::<h2::ext::Protocol>()?;
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return None;
    }
    *req.method_mut() = http::Method::GET;
    Some(H2WebSocket)
}

/// The upgraded connections' shutdown signal.
pub struct Tunnels {
    closing: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Tunnels {
        Tunnels {
            closing: watch::channel(false).0,
        }
    }
}

impl Tunnels {
    /// Closes every upgraded connection, and any that would begin after.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// Forwards an upgrade request; on 101 the relay runs in its own task.
pub async fn pass(
    state: &Arc<AppState>,
    origin: &origin::Origin,
    mut req: Request<RequestBody>,
    ask: Ask,
    peer: std::net::SocketAddr,
    tls: bool,
    route: Option<&Route>,
) -> Result<Response<Body>, Error> {
    let version = req.version();
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, incoming) = req.into_parts();
    origin::prepare_request(&mut parts.headers, version, &parts.uri, peer, tls);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, ask.0);
    let max_body = state.runtime.load().config.server.max_body_bytes as usize;
    let incoming =
        http_body_util::Limited::new(incoming.map_err(origin::ClientBodyError), max_body);
    let out = Request::from_parts(parts, body::boxed(incoming));
    let mut resp = match ask_origin(state, origin, out, route, version).await? {
        Ok(resp) => resp,
        Err(refused) => return Ok(refused),
    };
    let origin_side = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    origin::prepare_response(&mut parts.headers, version);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(p) = protocol {
        parts.headers.insert(header::UPGRADE, p);
    }
    let mut answer = Response::from_parts(parts, body::empty());
    CACHE_STATUS.append_to(answer.headers_mut());
    let idle = origin.config().upgrade_idle_timeout;
    let closing = state.tunnels.closing.subscribe();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let (client, origin) = match tokio::try_join!(client_side, origin_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed after 101");
                metrics.upgrades_total.with_label_values(&["error"]).inc();
                return;
            }
        };
        metrics.upgrades_total.with_label_values(&["ok"]).inc();
        metrics.upgrades_open.inc();
        let end = relay(TokioIo::new(client), TokioIo::new(origin), idle, closing).await;
        metrics.upgrades_open.dec();
        tracing::debug!(end, "upgraded connection closed");
    });
    Ok(answer)
}

/// Forwards an extended CONNECT for `websocket` (RFC 8441 §5) to the HTTP/1.1 origin
/// as an upgrade: GET with `Connection: upgrade`, `Upgrade: websocket`, a fresh
/// `Sec-WebSocket-Key`, the client's `Sec-WebSocket-Version`, `-Protocol` and
/// `-Extensions` (and every other end-to-end field) kept. On the origin's 101 the
/// client is answered 200 (with the origin's `Sec-WebSocket-Protocol` and
/// `-Extensions`, without `Sec-WebSocket-Accept`, which h2 has no use for) and the h2
/// stream is relayed to the upgraded origin connection as an h1 upgrade is; another
/// answer is relayed as a normal response.
/// Counts one upgrade attempt under `result` (`ok`, `error`, `refused`).
fn count_upgrade(state: &AppState, result: &str) {
    state
        .metrics
        .upgrades_total
        .with_label_values(&[result])
        .inc()
}

/// Sends the upgrade request to the origin and counts it: the origin's 101 (to be
/// upgraded), or its other answer relayed to a client speaking `version` (`Err`).
async fn ask_origin(
    state: &AppState,
    origin: &origin::Origin,
    out: Request<Body>,
    route: Option<&Route>,
    version: Version,
) -> Result<Result<Response<Body>, Response<Body>>, Error> {
    let resp = match origin.send(out, route).await {
        Ok(resp) => resp,
        Err(e) => {
            count_upgrade(state, "error");
            return Err(Error::from(e));
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        count_upgrade(state, "refused");
        return Ok(Err(respond::from_origin(resp, version, CACHE_STATUS)));
    }
    Ok(Ok(resp))
}

pub async fn pass_h2(
    state: &Arc<AppState>,
    origin: &origin::Origin,
    mut req: Request<RequestBody>,
    peer: std::net::SocketAddr,
    tls: bool,
    route: Option<&Route>,
) -> Result<Response<Body>, Error> {
    let Some(tunnel) = req.extensions_mut().remove::<crate::server::h2::Tunnel>() else {
        return Err(Error::internal("an extended CONNECT without its stream"));
    };
    let (mut parts, _) = req.into_parts();
    origin::prepare_request(&mut parts.headers, Version::HTTP_2, &parts.uri, peer, tls);
    parts.method = http::Method::GET;
    parts.version = Version::HTTP_11;
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    parts.headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).expect("base64 is a valid field value"),
    );
    let out = Request::from_parts(parts, body::empty());
    let mut resp = match ask_origin(state, origin, out, route, Version::HTTP_2).await? {
        Ok(resp) => resp,
        Err(refused) => return Ok(refused),
    };
    let origin_side = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    origin::prepare_response(&mut parts.headers, Version::HTTP_2);
    parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
    parts.status = StatusCode::OK;
    let mut answer = Response::from_parts(parts, body::empty());
    CACHE_STATUS.append_to(answer.headers_mut());
    let idle = origin.config().upgrade_idle_timeout;
    let closing = state.tunnels.closing.subscribe();
    let metrics = state.metrics.clone();
    tokio::spawn(async move {
        let (client, origin) = match tokio::join!(tunnel.open(), origin_side) {
            (Some(client), Ok(origin)) => (client, origin),
            (_, Err(e)) => {
                tracing::debug!(error = %e, "origin upgrade failed after 101");
                metrics.upgrades_total.with_label_values(&["error"]).inc();
                return;
            }
            (None, _) => {
                tracing::debug!("the client's h2 stream went away before the tunnel opened");
                metrics.upgrades_total.with_label_values(&["error"]).inc();
                return;
            }
        };
        metrics.upgrades_total.with_label_values(&["ok"]).inc();
        metrics.upgrades_open.inc();
        let end = relay(client, TokioIo::new(origin), idle, closing).await;
        metrics.upgrades_open.dec();
        tracing::debug!(end, "h2 WebSocket tunnel closed");
    });
    Ok(answer)
}

/// Copies bytes both ways until either side closes (or fails), nothing moves for
/// `idle`, or `closing` turns true; says which. When one side closes, the other's
/// write half is shut down and both are dropped: a peer that keeps its half open
/// after the other has gone never holds the relay.
pub async fn relay<C, O>(
    client: C,
    origin: O,
    idle: Duration,
    mut closing: watch::Receiver<bool>,
) -> &'static str
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    // Every byte either way crosses the client side: reads go to the origin, writes
    // come from it.
    let client = Tracked::new(client, activity.clone(), ());
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut origin_read, mut origin_write) = tokio::io::split(origin);
    let up = async {
        let r = tokio::io::copy(&mut client_read, &mut origin_write).await;
        let _ = origin_write.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy(&mut origin_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        r
    };
    tokio::pin!(up, down);
    loop {
        let due = activity.last() + idle;
        tokio::select! {
            r = &mut up => return if r.is_ok() { "client_closed" } else { "error" },
            r = &mut down => return if r.is_ok() { "origin_closed" } else { "error" },
            _ = tokio::time::sleep_until(due) => {
                if activity.last() + idle <= Instant::now() {
                    return "idle_timeout";
                }
            }
            _ = closing.wait_for(|c| *c) => return "shutdown",
        }
    }
}

struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl IoObserver for Activity {
    fn bytes_read(&self) {
        self.touch();
    }

    fn bytes_written(&self) {
        self.touch();
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_connection_upgrade_and_a_protocol_on_http11() {
        let req = |conn: &str, up: Option<&str>, v: Version| {
            let mut b = Request::get("/ws").version(v).header("connection", conn);
            if let Some(u) = up {
                b = b.header("upgrade", u);
            }
            b.body(()).unwrap()
        };
        let ok = asked(&req(
            "keep-alive, Upgrade",
            Some("websocket"),
            Version::HTTP_11,
        ));
        assert_eq!(ok.unwrap().0, "websocket");
        assert!(asked(&req("keep-alive", Some("websocket"), Version::HTTP_11)).is_none());
        assert!(asked(&req("upgrade", None, Version::HTTP_11)).is_none());
        assert!(asked(&req("upgrade", Some(" "), Version::HTTP_11)).is_none());
        assert!(asked(&req("upgrade", Some("websocket"), Version::HTTP_10)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_relay_is_closed_and_traffic_keeps_it_open() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (origin, _origin_peer) = tokio::io::duplex(64);
        let (_tx, rx) = watch::channel(false);
        let started = Instant::now();
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                client_peer.write_all(b"x").await.unwrap();
            }
            client_peer
        });
        let end = relay(client, origin, Duration::from_secs(30), rx).await;
        assert_eq!(end, "idle_timeout");
        assert_eq!(started.elapsed().as_secs(), 130);
        drop(feed);
    }

    #[tokio::test]
    async fn shutdown_closes_a_relay() {
        let (client, _c) = tokio::io::duplex(64);
        let (origin, _o) = tokio::io::duplex(64);
        let (tx, rx) = watch::channel(false);
        tx.send_replace(true);
        assert_eq!(
            relay(client, origin, Duration::from_secs(300), rx).await,
            "shutdown"
        );
    }
}
