//! The origin client: pooled hyper-util client, connect and response-head timeouts,
//! and hop-by-hop hygiene both ways (RFC 9110 §7.6.1) plus `Via` and
//! `X-Forwarded-For/-Proto/-Host`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::config::OriginConfig;
use crate::metrics::Metrics;

/// Why the origin gave no response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// Connection refused, reset, DNS, connect timeout: 502 `ORIGIN_UNREACHABLE`.
    Unreachable(String),
    /// No response head within `origin.timeout`: 504 `ORIGIN_TIMEOUT`.
    Timeout,
    /// The client's body went past `server.max_body_bytes` while being streamed.
    BodyTooLarge,
    /// The client's body failed while being streamed (malformed chunked encoding, cut
    /// short): 400 `BAD_REQUEST`, the client's fault, not the origin's.
    ClientBody,
}

/// The error a client's request body gives when it cannot be read to its end; `send`
/// finds it in the origin client's error chain.
#[derive(Debug)]
pub struct ClientBodyError(pub hyper::Error);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client's request body failed: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl OriginError {
    /// The `result` label of `gatehouse_origin_requests_total` and
    /// `gatehouse_origin_duration_seconds`.
    pub fn label(&self) -> &'static str {
        match self {
            OriginError::Timeout => "timeout",
            OriginError::Unreachable(_) => "unreachable",
            OriginError::BodyTooLarge => "body_too_large",
            OriginError::ClientBody => "client_body_error",
        }
    }

    pub fn into_error(self) -> crate::error::Error {
        match self {
            OriginError::Unreachable(d) => crate::error::Error::origin_unreachable(&d),
            OriginError::Timeout => crate::error::Error::origin_timeout(),
            OriginError::BodyTooLarge => crate::error::Error::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "BODY_TOO_LARGE",
                "the request body is larger than server.max_body_bytes",
                crate::error::Source::Client,
            ),
            OriginError::ClientBody => crate::error::Error::bad_request_body(),
        }
    }
}

/// How long the origin took to answer a request's head, carried in the response's
/// extensions (for the access log).
#[derive(Clone, Copy, Debug)]
pub struct OriginTime(pub Duration);

pub struct Origin {
    client: Client<HttpConnector, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    timeout: Duration,
    preserve_host: bool,
    metrics: Arc<Metrics>,
}

impl Origin {
    pub fn new(cfg: &OriginConfig, metrics: Arc<Metrics>) -> Origin {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle as usize)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Origin {
            client,
            scheme: cfg.url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority: cfg
                .url
                .authority()
                .cloned()
                .expect("validated origin has a host"),
            timeout: cfg.timeout,
            preserve_host: cfg.preserve_host,
            metrics,
        }
    }

    /// The URI the origin is asked for, from the request's path and query.
    pub fn uri_for(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(
                path_and_query
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            )
            .build()
            .expect("scheme, authority and path make a URI")
    }

    /// Sends a request whose headers were already prepared with `prepare_request`,
    /// timed up to the response head in `gatehouse_origin_duration_seconds{route,result}`
    /// (`route`: the route's metric label, "none" without one).
    pub async fn send(
        &self,
        req: Request<Body>,
        route: &str,
    ) -> Result<Response<Incoming>, OriginError> {
        let started = Instant::now();
        let mut out = self.send_untimed(req).await;
        let elapsed = started.elapsed();
        let result = out.as_ref().map_or_else(OriginError::label, |_| "ok");
        self.metrics
            .origin_duration_seconds
            .with_label_values(&[route, result])
            .observe(elapsed.as_secs_f64());
        if let Ok(resp) = &mut out {
            resp.extensions_mut().insert(OriginTime(elapsed));
        }
        out
    }

    async fn send_untimed(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, OriginError> {
        // 1xx interim responses (103 Early Hints, 102 Processing) that come before
        // the final one are counted and dropped: hyper's client hands them to a
        // callback only, so their fields (a 103's `Link`) never reach the final
        // response, the cache or the client (hyper's server has no way to send them
        // on, h1 or h2).
        let interim = self.metrics.origin_interim_responses_total.clone();
        hyper::ext::on_informational(&mut req, move |res| {
            let status = res.status();
            tracing::debug!(
                status = status.as_u16(),
                links = res.headers().get_all(header::LINK).iter().count(),
                "interim response from the origin dropped"
            );
            interim.with_label_values(&[status.as_str()]).inc();
        });
        *req.uri_mut() = self.uri_for(req.uri().path_and_query());
        *req.version_mut() = Version::HTTP_11;
        if !self.preserve_host {
            if let Ok(v) = HeaderValue::from_str(self.authority.as_str()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(OriginError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(err) = src {
                    if err.is::<http_body_util::LengthLimitError>() {
                        return Err(OriginError::BodyTooLarge);
                    }
                    if err.is::<ClientBodyError>() {
                        return Err(OriginError::ClientBody);
                    }
                    src = err.source();
                }
                let detail = if e.is_connect() {
                    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                    let mut last = e.to_string();
                    while let Some(s) = src {
                        last = s.to_string();
                        src = s.source();
                    }
                    if last.contains("timed out") {
                        "connect timed out".to_string()
                    } else {
                        format!("connect failed: {last}")
                    }
                } else {
                    "connection closed before a response".to_string()
                };
                Err(OriginError::Unreachable(detail))
            }
        }
    }
}

/// Headers that describe one connection and never cross a proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_hop_by_hop_keeping(headers, &[]);
}

/// `strip_hop_by_hop`, but a `Connection` list never removes the fields in `keep`.
pub fn strip_hop_by_hop_keeping(headers: &mut HeaderMap, keep: &[HeaderName]) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .filter(|n| !keep.contains(n))
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn via_value(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "1.0 gatehouse",
        Version::HTTP_2 => "2 gatehouse",
        Version::HTTP_3 => "3 gatehouse",
        _ => "1.1 gatehouse",
    }
}

/// Appends our `Via` entry.
pub fn add_via(headers: &mut HeaderMap, version: Version) {
    headers.append(header::VIA, HeaderValue::from_static(via_value(version)));
}

/// Prepares a client request for the origin: `Via`, `X-Forwarded-For` (appended),
/// `X-Forwarded-Proto`, `X-Forwarded-Host`. The client's hop-by-hop fields were
/// removed before anything else (`proxy::inbound`), so its `Connection` list cannot
/// remove what gatehouse has added since.
pub fn prepare_request(
    headers: &mut HeaderMap,
    version: Version,
    uri: &Uri,
    peer: SocketAddr,
    tls: bool,
) {
    add_via(headers, version);
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    let host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(h) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, h.clone());
        }
        headers.insert("x-forwarded-host", h);
    }
}

/// Prepares an origin response for the client: hop-by-hop removed, `Via` added.
pub fn prepare_response(headers: &mut HeaderMap, version: Version) {
    strip_hop_by_hop(headers);
    add_via(headers, version);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_named_ones_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarding_headers_are_added() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        let uri: Uri = "/x".parse().unwrap();
        prepare_request(
            &mut h,
            Version::HTTP_11,
            &uri,
            "192.0.2.7:5000".parse().unwrap(),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert_eq!(h[header::VIA], "1.1 gatehouse");
    }
}
