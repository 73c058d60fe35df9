//! The environment overrides: `GATEHOUSE_<SECTION>_<KEY>` (nested tables and named
//! origins too), `REDIS_URL` as a fallback for `store.url`, applied to the file's TOML
//! before it is read, each remembered so that a problem names its variable.

use std::collections::HashMap;

use super::parse::ConfigError;
use super::validate::check_log_filter;

const SECTIONS: &[&str] = &[
    "server", "origin", "store", "cache", "auth", "api", "capacity", "locks", "reload", "log",
];
/// The keys of an origin's table (`[origin]`, `[origins.NAME]`), for the
/// environment overrides of named origins.
pub(super) const ORIGIN_KEYS: &[&str] = &[
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
pub(super) fn apply_env(
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
            if let Err(message) = check_log_filter(value) {
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
