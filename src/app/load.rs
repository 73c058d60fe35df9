//! Loading and checking the configuration from files: `load_checked` (what `check`
//! and `run` do first), `preflight` (every file `run` loads, loaded now) and the JWT
//! verifier `[auth]` describes. Here, in `app`, because it builds what `run` builds
//! (routes, verifier, TLS configs); `config` only reads and validates. Swapping a
//! reloaded configuration in is `app::reload`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::auth::{Verifier, VerifierOptions};
use crate::config::{Config, ConfigError, DEFAULT_ORIGIN_NAME};
use crate::metrics::Metrics;
use crate::routes::Router;

/// The JWT verifier `[auth]` describes (None without keys): secret, PEM key files and
/// JWKS file loaded now; a `jwks_url` is not fetched here. `metrics` counts the JWKS
/// fetches of a running instance.
pub(crate) fn verifier(
    config: &Config,
    metrics: Option<&Arc<Metrics>>,
) -> Result<Option<Verifier>, Vec<ConfigError>> {
    if !config.auth.has_keys() {
        return Ok(None);
    }
    let mut opts = VerifierOptions::default();
    if let Some(m) = metrics {
        let m = m.clone();
        opts.on_jwks_fetch = Some(Arc::new(move |result: &'static str| {
            m.jwks_fetches_total.with_label_values(&[result]).inc();
        }));
    }
    Verifier::build(&config.auth, opts)
        .map(Some)
        .map_err(|errors| {
            errors
                .into_iter()
                .map(|e| ConfigError {
                    key: e.key,
                    message: e.message,
                })
                .collect()
        })
}

/// Loads everything `run` loads from files before it binds a port, as `run` does: the
/// route table, the JWT verifier (key files and JWKS file; a `jwks_url` is not
/// fetched), the proxy listener's TLS certificate and key, the CA bundles of
/// `store.tls_ca_file` and `auth.jwks_ca_file`, and each https origin's `ca_file`,
/// `client_cert_file` and `client_key_file` (`[origin]` and every `[origins.NAME]`). Answers every problem, each with its
/// key path. `gatehouse check` and `gatehouse run` (through `load_checked`) and
/// `App::start` all call it, so what would fail a start fails the check.
pub fn preflight(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Err(e) = Router::new(&config.routes, config.server.route_matching) {
        let (key, message) = e.split_once(": ").unwrap_or(("routes", &e));
        errors.push(ConfigError {
            key: key.to_string(),
            message: message.to_string(),
        });
    }
    if let Err(mut e) = verifier(config, None) {
        errors.append(&mut e);
    }
    if let Some(tls) = &config.server.tls {
        if let Err(mut e) = crate::server::tls::acceptor(tls) {
            errors.append(&mut e);
        }
    }
    let tables = std::iter::once((DEFAULT_ORIGIN_NAME, &config.origin))
        .chain(config.origins.iter().map(|(n, o)| (n.as_str(), o)));
    for (name, origin) in tables {
        if origin.url.scheme_str() == Some("https") {
            let prefix = crate::proxy::origin::key_prefix(name);
            if let Err(mut e) = crate::proxy::origin::tls_config(origin, &prefix) {
                errors.append(&mut e);
            }
        }
    }
    for (key, file) in [
        ("store.tls_ca_file", &config.store.tls_ca_file),
        ("auth.jwks_ca_file", &config.auth.jwks_ca_file),
    ] {
        if let Some(path) = file {
            if let Err(e) = crate::server::tls::ca_roots(key, path) {
                errors.push(e);
            }
        }
    }
    errors
}

/// What `gatehouse check` and `gatehouse run` do before anything else: read the file
/// (no file: the embedded default), apply the environment, validate, and `preflight`.
/// Every problem at once; a key already named by validation is not named again.
pub fn load_checked(
    path: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<Config, Vec<ConfigError>> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            vec![ConfigError {
                key: p.display().to_string(),
                message: format!("cannot read config file: {e}"),
            }]
        })?,
        None => String::new(),
    };
    let (config, mut errors) = Config::parse(&text, env);
    let Some(config) = config else {
        return Err(errors);
    };
    for e in preflight(&config) {
        if !errors.iter().any(|known| known.key == e.key) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}
