//! Origins other than plain HTTP/1.1: https (system roots or `origin.ca_file`, a
//! wrong CA answered 502 `ORIGIN_TLS_ERROR`, mTLS with `origin.client_cert_file`),
//! HTTP/2 (`origin.protocol` h2 by ALPN, h2c), gRPC-shaped exchanges with trailers,
//! the per-route `timeout`, and gRPC to a named h2c origin (`[origins.NAME]`).

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use support::*;

type Resp = http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>>;

/// A client certificate `client.crt` / `client.key` signed by `ca.crt` in `d`.
fn make_client_cert(d: &std::path::Path) {
    issue_cert(d, "client", "gatehouse", "extendedKeyUsage=clientAuth\n");
}

/// An origin answering every request: `x-version` says the HTTP version it was
/// spoken to with; a `content-type: application/grpc` request gets a gRPC-shaped
/// answer (one data frame, trailers `grpc-status`). Counts requests.
struct Origin {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Origin {
    async fn start(tls: Option<rustls::ServerConfig>) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let svc = service_fn(move |req: http::Request<Incoming>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Infallible>(answer(req).await) }
        });
        serve(listener, tls, svc);
        Origin { addr, hits }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }
}

async fn answer(req: http::Request<Incoming>) -> Resp {
    let version = format!("{:?}", req.version());
    let te = req
        .headers()
        .get(http::header::TE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut resp = if grpc {
        let mut trailers = http::HeaderMap::new();
        let status = if path.ends_with("/Fail") { "13" } else { "0" };
        trailers.insert("grpc-status", status.parse().unwrap());
        let reply = Full::new(body).with_trailers(async move { Some(Ok(trailers)) });
        let mut r = http::Response::new(reply.boxed_unsync());
        r.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        r.headers_mut()
            .insert("cache-control", "max-age=60".parse().unwrap());
        r
    } else {
        http::Response::new(Full::new(Bytes::from_static(b"hello")).boxed_unsync())
    };
    resp.headers_mut()
        .insert("x-version", version.parse().unwrap());
    resp.headers_mut().insert("x-te", te.parse().unwrap());
    resp
}

/// The test server config, offering h2 and http/1.1 (ALPN).
fn server_tls_alpn(dir: &std::path::Path, client_auth: bool) -> rustls::ServerConfig {
    let mut cfg = server_tls(dir, client_auth);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

fn esc(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

async fn gatehouse(origin: &str, extra: &str) -> Gatehouse {
    Gatehouse::start_config(config(
        &format!("[origin]\nurl = {origin:?}\n{extra}"),
        None,
    ))
    .await
}

#[tokio::test]
async fn https_origin_verified_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let origin = Origin::start(Some(server_tls_alpn(dir.path(), false))).await;
    let gh = gatehouse(
        &origin.url("https"),
        &format!("ca_file = \"{}\"\n", esc(&dir.path().join("ca.crt"))),
    )
    .await;
    let r = gh.get("/x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-version"], "HTTP/1.1");
    assert_eq!(r.text().await.unwrap(), "hello");
    gh.shutdown().await;
}

#[tokio::test]
async fn https_origin_with_the_wrong_ca_is_502_origin_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let origin = Origin::start(Some(server_tls_alpn(dir.path(), false))).await;
    let gh = gatehouse(
        &origin.url("https"),
        &format!("ca_file = \"{}\"\n", esc(&other.path().join("ca.crt"))),
    )
    .await;
    let r = gh.get("/x").await;
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.contains("ORIGIN_TLS_ERROR"), "{body}");
    assert_eq!(
        gh.metric("gatehouse_origin_requests_total{origin=\"default\",result=\"tls_error\"}")
            .await,
        1.0
    );
    gh.shutdown().await;
}

#[tokio::test]
async fn https_origin_with_a_wrong_sni_is_502_origin_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let origin = Origin::start(Some(server_tls_alpn(dir.path(), false))).await;
    let ca = esc(&dir.path().join("ca.crt"));
    let gh = gatehouse(
        &origin.url("https"),
        &format!("ca_file = \"{ca}\"\nsni = \"other.example\"\n"),
    )
    .await;
    let r = gh.get("/x").await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("ORIGIN_TLS_ERROR"));
    gh.shutdown().await;
    let gh = gatehouse(
        &origin.url("https"),
        &format!("ca_file = \"{ca}\"\nsni = \"localhost\"\n"),
    )
    .await;
    assert_eq!(gh.get("/x").await.status(), 200);
    gh.shutdown().await;
}

#[tokio::test]
async fn mtls_origin_needs_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    make_client_cert(dir.path());
    let origin = Origin::start(Some(server_tls_alpn(dir.path(), true))).await;
    let ca = esc(&dir.path().join("ca.crt"));
    let without = gatehouse(&origin.url("https"), &format!("ca_file = \"{ca}\"\n")).await;
    let r = without.get("/x").await;
    assert_eq!(r.status(), 502);
    without.shutdown().await;
    let with = gatehouse(
        &origin.url("https"),
        &format!(
            "ca_file = \"{ca}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            esc(&dir.path().join("client.crt")),
            esc(&dir.path().join("client.key"))
        ),
    )
    .await;
    let r = with.get("/x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");
    with.shutdown().await;
}

#[tokio::test]
async fn h2_over_tls_by_alpn_and_auto() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let origin = Origin::start(Some(server_tls_alpn(dir.path(), false))).await;
    let ca = esc(&dir.path().join("ca.crt"));
    for protocol in ["h2", "auto"] {
        let gh = gatehouse(
            &origin.url("https"),
            &format!("ca_file = \"{ca}\"\nprotocol = \"{protocol}\"\n"),
        )
        .await;
        let r = gh.get("/x").await;
        assert_eq!(r.status(), 200, "{protocol}");
        assert_eq!(r.headers()["x-version"], "HTTP/2.0", "{protocol}");
        gh.shutdown().await;
    }
}

#[tokio::test]
async fn h2c_origin() {
    let origin = Origin::start(None).await;
    let gh = gatehouse(&origin.url("http"), "protocol = \"h2c\"\n").await;
    let r = gh.get("/x").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-version"], "HTTP/2.0");
    assert_eq!(r.text().await.unwrap(), "hello");
    gh.shutdown().await;
}

/// A gRPC-shaped call to gatehouse over h2c prior knowledge; answers the response
/// head and the trailers.
async fn grpc_call(
    gh: &Gatehouse,
    method: &http::Method,
    path: &str,
) -> (http::Response<()>, Option<http::HeaderMap>, Bytes) {
    let mut send = gh.h2c().await;
    let req = http::Request::builder()
        .method(method.clone())
        .uri(format!("http://{}{path}", gh.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(if method == http::Method::GET {
            Bytes::new()
        } else {
            Bytes::from_static(b"\0\0\0\0\x02hi")
        }))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (
        http::Response::from_parts(parts, ()),
        trailers,
        collected.to_bytes(),
    )
}

#[tokio::test]
async fn grpc_unary_through_an_h2c_origin_keeps_trailers_and_is_never_cached() {
    let origin = Origin::start(None).await;
    let gh = gatehouse(
        &origin.url("http"),
        "protocol = \"h2c\"\n[[routes]]\npath = \"/pkg.Svc/{m}\"\nmethods = [\"GET\", \"POST\"]\nttl = \"60s\"\n",
    )
    .await;
    let (resp, trailers, body) = grpc_call(&gh, &http::Method::POST, "/pkg.Svc/Hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-te"], "trailers");
    assert_eq!(&body[..], b"\0\0\0\0\x02hi");
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    // A GET answered application/grpc with max-age is still not stored.
    for _ in 0..2 {
        let (resp, trailers, _) = grpc_call(&gh, &http::Method::GET, "/pkg.Svc/Get").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }
    assert_eq!(origin.hits.load(Ordering::SeqCst), 3);
    let (_, trailers, _) = grpc_call(&gh, &http::Method::POST, "/pkg.Svc/Fail").await;
    assert_eq!(trailers.unwrap()["grpc-status"], "13");
    assert!(
        gh.metric_reaches("gatehouse_grpc_responses_total{status=\"13\"}", 1.0)
            .await
    );
    assert!(
        gh.metric("gatehouse_grpc_responses_total{status=\"0\"}")
            .await
            >= 1.0
    );
    gh.shutdown().await;
}

#[tokio::test]
async fn a_route_timeout_overrides_origin_timeout() {
    let origin =
        TestOrigin::start(|_: &Seen| Reply::ok("slow").delay(Duration::from_millis(400))).await;
    let gh = Gatehouse::start(
        "[origin]\ntimeout = \"5s\"\n[[routes]]\npath = \"/short/{*rest}\"\ncache = false\ntimeout = \"100ms\"\n[[routes]]\npath = \"/long/{*rest}\"\ncache = false\n",
        &origin,
    )
    .await;
    assert_eq!(gh.get("/short/a").await.status(), 504);
    assert_eq!(gh.get("/long/a").await.status(), 200);
    gh.shutdown().await;
}

#[tokio::test]
async fn grpc_goes_to_a_named_h2c_origin_while_the_default_stays_http1() {
    let grpc = Origin::start(None).await;
    let app = TestOrigin::start(|_: &Seen| Reply::ok("app")).await;
    let gh = gatehouse(
        &app.url(),
        &format!(
            "[origins.grpc]\nurl = {:?}\nprotocol = \"h2c\"\n[[routes]]\npath = \"/pkg.Svc/{{m}}\"\nmethods = [\"POST\"]\norigin = \"grpc\"\n",
            grpc.url("http")
        ),
    )
    .await;
    let (resp, trailers, body) = grpc_call(&gh, &http::Method::POST, "/pkg.Svc/Hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-version"], "HTTP/2.0");
    assert_eq!(&body[..], b"\0\0\0\0\x02hi");
    assert_eq!(
        trailers.expect("trailers reach the client")["grpc-status"],
        "0"
    );
    assert_eq!(grpc.hits.load(Ordering::SeqCst), 1);
    // Counted once, under the named origin.
    assert!(
        gh.metric_reaches("gatehouse_grpc_responses_total{status=\"0\"}", 1.0)
            .await
    );
    assert_eq!(
        gh.metric("gatehouse_origin_requests_total{origin=\"grpc\",result=\"ok\"}")
            .await,
        1.0
    );
    // Everything else still goes to [origin], over HTTP/1.1.
    let r = gh.get("/other").await;
    assert_eq!(r.text().await.unwrap(), "app");
    assert_eq!((app.total(), grpc.hits.load(Ordering::SeqCst)), (1, 1));
    gh.shutdown().await;
}

/// With `preserve_host`, an HTTP/1.1 origin keeps ONE pool for every client host: a
/// client sending many `Host` names makes gatehouse reuse its idle connection, not
/// open one per name, and each request still carries its own host.
#[tokio::test]
async fn an_http1_origin_keeps_one_pool_whatever_host_the_clients_send() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (a, h) = (accepted.clone(), hosts.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            a.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<Incoming>| {
                    let host = req.headers()["host"].to_str().unwrap().to_string();
                    h.lock().unwrap().push(host);
                    async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    let gh = gatehouse(&format!("http://{addr}"), "preserve_host = true\n").await;
    let client = reqwest::Client::new();
    let names: Vec<String> = (0..5).map(|i| format!("name{i}.example")).collect();
    for name in &names {
        let r = client
            .get(format!("http://{}/x", gh.proxy))
            .header("host", name)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    assert_eq!(
        *hosts.lock().unwrap(),
        names,
        "each request carries its own Host"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one origin connection served every client host"
    );
    gh.shutdown().await;
}
