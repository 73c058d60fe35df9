//! HTTP/1.1 Upgrade (WebSocket) passthrough, WebSocket over h2 (RFC 8441 extended
//! CONNECT) and method semantics (issue 10 items 1 and 4), through real listeners: a
//! tokio-tungstenite echo origin on 127.0.0.1:0, tokio-tungstenite clients connecting
//! through gatehouse (over HTTP/1.1, or over an h2 stream of the `h2` crate's client).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-tests";

/// A WebSocket echo origin; plain (non-upgrade) requests get a small 200 answer
/// (`Connection: close`), `/refuse` upgrades get 403.
struct WsOrigin {
    addr: std::net::SocketAddr,
    /// Upgrade requests that reached the origin.
    upgrades: Arc<AtomicUsize>,
    /// Plain requests that reached the origin.
    plain: Arc<AtomicUsize>,
}

impl WsOrigin {
    async fn start() -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upgrades = Arc::new(AtomicUsize::new(0));
        let plain = Arc::new(AtomicUsize::new(0));
        let (u, p) = (upgrades.clone(), plain.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (u, p) = (u.clone(), p.clone());
                tokio::spawn(serve(stream, u, p));
            }
        });
        WsOrigin {
            addr,
            upgrades,
            plain,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback type
async fn serve(mut stream: TcpStream, upgrades: Arc<AtomicUsize>, plain: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 8192];
    let head = loop {
        let n = stream.peek(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if text.contains("\r\n\r\n") {
            break text;
        }
        // A head in parts (rare): `peek` returns at once with what is there, and
        // the handshake below must read the head from the socket itself, so poll.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if !head.contains("\r\nupgrade: websocket") {
        plain.fetch_add(1, Ordering::SeqCst);
        let end = head.find("\r\n\r\n").unwrap() + 4;
        let mut discard = vec![0u8; end];
        stream.read_exact(&mut discard).await.unwrap();
        let body = format!("{}:polled", plain.load(Ordering::SeqCst));
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        return;
    }
    upgrades.fetch_add(1, Ordering::SeqCst);
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/refuse" {
            let mut e = ErrorResponse::new(Some("no websocket here".into()));
            *e.status_mut() = http::StatusCode::FORBIDDEN;
            return Err(e);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            return;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

async fn start(extra: &str, origin: &WsOrigin) -> Gatehouse {
    Gatehouse::start_config(config(extra, Some(&origin.url()))).await
}

fn ws_url(gh: &Gatehouse, path: &str) -> String {
    format!("ws://{}{}", gh.proxy, path)
}

#[tokio::test]
async fn text_and_binary_messages_echo_through_gatehouse() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_url(&gh, "/chat"))
        .await
        .expect("the upgrade goes through");
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().contains_key("sec-websocket-accept"));
    assert_eq!(
        resp.headers()["cache-status"],
        "gatehouse; fwd=bypass; detail=upgrade"
    );
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::text(format!("hello {i}")));
        let bytes = vec![i as u8, 0, 255, 7];
        ws.send(Message::binary(bytes.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::binary(bytes));
    }
    assert_eq!(gh.metric("gatehouse_upgrades_open").await, 1.0);
    // The upgraded socket still counts as an open connection (max_connections).
    assert_eq!(
        gh.metric("gatehouse_connections_open{listener=\"proxy\"}")
            .await,
        1.0
    );
    ws.close(None).await.unwrap();
    assert_eq!(
        gh.metric("gatehouse_upgrades_total{result=\"ok\"}").await,
        1.0
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_upgrades_open").await == 0.0
                && gh
                    .metric("gatehouse_connections_open{listener=\"proxy\"}")
                    .await
                    == 0.0
        })
        .await
    );
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(jti: &str) -> String {
    Claims::issued("u1").jti(jti).hs256(SECRET)
}

const AUTH: &str = r#"
[auth]
issuer = "https://issuer.test"
audiences = ["gatehouse-tests"]
algorithms = ["HS256"]
hs_secret = "an-hs256-secret-of-more-than-32-bytes-for-tests"

[[routes]]
path = "/private"
auth = "required"
cache = false
"#;

/// A bearer token for `jti`, revoked through the api listener (204) first.
async fn revoked_bearer(gh: &Gatehouse, jti: &str) -> String {
    let expires = time::OffsetDateTime::from_unix_timestamp(now() + 600)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    api_post(
        gh,
        "/v1/revocations",
        serde_json::json!({"jti": jti, "expiresAt": expires}),
        204,
    )
    .await;
    format!("Bearer {}", token(jti))
}

#[tokio::test]
async fn an_auth_required_route_answers_401_before_any_upgrade() {
    let origin = WsOrigin::start().await;
    let gh = start(AUTH, &origin).await;
    let revoked = revoked_bearer(&gh, "ws-revoked").await;
    for bad in [None, Some("Bearer not-a-jwt"), Some(revoked.as_str())] {
        let mut req = ws_url(&gh, "/private").into_client_request().unwrap();
        if let Some(b) = bad {
            req.headers_mut()
                .insert("authorization", b.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{bad:?}");
            }
            other => panic!("expected a 401, got {other:?}"),
        }
    }
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 0);
    // With a valid token the same route upgrades.
    let mut req = ws_url(&gh, "/private").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("ws-ok")).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_other_than_101_is_relayed() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    match tokio_tungstenite::connect_async(ws_url(&gh, "/refuse")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403);
            assert_eq!(
                resp.headers()["cache-status"],
                "gatehouse; fwd=bypass; detail=upgrade"
            );
            // tungstenite hands the body over as framed (chunked) on the wire.
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("no websocket here"), "{body}");
        }
        other => panic!("expected the origin's 403, got {other:?}"),
    }
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
    assert_eq!(
        gh.metric("gatehouse_upgrades_total{result=\"refused\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_idle_upgraded_connection_is_closed_after_upgrade_idle_timeout() {
    let origin = WsOrigin::start().await;
    let gh = start(
        "[origin]\nupgrade_idle_timeout = \"400ms\"\n[server]\nidle_timeout = \"100ms\"\n",
        &origin,
    )
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&gh, "/chat"))
        .await
        .unwrap();
    // Traffic every 200 ms keeps it open past both the HTTP idle timeout (100 ms)
    // and the upgrade idle timeout (400 ms).
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("{i}"))
        );
    }
    // Then silence: closed by gatehouse.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("gatehouse closes the idle connection");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_socket_io_sequence_polls_then_upgrades_on_the_same_path() {
    let origin = WsOrigin::start().await;
    let gh = start(
        "[[routes]]\npath = \"/socket.io/\"\ncache = false\n",
        &origin,
    )
    .await;
    for i in 1..=2 {
        let r = gh.get("/socket.io/?EIO=4&transport=polling&sid=abc").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), format!("{i}:polled"));
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_url(
        &gh,
        "/socket.io/?EIO=4&transport=websocket&sid=abc",
    ))
    .await
    .expect("the upgrade goes through");
    assert_eq!(resp.status(), 101);
    for msg in ["2probe", "5", "42[\"chat\",\"hi\"]"] {
        ws.send(Message::text(msg)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(msg));
    }
    assert_eq!(origin.plain.load(Ordering::SeqCst), 2);
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_closes_upgraded_connections_within_the_grace() {
    let origin = WsOrigin::start().await;
    let gh = Gatehouse::start_config(config(
        "[server]\nshutdown_grace = \"1s\"\n",
        Some(&origin.url()),
    ))
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&gh, "/chat"))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), gh.shutdown())
        .await
        .expect("shutdown ends within the grace");
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("the upgraded connection is closed");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_api_405_lists_the_methods_the_path_takes() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    let r = gh
        .client
        .patch(gh.api_url("/v1/locks/rooms/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    let mut methods: Vec<&str> = allow.split(", ").collect();
    methods.sort();
    assert_eq!(methods, ["DELETE", "GET", "POST"]);
    let r = gh.api_get("/v1/cache/purge").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn connect_is_405_method_not_allowed_with_an_allow_that_names_no_connect() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    let mut s = TcpStream::connect(gh.proxy).await.unwrap();
    s.write_all(b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("METHOD_NOT_ALLOWED") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 405"), "{text}");
    let allow = text
        .lines()
        .find_map(|l| l.strip_prefix("allow: "))
        .expect("an Allow field");
    assert!(
        allow.contains("get") && !allow.contains("connect"),
        "{allow}"
    );
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 0);
    assert_eq!(origin.plain.load(Ordering::SeqCst), 0);
}

/// The client side of an RFC 8441 tunnel: an h2 stream as bytes.
struct H2Stream {
    send: h2::SendStream<bytes::Bytes>,
    recv: h2::RecvStream,
    pending: bytes::Bytes,
}

impl tokio::io::AsyncRead for H2Stream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if self.pending.is_empty() {
            match std::task::ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for H2Stream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        self.send.reserve_capacity(buf.len());
        while self.send.capacity() == 0 {
            match std::task::ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            }
        }
        let n = self.send.capacity().min(buf.len());
        self.send
            .send_data(bytes::Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let _ = self.send.send_data(bytes::Bytes::new(), true);
        std::task::Poll::Ready(Ok(()))
    }
}

type H2Ws = tokio_tungstenite::WebSocketStream<H2Stream>;

/// An h2 (prior knowledge) connection to gatehouse, once its SETTINGS are in.
async fn h2_conn(gh: &Gatehouse) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    // One exchange, so the server's SETTINGS have been read.
    let (resp, _) = send
        .send_request(
            http::Request::get(format!("http://{}/poll", gh.proxy))
                .body(())
                .unwrap(),
            true,
        )
        .unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    send
}

/// An extended CONNECT (`:protocol websocket`) for `path`: the answer's head, and
/// on 200 the WebSocket over its stream.
async fn h2_websocket(
    send: &h2::client::SendRequest<bytes::Bytes>,
    gh: &Gatehouse,
    path: &str,
    authorization: Option<&str>,
) -> (http::response::Parts, Option<H2Ws>) {
    let mut send = send.clone().ready().await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{}{path}", gh.proxy))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from("websocket"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let (resp, stream) = send.send_request(req.body(()).unwrap(), false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    let (parts, recv) = resp.into_parts();
    if parts.status != 200 {
        return (parts, None);
    }
    let io = H2Stream {
        send: stream,
        recv,
        pending: bytes::Bytes::new(),
    };
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (parts, Some(ws))
}

async fn echo(ws: &mut H2Ws, msg: Message) {
    ws.send(msg.clone()).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(back, msg);
}

#[tokio::test]
async fn websocket_over_h2_extended_connect_echoes_through_gatehouse() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    let send = h2_conn(&gh).await;
    assert!(
        send.is_extended_connect_protocol_enabled(),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL"
    );
    let (head, ws) = h2_websocket(&send, &gh, "/chat", None).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.headers["cache-status"],
        "gatehouse; fwd=bypass; detail=upgrade"
    );
    assert!(!head.headers.contains_key("sec-websocket-accept"));
    let mut ws = ws.unwrap();
    echo(&mut ws, Message::text("over h2")).await;
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    // A second tunnel and a plain request share the connection with the first.
    let (_, ws2) = h2_websocket(&send, &gh, "/chat/2", None).await;
    let mut ws2 = ws2.unwrap();
    echo(&mut ws2, Message::text("second")).await;
    echo(&mut ws, Message::text("first again")).await;
    assert_eq!(gh.metric("gatehouse_upgrades_open").await, 2.0);
    assert_eq!(
        gh.metric("gatehouse_upgrades_total{result=\"ok\"}").await,
        2.0
    );
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 2);
    ws.close(None).await.unwrap();
    ws2.close(None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_upgrades_open").await == 0.0
        })
        .await
    );
}

#[tokio::test]
async fn websocket_over_h2_runs_auth_first_and_a_revoked_token_gets_401_and_no_tunnel() {
    let origin = WsOrigin::start().await;
    let gh = start(AUTH, &origin).await;
    let revoked = revoked_bearer(&gh, "h2-ws-revoked").await;
    let send = h2_conn(&gh).await;
    for bad in [None, Some("Bearer not-a-jwt"), Some(revoked.as_str())] {
        let (head, ws) = h2_websocket(&send, &gh, "/private", bad).await;
        assert_eq!(head.status, 401, "{bad:?}");
        assert!(ws.is_none());
    }
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 0);
    let good = format!("Bearer {}", token("h2-ws-ok"));
    let (head, ws) = h2_websocket(&send, &gh, "/private", Some(&good)).await;
    assert_eq!(head.status, 200);
    echo(&mut ws.unwrap(), Message::text("authorized")).await;
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn websocket_over_h2_refused_by_the_origin_is_relayed_and_plain_connect_is_405() {
    let origin = WsOrigin::start().await;
    let gh = start("", &origin).await;
    let send = h2_conn(&gh).await;
    let (head, ws) = h2_websocket(&send, &gh, "/refuse", None).await;
    assert_eq!(head.status, 403);
    assert!(ws.is_none());
    assert_eq!(
        gh.metric("gatehouse_upgrades_total{result=\"refused\"}")
            .await,
        1.0
    );
    // CONNECT without :protocol: no tunnel (RFC 9110 §9.3.6 on a reverse proxy).
    let mut s = send.clone().ready().await.unwrap();
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("origin.example:443")
        .body(())
        .unwrap();
    let (resp, _) = s.send_request(req, false).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(origin.upgrades.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_idle_h2_websocket_is_closed_after_upgrade_idle_timeout_not_the_connections() {
    let origin = WsOrigin::start().await;
    let gh = start(
        "[origin]\nupgrade_idle_timeout = \"400ms\"\n[server]\nidle_timeout = \"100ms\"\n",
        &origin,
    )
    .await;
    let send = h2_conn(&gh).await;
    let (_, ws) = h2_websocket(&send, &gh, "/chat", None).await;
    let mut ws = ws.unwrap();
    // Pauses of 200 ms: past the connection's idle timeout, within the tunnel's.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        echo(&mut ws, Message::text(format!("{i}"))).await;
    }
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("gatehouse closes the idle tunnel");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_upgrades_open").await == 0.0
        })
        .await
    );
}

#[tokio::test]
async fn shutdown_closes_h2_websockets_within_the_grace() {
    let origin = WsOrigin::start().await;
    let gh = Gatehouse::start_config(config(
        "[server]\nshutdown_grace = \"1s\"\n",
        Some(&origin.url()),
    ))
    .await;
    let send = h2_conn(&gh).await;
    let (_, ws) = h2_websocket(&send, &gh, "/chat", None).await;
    let mut ws = ws.unwrap();
    echo(&mut ws, Message::text("x")).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), gh.shutdown())
        .await
        .expect("shutdown ends within the grace");
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("the tunnel is closed");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
