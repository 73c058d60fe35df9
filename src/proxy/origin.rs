//! An origin client (one per `[origin]` and `[origins.NAME]`, held by the runtime):
//! pooled hyper-util client, connect and response-head timeouts,
//! and hop-by-hop hygiene both ways (RFC 9110 §7.6.1) plus `Via` and
//! `X-Forwarded-For/-Proto/-Host`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;
use crate::config::{ConfigError, OriginConfig, OriginProtocol};
pub use crate::error::OriginError;
use crate::metrics::Metrics;

/// The error a client's request body gives when it cannot be read to its end; `send`
/// finds it in the origin client's error chain.
#[derive(Debug)]
pub struct ClientBodyError(pub crate::body::BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client's request body failed: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// How long the origin took to answer a request's head, carried in the response's
/// extensions (for the access log).
#[derive(Clone, Copy, Debug)]
pub struct OriginTime(pub Duration);

/// One origin (`[origin]` or an `[origins.NAME]`): its own connection pool, TLS
/// settings, protocol and timeouts. The runtime holds one per configured origin; a
/// reload keeps the `Arc` of an origin whose table did not change (its pool with it)
/// and builds new ones, while requests already under way finish on the one they began
/// with.
pub struct Origin {
    /// `default` for `[origin]`, else the `[origins.NAME]` name: the `origin` label of
    /// its metrics.
    name: String,
    /// The table it was built from (a reload compares it).
    config: OriginConfig,
    client: Client<HttpsConnector<Dialer>, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    timeout: Duration,
    /// The version requests are sent with: HTTP/2 when only h2 is spoken.
    version: Version,
    preserve_host: bool,
    /// `origin.protocol = "http1"`: the client's authority travels as `Host`.
    http1_only: bool,
    metrics: Arc<Metrics>,
}

fn problem(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message,
    }
}

/// The config key path of an origin's table: `origin` for `[origin]`,
/// `origins.NAME` for a named one.
pub fn key_prefix(name: &str) -> String {
    if name == crate::config::DEFAULT_ORIGIN_NAME {
        "origin".to_string()
    } else {
        format!("origins.{name}")
    }
}

/// The rustls client configuration for an `https://` origin: `ca_file` or the system
/// roots, the optional client certificate, ALPN by `protocol`. Every problem, each
/// named by its key under `prefix` (`origin`, `origins.auth`).
pub fn tls_config(
    cfg: &OriginConfig,
    prefix: &str,
) -> Result<rustls::ClientConfig, Vec<ConfigError>> {
    let named = |k: &str| format!("{prefix}.{k}");
    use rustls_pki_types::pem::PemObject;
    crate::crypto::install_provider();
    let mut errors = Vec::new();
    let roots = match &cfg.ca_file {
        Some(path) => crate::server::tls::ca_roots(&named("ca_file"), path)
            .map_err(|e| errors.push(e))
            .ok(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            Some(roots)
        }
    };
    let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let certs = crate::server::tls::certificates(&named("client_cert_file"), cert)
                .map_err(|e| errors.push(e))
                .ok();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
                .map_err(|e| {
                    errors.push(problem(
                        &named("client_key_file"),
                        format!("cannot read a private key from {}: {e}", key.display()),
                    ))
                })
                .ok();
            certs.zip(key)
        }
        _ => None,
    };
    let Some(roots) = roots else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client_auth {
        Some((certs, key)) => builder.with_client_auth_cert(certs, key).map_err(|e| {
            vec![problem(
                &named("client_cert_file"),
                format!("certificate and {prefix}.client_key_file do not fit: {e}"),
            )]
        })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match cfg.protocol {
        OriginProtocol::Http1 | OriginProtocol::H2c => vec![b"http/1.1".to_vec()],
        OriginProtocol::H2 => vec![b"h2".to_vec()],
        OriginProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

impl Origin {
    /// The client of origin `name` (`default` for `[origin]`). Fails only on what
    /// `tls_config` refuses (which `preflight` reports before a start).
    pub fn new(
        name: &str,
        cfg: &OriginConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Origin, Vec<ConfigError>> {
        let prefix = key_prefix(name);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        // The TLS layer takes https; plain http is passed through it.
        connector.enforce_http(false);
        let https = cfg.url.scheme_str() == Some("https");
        let tls = if https {
            tls_config(cfg, &prefix)?
        } else {
            // Never used: an http:// origin is not wrapped in TLS.
            crate::crypto::install_provider();
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let resolver: Arc<dyn hyper_rustls::ResolveServerName + Send + Sync> = match cfg
            .sni
            .as_deref()
            .map(rustls_pki_types::ServerName::try_from)
        {
            Some(Ok(name)) => Arc::new(hyper_rustls::FixedServerNameResolver::new(name.to_owned())),
            Some(Err(_)) => {
                return Err(vec![problem(
                    &format!("{prefix}.sni"),
                    "is not a DNS name or IP address".into(),
                )])
            }
            // The URL's host, not the request URI's: that is the client's host with
            // `preserve_host`.
            None => match origin_server_name(&cfg.url) {
                Some(name) => Arc::new(hyper_rustls::FixedServerNameResolver::new(name)),
                None => Arc::new(hyper_rustls::DefaultServerNameResolver::default()),
            },
        };
        let dialer = Dialer {
            inner: connector,
            to: cfg.url.clone(),
        };
        let connector = HttpsConnector::new(dialer, tls, false, resolver);
        let h2_only = matches!(cfg.protocol, OriginProtocol::H2 | OriginProtocol::H2c);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle as usize)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_only(h2_only)
            .build(connector);
        metrics.init_origin_series(name);
        Ok(Origin {
            name: name.to_string(),
            config: cfg.clone(),
            client,
            version: if h2_only {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            scheme: cfg.url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority: cfg
                .url
                .authority()
                .cloned()
                .expect("validated origin has a host"),
            timeout: cfg.timeout,
            preserve_host: cfg.preserve_host,
            http1_only: matches!(cfg.protocol, OriginProtocol::Http1),
            metrics,
        })
    }

    /// `default` for `[origin]`, else its `[origins.NAME]` name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table this origin was built from.
    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Counts one request sent to this origin in
    /// `gatehouse_origin_requests_total{origin,result}` (`send` counts what it
    /// sends; this is for what happens after, e.g. `body_error`).
    pub fn count(&self, result: &str) {
        self.metrics
            .origin_requests_total
            .with_label_values(&[&self.name, result])
            .inc();
    }

    /// The authority the origin is asked for: its own, or with `preserve_host` the
    /// client's (the canonical `Host` of the request; the origin's own when there is
    /// none, an HTTP/1.0 request without `Host`).
    fn authority_for(&self, headers: &HeaderMap) -> http::uri::Authority {
        let client = || {
            headers
                .get(header::HOST)
                .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        };
        self.preserve_host
            .then(client)
            .flatten()
            .unwrap_or_else(|| self.authority.clone())
    }

    /// The URI the origin is asked for: the authority it should see (`authority_for`)
    /// and the request's path and query. Whatever its authority, the connection goes
    /// to the configured origin (`Dialer`).
    fn uri_for(
        &self,
        authority: http::uri::Authority,
        path_and_query: Option<&http::uri::PathAndQuery>,
    ) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(
                path_and_query
                    .cloned()
                    .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            )
            .build()
            .expect("scheme, authority and path make a URI")
    }

    /// Sends a request whose headers were already prepared with `prepare_request`,
    /// counted in `gatehouse_origin_requests_total{origin,result}` and timed up to
    /// the response head in `gatehouse_origin_duration_seconds{origin,route,result}`
    /// (`route`: the route's metric label, "none" without one). A gRPC answer is
    /// `grpc_error` there unless its `grpc-status` is 0, and counted in
    /// `gatehouse_grpc_responses_total{status}`: at once for a trailers-only answer,
    /// else when its trailers pass (both as the body ends, `missing` if it ends
    /// without a `grpc-status`). The route's `timeout` replaces `origin.timeout`.
    pub async fn send(
        &self,
        req: Request<Body>,
        route: Option<&crate::routes::Route>,
    ) -> Result<Response<Body>, OriginError> {
        let timeout = route.and_then(|r| r.config.timeout).unwrap_or(self.timeout);
        let route = route.map_or("none", crate::routes::Route::label);
        // A gRPC call's `grpc-timeout` bounds the head (504 ORIGIN_TIMEOUT, to a gRPC
        // client DEADLINE_EXCEEDED) and the body (`grpc::Deadline`).
        let deadline = super::grpc::is_grpc_message(req.headers())
            .then(|| super::grpc::timeout(req.headers()))
            .flatten();
        let started = Instant::now();
        let out = self
            .send_untimed(req, deadline.map_or(timeout, |d| d.min(timeout)))
            .await;
        let elapsed = started.elapsed();
        let mut resp = match out {
            Ok(resp) => resp,
            Err(e) => {
                record(&self.metrics, &self.name, route, elapsed, e.label());
                return Err(e);
            }
        };
        resp.extensions_mut().insert(OriginTime(elapsed));
        if !super::grpc::is_grpc_message(resp.headers()) {
            record(&self.metrics, &self.name, route, elapsed, "ok");
            return Ok(resp.map(crate::body::boxed));
        }
        if let Some(status) = resp.headers().get("grpc-status") {
            // Trailers-only: the status is in the head.
            let result = grpc_result(&self.metrics, Some(status));
            record(&self.metrics, &self.name, route, elapsed, result);
            return Ok(resp.map(crate::body::boxed));
        }
        // The status comes in the trailers: counted as they pass, or as `missing`
        // when the body ends without them.
        let mut tally = Tally {
            metrics: self.metrics.clone(),
            origin: self.name.clone(),
            route: route.to_string(),
            elapsed,
            done: false,
        };
        let left = deadline.map(|d| d.saturating_sub(elapsed));
        Ok(resp.map(|incoming| {
            use http_body_util::BodyExt;
            let body = super::grpc::Deadline::new(incoming, left);
            crate::body::boxed(body.map_frame(move |f| {
                if let Some(t) = f.trailers_ref() {
                    tally.grpc(t.get("grpc-status"));
                }
                f
            }))
        }))
    }

    async fn send_untimed(
        &self,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, OriginError> {
        // 1xx interim responses (103 Early Hints, 102 Processing) that come before
        // the final one: hyper's client hands them to this callback only, so their
        // fields (a 103's `Link`) never reach the final response or the cache. They
        // are counted, and sent on to the client when the request carries its
        // connection's `Interim` handle (HTTP/1.1 and h2 clients whose own request
        // this is: never a cache hit's, a coalesced waiter's or a background
        // revalidation's), hop-by-hop fields removed and `Via` added.
        let interim = self.metrics.origin_interim_responses_total.clone();
        let name = self.name.clone();
        let forwarded = self.metrics.interim_responses_forwarded_total.clone();
        let client = req
            .extensions_mut()
            .remove::<crate::server::interim::Interim>();
        hyper::ext::on_informational(&mut req, move |res| {
            let status = res.status();
            interim.with_label_values(&[&name, status.as_str()]).inc();
            let sent = client.as_ref().is_some_and(|c| {
                let mut headers = res.headers().clone();
                prepare_response(&mut headers, c.version());
                let sent = c.send(status, &headers);
                if sent {
                    forwarded.with_label_values(&[c.protocol()]).inc();
                }
                sent
            });
            tracing::debug!(
                status = status.as_u16(),
                links = res.headers().get_all(header::LINK).iter().count(),
                sent,
                "interim response from the origin"
            );
        });
        // One authority. An origin that may speak HTTP/2 gets it in the URI, sent as
        // `:authority` (RFC 9113 §8.3.1), and no `Host` field beside it. An
        // HTTP/1.1-only origin gets it as `Host` (kept by the client) while the URI,
        // which keys the pool, stays the origin's: one pool serves every client
        // host, so a client varying `Host` cannot make gatehouse open (and keep
        // idle) one origin connection per name.
        let authority = self.authority_for(req.headers());
        let uri_authority = if self.http1_only {
            match HeaderValue::from_str(authority.as_str()) {
                Ok(v) => req.headers_mut().insert(header::HOST, v),
                Err(_) => req.headers_mut().remove(header::HOST),
            };
            self.authority.clone()
        } else {
            req.headers_mut().remove(header::HOST);
            authority
        };
        *req.uri_mut() = self.uri_for(uri_authority, req.uri().path_and_query());
        *req.version_mut() = self.version;
        match tokio::time::timeout(timeout, self.client.request(req)).await {
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
                if let Some(tls) = tls_error(&e) {
                    tracing::warn!(error = %tls, origin = %self.name, authority = %self.authority, "TLS with the origin failed");
                    return Err(OriginError::Tls(tls.to_string()));
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

/// The rustls error in an origin client error's chain, if any (an `io::Error` hides
/// its inner error from `source()`, so it is looked into too).
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        src = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// Records one origin answer's result in `gatehouse_origin_requests_total` and
/// `gatehouse_origin_duration_seconds` (timed to the head).
fn record(metrics: &Metrics, origin: &str, route: &str, elapsed: Duration, result: &str) {
    metrics
        .origin_duration_seconds
        .with_label_values(&[origin, route, result])
        .observe(elapsed.as_secs_f64());
    metrics
        .origin_requests_total
        .with_label_values(&[origin, result])
        .inc();
}

/// Counts a gRPC answer's `grpc-status` (none: `missing`) in
/// `gatehouse_grpc_responses_total`; its result: `ok` for 0, else `grpc_error`.
fn grpc_result(metrics: &Metrics, status: Option<&HeaderValue>) -> &'static str {
    let status = status.and_then(|v| v.to_str().ok()).unwrap_or("missing");
    metrics
        .grpc_responses_total
        .with_label_values(&[status])
        .inc();
    if status == "0" {
        "ok"
    } else {
        "grpc_error"
    }
}

/// A gRPC answer whose status comes in its trailers (`Origin::send`): counted once,
/// as the trailers pass, or as `missing` when the body is dropped before them. Only
/// this path owns its labels; every other answer is counted where it is sent.
struct Tally {
    metrics: Arc<Metrics>,
    origin: String,
    route: String,
    elapsed: Duration,
    done: bool,
}

impl Tally {
    fn grpc(&mut self, status: Option<&HeaderValue>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let result = grpc_result(&self.metrics, status);
        record(
            &self.metrics,
            &self.origin,
            &self.route,
            self.elapsed,
            result,
        );
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.grpc(None);
    }
}

/// The connector under the TLS layer: whatever authority the request URI carries
/// (the client's, with `preserve_host` on an origin that may speak HTTP/2), it dials
/// the configured origin. The pool is keyed by the URI's authority, so an h2
/// connection made for one client host is never used for another's requests.
#[derive(Clone)]
pub struct Dialer {
    inner: HttpConnector,
    to: Uri,
}

impl tower_service::Service<Uri> for Dialer {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        self.inner.call(self.to.clone())
    }
}

/// The TLS server name of an origin URL's host (IPv6 without its brackets).
fn origin_server_name(url: &Uri) -> Option<rustls_pki_types::ServerName<'static>> {
    let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string()).ok()
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
/// `TE: trailers` alone survives (RFC 9110 §7.6.1 / RFC 9113 §8.2.2): gRPC needs it
/// end to end, and it is the one `TE` an h2 origin accepts.
pub fn strip_hop_by_hop_keeping(headers: &mut HeaderMap, keep: &[HeaderName]) {
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        });
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
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
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
    fn te_trailers_alone_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::TE));
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
