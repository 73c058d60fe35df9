//! Reading the configuration: the file's TOML (with the environment applied by
//! [`super::env`]) into the typed [`Config`], every key with its named default, every
//! problem collected with its key path instead of stopping at the first; then the
//! cross-key checks of [`super::validate`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::env::apply_env;
use super::parse::{format_size, ConfigError, Section};
use super::*;
use crate::authority::canonical_authority;

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

    pub(super) fn from_table(table: toml::Table) -> Result<Config, Vec<ConfigError>> {
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
        drain_delay: s.duration("drain_delay", DEFAULT_DRAIN_DELAY),
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
                DEFAULT_PATH_POLICY.escaped_slash,
                &[
                    ("reject", EscapedSlash::Reject),
                    ("keep", EscapedSlash::Keep),
                    ("decode", EscapedSlash::Decode),
                ],
            ),
            backslash: s.choice(
                "backslash",
                DEFAULT_PATH_POLICY.backslash,
                &[
                    ("reject", Backslash::Reject),
                    ("keep", Backslash::Keep),
                    ("slash", Backslash::Slash),
                ],
            ),
            duplicate_slashes: s.choice(
                "duplicate_slashes",
                DEFAULT_PATH_POLICY.duplicate_slashes,
                &[
                    ("reject", DuplicateSlashes::Reject),
                    ("merge", DuplicateSlashes::Merge),
                    ("keep", DuplicateSlashes::Keep),
                ],
            ),
            invalid_encoding: s.choice(
                "invalid_encoding",
                DEFAULT_PATH_POLICY.invalid_encoding,
                &[
                    ("reject", InvalidEncoding::Reject),
                    ("escape", InvalidEncoding::Escape),
                ],
            ),
        },
        route_matching: RouteMatching {
            case_insensitive: s.choice(
                "route_case",
                DEFAULT_ROUTE_MATCHING.case_insensitive,
                &[("insensitive", true), ("sensitive", false)],
            ),
            optional_trailing_slash: s.choice(
                "route_trailing_slash",
                DEFAULT_ROUTE_MATCHING.optional_trailing_slash,
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
        DEFAULT_STORE_BACKEND,
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
        serve_degraded: s.bool("serve_degraded", DEFAULT_STORE_SERVE_DEGRADED),
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
        purge_method: s.bool("purge_method", DEFAULT_PURGE_METHOD),
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
        read_store_error_policy(&mut s, "on_store_error").unwrap_or(DEFAULT_AUTH_ON_STORE_ERROR);
    let auth = AuthConfig {
        issuer: s.opt_string("issuer"),
        audiences: s.strings("audiences", &[]),
        leeway: s.duration("leeway", DEFAULT_AUTH_LEEWAY),
        algorithms: s.strings("algorithms", DEFAULT_AUTH_ALGORITHMS),
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
        watch: s.bool("watch", DEFAULT_RELOAD_WATCH),
        interval: s.duration("interval", DEFAULT_RELOAD_INTERVAL),
    };
    s.finish();

    let t = take(&mut table, "log", errors);
    let mut s = Section::new("log", "log", t, errors, known);
    let log = LogConfig {
        level: s.string("level", DEFAULT_LOG_LEVEL),
        format: s.string("format", DEFAULT_LOG_FORMAT),
        access: s.bool("access", DEFAULT_LOG_ACCESS),
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
        match canonical_authority(name, 0) {
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
        .strings("methods", DEFAULT_ROUTE_METHODS)
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
        DEFAULT_ROUTE_AUTH,
        &[
            ("off", AuthMode::Off),
            ("optional", AuthMode::Optional),
            ("required", AuthMode::Required),
        ],
    );
    let key_by = s.choice(
        "key_by",
        DEFAULT_ROUTE_KEY_BY,
        &[("shared", KeyBy::Shared), ("sub", KeyBy::Sub)],
    );
    RouteConfig {
        path,
        methods,
        hosts: read_hosts(s, "hosts"),
        access_sample: s.opt_f64("access_sample"),
        ttl: s.opt_duration("ttl"),
        override_ttl: s.bool("override", DEFAULT_ROUTE_OVERRIDE_TTL),
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
        cache: s.bool("cache", DEFAULT_ROUTE_CACHE),
        set_cookie: s.choice(
            "set_cookie",
            DEFAULT_ROUTE_SET_COOKIE,
            &[
                ("pass", SetCookie::Pass),
                ("strip", SetCookie::Strip),
                ("store", SetCookie::Store),
            ],
        ),
        revoke_on_success: s.bool("revoke_on_success", DEFAULT_ROUTE_REVOKE_ON_SUCCESS),
        forward_authorization: s.bool("forward_authorization", DEFAULT_ROUTE_FORWARD_AUTHORIZATION),
        on_store_error: read_store_error_policy(s, "on_store_error"),
        capacity: s.sub_opt("capacity", |g| {
            let member_text = g.string("member", DEFAULT_CAPACITY_MEMBER);
            let member = if member_text == DEFAULT_CAPACITY_MEMBER {
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
                release_on_failure: g
                    .bool("release_on_failure", DEFAULT_CAPACITY_RELEASE_ON_FAILURE),
            }
        }),
        lock: s.sub_opt("lock", |g| LockGate {
            ns: g.string("ns", ""),
            id: g.string("id", ""),
            ttl: g.duration("ttl", DEFAULT_ROUTE_LOCK_TTL),
            wait: g.duration("wait", DEFAULT_ROUTE_LOCK_WAIT),
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
        preserve_host: s.bool("preserve_host", DEFAULT_ORIGIN_PRESERVE_HOST),
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
