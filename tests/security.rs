//! The edge-safety suite: each attack sent, with assertions on what the origin saw and
//! what the next client got. Each module is one family of attacks; `docs/security.md`
//! names the test behind every defence.

mod support;

#[path = "security/coalescing.rs"]
mod coalescing;
#[path = "security/config.rs"]
mod config;
#[path = "security/headers.rs"]
mod headers;
#[path = "security/host.rs"]
mod host;
#[path = "security/listener.rs"]
mod listener;
#[path = "security/memory.rs"]
mod memory;
#[path = "security/props.rs"]
mod props;
#[path = "security/target.rs"]
mod target;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::{unix_now, Claims, HS_SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An `[auth]` section verifying HS256 tokens signed with `HS_SECRET`.
pub fn auth_toml(extra: &str) -> String {
    format!(
        "[auth]\nhs_secret = \"{HS_SECRET}\"\nalgorithms = [\"HS256\"]\nclaims_to_headers = {{ sub = \"x-user-id\" }}\n{extra}\n"
    )
}

/// A valid HS256 token for `sub` (None: a token without `sub`).
pub fn token(sub: Option<&str>) -> String {
    let claims = Claims::new().exp(unix_now() + 3600);
    match sub {
        Some(s) => claims.sub(s),
        None => claims,
    }
    .hs256(HS_SECRET)
}

/// One answer read off a raw connection.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends bytes exactly as given (no client library to tidy the target or headers up)
/// and reads one HTTP/1.1 answer; None when the connection closed without one.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Option<Raw> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(parsed) = parse(&buf) {
            return Some(parsed);
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return parse(&buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete response in `buf` (Content-Length framed, as gatehouse answers), if any.
fn parse(buf: &[u8]) -> Option<Raw> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body = buf.get(end + 4..end + 4 + len)?.to_vec();
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// `GET <target>` with the given extra header lines, raw.
pub async fn get_raw(addr: SocketAddr, target: &str, headers: &str) -> Option<Raw> {
    let req = format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}
