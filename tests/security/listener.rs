//! Listener limits against raw sockets: silent and slow connections (HTTP/1.1, h2c,
//! TLS) are closed after `server.header_read_timeout`, idle ones after
//! `server.idle_timeout` — but never a request waiting on a slow origin or a response
//! still streaming — a connection over `server.max_connections` is closed at once, and
//! a malformed request body is the client's 400, not the origin's 502.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;

/// Short clocks so each test takes a second or so.
const LIMITS: &str = "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"500ms\"\n";
const HEAD: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(500);
/// How long a test waits for the server to close before calling it open forever.
const BOUND: Duration = Duration::from_secs(5);
/// A little slack for timers firing early relative to the client's clock.
const SLACK: Duration = Duration::from_millis(50);

fn config_text(name: &str, extra: &str) -> String {
    format!("{}{extra}", TestStore::memory().toml(&prefix(name)))
}

/// One metric series, read over a fresh admin connection (a pooled one may just have
/// been closed as idle by the very limits under test).
async fn metric(gh: &Gatehouse, series: &str) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let text = client
        .get(gh.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Asserts that gatehouse has closed `n` proxy connections for `reason`.
async fn assert_closes(gh: &Gatehouse, reason: &str, n: f64) {
    let series =
        format!("gatehouse_connections_closed_total{{listener=\"proxy\",reason=\"{reason}\"}}");
    assert_eq!(metric(gh, &series).await, n, "{series}");
}

/// Reads until the server closes the connection (EOF or an error); returns what it
/// sent and when, after `since`, it closed. Panics if it is still open after BOUND.
async fn wait_closed<S: AsyncRead + Unpin>(io: &mut S, since: Instant) -> (Vec<u8>, Duration) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {BOUND:?} (sent {:?})",
        String::from_utf8_lossy(&got)
    );
    (got, since.elapsed())
}

/// Reads one HTTP/1.1 response (Content-Length or chunked) from a keep-alive
/// connection: (status line, headers text, body).
async fn read_response<S: AsyncRead + Unpin>(io: &mut S) -> (String, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = io.read(&mut byte).await.expect("response head");
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let (status, headers) = head.split_once("\r\n").unwrap();
    let length = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            io.read_exact(&mut body).await.expect("response body");
        }
        None => loop {
            // Chunked: size line, data, CRLF; a zero size ends it (no trailers here).
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                assert!(io.read(&mut byte).await.unwrap() > 0, "cut mid-body");
                line.push(byte[0]);
            }
            let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16)
                .expect("chunk size");
            let mut chunk = vec![0u8; size + 2];
            io.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        },
    }
    (status.to_string(), headers.to_string(), body)
}

async fn get_on<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, path: &str) -> (String, Vec<u8>) {
    io.write_all(format!("GET {path} HTTP/1.1\r\nhost: app.example\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(io).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_header_read_timeout() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&config_text("silent", LIMITS), &origin).await;
    let since = Instant::now();
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (sent, after) = wait_closed(&mut tcp, since).await;
    assert!(sent.is_empty(), "closed without an answer");
    assert!(
        after >= HEAD - SLACK,
        "closed after {after:?}, before the timeout"
    );
    assert_closes(&gh, "header_read_timeout", 1.0).await;
    assert_closes(&gh, "idle_timeout", 0.0).await;
    assert_eq!(origin.total(), 0);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_head_then_silence_or_a_trickle_is_closed() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&config_text("slowloris", LIMITS), &origin).await;

    // Part of a head, then nothing.
    let since = Instant::now();
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    tcp.write_all(b"GET /a HTTP/1.1\r\nhost: app.example\r\n")
        .await
        .unwrap();
    let (_, after) = wait_closed(&mut tcp, since).await;
    assert!(after >= HEAD - SLACK, "closed after {after:?}");

    // Slowloris: a byte of the head every 50 ms keeps bytes moving, but the head is
    // never finished: closed by the head's deadline all the same.
    let since = Instant::now();
    let tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let trickle = tokio::spawn(async move {
        wr.write_all(b"GET /b HTTP/1.1\r\n").await.unwrap();
        for b in b"x-slow: ".iter().cycle() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (sent, after) = wait_closed(&mut rd, since).await;
    trickle.abort();
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(
        after >= HEAD - SLACK && after < Duration::from_secs(2),
        "closed after {after:?}"
    );
    assert_closes(&gh, "header_read_timeout", 2.0).await;
    assert_eq!(origin.total(), 0, "no partial head reached the origin");
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout_and_counted() {
    let origin = TestOrigin::start(|_| Reply::ok("hello")).await;
    let gh = Gatehouse::start(&config_text("idle", LIMITS), &origin).await;
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (status, body) = get_on(&mut tcp, "/first").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"hello");
    // The connection is reusable while it is not idle too long.
    let (status, _) = get_on(&mut tcp, "/second").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    let since = Instant::now();
    let (sent, after) = wait_closed(&mut tcp, since).await;
    assert!(sent.is_empty());
    // Idle counts from the last response, and the 300 ms head timeout does not apply
    // to a connection waiting for its next request.
    assert!(after >= IDLE - SLACK, "closed after {after:?}");
    assert_closes(&gh, "idle_timeout", 1.0).await;
    assert_closes(&gh, "header_read_timeout", 0.0).await;
    assert_eq!(origin.total(), 2);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_keep_alive_head_is_timed_from_its_first_byte_not_from_idle() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&config_text("later-head", LIMITS), &origin).await;
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (status, _) = get_on(&mut tcp, "/first").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    // The client waits longer than the head timeout but less than idle_timeout (the
    // scenario, not a synchronisation), then starts a head it never finishes.
    tokio::time::sleep(HEAD + Duration::from_millis(100)).await;
    tcp.write_all(b"GET /second HTTP/1.1\r\nhost: app.example\r\n")
        .await
        .expect("the idle connection is still open after the head timeout");
    let since = Instant::now();
    let (sent, after) = wait_closed(&mut tcp, since).await;
    assert!(sent.is_empty());
    assert!(
        after >= HEAD - SLACK,
        "closed {after:?} after the head began, before its own timeout"
    );
    assert_closes(&gh, "header_read_timeout", 1.0).await;
    assert_closes(&gh, "idle_timeout", 0.0).await;
    assert_eq!(origin.total(), 1);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_answer_after_twice_idle_timeout_is_delivered() {
    // Real time: the subject is an origin slower than idle_timeout.
    let origin = TestOrigin::start(|_| Reply::ok("slow but sure").delay(IDLE * 2)).await;
    let gh = Gatehouse::start(&config_text("slow-origin", LIMITS), &origin).await;
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let since = Instant::now();
    let (status, body) = tokio::time::timeout(BOUND, get_on(&mut tcp, "/slow"))
        .await
        .expect("an answer");
    assert!(since.elapsed() >= IDLE * 2, "the origin's delay was served");
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"slow but sure");
    // The same connection still serves the next request.
    origin.set(|_| Reply::ok("next"));
    let (status, body) = get_on(&mut tcp, "/next").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"next");
    assert_closes(&gh, "idle_timeout", 0.0).await;
    gh.shutdown().await;
}

/// An origin (raw TCP) whose response body arrives one chunk every 200 ms, 8 in all:
/// 1.6 s, more than three idle timeouts, with bytes moving all along.
async fn trickling_origin() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tcp.write_all(b"1\r\na\r\n").await.is_err() {
                return;
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
        let _ = tcp.read(&mut byte).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_keeps_streaming_is_not_cut() {
    let (addr, task) = trickling_origin().await;
    let cfg = config(
        &config_text(
            "streaming",
            &format!("{LIMITS}[[routes]]\npath = \"/stream\"\ncache = false\n"),
        ),
        Some(&format!("http://{addr}")),
    );
    let gh = Gatehouse::start_config(cfg).await;
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let since = Instant::now();
    let (status, body) = tokio::time::timeout(BOUND, get_on(&mut tcp, "/stream"))
        .await
        .expect("the whole body");
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"aaaaaaaa", "every chunk arrived");
    assert!(since.elapsed() >= IDLE * 3, "{:?}", since.elapsed());
    assert_closes(&gh, "idle_timeout", 0.0).await;
    task.abort();
    gh.shutdown().await;
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_without_a_request_or_with_half_a_preface_is_closed() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&config_text("h2c-silent", LIMITS), &origin).await;

    // The whole preface and SETTINGS, then no HEADERS.
    let since = Instant::now();
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    tcp.write_all(H2_PREFACE).await.unwrap();
    tcp.write_all(H2_SETTINGS).await.unwrap();
    let (sent, after) = wait_closed(&mut tcp, since).await;
    assert!(
        !sent.is_empty(),
        "the server spoke HTTP/2 (its SETTINGS) first"
    );
    assert!(after >= HEAD - SLACK, "closed after {after:?}");

    // Only part of the preface: the version is never known.
    let since = Instant::now();
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    tcp.write_all(&H2_PREFACE[..16]).await.unwrap();
    let (sent, after) = wait_closed(&mut tcp, since).await;
    assert!(sent.is_empty());
    assert!(after >= HEAD - SLACK, "closed after {after:?}");
    assert_closes(&gh, "header_read_timeout", 2.0).await;
    assert_eq!(origin.total(), 0);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_after_idle_timeout() {
    let origin = TestOrigin::start(|_| Reply::ok("over h2")).await;
    let gh = Gatehouse::start(&config_text("h2c-idle", LIMITS), &origin).await;
    let tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://{}/h2", gh.proxy))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"over h2");
    let since = Instant::now();
    tokio::time::timeout(BOUND, conn)
        .await
        .expect("the server closed the idle h2 connection")
        .unwrap()
        .ok();
    assert!(since.elapsed() >= IDLE - SLACK, "{:?}", since.elapsed());
    assert_closes(&gh, "idle_timeout", 1.0).await;
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_and_first_head_are_bounded_by_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let text = config_text(
        "tls-silent",
        &format!(
            "{LIMITS}[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.path().join("server.crt").display(),
            dir.path().join("server.key").display()
        ),
    );
    let gh = Gatehouse::start(&text, &origin).await;

    // No ClientHello at all (the old fixed handshake timeout was 10 s).
    let since = Instant::now();
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let (_, after) = wait_closed(&mut tcp, since).await;
    assert!(after >= HEAD - SLACK, "closed after {after:?}");

    // A complete handshake, then no request: the same deadline, counted from accept.
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(test_roots(&dir.path().join("ca.crt")))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let since = Instant::now();
    let tcp = TcpStream::connect(gh.proxy).await.unwrap();
    let mut tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .expect("handshake");
    let (sent, after) = wait_closed(&mut tls, since).await;
    assert!(sent.is_empty());
    assert!(after >= HEAD - SLACK, "closed after {after:?}");
    assert_closes(&gh, "header_read_timeout", 2.0).await;
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_max_connections_is_closed_at_once_and_counted() {
    let origin = TestOrigin::start(|_| Reply::ok("served")).await;
    // Long clocks: only the connection cap closes anything here.
    let limits =
        "[server]\nmax_connections = 3\nheader_read_timeout = \"10s\"\nidle_timeout = \"20s\"\n";
    let gh = Gatehouse::start(&config_text("max-conns", limits), &origin).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
        let (status, body) = get_on(&mut tcp, "/held").await;
        assert!(status.starts_with("http/1.1 200"), "{status}");
        assert_eq!(body, b"served");
        held.push(tcp);
    }
    let open = "gatehouse_connections_open{listener=\"proxy\"}";
    let rejected =
        "gatehouse_connections_rejected_total{listener=\"proxy\",reason=\"max_connections\"}";
    assert_eq!(metric(&gh, open).await, 3.0);

    let since = Instant::now();
    let mut fourth = TcpStream::connect(gh.proxy).await.unwrap();
    let (sent, after) = wait_closed(&mut fourth, since).await;
    assert!(sent.is_empty());
    assert!(
        after < Duration::from_secs(2),
        "closed at once, not after {after:?}"
    );
    assert_eq!(metric(&gh, rejected).await, 1.0);
    assert_eq!(metric(&gh, open).await, 3.0, "the three held stay open");
    assert_eq!(origin.total(), 3);

    // One closes; its place is given back and a new connection is served.
    drop(held.pop());
    assert!(
        eventually(BOUND, || async { metric(&gh, open).await == 2.0 }).await,
        "the closed connection's place was given back"
    );
    let mut next = TcpStream::connect(gh.proxy).await.unwrap();
    let (status, body) = get_on(&mut next, "/after").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(body, b"served");
    let (status, _) = get_on(&mut held[0], "/still").await;
    assert!(status.starts_with("http/1.1 200"), "{status}");
    assert_eq!(metric(&gh, rejected).await, 1.0);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_400_not_the_origins_502() {
    let origin = TestOrigin::start(|_| Reply::status(201, "created")).await;
    let gh = Gatehouse::start(
        &config_text(
            "bad-chunked",
            "[[routes]]\npath = \"/w\"\nmethods = [\"POST\"]\ncache = false\n",
        ),
        &origin,
    )
    .await;
    let mut tcp = TcpStream::connect(gh.proxy).await.unwrap();
    tcp.write_all(
        b"POST /w HTTP/1.1\r\nhost: app.example\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\nzz\r\n",
    )
    .await
    .unwrap();
    let (status, headers, body) = tokio::time::timeout(BOUND, read_response(&mut tcp))
        .await
        .expect("an answer");
    assert!(status.starts_with("http/1.1 400"), "{status}");
    assert!(headers.contains("application/json"), "{headers}");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "BAD_REQUEST", "{json}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    let series =
        |r: &str| format!("gatehouse_origin_requests_total{{origin=\"default\",result=\"{r}\"}}");
    assert_eq!(metric(&gh, &series("client_body_error")).await, 1.0);
    assert_eq!(metric(&gh, &series("unreachable")).await, 0.0);
    // The origin never got a complete request it could act on.
    assert!(origin.seen().iter().all(|s| s.body.is_empty()));
    // The next client is served normally.
    let r = gh
        .client
        .post(gh.url("/w"))
        .body("fine")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(origin.last().unwrap().body, "fine");
    gh.shutdown().await;
}
