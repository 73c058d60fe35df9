//! Configuration: one TOML file, every key with a named default, environment overrides
//! (`GATEHOUSE_<SECTION>_<KEY>`, `REDIS_URL` as a fallback for `store.url`), and a
//! validation that names the key path of every problem (`origin.timeout`,
//! `routes[2].ttl`). `Config::from_toml_str` never stops at the first problem: it
//! returns all of them, so `gatehouse check` can print the whole list.
//!
//! The repo's top-level `config.toml` lists every key read here with its default; the
//! test `config_toml_lists_every_key` keeps the two in step.
//!
//! One job a file: this one holds the types and their named defaults;
//! [`read`] turns the file into them, [`env`] applies the `GATEHOUSE_*` overrides,
//! [`validate`] runs the cross-key checks, [`parse`] types single values.

pub mod env;
pub mod parse;
pub mod read;
pub mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::path_pattern::RouteMatching;
pub use parse::{format_size, parse_duration, parse_size, report, ConfigError};
pub use validate::{check_log_filter, KNOWN_ALGORITHMS};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9100";
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// The smallest `server.max_header_bytes`: HTTP/1 needs room for a request line.
pub const MIN_MAX_HEADER_BYTES: u64 = 8 << 10;
/// Readiness turns 503 and listeners close at once unless `server.drain_delay` is set.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// Ambiguous path spellings are refused (400) unless the config says otherwise.
pub const DEFAULT_PATH_POLICY: PathPolicy = PathPolicy {
    escaped_slash: EscapedSlash::Reject,
    backslash: Backslash::Reject,
    duplicate_slashes: DuplicateSlashes::Reject,
    invalid_encoding: InvalidEncoding::Reject,
};
/// `server.route_case` / `server.route_trailing_slash`: route paths match the way
/// Express, NestJS, Spring and ASP.NET route (case-insensitive, an optional trailing
/// slash), so a request the origin would route to a protected handler meets the
/// protected route here too.
pub const DEFAULT_ROUTE_MATCHING: RouteMatching = RouteMatching {
    case_insensitive: true,
    optional_trailing_slash: true,
};

pub const DEFAULT_ORIGIN_URL: &str = "http://127.0.0.1:3000";
pub const DEFAULT_ORIGIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_ORIGIN_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// An upgraded (WebSocket) connection with no byte either way for this long is closed.
pub const DEFAULT_ORIGIN_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_ORIGIN_POOL_MAX_IDLE: u64 = 256;
pub const DEFAULT_ORIGIN_PROTOCOL: OriginProtocol = OriginProtocol::Http1;
/// The client's `Host` is forwarded (like Envoy), not the origin's authority.
pub const DEFAULT_ORIGIN_PRESERVE_HOST: bool = true;
/// The name `[origin]` goes by: in `routes[].origin`, and as the `origin` label of the
/// `gatehouse_origin_*` metrics. No `[origins.NAME]` may take it.
pub const DEFAULT_ORIGIN_NAME: &str = "default";
/// The longest name of a named origin (`[origins.NAME]`).
pub const MAX_ORIGIN_NAME_LEN: usize = 64;

/// The embedded memory store: one instance needs no Redis.
pub const DEFAULT_STORE_BACKEND: StoreBackend = StoreBackend::Memory;
pub const DEFAULT_STORE_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_KEY_PREFIX: &str = "gatehouse:development";
pub const DEFAULT_STORE_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `/readyz` stays 200 ("degraded") while the store is unreachable.
pub const DEFAULT_STORE_SERVE_DEGRADED: bool = true;

pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 << 20;
/// The smallest `store.memory_max_bytes` accepted when it is set.
pub const MIN_STORE_MEMORY_MAX_BYTES: u64 = 1 << 20;
pub const DEFAULT_CACHE_MAX_OBJECT: u64 = 8 << 20;
pub const DEFAULT_CACHE_DEFAULT_TTL: Duration = Duration::ZERO;
pub const DEFAULT_CACHE_NEGATIVE_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_COHERENCE_GRACE: Duration = Duration::from_secs(1);
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_LOCK_AGE: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_VARIANTS: u64 = 32;
pub const DEFAULT_HIT_FOR_PASS_TTL: Duration = Duration::from_secs(30);
/// `PURGE` on the proxy listener is forwarded to the origin unless switched on.
pub const DEFAULT_PURGE_METHOD: bool = false;
pub const DEFAULT_PURGE_ALLOW: &[&str] = &["127.0.0.0/8", "::1/128"];
/// RFC 9213 targeted fields gatehouse obeys instead of `Cache-Control`, first valid
/// one wins; the first names gatehouse and is removed from answers.
/// Heuristic freshness (RFC 9111 §4.2.2) as a fraction of the time since
/// `Last-Modified`; 0 turns it off.
pub const DEFAULT_HEURISTIC_FRACTION: f64 = 0.0;
/// The most heuristic freshness a response gets.
pub const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_TARGETED_FIELDS: &[&str] = &["Gatehouse-Cache-Control", "CDN-Cache-Control"];

/// `routes[].set_cookie`: a response that sets a cookie is never stored.
pub const DEFAULT_ROUTE_SET_COOKIE: SetCookie = SetCookie::Pass;
/// `routes[].methods`: a route reads.
pub const DEFAULT_ROUTE_METHODS: &[&str] = &["GET", "HEAD"];
pub const DEFAULT_ROUTE_AUTH: AuthMode = AuthMode::Off;
pub const DEFAULT_ROUTE_KEY_BY: KeyBy = KeyBy::Shared;
/// `routes[].cache`: a route's cacheable answers are cached.
pub const DEFAULT_ROUTE_CACHE: bool = true;
/// `routes[].override`: the route `ttl` applies only when the origin gives none.
pub const DEFAULT_ROUTE_OVERRIDE_TTL: bool = false;
pub const DEFAULT_ROUTE_REVOKE_ON_SUCCESS: bool = false;
/// `routes[].forward_authorization`: the origin sees the client's `Authorization`.
pub const DEFAULT_ROUTE_FORWARD_AUTHORIZATION: bool = true;
/// `routes[].capacity.member`: the verified `sub` is admitted.
pub const DEFAULT_CAPACITY_MEMBER: &str = "sub";
/// `routes[].capacity.release_on_failure`: a place is freed when the origin fails.
pub const DEFAULT_CAPACITY_RELEASE_ON_FAILURE: bool = true;
pub const DEFAULT_ROUTE_LOCK_TTL: Duration = Duration::from_secs(30);
/// `routes[].lock.wait`: a held lock answers 409 at once.
pub const DEFAULT_ROUTE_LOCK_WAIT: Duration = Duration::ZERO;
/// The longest capacity or lock `ns` / `id` (the api contract's identifier pattern).
pub const MAX_GATE_NAME_LEN: usize = 200;

pub const DEFAULT_AUTH_LEEWAY: Duration = Duration::from_secs(60);
pub const DEFAULT_AUTH_ALGORITHMS: &[&str] = &["HS256"];
/// A revocation check the store cannot answer refuses the request (503).
pub const DEFAULT_AUTH_ON_STORE_ERROR: StoreErrorPolicy = StoreErrorPolicy::Deny;
/// The shortest `auth.hs_secret` (RFC 7518 §3.2: at least the hash's size).
pub const MIN_HS_SECRET_BYTES: usize = 32;
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// How long a subject revocation is kept after its `issuedBefore` (plus the leeway):
/// the longest `exp - iat` the issuer gives a token.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

pub const DEFAULT_CAPACITY_SYNC_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_CAPACITY_SYNC_BATCH: u64 = 100;

pub const DEFAULT_LOCKS_MAX_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_LOCKS_MAX_WAIT: Duration = Duration::from_secs(60);
pub const DEFAULT_LOCKS_MAX_HOLD: Duration = Duration::ZERO;
pub const DEFAULT_LOCKS_WAIT_POLL: Duration = Duration::from_millis(250);

/// The shortest `api.token` accepted: 256 bits of entropy fit in 32 bytes.
pub const MIN_API_TOKEN_BYTES: usize = 32;

/// The file is reloaded on SIGHUP only unless `reload.watch` is set.
pub const DEFAULT_RELOAD_WATCH: bool = false;
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LOG_FORMAT: &str = "text";
/// One access line per proxied request.
pub const DEFAULT_LOG_ACCESS: bool = true;
/// Every request gets an access line unless sampled down.
pub const DEFAULT_ACCESS_SAMPLE: f64 = 1.0;

/// The whole configuration, typed and defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// `[origin]`: the default origin, for requests no route sends elsewhere.
    pub origin: OriginConfig,
    /// `[origins.NAME]`: named origins, each with its own pool, TLS and timeouts,
    /// chosen by `routes[].origin`.
    pub origins: BTreeMap<String, OriginConfig>,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub routes: Vec<RouteConfig>,
    pub auth: AuthConfig,
    pub api: ApiConfig,
    pub capacity: CapacityConfig,
    pub locks: LocksConfig,
    pub reload: ReloadConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub shutdown_grace: Duration,
    /// After readiness turns 503, keep accepting this long so load balancers
    /// notice before listeners close.
    pub drain_delay: Duration,
    pub max_header_bytes: u64,
    /// Request bodies larger than this are answered 413 `BODY_TOO_LARGE`.
    pub max_body_bytes: u64,
    /// A request head (with the TLS handshake, for a new connection counted from
    /// accept) must be complete within this, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving is closed after this.
    pub idle_timeout: Duration,
    /// Open connections per listener; a connection accepted beyond it is closed at once.
    pub max_connections: u64,
    pub tls: Option<TlsConfig>,
    /// What the canonical request target does with ambiguous path spellings.
    pub path: PathPolicy,
    /// How `[[routes]]` paths compare with request paths.
    pub route_matching: RouteMatching,
    /// Authorities the proxy answers for (`app.example`, `*.example`, `host:port`);
    /// empty: any. Others get 421 `HOST_NOT_ALLOWED` and are never cached.
    pub hosts: Vec<String>,
}

/// `%2F` in a path: refused, kept as data inside its segment, or a separator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapedSlash {
    Reject,
    Keep,
    Decode,
}

/// `\` or `%5C` in a path: refused, kept as data (`%5C`), or a separator (as
/// browsers and IIS read it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backslash {
    Reject,
    Keep,
    Slash,
}

/// `//` in a path: refused, merged into one (nginx's `merge_slashes`), or kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DuplicateSlashes {
    Reject,
    Merge,
    Keep,
}

/// `%` without two hex digits, or percent-encoded bytes that are not UTF-8:
/// refused, or kept as data (`%` becomes `%25`; the bytes stay encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidEncoding {
    Reject,
    Escape,
}

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`; an address alone is `/32`
/// or `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not a network like \"10.0.0.0/8\" or \"::1/128\"");
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }
}

/// The answers for request-target spellings that stay ambiguous after
/// canonicalisation (`crate::target`); by default each is 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathPolicy {
    pub escaped_slash: EscapedSlash,
    pub backslash: Backslash,
    pub duplicate_slashes: DuplicateSlashes,
    pub invalid_encoding: InvalidEncoding,
}

impl Default for PathPolicy {
    fn default() -> Self {
        DEFAULT_PATH_POLICY
    }
}

/// `RouteMatching` lives in the leaf `path_pattern`; its default is config's.
impl Default for RouteMatching {
    fn default() -> Self {
        DEFAULT_ROUTE_MATCHING
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OriginConfig {
    pub url: http::Uri,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: u64,
    /// Forward the client's `Host` (true, like Envoy) or the origin's authority.
    pub preserve_host: bool,
    /// The HTTP version spoken to the origin.
    pub protocol: OriginProtocol,
    /// PEM CA bundle that verifies an `https://` origin (instead of the system roots).
    pub ca_file: Option<PathBuf>,
    /// The TLS server name sent and verified (instead of the URL's host).
    pub sni: Option<String>,
    /// Client certificate chain and key presented to an `https://` origin (mTLS).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// An upgraded connection (`101 Switching Protocols`) with no byte either way for
    /// this long is closed.
    pub upgrade_idle_timeout: Duration,
}

/// `origin.protocol`: how gatehouse speaks to the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginProtocol {
    /// HTTP/1.1 (over TLS for `https://`).
    Http1,
    /// HTTP/2 without TLS, prior knowledge (`http://` only).
    H2c,
    /// HTTP/2 over TLS, ALPN `h2` only (`https://` only).
    H2,
    /// `https://`: ALPN offers h2 and http/1.1; `http://`: HTTP/1.1.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    Memory,
    Redis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub url: String,
    pub key_prefix: String,
    pub cluster: Vec<String>,
    pub sentinel: Option<SentinelConfig>,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    /// Keep `/readyz` at 200 ("degraded") while the store is unreachable.
    pub serve_degraded: bool,
    /// PEM CA bundle that verifies `rediss://` servers (instead of the system roots).
    pub tls_ca_file: Option<PathBuf>,
    /// The memory backend's bound on what the cache writes (records, tombstones,
    /// leases, purge indexes), by estimated bytes; oldest writes are evicted beyond
    /// it. Coordination records are never counted. `store.memory_max_bytes` when set,
    /// else `cache.max_bytes` (resolved when the config is read).
    pub memory_max_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SentinelConfig {
    pub master: String,
    pub nodes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CacheConfig {
    pub max_bytes: u64,
    pub max_object: u64,
    pub default_ttl: Duration,
    pub negative_ttl: Duration,
    pub coherence_grace: Duration,
    /// How long a request waits for another request's fetch of the same key.
    pub lock_timeout: Duration,
    /// How long a fetch may hold the key before waiters stop trusting it.
    pub lock_age: Duration,
    pub max_variants: u64,
    pub hit_for_pass_ttl: Duration,
    /// Answer `PURGE <path>` on the proxy listener (Varnish's habit) instead of
    /// forwarding it.
    pub purge_method: bool,
    /// Client networks a `PURGE` is accepted from.
    pub purge_allow: Vec<Cidr>,
    /// RFC 9213 targeted fields, lower-cased, in order: the first one present with a
    /// valid value replaces `Cache-Control` and `Expires` for gatehouse's decisions.
    pub targeted_fields: Vec<String>,
    /// Heuristic freshness: this fraction of `Date - Last-Modified` (0: off), for
    /// heuristically cacheable responses with no explicit freshness and no route ttl.
    pub heuristic_fraction: f64,
    /// Cap on heuristic freshness.
    pub heuristic_max: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    Off,
    Optional,
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorPolicy {
    Deny,
    Allow,
}

/// What a route does with a cacheable response that sets a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCookie {
    /// Passed to the client that asked, never stored (the safe default).
    Pass,
    /// Stored without `Set-Cookie`: the client whose request fetched it still gets
    /// its cookie; answers from the cache never carry one.
    Strip,
    /// Stored whole: every client served from the cache gets that cookie.
    Store,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBy {
    /// One cache entry per URL, shared by every caller.
    Shared,
    /// One cache entry per URL per verified `sub` claim.
    Sub,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub path: String,
    pub methods: Vec<http::Method>,
    /// The route matches only requests for these authorities (patterns as in
    /// `server.hosts`); empty: any.
    pub hosts: Vec<String>,
    /// This route's `log.access_sample` (0: no access lines).
    pub access_sample: Option<f64>,
    pub ttl: Option<Duration>,
    pub override_ttl: bool,
    pub negative_ttl: Option<Duration>,
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    pub vary: Vec<String>,
    pub tags: Vec<String>,
    pub auth: AuthMode,
    pub invalidate_on: Vec<String>,
    pub key_by: KeyBy,
    /// `false` makes the route pass through without caching.
    pub cache: bool,
    /// Cacheable responses with `Set-Cookie`: passed, stored stripped, or stored.
    pub set_cookie: SetCookie,
    pub revoke_on_success: bool,
    pub forward_authorization: bool,
    pub on_store_error: Option<StoreErrorPolicy>,
    /// `[routes.capacity]`: admit the caller to a capacity counter before forwarding.
    pub capacity: Option<CapacityGate>,
    /// `[routes.lock]`: hold a lock for the length of the request.
    pub lock: Option<LockGate>,
    /// This route's `origin.timeout` (time to the origin's response head).
    pub timeout: Option<Duration>,
    /// The origin this route's requests go to: a `[origins.NAME]` name, or
    /// `"default"` (`[origin]`); None: `[origin]`.
    pub origin: Option<String>,
}

/// Where a capacity gate takes the member id from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberFrom {
    /// The verified `sub` claim.
    Sub,
    /// A request header (`"header:x-participant-id"`).
    Header(String),
    /// A path parameter (`"{id}"`).
    Param(String),
}

/// A route's capacity gate: `ns` / `id` (templated from path parameters) name the
/// counter, `member` who is admitted. Full → 409 `CAPACITY_FULL`, nothing forwarded.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityGate {
    pub ns: String,
    pub id: String,
    pub member: MemberFrom,
    /// Free the place again when the origin does not answer 2xx (for a member this
    /// request admitted; a member admitted before keeps its place).
    pub release_on_failure: bool,
}

/// A route's lock gate: the request is forwarded only while it holds lock `ns/id`
/// (released when the origin's answer arrives); held by another → 409 `LOCK_HELD`.
#[derive(Clone, Debug, PartialEq)]
pub struct LockGate {
    pub ns: String,
    pub id: String,
    pub ttl: Duration,
    pub wait: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub algorithms: Vec<String>,
    pub hs_secret: Option<String>,
    pub public_key_files: Vec<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    /// PEM CA bundle verifying an `https://` `jwks_url` (default: system roots).
    pub jwks_ca_file: Option<PathBuf>,
    pub jwks_refresh: Duration,
    pub claims_to_headers: Vec<(String, String)>,
    pub on_store_error: StoreErrorPolicy,
    pub token_cookie: Option<String>,
    pub token_header: Option<String>,
    /// The longest lifetime (`exp - iat`) of a token the issuer hands out: a subject
    /// revocation is kept this long (plus `leeway`) after its `issuedBefore`.
    pub max_token_lifetime: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub token: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CapacityConfig {
    pub sync_url: Option<String>,
    pub sync_interval: Duration,
    pub sync_batch: u64,
}

/// `[locks]`: bounds on what a lock request may ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct LocksConfig {
    /// Largest `ttlMs` an acquire or renew may ask for.
    pub max_ttl: Duration,
    /// Largest `waitMs` an acquire may ask for.
    pub max_wait: Duration,
    /// Cap on a lock's total hold time from acquisition, renewals included (0: none).
    pub max_hold: Duration,
    /// How often a waiter re-tries when no release notification arrives.
    pub wait_poll: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReloadConfig {
    pub watch: bool,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub level: String,
    pub format: String,
    /// One access line per proxied request (target `access`).
    pub access: bool,
    /// The fraction of requests given an access line (5xx always, unless 0).
    pub access_sample: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_table(toml::Table::new()).expect("defaults are valid")
    }
}

impl Config {
    /// The part that reloads without rebinding must not touch what needs a rebind.
    pub fn restart_needed_for(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.server != new.server {
            keys.push("server");
        }
        if self.store != new.store {
            keys.push("store");
        }
        if self.cache.max_bytes != new.cache.max_bytes {
            keys.push("cache.max_bytes");
        }
        if self.cache.hit_for_pass_ttl != new.cache.hit_for_pass_ttl {
            keys.push("cache.hit_for_pass_ttl");
        }
        if self.api != new.api {
            keys.push("api");
        }
        keys
    }
}

impl RouteConfig {
    /// A route with every optional key at its default.
    pub fn new(path: &str) -> RouteConfig {
        RouteConfig {
            path: path.to_string(),
            methods: DEFAULT_ROUTE_METHODS
                .iter()
                .map(|m| m.parse().expect("the default methods are methods"))
                .collect(),
            hosts: Vec::new(),
            access_sample: None,
            ttl: None,
            override_ttl: DEFAULT_ROUTE_OVERRIDE_TTL,
            negative_ttl: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            vary: Vec::new(),
            tags: Vec::new(),
            auth: DEFAULT_ROUTE_AUTH,
            invalidate_on: Vec::new(),
            key_by: DEFAULT_ROUTE_KEY_BY,
            cache: DEFAULT_ROUTE_CACHE,
            set_cookie: DEFAULT_ROUTE_SET_COOKIE,
            revoke_on_success: DEFAULT_ROUTE_REVOKE_ON_SUCCESS,
            forward_authorization: DEFAULT_ROUTE_FORWARD_AUTHORIZATION,
            on_store_error: None,
            capacity: None,
            lock: None,
            timeout: None,
            origin: None,
        }
    }
}

impl AuthConfig {
    pub fn has_asymmetric_keys(&self) -> bool {
        !self.public_key_files.is_empty() || self.jwks_file.is_some() || self.jwks_url.is_some()
    }
    pub fn has_keys(&self) -> bool {
        self.hs_secret.is_some() || self.has_asymmetric_keys()
    }
}

/// A URL with any password replaced, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
