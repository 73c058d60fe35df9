//! The cross-key checks, run once every value parsed: each problem named by its key
//! path. Also the checks other modules need without importing back into config: the
//! JWT algorithm list (`auth::jwt` builds on it), route shadowing, the log filter.

use super::parse::{format_size, ConfigError};
use super::*;
use crate::path_pattern::{parse_invalidate_on, PathPattern};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

impl Config {
    /// Cross-key checks, after every value parsed.
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
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
        if s.max_header_bytes < MIN_MAX_HEADER_BYTES {
            err(
                "server.max_header_bytes",
                format!(
                    "must be at least {} (HTTP/1 needs room for a request line)",
                    format_size(MIN_MAX_HEADER_BYTES)
                ),
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
            if let Err(m) = PathPattern::parse(&r.path) {
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
            let earlier = self.routes[..i].iter().position(|e| shadowed_by(e, r));
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
                if let Err(m) = parse_invalidate_on(inv) {
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
            let params = PathPattern::parse(&r.path)
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
                let Ok((_, write)) = parse_invalidate_on(inv) else {
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
                        format!("must match [A-Za-z0-9._:-]{{1,{MAX_GATE_NAME_LEN}}}"),
                    );
                }
                if !valid_gate_name(id, &params) && missing(id).is_empty() {
                    err(
                        &format!("routes[{i}].{gate}.id"),
                        format!("must match [A-Za-z0-9._:-]{{1,{MAX_GATE_NAME_LEN}}} once the route's parameters {params:?} are filled in"),
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
        for problem in a.algorithm_problems() {
            err(&problem.key, problem.message);
        }
        if let Some(secret) = &a.hs_secret {
            if secret.len() < MIN_HS_SECRET_BYTES {
                err(
                    "auth.hs_secret",
                    format!("must be at least {MIN_HS_SECRET_BYTES} bytes (RFC 7518 §3.2)"),
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
        if let Err(m) = check_log_filter(&self.log.level) {
            err("log.level", m);
        }
    }
}

/// The JWT algorithms `auth.algorithms` may pin (`none` never is).
pub const KNOWN_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

impl AuthConfig {
    /// The checks of `auth.algorithms`, the one place they are made: each a known
    /// name, at least one, and no HS* next to public keys (algorithm confusion).
    /// Validation reports them; `auth::jwt` refuses to build a verifier on them.
    pub fn algorithm_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem =
            |key: String, message: String| problems.push(ConfigError { key, message });
        for (i, alg) in self.algorithms.iter().enumerate() {
            if !KNOWN_ALGORITHMS.contains(&alg.as_str()) {
                problem(
                    format!("auth.algorithms[{i}]"),
                    format!("unknown algorithm {alg:?}; use one of {KNOWN_ALGORITHMS:?}"),
                );
            }
        }
        if self.algorithms.is_empty() {
            problem(
                "auth.algorithms".into(),
                "must list at least one algorithm".into(),
            );
        }
        if self.algorithms.iter().any(|x| x.starts_with("HS")) && self.has_asymmetric_keys() {
            problem(
                "auth.algorithms".into(),
                "HS* algorithms cannot be combined with public keys (algorithm confusion)".into(),
            );
        }
        problems
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
        && rest.len() <= MAX_GATE_NAME_LEN
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn check_redis_url(u: &str) -> Result<(), String> {
    match u.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "{:?} is not a redis:// or rediss:// URL",
            redact_url(u)
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

/// Whether `later` can never be chosen because `earlier`, listed before it, matches
/// every request it would (first match wins): every method of `later`, every host
/// and every path. The one place that decides it, so a new matching condition is
/// added here. Conservative: true only when certain.
pub fn shadowed_by(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    // `earlier` answers for every host `later` does (any host, or the same names).
    let hosts_covered = earlier.hosts.is_empty()
        || (!later.hosts.is_empty() && later.hosts.iter().all(|h| earlier.hosts.contains(h)));
    let (Ok(e), Ok(l)) = (
        PathPattern::parse(&earlier.path),
        PathPattern::parse(&later.path),
    ) else {
        return false;
    };
    hosts_covered
        && !later.methods.is_empty()
        && later.methods.iter().all(|m| earlier.methods.contains(m))
        && e.covers(&l)
}

const LEVELS: &str = "error, warn, info, debug, trace or off";

/// Whether `text` is a log filter gatehouse accepts; the message says what is wrong.
pub fn check_log_filter(text: &str) -> Result<(), String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!(
            "empty; expected a level ({LEVELS}) or directives such as \"info,gatehouse=debug\""
        ));
    }
    // Span filters (`target[span{field=value}]=level`) hold commas and `=` of their
    // own: the filter parser alone judges those.
    if !t.contains('[') {
        for directive in t.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            if level.is_empty() || level.parse::<LevelFilter>().is_err() {
                return Err(format!(
                    "unknown level {level:?} in {text:?}; use {LEVELS}, alone or as target=level (e.g. \"info,gatehouse=debug\")"
                ));
            }
        }
    }
    EnvFilter::builder()
        .parse(t)
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_shadowed_only_by_an_earlier_one_with_all_its_methods() {
        let route = |path: &str, methods: &[&str]| RouteConfig {
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            ..RouteConfig::new(path)
        };
        let get = route("/api", &["GET", "HEAD"]);
        assert!(shadowed_by(&get, &route("/api/items/{id}", &["GET"])));
        assert!(
            shadowed_by(&get, &route("/api", &["GET", "HEAD"])),
            "a duplicate"
        );
        assert!(!shadowed_by(
            &get,
            &route("/api/items/{id}", &["GET", "POST"])
        ));
        assert!(!shadowed_by(&get, &route("/other", &["GET"])));
        let on = |r: &RouteConfig, hosts: &[&str]| RouteConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..r.clone()
        };
        let later = route("/api/items/{id}", &["GET"]);
        assert!(
            !shadowed_by(&on(&get, &["a.example"]), &later),
            "other hosts reach later"
        );
        assert!(shadowed_by(
            &on(&get, &["a.example"]),
            &on(&later, &["a.example"])
        ));
        assert!(!shadowed_by(
            &on(&get, &["a.example"]),
            &on(&later, &["b.example"])
        ));
        assert!(shadowed_by(&get, &on(&later, &["b.example"])));
        assert!(!shadowed_by(&route("/api/items/{id}", &["GET"]), &get));
        assert!(
            !shadowed_by(&get, &route("/api/x", &[])),
            "matches nothing anyway"
        );
        assert!(!shadowed_by(&get, &route("/api/{", &["GET"])), "unparsable");
    }

    #[test]
    fn filters_are_levels_or_target_directives() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,gatehouse=debug",
            "gatehouse=trace",
            "gatehouse::proxy=debug,warn",
            " debug ",
            "gatehouse[conn]=debug",
        ] {
            assert!(
                check_log_filter(ok).is_ok(),
                "{ok:?}: {:?}",
                check_log_filter(ok)
            );
        }
        for bad in ["infoo", "verbose", "gatehouse", "gatehouse=loud", "", "  "] {
            let e = check_log_filter(bad).unwrap_err();
            assert!(
                e.contains("unknown level") || e.contains("empty"),
                "{bad:?}: {e}"
            );
        }
        assert!(check_log_filter("infoo").unwrap_err().contains("\"infoo\""));
    }
}
