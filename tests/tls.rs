//! TLS on the proxy listener (rustls): a client that trusts the test CA gets the
//! proxied, cached answer over HTTP/1.1 and HTTP/2 (ALPN), and the origin is told
//! the client spoke https.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use support::*;

async fn tls_get(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    alpn: &[u8],
    path: &str,
) -> (http::Response<Bytes>, http::Version) {
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(test_roots(ca))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("handshake with a certificate the client trusts");
    let req = http::Request::builder()
        .uri(format!("https://127.0.0.1:{}{path}", addr.port()))
        .header("host", format!("127.0.0.1:{}", addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().remove("host");
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (http::Response::from_parts(parts, body), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_listener_serves_tls_with_alpn() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let origin = TestOrigin::start(|s| {
        Reply::ok(format!(
            "proto={}",
            s.headers["x-forwarded-proto"].to_str().unwrap()
        ))
    })
    .await;
    let text = format!(
        "{}[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n[[routes]]\npath = \"/s\"\nttl = \"1m\"\n",
        TestStore::memory().toml(&prefix("tls")),
        dir.path().join("server.crt").display(),
        dir.path().join("server.key").display()
    );
    let gh = Gatehouse::start(&text, &origin).await;
    let ca = dir.path().join("ca.crt");
    let (r, v) = tls_get(gh.proxy, &ca, b"http/1.1", "/s/1").await;
    assert_eq!(v, http::Version::HTTP_11);
    assert_eq!(r.body().as_ref(), b"proto=https");
    let (r, v) = tls_get(gh.proxy, &ca, b"h2", "/s/1").await;
    assert_eq!(v, http::Version::HTTP_2);
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.total(), 1);
    // Plain HTTP on the TLS listener gets no answer.
    assert!(reqwest::get(gh.url("/s/1")).await.is_err());
    gh.shutdown().await;
}
