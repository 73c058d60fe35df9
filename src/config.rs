//! Configuration: one TOML file, every key with a named default, environment overrides
//! (`GATEHOUSE_<SECTION>_<KEY>`, `REDIS_URL` as a fallback for `store.url`), and a
//! validation that names the key path of every problem (`origin.timeout`,
//! `routes[2].ttl`). `Config::from_toml_str` never stops at the first problem: it
//! returns all of them, so `gatehouse check` can print the whole list.
//!
//! The repo's top-level `config.toml` lists every key read here with its default; the
//! test `config_toml_lists_every_key` keeps the two in step.

pub mod parse;
pub mod reload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parse::Section;
pub use parse::{format_size, parse_duration, parse_size, ConfigError};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9100";
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

pub const DEFAULT_ORIGIN_URL: &str = "http://127.0.0.1:3000";
pub const DEFAULT_ORIGIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_ORIGIN_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// An upgraded (WebSocket) connection with no byte either way for this long is closed.
pub const DEFAULT_ORIGIN_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_ORIGIN_POOL_MAX_IDLE: u64 = 256;
pub const DEFAULT_ORIGIN_PROTOCOL: OriginProtocol = OriginProtocol::Http1;
/// The name `[origin]` goes by: in `routes[].origin`, and as the `origin` label of the
/// `gatehouse_origin_*` metrics. No `[origins.NAME]` may take it.
pub const DEFAULT_ORIGIN_NAME: &str = "default";
/// The longest name of a named origin (`[origins.NAME]`).
pub const MAX_ORIGIN_NAME_LEN: usize = 64;

pub const DEFAULT_STORE_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_KEY_PREFIX: &str = "gatehouse:development";
pub const DEFAULT_STORE_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

pub const DEFAULT_AUTH_LEEWAY: Duration = Duration::from_secs(60);
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

pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LOG_FORMAT: &str = "text";
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlash {
    #[default]
    Reject,
    Keep,
    Decode,
}

/// `\` or `%5C` in a path: refused, kept as data (`%5C`), or a separator (as
/// browsers and IIS read it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backslash {
    #[default]
    Reject,
    Keep,
    Slash,
}

/// `//` in a path: refused, merged into one (nginx's `merge_slashes`), or kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DuplicateSlashes {
    #[default]
    Reject,
    Merge,
    Keep,
}

/// `%` without two hex digits, or percent-encoded bytes that are not UTF-8:
/// refused, or kept as data (`%` becomes `%25`; the bytes stay encoded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InvalidEncoding {
    #[default]
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

/// How route paths compare with canonical request paths. The defaults match the way
/// Express, NestJS, Spring and ASP.NET route (case-insensitive, an optional trailing
/// slash), so a request the origin would route to a protected handler meets the
/// protected route here too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatching {
    pub case_insensitive: bool,
    pub optional_trailing_slash: bool,
}

impl Default for RouteMatching {
    fn default() -> Self {
        RouteMatching {
            case_insensitive: true,
            optional_trailing_slash: true,
        }
    }
}

/// The answers for request-target spellings that stay ambiguous after
/// canonicalisation (`crate::target`); by default each is 400.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathPolicy {
    pub escaped_slash: EscapedSlash,
    pub backslash: Backslash,
    pub duplicate_slashes: DuplicateSlashes,
    pub invalid_encoding: InvalidEncoding,
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

const SECTIONS: &[&str] = &[
    "server", "origin", "store", "cache", "auth", "api", "capacity", "locks", "reload", "log",
];
/// The keys of an origin's table (`[origin]`, `[origins.NAME]`), for the
/// environment overrides of named origins.
const ORIGIN_KEYS: &[&str] = &[
    "url",
    "connect_timeout",
    "timeout",
    "pool_idle_timeout",
    "pool_max_idle",
    "preserve_host",
    "protocol",
    "ca_file",
    "sni",
    "client_cert_file",
    "client_key_file",
    "upgrade_idle_timeout",
];
/// Nested tables an environment variable can reach (`GATEHOUSE_SERVER_TLS_CERT`).
const NESTED: &[(&str, &str)] = &[("server", "tls"), ("store", "sentinel")];

impl Default for Config {
    fn default() -> Self {
        Config::from_table(toml::Table::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads a file, applies the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                key: path.display().to_string(),
                message: format!("cannot read config file: {e}"),
            }]
        })?;
        let env: HashMap<String, String> = std::env::vars().collect();
        Config::from_toml_str(&text, &env)
    }

    /// Parses TOML text with the given environment applied on top.
    pub fn from_toml_str(
        text: &str,
        env: &HashMap<String, String>,
    ) -> Result<Config, Vec<ConfigError>> {
        match Config::parse(text, env) {
            (Some(c), errors) if errors.is_empty() => Ok(c),
            (_, errors) => Err(errors),
        }
    }

    /// Like `from_toml_str`, but answers the config as read next to its problems (a
    /// value that did not parse replaced by its default), so that further checks can
    /// add to the same report; no config when the text is not TOML.
    pub fn parse(text: &str, env: &HashMap<String, String>) -> (Option<Config>, Vec<ConfigError>) {
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                let problem = ConfigError {
                    key: "(file)".into(),
                    message: e.to_string().trim().replace('\n', " "),
                };
                return (None, vec![problem]);
            }
        };
        let mut errors = Vec::new();
        let set_by = apply_env(&mut table, env, &mut errors);
        let config = Config::read_and_validate(table, &mut errors);
        // A bad value that came from the environment names its variable: the file
        // may well be right.
        for e in &mut errors {
            if let Some((_, var)) = set_by.iter().find(|(key, _)| related(key, &e.key)) {
                e.message = format!("{} (set by {var})", e.message);
            }
        }
        (Some(config), errors)
    }

    /// Every key path the reader knows, with route keys as `routes[].key` and the keys
    /// of named origins as `origins.<name>.key`.
    pub fn known_keys() -> BTreeSet<String> {
        let mut table = toml::Table::new();
        let mut route = toml::Table::new();
        route.insert("path".into(), toml::Value::String("/".into()));
        table.insert(
            "routes".into(),
            toml::Value::Array(vec![toml::Value::Table(route)]),
        );
        let mut named = toml::Table::new();
        named.insert("x".into(), toml::Value::Table(toml::Table::new()));
        table.insert("origins".into(), toml::Value::Table(named));
        let mut errors = Vec::new();
        let mut known = BTreeSet::new();
        let _ = read(table, &mut errors, &mut known);
        known
    }

    fn from_table(table: toml::Table) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let config = Config::read_and_validate(table, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Reads every key, then runs the cross-key checks. They run even when some
    /// values did not parse (those were read as their defaults), so one report lists
    /// every problem; a check about a key that already failed to parse is not made
    /// twice.
    fn read_and_validate(table: toml::Table, errors: &mut Vec<ConfigError>) -> Config {
        let mut read_errors = Vec::new();
        let mut known = BTreeSet::new();
        let config = read(table, &mut read_errors, &mut known);
        let mut cross = Vec::new();
        config.validate(&mut cross);
        cross.retain(|c| !read_errors.iter().any(|r| related(&r.key, &c.key)));
        errors.append(&mut read_errors);
        errors.append(&mut cross);
        config
    }

    /// Cross-key checks, after every value parsed.
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, message: String| {
            errors.push(ConfigError {
                key: key.to_string(),
                message,
            })
        };
        let s = &self.server;
        for (key, a, b) in [
            ("server.api_listen", s.api_listen, s.listen),
            ("server.admin_listen", s.admin_listen, s.listen),
            ("server.admin_listen", s.admin_listen, s.api_listen),
        ] {
            if a == b && a.port() != 0 {
                err(key, format!("{a} is already used by another listener"));
            }
        }
        if let Some(token) = &self.api.token {
            if token.len() < MIN_API_TOKEN_BYTES {
                err(
                    "api.token",
                    format!(
                        "must be at least {MIN_API_TOKEN_BYTES} bytes (it is {}); e.g. `openssl rand -base64 32`",
                        token.len()
                    ),
                );
            }
        }
        if !s.api_listen.ip().is_loopback() && self.api.token.is_none() {
            err(
                "server.api_listen",
                format!(
                    "{} binds beyond loopback without api.token; set api.token ({MIN_API_TOKEN_BYTES}+ bytes) or bind 127.0.0.1",
                    s.api_listen
                ),
            );
        }
        if s.max_header_bytes < 8192 {
            err(
                "server.max_header_bytes",
                "must be at least 8KiB (HTTP/1 needs room for a request line)".into(),
            );
        }
        for (key, d) in [
            ("server.header_read_timeout", s.header_read_timeout),
            ("server.idle_timeout", s.idle_timeout),
        ] {
            if d.is_zero() {
                err(key, "must be greater than 0s".into());
            }
        }
        if s.max_connections == 0 {
            err("server.max_connections", "must be at least 1".into());
        }
        if let Some(tls) = &s.tls {
            for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
                if !path.is_file() {
                    err(key, format!("file {} does not exist", path.display()));
                }
            }
        }
        validate_origin("origin", &self.origin, &mut err);
        for (name, o) in &self.origins {
            validate_origin(&format!("origins.{name}"), o, &mut err);
        }
        let st = &self.store;
        if st.key_prefix.is_empty()
            || st.key_prefix.contains(char::is_whitespace)
            || st.key_prefix.contains(['{', '}'])
        {
            err(
                "store.key_prefix",
                "must be non-empty, without spaces or braces (e.g. \"checkin:production\")".into(),
            );
        }
        if st.backend == StoreBackend::Redis {
            if st.cluster.is_empty() && st.sentinel.is_none() {
                if let Err(m) = check_redis_url(&st.url) {
                    err("store.url", m);
                }
            }
            for (i, u) in st.cluster.iter().enumerate() {
                if let Err(m) = check_redis_url(u) {
                    err(&format!("store.cluster[{i}]"), m);
                }
            }
            if st.sentinel.is_some() && !st.cluster.is_empty() {
                err(
                    "store.sentinel",
                    "cannot be combined with store.cluster".into(),
                );
            }
            if let Some(sen) = &st.sentinel {
                if sen.master.is_empty() {
                    err(
                        "store.sentinel.master",
                        "must name the monitored master".into(),
                    );
                }
                if sen.nodes.is_empty() {
                    err(
                        "store.sentinel.nodes",
                        "must list at least one sentinel".into(),
                    );
                }
                for (i, u) in sen.nodes.iter().enumerate() {
                    if let Err(m) = check_redis_url(u) {
                        err(&format!("store.sentinel.nodes[{i}]"), m);
                    }
                }
            }
        }
        if let Some(ca) = &st.tls_ca_file {
            if !ca.is_file() {
                err(
                    "store.tls_ca_file",
                    format!("file {} does not exist", ca.display()),
                );
            }
        }
        if st.command_timeout.is_zero() {
            err("store.command_timeout", "must be greater than 0s".into());
        }
        let c = &self.cache;
        if c.max_object > c.max_bytes {
            err(
                "cache.max_object",
                format!(
                    "{} is larger than cache.max_bytes ({})",
                    format_size(c.max_object),
                    format_size(c.max_bytes)
                ),
            );
        }
        if c.max_object > u32::MAX as u64 / 2 {
            err("cache.max_object", "must be at most 2GiB".into());
        }
        if c.max_variants == 0 {
            err("cache.max_variants", "must be at least 1".into());
        }
        if c.lock_timeout.is_zero() {
            err("cache.lock_timeout", "must be greater than 0s".into());
        }
        if !(0.0..=1.0).contains(&c.heuristic_fraction) {
            err(
                "cache.heuristic_fraction",
                format!(
                    "must be between 0 (off) and 1, got {}; 0.1 is usual",
                    c.heuristic_fraction
                ),
            );
        }
        if c.heuristic_fraction > 0.0 && c.heuristic_max.is_zero() {
            err(
                "cache.heuristic_max",
                "must be greater than 0s when cache.heuristic_fraction is set".into(),
            );
        }
        for (i, f) in c.targeted_fields.iter().enumerate() {
            if http::HeaderName::from_bytes(f.as_bytes()).is_err() {
                err(
                    &format!("cache.targeted_fields[{i}]"),
                    format!("{f:?} is not a header name"),
                );
            } else if matches!(f.as_str(), "cache-control" | "expires" | "pragma") {
                err(
                    &format!("cache.targeted_fields[{i}]"),
                    format!("{f:?} is not a targeted field (RFC 9213): it is what targeted fields override"),
                );
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Err(m) = crate::routes::PathPattern::parse(&r.path) {
                err(&format!("routes[{i}].path"), m);
            }
            if r.timeout.is_some_and(|t| t.is_zero()) {
                err(
                    &format!("routes[{i}].timeout"),
                    "must be greater than 0s".into(),
                );
            }
            if let Some(name) = &r.origin {
                if name != DEFAULT_ORIGIN_NAME && !self.origins.contains_key(name) {
                    let mut known = vec![format!("{DEFAULT_ORIGIN_NAME:?} ([origin])")];
                    known.extend(self.origins.keys().map(|n| format!("{n:?}")));
                    err(
                        &format!("routes[{i}].origin"),
                        format!(
                            "names no origin: there is no [origins.{name}]; known: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
            let earlier = self.routes[..i]
                .iter()
                .position(|e| crate::routes::shadowed_by(e, r));
            if let Some(e) = earlier {
                err(
                    &format!("routes[{i}].path"),
                    format!(
                        "never matches: routes[{e}] ({:?}) comes first and matches every method and path this route would",
                        self.routes[e].path
                    ),
                );
            }
            for (j, inv) in r.invalidate_on.iter().enumerate() {
                if let Err(m) = crate::routes::parse_invalidate_on(inv) {
                    err(&format!("routes[{i}].invalidate_on[{j}]"), m);
                }
            }
            for (j, v) in r.vary.iter().enumerate() {
                if http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                    err(
                        &format!("routes[{i}].vary[{j}]"),
                        format!("{v:?} is not a header name"),
                    );
                }
            }
            let params = crate::routes::PathPattern::parse(&r.path)
                .map(|p| p.param_names())
                .unwrap_or_default();
            let gates: [(&str, Option<(&str, &str)>); 2] = [
                (
                    "capacity",
                    r.capacity.as_ref().map(|g| (g.ns.as_str(), g.id.as_str())),
                ),
                (
                    "lock",
                    r.lock.as_ref().map(|g| (g.ns.as_str(), g.id.as_str())),
                ),
            ];
            let missing = |template: &str| -> Vec<String> {
                template_names(template)
                    .into_iter()
                    .filter(|n| !params.iter().any(|p| p == n))
                    .map(|n| format!("{{{n}}}"))
                    .collect()
            };
            let lacks = |names: &[String]| {
                format!(
                    "names {}, which routes[{i}].path {:?} has not (its parameters: {params:?})",
                    names.join(", "),
                    r.path
                )
            };
            for (j, tag) in r.tags.iter().enumerate() {
                let names = missing(tag);
                if !names.is_empty() {
                    // A tag naming an unknown parameter is silently never attached.
                    err(&format!("routes[{i}].tags[{j}]"), lacks(&names));
                }
            }
            for (j, inv) in r.invalidate_on.iter().enumerate() {
                let Ok((_, write)) = crate::routes::parse_invalidate_on(inv) else {
                    continue;
                };
                let given = write.param_names();
                let unfilled: Vec<String> = params
                    .iter()
                    .filter(|p| !given.contains(p))
                    .map(|p| format!("{{{p}}}"))
                    .collect();
                if !unfilled.is_empty() {
                    err(
                        &format!("routes[{i}].invalidate_on[{j}]"),
                        format!(
                            "the write's path has no {}, so routes[{i}].path {:?} cannot be filled in to purge",
                            unfilled.join(", "),
                            r.path
                        ),
                    );
                }
            }
            for (gate, names) in gates {
                let Some((ns, id)) = names else { continue };
                for (field, template) in [("ns", ns), ("id", id)] {
                    let names = missing(template);
                    if !names.is_empty() {
                        err(&format!("routes[{i}].{gate}.{field}"), lacks(&names));
                    }
                }
                if !valid_gate_name(ns, &[]) && missing(ns).is_empty() {
                    err(
                        &format!("routes[{i}].{gate}.ns"),
                        "must match [A-Za-z0-9._:-]{1,200}".into(),
                    );
                }
                if !valid_gate_name(id, &params) && missing(id).is_empty() {
                    err(
                        &format!("routes[{i}].{gate}.id"),
                        format!("must match [A-Za-z0-9._:-]{{1,200}} once the route's parameters {params:?} are filled in"),
                    );
                }
            }
            if let Some(g) = &r.capacity {
                match &g.member {
                    MemberFrom::Sub if r.auth == AuthMode::Off => err(
                        &format!("routes[{i}].capacity.member"),
                        "\"sub\" needs auth = \"optional\" or \"required\" on the route".into(),
                    ),
                    MemberFrom::Param(p) if !params.contains(p) => err(
                        &format!("routes[{i}].capacity.member"),
                        format!("the route's path has no {{{p}}}"),
                    ),
                    MemberFrom::Header(h)
                        if http::HeaderName::from_bytes(h.as_bytes()).is_err() =>
                    {
                        err(
                            &format!("routes[{i}].capacity.member"),
                            format!("{h:?} is not a header name"),
                        )
                    }
                    _ => {}
                }
            }
            if let Some(g) = &r.lock {
                if g.ttl.is_zero() || g.ttl > self.locks.max_ttl {
                    err(
                        &format!("routes[{i}].lock.ttl"),
                        "must be greater than 0s and at most locks.max_ttl".into(),
                    );
                }
                if g.wait > self.locks.max_wait {
                    err(
                        &format!("routes[{i}].lock.wait"),
                        "must be at most locks.max_wait".into(),
                    );
                }
            }
            if r.key_by == KeyBy::Sub && r.auth == AuthMode::Off {
                err(
                    &format!("routes[{i}].key_by"),
                    "\"sub\" needs auth = \"optional\" or \"required\" on the route".into(),
                );
            }
            if r.revoke_on_success && r.auth == AuthMode::Off {
                err(
                    &format!("routes[{i}].revoke_on_success"),
                    "needs auth = \"optional\" or \"required\" on the route (only a verified token is revoked)".into(),
                );
            }
            let cacheable_method = r
                .methods
                .iter()
                .any(|m| m == http::Method::GET || m == http::Method::HEAD);
            if r.revoke_on_success && r.cache && cacheable_method {
                err(
                    &format!("routes[{i}].revoke_on_success"),
                    "a route that revokes must not answer from the cache: set cache = false or list only unsafe methods".into(),
                );
            }
            if r.auth != AuthMode::Off && !self.auth.has_keys() {
                err(
                    &format!("routes[{i}].auth"),
                    "needs verification keys: set auth.hs_secret, auth.public_key_files, auth.jwks_file or auth.jwks_url".into(),
                );
            }
        }
        let a = &self.auth;
        for (i, alg) in a.algorithms.iter().enumerate() {
            if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
                err(
                    &format!("auth.algorithms[{i}]"),
                    format!("unknown algorithm {alg:?}; use one of {KNOWN_ALGORITHMS:?}"),
                );
            }
        }
        if a.algorithms.is_empty() {
            err("auth.algorithms", "must list at least one algorithm".into());
        }
        if a.algorithms.iter().any(|x| x.starts_with("HS")) && a.has_asymmetric_keys() {
            err(
                "auth.algorithms",
                "HS* algorithms cannot be combined with public keys (algorithm confusion)".into(),
            );
        }
        if let Some(secret) = &a.hs_secret {
            if secret.len() < 32 {
                err(
                    "auth.hs_secret",
                    "must be at least 32 bytes (RFC 7518 §3.2)".into(),
                );
            }
        }
        for (i, f) in a.public_key_files.iter().enumerate() {
            if !f.is_file() {
                err(
                    &format!("auth.public_key_files[{i}]"),
                    format!("file {} does not exist", f.display()),
                );
            }
        }
        if let Some(f) = &a.jwks_file {
            if !f.is_file() {
                err(
                    "auth.jwks_file",
                    format!("file {} does not exist", f.display()),
                );
            }
        }
        if let Some(f) = &a.jwks_ca_file {
            if !f.is_file() {
                err(
                    "auth.jwks_ca_file",
                    format!("file {} does not exist", f.display()),
                );
            }
        }
        if let Some(u) = &a.jwks_url {
            match u.parse::<http::Uri>() {
                Ok(uri)
                    if uri.scheme_str() == Some("http") || uri.scheme_str() == Some("https") => {}
                _ => err("auth.jwks_url", format!("{u:?} is not an http(s) URL")),
            }
        }
        if a.max_token_lifetime.is_zero() {
            err("auth.max_token_lifetime", "must be greater than 0s".into());
        }
        for (claim, header) in &a.claims_to_headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                err(
                    &format!("auth.claims_to_headers.{claim}"),
                    format!("{header:?} is not a header name"),
                );
            }
        }
        if let Some(u) = &self.capacity.sync_url {
            match u.parse::<http::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {}
                _ => err("capacity.sync_url", format!("{u:?} is not an http URL")),
            }
        }
        if self.capacity.sync_interval.is_zero() {
            err("capacity.sync_interval", "must be greater than 0s".into());
        }
        let l = &self.locks;
        for (key, d) in [
            ("locks.max_ttl", l.max_ttl),
            ("locks.max_wait", l.max_wait),
            ("locks.wait_poll", l.wait_poll),
        ] {
            if d.is_zero() {
                err(key, "must be greater than 0s".into());
            }
        }
        let fraction = |f: f64| (0.0..=1.0).contains(&f);
        if !fraction(self.log.access_sample) {
            err("log.access_sample", "must be from 0 to 1".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.access_sample.is_some_and(|f| !fraction(f)) {
                err(
                    &format!("routes[{i}].access_sample"),
                    "must be from 0 to 1 (0: no access lines for this route)".into(),
                );
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            err("log.format", "must be \"text\" or \"json\"".into());
        }
        if let Err(m) = crate::logging::check_filter(&self.log.level) {
            err("log.level", m);
        }
    }

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
            methods: vec![http::Method::GET, http::Method::HEAD],
            hosts: Vec::new(),
            access_sample: None,
            ttl: None,
            override_ttl: false,
            negative_ttl: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            vary: Vec::new(),
            tags: Vec::new(),
            auth: AuthMode::Off,
            invalidate_on: Vec::new(),
            key_by: KeyBy::Shared,
            cache: true,
            set_cookie: DEFAULT_ROUTE_SET_COOKIE,
            revoke_on_success: false,
            forward_authorization: true,
            on_store_error: None,
            capacity: None,
            lock: None,
            timeout: None,
            origin: None,
        }
    }
}

pub const KNOWN_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

impl AuthConfig {
    pub fn has_asymmetric_keys(&self) -> bool {
        !self.public_key_files.is_empty() || self.jwks_file.is_some() || self.jwks_url.is_some()
    }
    pub fn has_keys(&self) -> bool {
        self.hs_secret.is_some() || self.has_asymmetric_keys()
    }
}

/// The checks of one origin's table, its keys named under `prefix` (`origin`,
/// `origins.auth`).
fn validate_origin(prefix: &str, o: &OriginConfig, err: &mut impl FnMut(&str, String)) {
    let key = |k: &str| format!("{prefix}.{k}");
    for (k, d) in [
        ("timeout", o.timeout),
        ("connect_timeout", o.connect_timeout),
    ] {
        if d.is_zero() {
            err(&key(k), "must be greater than 0s".into());
        }
    }
    let https = o.url.scheme_str() == Some("https");
    match o.protocol {
        OriginProtocol::H2 if !https => err(
            &key("protocol"),
            format!("\"h2\" is HTTP/2 over TLS and needs an https:// {prefix}.url; use \"h2c\" for http://"),
        ),
        OriginProtocol::H2c if https => err(
            &key("protocol"),
            format!("\"h2c\" is HTTP/2 without TLS and needs an http:// {prefix}.url; use \"h2\" for https://"),
        ),
        _ => {}
    }
    for (k, file) in [
        ("ca_file", &o.ca_file),
        ("client_cert_file", &o.client_cert_file),
        ("client_key_file", &o.client_key_file),
    ] {
        if let Some(f) = file {
            if !f.is_file() {
                err(&key(k), format!("file {} does not exist", f.display()));
            } else if !https {
                err(&key(k), format!("applies to an https:// {prefix}.url only"));
            }
        }
    }
    match (&o.client_cert_file, &o.client_key_file) {
        (Some(_), None) => err(
            &key("client_key_file"),
            format!("must be set with {prefix}.client_cert_file"),
        ),
        (None, Some(_)) => err(
            &key("client_cert_file"),
            format!("must be set with {prefix}.client_key_file"),
        ),
        _ => {}
    }
    if let Some(sni) = &o.sni {
        if !https {
            err(
                &key("sni"),
                format!("applies to an https:// {prefix}.url only"),
            );
        } else if rustls_pki_types::ServerName::try_from(sni.as_str()).is_err() {
            err(
                &key("sni"),
                format!("{sni:?} is not a DNS name or IP address"),
            );
        }
    }
}

/// Whether a gate's `ns` / `id` template gives an identifier of the contract's
/// pattern for any value of the named parameters.
fn valid_gate_name(template: &str, params: &[String]) -> bool {
    let mut rest = template.to_string();
    for p in params {
        rest = rest.replace(&format!("{{{p}}}"), "x");
    }
    !rest.is_empty()
        && rest.len() <= 200
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn check_redis_url(u: &str) -> Result<(), String> {
    match u.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "{:?} is not a redis:// or rediss:// URL",
            crate::store::redact_url(u)
        )),
    }
}

/// The parameter names a template uses (`{id}`, `{*rest}`).
fn template_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(
            rest[open + 1..open + close]
                .trim_start_matches('*')
                .to_string(),
        );
        rest = &rest[open + close + 1..];
    }
    names
}

/// Whether two key paths name the same setting or one contains the other
/// (`routes[2]` and `routes[2].ttl`, `server.tls` and `server.tls.cert`).
fn related(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    within(a, b) || within(b, a)
}

/// Whether a `GATEHOUSE_*` variable (without the prefix) is one Kubernetes injects
/// for a Service named `gatehouse…`: `…SERVICE_HOST`, `…SERVICE_PORT[_NAME]`,
/// `…PORT`, `…PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]`.
fn is_service_link(rest: &str) -> bool {
    let parts: Vec<&str> = rest.split('_').collect();
    for (i, p) in parts.iter().enumerate() {
        let tail = &parts[i..];
        match (*p, tail) {
            ("SERVICE", [_, "HOST"]) | ("SERVICE", [_, "PORT", ..]) => return true,
            ("PORT", [_]) => return true,
            ("PORT", [_, n, proto, ..])
                if n.chars().all(|c| c.is_ascii_digit())
                    && matches!(*proto, "TCP" | "UDP" | "SCTP") =>
            {
                return true
            }
            _ => {}
        }
    }
    false
}

/// Applies `GATEHOUSE_<SECTION>_<KEY>` variables and the `REDIS_URL` fallback.
/// Applies the overrides; answers which key path each variable set, so problems with
/// those values can name the variable.
fn apply_env(
    table: &mut toml::Table,
    env: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, String)> {
    let mut set_by = Vec::new();
    let mut vars: Vec<(&String, &String)> = env.iter().collect();
    vars.sort();
    let mut store_url_set = table
        .get("store")
        .and_then(|s| s.as_table())
        .is_some_and(|s| s.contains_key("url"));
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("GATEHOUSE_") else {
            continue;
        };
        // GATEHOUSE_LOG is the log filter (tracing's EnvFilter syntax), not a key,
        // checked like log.level; Kubernetes service links of a Service named
        // gatehouse* are not keys either.
        if rest == "LOG" {
            if let Err(message) = crate::logging::check_filter(value) {
                errors.push(ConfigError {
                    key: name.clone(),
                    message,
                });
            }
            continue;
        }
        if is_service_link(rest) {
            continue;
        }
        // An empty value would silently mean "unset" (an empty api.token switches the
        // api listener's authentication off): refused, so a Secret that rendered
        // empty is noticed at start rather than in production.
        if value.is_empty() {
            errors.push(ConfigError {
                key: name.clone(),
                message: "is set but empty; unset it or give it a value".into(),
            });
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            errors.push(ConfigError {
                key: name.clone(),
                message: "environment override must be GATEHOUSE_<SECTION>_<KEY>".into(),
            });
            continue;
        };
        if section == "origins" {
            match named_origin_override(table, key) {
                Ok((origin, leaf)) => {
                    let sub = table
                        .get_mut("origins")
                        .and_then(|o| o.as_table_mut())
                        .and_then(|o| o.get_mut(&origin))
                        .and_then(|o| o.as_table_mut())
                        .expect("named_origin_override found it");
                    sub.insert(leaf.to_string(), toml::Value::String(value.clone()));
                    set_by.push((format!("origins.{origin}.{leaf}"), name.clone()));
                }
                Err(message) => errors.push(ConfigError {
                    key: name.clone(),
                    message,
                }),
            }
            continue;
        }
        if !SECTIONS.contains(&section) {
            errors.push(ConfigError {
                key: name.clone(),
                message: format!("unknown section {section:?} in environment override"),
            });
            continue;
        }
        let sec = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(sec) = sec.as_table_mut() else {
            continue;
        };
        let nested = NESTED
            .iter()
            .find(|(s, n)| *s == section && key.starts_with(&format!("{n}_")));
        if let Some((_, n)) = nested {
            let sub = sec
                .entry(n.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(sub) = sub.as_table_mut() {
                let leaf = &key[n.len() + 1..];
                sub.insert(leaf.to_string(), toml::Value::String(value.clone()));
                set_by.push((format!("{section}.{n}.{leaf}"), name.clone()));
            }
        } else {
            if section == "store" && key == "url" {
                store_url_set = true;
            }
            sec.insert(key.to_string(), toml::Value::String(value.clone()));
            set_by.push((format!("{section}.{key}"), name.clone()));
        }
    }
    if !store_url_set {
        if let Some(url) = env.get("REDIS_URL").filter(|u| !u.is_empty()) {
            let sec = table
                .entry("store".to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(sec) = sec.as_table_mut() {
                sec.insert("url".into(), toml::Value::String(url.clone()));
                set_by.push(("store.url".into(), "REDIS_URL".into()));
            }
        }
    }
    set_by
}

/// Which named origin and key `GATEHOUSE_ORIGINS_<NAME>_<KEY>` sets (`rest`:
/// `<name>_<key>`, lower-cased). Only an origin the file declares can be reached (an
/// override changes a key, it does not create an origin), and the split must be the
/// only one that names a declared origin and one of its keys.
fn named_origin_override(
    table: &toml::Table,
    rest: &str,
) -> Result<(String, &'static str), String> {
    let declared: Vec<&String> = table
        .get("origins")
        .and_then(|o| o.as_table())
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.is_table())
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    let fits: Vec<(String, &'static str)> = declared
        .iter()
        .flat_map(|n| {
            ORIGIN_KEYS
                .iter()
                .filter(move |k| rest == format!("{n}_{k}"))
                .map(move |k| (n.to_string(), *k))
        })
        .collect();
    match fits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "names no key of an origin the file declares: GATEHOUSE_ORIGINS_<NAME>_<KEY> reaches [origins.NAME] tables of the file (declared: {declared:?}; keys: {})",
            ORIGIN_KEYS.join(", ")
        )),
        _ => Err(format!(
            "is ambiguous: it could set {}",
            fits.iter()
                .map(|(n, k)| format!("origins.{n}.{k}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
    }
}

fn read(
    mut table: toml::Table,
    errors: &mut Vec<ConfigError>,
    known: &mut BTreeSet<String>,
) -> Config {
    fn take(table: &mut toml::Table, name: &str, errors: &mut Vec<ConfigError>) -> toml::Table {
        match table.remove(name) {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                errors.push(ConfigError {
                    key: name.into(),
                    message: format!("expected a table, got {}", other.type_str()),
                });
                toml::Table::new()
            }
        }
    }

    let t = take(&mut table, "server", errors);
    let mut s = Section::new("server", "server", t, errors, known);
    let server = ServerConfig {
        listen: s.addr("listen", DEFAULT_LISTEN),
        api_listen: s.addr("api_listen", DEFAULT_API_LISTEN),
        admin_listen: s.addr("admin_listen", DEFAULT_ADMIN_LISTEN),
        shutdown_grace: s.duration("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
        drain_delay: s.duration("drain_delay", Duration::ZERO),
        max_header_bytes: s.size("max_header_bytes", DEFAULT_MAX_HEADER_BYTES),
        max_body_bytes: s.size("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        header_read_timeout: s.duration("header_read_timeout", DEFAULT_HEADER_READ_TIMEOUT),
        idle_timeout: s.duration("idle_timeout", DEFAULT_IDLE_TIMEOUT),
        max_connections: s.u64("max_connections", DEFAULT_MAX_CONNECTIONS),
        tls: s.sub("tls", |t| {
            let cert = t.opt_string("cert");
            let key = t.opt_string("key");
            match (cert, key) {
                (Some(c), Some(k)) => Some(TlsConfig {
                    cert: c.into(),
                    key: k.into(),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    t.error("key", "server.tls.cert is set but server.tls.key is not");
                    None
                }
                (None, Some(_)) => {
                    t.error("cert", "server.tls.key is set but server.tls.cert is not");
                    None
                }
            }
        }),
        path: PathPolicy {
            escaped_slash: s.choice(
                "escaped_slash",
                EscapedSlash::Reject,
                &[
                    ("reject", EscapedSlash::Reject),
                    ("keep", EscapedSlash::Keep),
                    ("decode", EscapedSlash::Decode),
                ],
            ),
            backslash: s.choice(
                "backslash",
                Backslash::Reject,
                &[
                    ("reject", Backslash::Reject),
                    ("keep", Backslash::Keep),
                    ("slash", Backslash::Slash),
                ],
            ),
            duplicate_slashes: s.choice(
                "duplicate_slashes",
                DuplicateSlashes::Reject,
                &[
                    ("reject", DuplicateSlashes::Reject),
                    ("merge", DuplicateSlashes::Merge),
                    ("keep", DuplicateSlashes::Keep),
                ],
            ),
            invalid_encoding: s.choice(
                "invalid_encoding",
                InvalidEncoding::Reject,
                &[
                    ("reject", InvalidEncoding::Reject),
                    ("escape", InvalidEncoding::Escape),
                ],
            ),
        },
        route_matching: RouteMatching {
            case_insensitive: s.choice(
                "route_case",
                true,
                &[("insensitive", true), ("sensitive", false)],
            ),
            optional_trailing_slash: s.choice(
                "route_trailing_slash",
                true,
                &[("optional", true), ("exact", false)],
            ),
        },
        hosts: read_hosts(&mut s, "hosts"),
    };
    s.finish();

    let t = take(&mut table, "origin", errors);
    let mut s = Section::new("origin", "origin", t, errors, known);
    let origin = read_origin(&mut s, false);
    s.finish();

    let t = take(&mut table, "origins", errors);
    known.insert("origins".into());
    let mut origins = BTreeMap::new();
    for (name, value) in t {
        let path = format!("origins.{name}");
        if let Err(m) = check_origin_name(&name) {
            errors.push(ConfigError {
                key: path,
                message: m,
            });
            continue;
        }
        match value {
            toml::Value::Table(t) => {
                let mut s = Section::new(path, "origins.<name>", t, errors, known);
                origins.insert(name, read_origin(&mut s, true));
                s.finish();
            }
            other => errors.push(ConfigError {
                key: path,
                message: format!(
                    "expected a table [origins.{name}] with the keys of [origin], got {}",
                    other.type_str()
                ),
            }),
        }
    }

    let t = take(&mut table, "store", errors);
    let mut s = Section::new("store", "store", t, errors, known);
    let backend = s.choice(
        "backend",
        StoreBackend::Memory,
        &[
            ("memory", StoreBackend::Memory),
            ("redis", StoreBackend::Redis),
        ],
    );
    let store = StoreConfig {
        backend,
        url: s.string("url", DEFAULT_STORE_URL),
        key_prefix: s.string("key_prefix", DEFAULT_KEY_PREFIX),
        cluster: s.strings("cluster", &[]),
        sentinel: s.sub_opt("sentinel", |t| SentinelConfig {
            master: t.string("master", ""),
            nodes: t.strings("nodes", &[]),
        }),
        command_timeout: s.duration("command_timeout", DEFAULT_STORE_COMMAND_TIMEOUT),
        connect_timeout: s.duration("connect_timeout", DEFAULT_STORE_CONNECT_TIMEOUT),
        serve_degraded: s.bool("serve_degraded", true),
        tls_ca_file: s.opt_string("tls_ca_file").map(PathBuf::from),
        // Resolved below, once cache.max_bytes is read.
        memory_max_bytes: 0,
    };
    let memory_max_bytes = s.opt_size("memory_max_bytes");
    if memory_max_bytes.is_some_and(|n| n < MIN_STORE_MEMORY_MAX_BYTES) {
        s.error(
            "memory_max_bytes",
            format!(
                "must be at least {} when set (unset: the same as cache.max_bytes)",
                format_size(MIN_STORE_MEMORY_MAX_BYTES)
            ),
        );
    }
    s.finish();

    let t = take(&mut table, "cache", errors);
    let mut s = Section::new("cache", "cache", t, errors, known);
    let cache = CacheConfig {
        max_bytes: s.size("max_bytes", DEFAULT_CACHE_MAX_BYTES),
        max_object: s.size("max_object", DEFAULT_CACHE_MAX_OBJECT),
        default_ttl: s.duration("default_ttl", DEFAULT_CACHE_DEFAULT_TTL),
        negative_ttl: s.duration("negative_ttl", DEFAULT_CACHE_NEGATIVE_TTL),
        coherence_grace: s.duration("coherence_grace", DEFAULT_COHERENCE_GRACE),
        lock_timeout: s.duration("lock_timeout", DEFAULT_LOCK_TIMEOUT),
        lock_age: s.duration("lock_age", DEFAULT_LOCK_AGE),
        max_variants: s.u64("max_variants", DEFAULT_MAX_VARIANTS),
        hit_for_pass_ttl: s.duration("hit_for_pass_ttl", DEFAULT_HIT_FOR_PASS_TTL),
        purge_method: s.bool("purge_method", false),
        purge_allow: {
            let mut nets = Vec::new();
            for text in s.strings("purge_allow", DEFAULT_PURGE_ALLOW) {
                match text.parse::<Cidr>() {
                    Ok(c) => nets.push(c),
                    Err(m) => s.error("purge_allow", m),
                }
            }
            nets
        },
        targeted_fields: s
            .strings("targeted_fields", DEFAULT_TARGETED_FIELDS)
            .into_iter()
            .map(|f| f.trim().to_ascii_lowercase())
            .collect(),
        heuristic_fraction: s.f64("heuristic_fraction", DEFAULT_HEURISTIC_FRACTION),
        heuristic_max: s.duration("heuristic_max", DEFAULT_HEURISTIC_MAX),
    };
    s.finish();
    let store = StoreConfig {
        memory_max_bytes: memory_max_bytes.unwrap_or(cache.max_bytes),
        ..store
    };

    let routes_value = table.remove("routes");
    known.insert("routes".into());
    let mut routes = Vec::new();
    match routes_value {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let path = format!("routes[{i}]");
                match item {
                    toml::Value::Table(t) => {
                        let mut s = Section::new(path, "routes[]", t, errors, known);
                        routes.push(read_route(&mut s));
                        s.finish();
                    }
                    other => errors.push(ConfigError {
                        key: path,
                        message: format!("expected a table, got {}", other.type_str()),
                    }),
                }
            }
        }
        Some(other) => errors.push(ConfigError {
            key: "routes".into(),
            message: format!("expected [[routes]] tables, got {}", other.type_str()),
        }),
    }

    let t = take(&mut table, "auth", errors);
    let mut s = Section::new("auth", "auth", t, errors, known);
    let on_store_error =
        read_store_error_policy(&mut s, "on_store_error").unwrap_or(StoreErrorPolicy::Deny);
    let auth = AuthConfig {
        issuer: s.opt_string("issuer"),
        audiences: s.strings("audiences", &[]),
        leeway: s.duration("leeway", DEFAULT_AUTH_LEEWAY),
        algorithms: s.strings("algorithms", &["HS256"]),
        hs_secret: s.opt_string("hs_secret"),
        public_key_files: s
            .strings("public_key_files", &[])
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        jwks_file: s.opt_string("jwks_file").map(PathBuf::from),
        jwks_url: s.opt_string("jwks_url"),
        jwks_ca_file: s.opt_string("jwks_ca_file").map(PathBuf::from),
        jwks_refresh: s.duration("jwks_refresh", DEFAULT_JWKS_REFRESH),
        claims_to_headers: s.string_map("claims_to_headers"),
        on_store_error,
        token_cookie: s.opt_string("token_cookie"),
        token_header: s.opt_string("token_header"),
        max_token_lifetime: s.duration("max_token_lifetime", DEFAULT_MAX_TOKEN_LIFETIME),
    };
    s.finish();

    let t = take(&mut table, "api", errors);
    let mut s = Section::new("api", "api", t, errors, known);
    let api = ApiConfig {
        token: s.opt_string("token"),
    };
    s.finish();

    let t = take(&mut table, "capacity", errors);
    let mut s = Section::new("capacity", "capacity", t, errors, known);
    let capacity = CapacityConfig {
        sync_url: s.opt_string("sync_url"),
        sync_interval: s.duration("sync_interval", DEFAULT_CAPACITY_SYNC_INTERVAL),
        sync_batch: s.u64("sync_batch", DEFAULT_CAPACITY_SYNC_BATCH),
    };
    s.finish();

    let t = take(&mut table, "locks", errors);
    let mut s = Section::new("locks", "locks", t, errors, known);
    let locks = LocksConfig {
        max_ttl: s.duration("max_ttl", DEFAULT_LOCKS_MAX_TTL),
        max_wait: s.duration("max_wait", DEFAULT_LOCKS_MAX_WAIT),
        max_hold: s.duration("max_hold", DEFAULT_LOCKS_MAX_HOLD),
        wait_poll: s.duration("wait_poll", DEFAULT_LOCKS_WAIT_POLL),
    };
    s.finish();

    let t = take(&mut table, "reload", errors);
    let mut s = Section::new("reload", "reload", t, errors, known);
    let reload = ReloadConfig {
        watch: s.bool("watch", false),
        interval: s.duration("interval", DEFAULT_RELOAD_INTERVAL),
    };
    s.finish();

    let t = take(&mut table, "log", errors);
    let mut s = Section::new("log", "log", t, errors, known);
    let log = LogConfig {
        level: s.string("level", DEFAULT_LOG_LEVEL),
        format: s.string("format", DEFAULT_LOG_FORMAT),
        access: s.bool("access", true),
        access_sample: s.f64("access_sample", DEFAULT_ACCESS_SAMPLE),
    };
    s.finish();

    for key in table.keys() {
        errors.push(ConfigError {
            key: key.clone(),
            message: "unknown key".into(),
        });
    }

    Config {
        server,
        origin,
        origins,
        store,
        cache,
        routes,
        auth,
        api,
        capacity,
        locks,
        reload,
        log,
    }
}

/// A list of host patterns (`server.hosts`, `routes[].hosts`), lower-cased; each
/// must be a host name, `*.` and a host name, or either with a port.
fn read_hosts(s: &mut Section<'_>, key: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    for h in s.strings(key, &[]) {
        let lower = h.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("*.").unwrap_or(&lower);
        match crate::target::canonical_authority(name, 0) {
            Ok(c) if c == name => hosts.push(lower),
            _ => s.error(
                key,
                format!("{h:?} is not a host name, \"*.\" and a host name, or either with a port"),
            ),
        }
    }
    hosts
}

fn read_store_error_policy(s: &mut Section<'_>, key: &str) -> Option<StoreErrorPolicy> {
    s.opt_choice(
        key,
        &[
            ("deny", StoreErrorPolicy::Deny),
            ("allow", StoreErrorPolicy::Allow),
        ],
    )
}

fn read_route(s: &mut Section<'_>) -> RouteConfig {
    let path = s.string("path", "");
    if path.is_empty() {
        s.error("path", "every route needs a path");
    }
    let methods = s
        .strings("methods", &["GET", "HEAD"])
        .into_iter()
        .filter_map(
            |m| match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    s.error("methods", format!("{m:?} is not an HTTP method"));
                    None
                }
            },
        )
        .collect();
    let auth = s.choice(
        "auth",
        AuthMode::Off,
        &[
            ("off", AuthMode::Off),
            ("optional", AuthMode::Optional),
            ("required", AuthMode::Required),
        ],
    );
    let key_by = s.choice(
        "key_by",
        KeyBy::Shared,
        &[("shared", KeyBy::Shared), ("sub", KeyBy::Sub)],
    );
    RouteConfig {
        path,
        methods,
        hosts: read_hosts(s, "hosts"),
        access_sample: s.opt_f64("access_sample"),
        ttl: s.opt_duration("ttl"),
        override_ttl: s.bool("override", false),
        negative_ttl: s.opt_duration("negative_ttl"),
        stale_while_revalidate: s.opt_duration("stale_while_revalidate"),
        stale_if_error: s.opt_duration("stale_if_error"),
        timeout: s.opt_duration("timeout"),
        origin: s.opt_string("origin"),
        vary: s
            .strings("vary", &[])
            .into_iter()
            .map(|v| v.to_ascii_lowercase())
            .collect(),
        tags: s.strings("tags", &[]),
        auth,
        invalidate_on: s.strings("invalidate_on", &[]),
        key_by,
        cache: s.bool("cache", true),
        set_cookie: s.choice(
            "set_cookie",
            DEFAULT_ROUTE_SET_COOKIE,
            &[
                ("pass", SetCookie::Pass),
                ("strip", SetCookie::Strip),
                ("store", SetCookie::Store),
            ],
        ),
        revoke_on_success: s.bool("revoke_on_success", false),
        forward_authorization: s.bool("forward_authorization", true),
        on_store_error: read_store_error_policy(s, "on_store_error"),
        capacity: s.sub_opt("capacity", |g| {
            let member_text = g.string("member", "sub");
            let member = if member_text == "sub" {
                MemberFrom::Sub
            } else if let Some(h) = member_text.strip_prefix("header:") {
                MemberFrom::Header(h.trim().to_ascii_lowercase())
            } else if let Some(p) = member_text
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
            {
                MemberFrom::Param(p.to_string())
            } else {
                g.error(
                    "member",
                    format!(
                        "expected \"sub\", \"header:<name>\" or \"{{param}}\", got {member_text:?}"
                    ),
                );
                MemberFrom::Sub
            };
            CapacityGate {
                ns: g.string("ns", ""),
                id: g.string("id", ""),
                member,
                release_on_failure: g.bool("release_on_failure", true),
            }
        }),
        lock: s.sub_opt("lock", |g| LockGate {
            ns: g.string("ns", ""),
            id: g.string("id", ""),
            ttl: g.duration("ttl", Duration::from_secs(30)),
            wait: g.duration("wait", Duration::ZERO),
        }),
    }
}

/// An origin's table: `[origin]`, or `[origins.NAME]` (`named`: its `url` is
/// required). A key a named origin leaves out takes its `DEFAULT_ORIGIN_*` default,
/// not `[origin]`'s value: each origin reads the same on its own.
fn read_origin(s: &mut Section<'_>, named: bool) -> OriginConfig {
    let url_text = if named {
        let text = s.opt_string("url");
        if text.is_none() {
            s.error(
                "url",
                "every named origin needs a url (scheme, host and port of its upstream)",
            );
        }
        text.unwrap_or_else(|| DEFAULT_ORIGIN_URL.to_string())
    } else {
        s.string("url", DEFAULT_ORIGIN_URL)
    };
    let url = match parse_origin_url(&url_text) {
        Ok(u) => u,
        Err(m) => {
            s.error("url", m);
            DEFAULT_ORIGIN_URL.parse().expect("default origin parses")
        }
    };
    OriginConfig {
        url,
        connect_timeout: s.duration("connect_timeout", DEFAULT_ORIGIN_CONNECT_TIMEOUT),
        timeout: s.duration("timeout", DEFAULT_ORIGIN_TIMEOUT),
        pool_idle_timeout: s.duration("pool_idle_timeout", DEFAULT_ORIGIN_POOL_IDLE_TIMEOUT),
        pool_max_idle: s.u64("pool_max_idle", DEFAULT_ORIGIN_POOL_MAX_IDLE),
        preserve_host: s.bool("preserve_host", true),
        protocol: s.choice(
            "protocol",
            DEFAULT_ORIGIN_PROTOCOL,
            &[
                ("http1", OriginProtocol::Http1),
                ("h2c", OriginProtocol::H2c),
                ("h2", OriginProtocol::H2),
                ("auto", OriginProtocol::Auto),
            ],
        ),
        ca_file: s.opt_string("ca_file").map(PathBuf::from),
        sni: s.opt_string("sni"),
        client_cert_file: s.opt_string("client_cert_file").map(PathBuf::from),
        client_key_file: s.opt_string("client_key_file").map(PathBuf::from),
        upgrade_idle_timeout: s
            .duration("upgrade_idle_timeout", DEFAULT_ORIGIN_UPGRADE_IDLE_TIMEOUT),
    }
}

/// A named origin's name: `[a-z][a-z0-9_]*`, at most `MAX_ORIGIN_NAME_LEN`, not
/// `default`. Lower case and underscores only, so that `GATEHOUSE_ORIGINS_<NAME>_<KEY>`
/// reaches it and it is a plain metric label value.
fn check_origin_name(name: &str) -> Result<(), String> {
    if name == DEFAULT_ORIGIN_NAME {
        return Err(format!(
            "{name:?} is the name of [origin]; give a named origin another name"
        ));
    }
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= MAX_ORIGIN_NAME_LEN;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "origin name {name:?} must match [a-z][a-z0-9_]* (at most {MAX_ORIGIN_NAME_LEN} characters)"
        ))
    }
}

fn parse_origin_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{text:?} must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!(
            "{text:?} must not have a path; give scheme, host and port"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.store.backend, StoreBackend::Memory);
        assert_eq!(c.origin.url, "http://127.0.0.1:3000");
        assert_eq!(c.server.api_listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.cache.max_bytes, 256 << 20);
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
            [origin]
            timeout = "forever"
            [store]
            bogus = 1
            [[routes]]
            path = "/a"
            [[routes]]
            path = "/b"
            [[routes]]
            path = "/c"
            ttl = "10 parsecs"
        "#;
        let errs = Config::from_toml_str(text, &env(&[])).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"origin.timeout"), "{errs:?}");
        assert!(keys.contains(&"store.bogus"), "{errs:?}");
        assert!(keys.contains(&"routes[2].ttl"), "{errs:?}");
    }

    #[test]
    fn environment_overrides_the_file_and_redis_url_is_a_fallback() {
        let text = "[store]\nbackend = \"memory\"\n";
        let c = Config::from_toml_str(
            text,
            &env(&[
                ("GATEHOUSE_STORE_BACKEND", "redis"),
                ("REDIS_URL", "redis://10.1.1.1:6380"),
                ("GATEHOUSE_CACHE_MAX_BYTES", "1MiB"),
                ("GATEHOUSE_SERVER_TLS_CERT", "/nonexistent.pem"),
            ]),
        )
        .unwrap_err();
        // TLS cert without key is reported; the rest applied.
        assert!(c.iter().any(|e| e.key == "server.tls.key"), "{c:?}");
        let c = Config::from_toml_str(
            text,
            &env(&[
                ("GATEHOUSE_STORE_BACKEND", "redis"),
                ("REDIS_URL", "redis://10.1.1.1:6380"),
                ("GATEHOUSE_CACHE_MAX_BYTES", "1MiB"),
                ("GATEHOUSE_CACHE_MAX_OBJECT", "1KiB"),
            ]),
        )
        .unwrap();
        assert_eq!(c.store.backend, StoreBackend::Redis);
        assert_eq!(c.store.url, "redis://10.1.1.1:6380");
        assert_eq!(c.cache.max_bytes, 1 << 20);
        let c = Config::from_toml_str(
            "[store]\nurl = \"redis://file:1\"\n",
            &env(&[("REDIS_URL", "redis://env:2")]),
        )
        .unwrap();
        assert_eq!(c.store.url, "redis://file:1");
    }

    #[test]
    fn locks_bounds_default_validate_and_take_the_environment() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.locks.max_hold, Duration::ZERO);
        assert_eq!(c.locks.wait_poll, DEFAULT_LOCKS_WAIT_POLL);
        let c = Config::from_toml_str("", &env(&[("GATEHOUSE_LOCKS_MAX_HOLD", "10m")])).unwrap();
        assert_eq!(c.locks.max_hold, Duration::from_secs(600));
        let errs =
            Config::from_toml_str("[locks]\nmax_ttl = \"0s\"\nbogus = 1\n", &env(&[])).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"locks.bogus"), "{errs:?}");
        let errs = Config::from_toml_str("[locks]\nmax_ttl = \"0s\"\n", &env(&[])).unwrap_err();
        assert_eq!(errs[0].key, "locks.max_ttl");
    }

    #[test]
    fn listener_limits_default_and_validate_naming_the_key() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.server.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(c.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(c.server.max_connections, DEFAULT_MAX_CONNECTIONS);
        let errs = Config::from_toml_str(
            "[server]\nheader_read_timeout = \"0s\"\nidle_timeout = \"0s\"\nmax_connections = 0\n",
            &env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.header_read_timeout",
                "server.idle_timeout",
                "server.max_connections"
            ],
            "{errs:?}"
        );
    }

    #[test]
    fn memory_budget_defaults_to_cache_max_bytes_and_is_at_least_1mib() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.store.memory_max_bytes, DEFAULT_CACHE_MAX_BYTES);
        let c = Config::from_toml_str("[cache]\nmax_bytes = \"8MiB\"\n", &env(&[])).unwrap();
        assert_eq!(c.store.memory_max_bytes, 8 << 20);
        let c = Config::from_toml_str(
            "[cache]\nmax_bytes = \"8MiB\"\n",
            &env(&[("GATEHOUSE_STORE_MEMORY_MAX_BYTES", "2MiB")]),
        )
        .unwrap();
        assert_eq!(c.store.memory_max_bytes, 2 << 20);
        let errs = Config::from_toml_str("[store]\nmemory_max_bytes = \"512KiB\"\n", &env(&[]))
            .unwrap_err();
        assert_eq!(errs[0].key, "store.memory_max_bytes", "{errs:?}");
        let errs =
            Config::from_toml_str("[store]\nmemory_max_bytes = \"lots\"\n", &env(&[])).unwrap_err();
        assert_eq!(errs[0].key, "store.memory_max_bytes", "{errs:?}");
    }

    #[test]
    fn kubernetes_service_links_are_not_overrides() {
        let c = Config::from_toml_str(
            "",
            &env(&[
                ("GATEHOUSE_PORT", "tcp://10.0.0.1:8080"),
                ("GATEHOUSE_PORT_8080_TCP", "tcp://10.0.0.1:8080"),
                ("GATEHOUSE_PORT_8080_TCP_ADDR", "10.0.0.1"),
                ("GATEHOUSE_SERVICE_HOST", "10.0.0.1"),
                ("GATEHOUSE_SERVICE_PORT", "8080"),
                ("GATEHOUSE_SERVICE_PORT_HTTP", "8080"),
                ("GATEHOUSE_API_SERVICE_HOST", "10.0.0.2"),
                ("GATEHOUSE_API_PORT_7070_TCP_PORT", "7070"),
            ]),
        );
        assert!(c.is_ok(), "{c:?}");
        // A real override still applies next to them.
        let c = Config::from_toml_str("", &env(&[("GATEHOUSE_CACHE_MAX_OBJECT", "1MiB")])).unwrap();
        assert_eq!(c.cache.max_object, 1 << 20);
    }

    #[test]
    fn set_cookie_is_pass_by_default_and_a_known_word() {
        let text = "[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/b\"\nset_cookie = \"strip\"\n[[routes]]\npath = \"/c\"\nset_cookie = \"store\"\n";
        let c = Config::from_toml_str(text, &env(&[])).unwrap();
        let got: Vec<SetCookie> = c.routes.iter().map(|r| r.set_cookie).collect();
        assert_eq!(got, [SetCookie::Pass, SetCookie::Strip, SetCookie::Store]);
        assert_eq!(RouteConfig::new("/x").set_cookie, SetCookie::Pass);
        let errs = Config::from_toml_str(
            "[[routes]]\npath = \"/a\"\nset_cookie = \"keep\"\n",
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(errs[0].key, "routes[0].set_cookie", "{errs:?}");
    }

    #[test]
    fn heuristic_freshness_is_off_by_default_and_its_fraction_is_validated() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(c.cache.heuristic_fraction, 0.0);
        assert_eq!(c.cache.heuristic_max, DEFAULT_HEURISTIC_MAX);
        let c = Config::from_toml_str(
            "[cache]\nheuristic_fraction = 0.1\nheuristic_max = \"2h\"\n",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.cache.heuristic_fraction, 0.1);
        assert_eq!(c.cache.heuristic_max, Duration::from_secs(7200));
        let c = Config::from_toml_str("", &env(&[("GATEHOUSE_CACHE_HEURISTIC_FRACTION", "1")]))
            .unwrap();
        assert_eq!(c.cache.heuristic_fraction, 1.0);
        for (text, key) in [
            ("heuristic_fraction = 1.5", "cache.heuristic_fraction"),
            ("heuristic_fraction = -0.1", "cache.heuristic_fraction"),
            ("heuristic_fraction = \"nan\"", "cache.heuristic_fraction"),
            ("heuristic_fraction = \"lots\"", "cache.heuristic_fraction"),
            (
                "heuristic_fraction = 0.1\nheuristic_max = \"0s\"",
                "cache.heuristic_max",
            ),
        ] {
            let errs = Config::from_toml_str(&format!("[cache]\n{text}\n"), &env(&[])).unwrap_err();
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
            assert_eq!(errs[0].key, key, "{text}: {errs:?}");
        }
    }

    #[test]
    fn targeted_fields_default_lower_case_and_must_be_targeted_header_names() {
        let c = Config::from_toml_str("", &env(&[])).unwrap();
        assert_eq!(
            c.cache.targeted_fields,
            ["gatehouse-cache-control", "cdn-cache-control"]
        );
        let c = Config::from_toml_str(
            "",
            &env(&[(
                "GATEHOUSE_CACHE_TARGETED_FIELDS",
                "X-Edge-CC, CDN-Cache-Control",
            )]),
        )
        .unwrap();
        assert_eq!(c.cache.targeted_fields, ["x-edge-cc", "cdn-cache-control"]);
        let errs = Config::from_toml_str(
            "[cache]\ntargeted_fields = [\"ok\", \"bad name\", \"Cache-Control\"]\n",
            &env(&[]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["cache.targeted_fields[1]", "cache.targeted_fields[2]"],
            "{errs:?}"
        );
    }

    #[test]
    fn origin_keys_are_every_key_an_origin_table_reads() {
        let known = Config::known_keys();
        let under = |prefix: &str| -> BTreeSet<String> {
            known
                .iter()
                .filter_map(|k| k.strip_prefix(prefix))
                .map(String::from)
                .collect()
        };
        let listed: BTreeSet<String> = ORIGIN_KEYS.iter().map(|k| k.to_string()).collect();
        assert_eq!(under("origin."), listed);
        assert_eq!(under("origins.<name>."), listed);
    }

    #[test]
    fn unknown_environment_section_is_an_error() {
        let errs = Config::from_toml_str("", &env(&[("GATEHOUSE_NOPE_X", "1")])).unwrap_err();
        assert_eq!(errs[0].key, "GATEHOUSE_NOPE_X");
    }
}
