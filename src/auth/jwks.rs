//! JSON Web Key Sets (RFC 7517): parsing a set into verification keys, and a remote
//! set fetched from `auth.jwks_url`, refreshed every `auth.jwks_refresh` and re-fetched
//! when a token names an unknown `kid`.
//!
//! Re-fetching is single-flight: one fetch at a time, and callers that queued behind a
//! fetch use its result instead of starting another. Unknown-`kid` re-fetches are also
//! rate-limited (one per `unknown_kid_refetch_interval`, 10 s by default), so a flood of
//! tokens with made-up `kid`s cannot turn gatehouse into a load generator against the
//! identity provider.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::keys::{b64url_lenient, ec_key, ed25519_key, rsa_key, KeyKind, KeySet, VerifyKey};
use crate::clock::Clock;

/// How long one JWKS fetch (connect, head and body) may take.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS body read; real sets are a few KiB.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// After a failed periodic refresh, the next attempt comes this soon (or at
/// `jwks_refresh`, if sooner).
pub const REFRESH_RETRY: Duration = Duration::from_secs(10);

/// Called once per JWKS fetch with `"ok"` or `"error"`, for
/// `gatehouse_jwks_fetches_total{result}`.
pub type FetchHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// A boxed, sendable future (what `JwksFetcher::fetch` returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches a JWKS document. The built-in `HttpFetcher` speaks `http://` and `https://`
/// (rustls, verifying against `auth.jwks_ca_file` or the system roots).
pub trait JwksFetcher: Send + Sync {
    /// The body of a 200 answer to `GET url`, or why there is none.
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, String>>;
}

/// `JwksFetcher` over hyper: pooled plain HTTP, and one TLS connection per fetch for
/// `https://` (fetches are minutes apart), with a whole-fetch timeout and a body
/// size limit.
pub struct HttpFetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    /// TLS for `https://`; `Err` says why it is unavailable (no roots, bad CA file).
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

impl HttpFetcher {
    /// Verifies `https://` servers against the system's root certificates.
    pub fn new(timeout: Duration) -> HttpFetcher {
        HttpFetcher::with_roots(timeout, None)
    }

    /// Verifies `https://` servers against the CA certificates in `ca_pem` (a PEM
    /// file's path), or the system roots when `None`.
    pub fn with_roots(timeout: Duration, ca_pem: Option<&std::path::Path>) -> HttpFetcher {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        HttpFetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            tls: tls_config(ca_pem),
        }
    }

    async fn fetch_https(&self, uri: &http::Uri) -> Result<Bytes, String> {
        use rustls_pki_types::ServerName;
        let tls = self.tls.clone()?;
        let host = uri.host().ok_or("the URL has no host")?;
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| format!("server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .header(http::header::USER_AGENT, "gatehouse")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let out = if resp.status() != http::StatusCode::OK {
            Err(format!("status {}", resp.status().as_u16()))
        } else {
            Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("reading body: {e}"))
        };
        driver.abort();
        out
    }
}

/// The rustls client configuration for `https://` JWKS URLs.
fn tls_config(ca_pem: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    crate::crypto::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("auth.jwks_ca_file {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("auth.jwks_ca_file {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("auth.jwks_ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(
            "no root certificates to verify https:// JWKS servers (set auth.jwks_ca_file)".into(),
        );
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl Default for HttpFetcher {
    fn default() -> Self {
        HttpFetcher::new(DEFAULT_FETCH_TIMEOUT)
    }
}

impl JwksFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, String>> {
        Box::pin(async move {
            let uri: http::Uri = url.parse().map_err(|_| "invalid URL".to_string())?;
            match uri.scheme_str() {
                Some("http") => {}
                Some("https") => {
                    return tokio::time::timeout(self.timeout, self.fetch_https(&uri))
                        .await
                        .map_err(|_| format!("timed out after {:?}", self.timeout))?;
                }
                _ => return Err("the JWKS URL must be http:// or https://".into()),
            }
            let req = http::Request::get(uri)
                .header(
                    http::header::ACCEPT,
                    "application/jwk-set+json, application/json",
                )
                .header(http::header::USER_AGENT, "gatehouse")
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            let fetch = async {
                let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
                if resp.status() != http::StatusCode::OK {
                    return Err(format!("status {}", resp.status().as_u16()));
                }
                Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(|e| format!("reading body: {e}"))
            };
            tokio::time::timeout(self.timeout, fetch)
                .await
                .map_err(|_| format!("timed out after {:?}", self.timeout))?
        })
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document into signature-verification keys.
///
/// Keys that cannot verify JWS signatures here are skipped with a warning (by `kid`):
/// `use` other than `sig`, `key_ops` without `verify`, unsupported `kty`/`crv`/`alg`,
/// a JWK `alg` that does not fit the key, RSA under 2048 bits, and symmetric (`oct`)
/// keys, which do not belong in a key set gatehouse reads. Errors only when the
/// document itself is not a JWKS.
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, String> {
    let set: RawSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, value) in set.keys.into_iter().enumerate() {
        let kid = value.get("kid").and_then(|v| v.as_str()).map(str::to_owned);
        match serde_json::from_value::<RawJwk>(value)
            .map_err(|e| e.to_string())
            .and_then(jwk_to_key)
        {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(why) => tracing::warn!(index = i, kid = ?kid, "skipping JWK: {why}"),
        }
    }
    Ok(KeySet { keys })
}

/// One JWK as a verification key; `Ok(None)` for keys meant for something else.
fn jwk_to_key(jwk: RawJwk) -> Result<Option<VerifyKey>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return Ok(None);
        }
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(a) => Some(Algorithm::from_str(a).map_err(|_| format!("alg {a:?} not supported"))?),
    };
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let s = v.as_deref().ok_or_else(|| format!("missing {name}"))?;
        b64url_lenient(s).map_err(|e| format!("{name}: {e}"))
    };
    let kid = jwk.kid.clone();
    let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => rsa_key(kid, alg, &field(&jwk.n, "n")?, &field(&jwk.e, "e")?)?,
        ("EC", Some("P-256")) => ec_key(
            kid,
            alg,
            KeyKind::EcP256,
            &field(&jwk.x, "x")?,
            &field(&jwk.y, "y")?,
        )?,
        ("EC", Some("P-384")) => ec_key(
            kid,
            alg,
            KeyKind::EcP384,
            &field(&jwk.x, "x")?,
            &field(&jwk.y, "y")?,
        )?,
        ("OKP", Some("Ed25519")) => ed25519_key(kid, alg, &field(&jwk.x, "x")?)?,
        ("oct", _) => return Err("symmetric (oct) keys are not read from a JWKS".into()),
        (kty, crv) => return Err(format!("kty {kty:?} crv {crv:?} not supported")),
    };
    if let Some(a) = alg {
        if !key.kind.fits(a) {
            return Err(format!("alg {a:?} does not fit a {} key", key.kind.name()));
        }
    }
    Ok(Some(key))
}

/// A JWKS served at a URL: the last good key set, and the machinery to refresh it.
pub struct RemoteJwks {
    url: String,
    fetcher: Arc<dyn JwksFetcher>,
    keys: RwLock<Arc<KeySet>>,
    /// Held for the duration of every fetch, so there is one at a time. Holds the clock
    /// reading of the last unknown-`kid` re-fetch, for the rate limit.
    gate: tokio::sync::Mutex<Option<Duration>>,
    /// Completed fetch attempts (ok or not). A caller that saw N before queueing and
    /// finds more than N once it holds the gate shares that fetch instead of fetching.
    attempts: AtomicU64,
    refetch_interval: Duration,
    clock: Clock,
    on_fetch: Option<FetchHook>,
}

impl RemoteJwks {
    pub fn new(
        url: String,
        fetcher: Arc<dyn JwksFetcher>,
        refetch_interval: Duration,
        clock: Clock,
        on_fetch: Option<FetchHook>,
    ) -> RemoteJwks {
        RemoteJwks {
            url,
            fetcher,
            keys: RwLock::new(Arc::new(KeySet::default())),
            gate: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
            refetch_interval,
            clock,
            on_fetch,
        }
    }

    /// The current key set (empty until the first good fetch).
    pub fn keys(&self) -> Arc<KeySet> {
        // A poisoned lock still holds a whole Arc: nothing half-written to fear.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many fetches have completed, successfully or not.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    /// Fetches now (waiting for a fetch in progress first) and installs the result.
    /// Returns the number of usable keys. Not rate-limited: for the periodic refresh
    /// and for an explicit refresh at start-up.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _gate = self.gate.lock().await;
        self.fetch_and_install().await
    }

    /// After a token named a `kid` not in the set: re-fetch, unless a fetch completed
    /// since the caller read `seen_attempts` (then its result is shared) or the last
    /// unknown-`kid` re-fetch was less than the rate-limit interval ago. Returns whether
    /// the key set may have changed, i.e. whether verifying again is worthwhile.
    pub async fn refetch_for_unknown_kid(&self, seen_attempts: u64) -> bool {
        let mut last = self.gate.lock().await;
        if self.attempts() != seen_attempts {
            return true;
        }
        let now = self.clock.now();
        if let Some(prev) = *last {
            // A clock that went backwards (checked_sub fails) does not block a fetch.
            if now
                .checked_sub(prev)
                .is_some_and(|d| d < self.refetch_interval)
            {
                return false;
            }
        }
        *last = Some(now);
        self.fetch_and_install().await.is_ok()
    }

    /// One fetch; the caller holds the gate.
    async fn fetch_and_install(&self) -> Result<usize, String> {
        let result = match self.fetcher.fetch(&self.url).await {
            Ok(body) => parse_jwks(&body).and_then(|set| {
                if set.is_empty() {
                    Err("the JWKS holds no usable signature keys".to_string())
                } else {
                    Ok(set)
                }
            }),
            Err(e) => Err(e),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let outcome = match result {
            Ok(set) => {
                let n = set.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                tracing::debug!(url = %display_url(&self.url), keys = n, "JWKS fetched");
                Ok(n)
            }
            Err(why) => {
                // The last good set stays in use: an identity provider's hiccup must
                // not reject every token.
                tracing::warn!(url = %display_url(&self.url), "JWKS fetch failed: {why}");
                Err(why)
            }
        };
        if let Some(hook) = &self.on_fetch {
            hook(if outcome.is_ok() { "ok" } else { "error" });
        }
        outcome
    }
}

/// The URL for logs: scheme, host and path, without credentials or query.
fn display_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme_str().unwrap_or("?"),
            u.host().unwrap_or("?"),
            u.path()
        ),
        Err(_) => "(invalid url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_signature_and_unsupported_keys_are_skipped() {
        let doc = br#"{"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "X25519", "kid": "x", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "ES256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
            "not even an object"
        ]}"#;
        let set = parse_jwks(doc).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, vec![Some("ed")]);
        assert_eq!(set.keys[0].kind, KeyKind::Ed25519);
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"{\"keys\": []}").unwrap().is_empty());
    }

    #[test]
    fn urls_are_logged_without_credentials_or_query() {
        assert_eq!(
            display_url("http://user:pw@idp.example:8080/jwks?key=secret"),
            "http://idp.example/jwks"
        );
    }
}
