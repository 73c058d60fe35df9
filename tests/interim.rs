//! 1xx interim responses from the origin (103 Early Hints, 102 Processing, 100
//! Continue): forwarded to the HTTP/1.1 and h2 client whose request went to the
//! origin, before its final response, and never stored nor merged into the final
//! answer (a 103's `Link` included); never to HTTP/1.0 clients, cache hits or
//! coalesced waiters. The origin is a raw TCP one that writes the interim heads
//! itself; the HTTP/1.1 client is a raw one too, so the bytes on the wire are seen.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const EARLY_HINTS: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";

/// A raw HTTP/1.1 origin: for each request, the interim heads its path asks for,
/// then a 200. Counts the requests it answered.
struct RawOrigin {
    url: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `raw_origin` and gatehouse in front of it, `extra` added to the config of a
/// `store` with keys under a fresh prefix for `name`.
async fn start(store: &TestStore, name: &str, extra: &str) -> (RawOrigin, Gatehouse) {
    let origin = raw_origin().await;
    let text = format!("{}{extra}", store.toml(&prefix(name)));
    let gh = Gatehouse::start_config(config(&text, Some(&origin.url))).await;
    (origin, gh)
}

async fn raw_origin() -> RawOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request head (the requests here have no body but a POST's).
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = format!("final {path}");
                    let cache_control = if path.starts_with("/nostore") {
                        "no-store"
                    } else {
                        "max-age=600"
                    };
                    let last = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let ok = if path.starts_with("/together") {
                        // Interim and final heads in one write.
                        let mut all = EARLY_HINTS.to_vec();
                        all.extend_from_slice(last.as_bytes());
                        s.write_all(&all).await.is_ok()
                    } else {
                        let mut ok = true;
                        let interim: &[&[u8]] = if path.starts_with("/processing") {
                            &[b"HTTP/1.1 102 Processing\r\n\r\n", EARLY_HINTS, EARLY_HINTS]
                        } else {
                            &[EARLY_HINTS]
                        };
                        for head in interim {
                            ok &= s.write_all(head).await.is_ok() && s.flush().await.is_ok();
                            // Apart on the wire, so gatehouse reads each on its own.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        ok && s.write_all(last.as_bytes()).await.is_ok()
                    };
                    if !ok {
                        return;
                    }
                }
            });
        }
    });
    RawOrigin {
        url,
        requests,
        task,
    }
}

fn status(r: &reqwest::Response) -> String {
    r.headers()["cache-status"].to_str().unwrap().to_string()
}

fn interim_series(code: u16) -> String {
    format!("gatehouse_origin_interim_responses_total{{origin=\"default\",status=\"{code}\"}}")
}

fn forwarded_series(protocol: &str) -> String {
    format!("gatehouse_interim_responses_forwarded_total{{protocol=\"{protocol}\"}}")
}

/// The heads gatehouse sends on for the origin's: its own `Via` added.
const HINTS_ON: &str = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\nvia: 1.1 gatehouse\r\n\r\n";
const PROCESSING_ON: &str = "HTTP/1.1 102 Processing\r\nvia: 1.1 gatehouse\r\n\r\n";

/// A raw HTTP/1 client connection: what it reads is the bytes gatehouse wrote.
struct Raw<S> {
    s: S,
    buf: Vec<u8>,
}

/// One answer as read off the wire: the interim heads, the final head, its body.
#[derive(Debug)]
struct Answer {
    interim: Vec<String>,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: app.test\r\n\r\n")
}

impl Raw<tokio::net::TcpStream> {
    async fn tcp(addr: std::net::SocketAddr) -> Self {
        Raw {
            s: tokio::net::TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    async fn send(&mut self, bytes: &str) {
        self.s.write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut chunk))
            .await
            .expect("gatehouse answers within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; read so far: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8(head).unwrap();
            }
            self.fill().await;
        }
    }

    /// Interim heads up to a final one, and its body (by `content-length`; none for
    /// a HEAD).
    async fn answer(&mut self, head_request: bool) -> Answer {
        let mut interim = Vec::new();
        loop {
            let head = self.head().await;
            if head.starts_with("HTTP/1.1 1") {
                interim.push(head);
                continue;
            }
            let mut a = Answer {
                interim,
                head,
                body: String::new(),
            };
            let length: usize = if head_request {
                0
            } else {
                a.header("content-length").map_or(0, |v| v.parse().unwrap())
            };
            while self.buf.len() < length {
                self.fill().await;
            }
            a.body = String::from_utf8(self.buf.drain(..length).collect()).unwrap();
            return a;
        }
    }
}

fn assert_final(a: &Answer, path: &str, cache_status: &str) {
    assert!(a.head.starts_with("HTTP/1.1 200 OK\r\n"), "{a:?}");
    assert_eq!(a.header("link"), None, "{a:?}");
    assert!(
        a.header("cache-status").unwrap().starts_with(cache_status),
        "{a:?}"
    );
    assert_eq!(a.body, format!("final {path}"));
}

both_stores!(
    interim_responses_reach_h1_clients_and_never_the_stored_answer,
    |store: TestStore| async move {
        let (origin, gh) = start(&store, "interim", "").await;
        let mut c = Raw::tcp(gh.proxy).await;
        c.send(&get("/hints")).await;
        let a = c.answer(false).await;
        assert_eq!(a.interim, [HINTS_ON]);
        assert_final(&a, "/hints", "gatehouse; fwd=miss; stored");
        // The same connection, kept alive: the cached answer, and no interim head
        // (the origin was not asked).
        c.send(&get("/hints")).await;
        let a = c.answer(false).await;
        assert!(a.interim.is_empty(), "{a:?}");
        assert_final(&a, "/hints", "gatehouse; hit");
        c.send(&get("/processing")).await;
        let a = c.answer(false).await;
        assert_eq!(a.interim, [PROCESSING_ON, HINTS_ON, HINTS_ON]);
        assert_final(&a, "/processing", "gatehouse; fwd=miss; stored");
        // Interim and final heads in one read from the origin.
        c.send(&get("/together")).await;
        let a = c.answer(false).await;
        assert_eq!(a.interim, [HINTS_ON]);
        assert_final(&a, "/together", "gatehouse; fwd=miss; stored");
        // HTTP/1.0 clients get none (RFC 9110 §15.2).
        let mut old = Raw::tcp(gh.proxy).await;
        old.send("GET /hints10 HTTP/1.0\r\nhost: app.test\r\n\r\n")
            .await;
        let a = old.answer(false).await;
        assert!(a.interim.is_empty(), "{a:?}");
        assert!(a.head.starts_with("HTTP/1.0 200 OK\r\n"), "{a:?}");
        // What was stored has none of the interim fields.
        for path in ["/hints", "/processing", "/together", "/hints10"] {
            let r = gh
                .client
                .get(gh.url(path))
                .header("host", "app.test")
                .send()
                .await
                .unwrap();
            assert!(status(&r).starts_with("gatehouse; hit"), "{path}");
            assert!(
                !r.headers().contains_key("link"),
                "{path}: {:?}",
                r.headers()
            );
            assert_eq!(r.text().await.unwrap(), format!("final {path}"));
        }
        assert_eq!(origin.requests.load(Ordering::SeqCst), 4);
        gh.assert_metrics(&[
            (&interim_series(103), 5.0),
            (&interim_series(102), 1.0),
            (&forwarded_series("h1"), 5.0),
        ])
        .await;
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_each_get_their_own_interim_heads_in_order() {
    let (_origin, gh) = start(&TestStore::memory(), "interim-pipe", "").await;
    let mut c = Raw::tcp(gh.proxy).await;
    // Three requests in one write: a miss, a no-store pass, another miss.
    c.send(&format!(
        "{}{}{}",
        get("/p1"),
        get("/nostore/p"),
        get("/processing/p")
    ))
    .await;
    let a = c.answer(false).await;
    assert_eq!(a.interim, [HINTS_ON]);
    assert_final(&a, "/p1", "gatehouse; fwd=miss; stored");
    let a = c.answer(false).await;
    assert_eq!(a.interim, [HINTS_ON]);
    assert_final(&a, "/nostore/p", "gatehouse; fwd=miss; detail=no-store");
    let a = c.answer(false).await;
    assert_eq!(a.interim, [PROCESSING_ON, HINTS_ON, HINTS_ON]);
    assert_final(&a, "/processing/p", "gatehouse; fwd=miss; stored");
    // Then a cache hit on the same connection: nothing interim.
    c.send(&get("/p1")).await;
    let a = c.answer(false).await;
    assert!(a.interim.is_empty(), "{a:?}");
    assert_final(&a, "/p1", "gatehouse; hit");
    assert_eq!(gh.metric(&forwarded_series("h1")).await, 5.0);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_reach_h1_clients_over_tls() {
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("server.crt").display(),
        dir.path().join("server.key").display()
    );
    let (_origin, gh) = start(&TestStore::memory(), "interim-tls", &tls).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(dir.path().join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gh.proxy).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut c = Raw {
        s: tls,
        buf: Vec::new(),
    };
    c.send(&get("/processing/tls")).await;
    let a = c.answer(false).await;
    assert_eq!(a.interim, [PROCESSING_ON, HINTS_ON, HINTS_ON]);
    assert_final(&a, "/processing/tls", "gatehouse; fwd=miss; stored");
    c.send(&get("/processing/tls")).await;
    let a = c.answer(false).await;
    assert!(a.interim.is_empty(), "{a:?}");
    assert_final(&a, "/processing/tls", "gatehouse; hit");
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_on_passed_requests_reach_the_client_and_leave_the_answer_intact() {
    let (origin, gh) = start(&TestStore::memory(), "interim-pass", "").await;
    let mut c = Raw::tcp(gh.proxy).await;
    c.send(&get("/nostore")).await;
    let a = c.answer(false).await;
    assert_eq!(a.interim, [HINTS_ON]);
    assert_final(&a, "/nostore", "gatehouse; fwd=miss; detail=no-store");
    c.send("POST /nostore/write HTTP/1.1\r\nhost: app.test\r\ncontent-length: 1\r\n\r\nx")
        .await;
    let a = c.answer(false).await;
    assert_eq!(a.interim, [HINTS_ON]);
    assert_final(&a, "/nostore/write", "gatehouse; fwd=method");
    c.send("HEAD /hints HTTP/1.1\r\nhost: app.test\r\n\r\n")
        .await;
    let a = c.answer(true).await;
    assert_eq!(a.interim, [HINTS_ON]);
    assert!(a.head.starts_with("HTTP/1.1 200 OK\r\n"), "{a:?}");
    assert_eq!(a.header("link"), None);
    // Through reqwest (which reads past the 103) the answers are whole.
    let r = gh.get("/nostore").await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("link"));
    assert_eq!(r.text().await.unwrap(), "final /nostore");
    assert_eq!(origin.requests.load(Ordering::SeqCst), 4);
    gh.assert_metrics(&[(&interim_series(103), 4.0), (&forwarded_series("h1"), 4.0)])
        .await;
    gh.shutdown().await;
}

/// An h2 (prior knowledge) client connection to gatehouse.
async fn h2_client(addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// GETs `path` over h2: the interim heads received (status and fields), the final
/// response and its body.
async fn h2_get(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
) -> (Vec<http::Response<()>>, http::Response<()>, String) {
    let mut send = send.clone().ready().await.unwrap();
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    let (mut fut, _) = send.send_request(req, true).unwrap();
    let mut interim = Vec::new();
    while let Some(head) = std::future::poll_fn(|cx| fut.poll_informational(cx)).await {
        interim.push(head.unwrap());
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap()
        .unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (
        interim,
        http::Response::from_parts(parts, ()),
        String::from_utf8(bytes).unwrap(),
    )
}

fn summary(heads: &[http::Response<()>]) -> Vec<String> {
    heads
        .iter()
        .map(|h| {
            let mut fields: Vec<String> = h
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                .collect();
            fields.sort();
            format!("{} {}", h.status().as_u16(), fields.join("; "))
        })
        .collect()
}

both_stores!(
    interim_responses_reach_h2_clients_and_never_the_stored_answer,
    |store: TestStore| async move {
        let (origin, gh) = start(&store, "interim-h2", "").await;
        let mut c = h2_client(gh.proxy).await;
        let hints = "103 link: </style.css>; rel=preload; as=style; via: 2 gatehouse";
        let processing = "102 via: 2 gatehouse";
        for (path, interim) in [
            ("/hints", vec![hints]),
            ("/together", vec![hints]),
            ("/processing", vec![processing, hints, hints]),
        ] {
            let (got, resp, body) = h2_get(&mut c, gh.proxy, path).await;
            assert_eq!(summary(&got), interim, "{path}");
            assert_eq!(resp.status(), 200, "{path}");
            assert!(!resp.headers().contains_key("link"), "{path}");
            assert_eq!(
                resp.headers()["cache-status"],
                "gatehouse; fwd=miss; stored"
            );
            assert_eq!(body, format!("final {path}"));
            // The cached answer: no interim heads, no Link.
            let (got, resp, body) = h2_get(&mut c, gh.proxy, path).await;
            assert!(got.is_empty(), "{path}: {:?}", summary(&got));
            assert!(!resp.headers().contains_key("link"), "{path}");
            assert!(resp.headers()["cache-status"]
                .to_str()
                .unwrap()
                .starts_with("gatehouse; hit"));
            assert_eq!(body, format!("final {path}"));
        }
        assert_eq!(origin.requests.load(Ordering::SeqCst), 3);
        gh.assert_metrics(&[
            (&interim_series(103), 4.0),
            (&interim_series(102), 1.0),
            (&forwarded_series("h2"), 5.0),
            (&forwarded_series("h1"), 0.0),
        ])
        .await;
        gh.shutdown().await;
    }
);
