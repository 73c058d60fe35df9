//! The config tests: defaults, reading, environment overrides and validation, each
//! through `Config::from_toml_str` as `check` and `run` read a file.

use std::collections::{BTreeSet, HashMap};

use super::env::ORIGIN_KEYS;
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The key paths of the problems a file without environment has (it must have some).
fn problem_keys(text: &str) -> Vec<String> {
    let errs = Config::from_toml_str(text, &env(&[])).unwrap_err();
    errs.into_iter().map(|e| e.key).collect()
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
    let keys = problem_keys(text);
    for key in ["origin.timeout", "store.bogus", "routes[2].ttl"] {
        assert!(keys.iter().any(|k| k == key), "{key}: {keys:?}");
    }
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
    let keys = problem_keys("[locks]\nmax_ttl = \"0s\"\nbogus = 1\n");
    assert!(keys.iter().any(|k| k == "locks.bogus"), "{keys:?}");
    assert_eq!(
        problem_keys("[locks]\nmax_ttl = \"0s\"\n")[0],
        "locks.max_ttl"
    );
}

#[test]
fn listener_limits_default_and_validate_naming_the_key() {
    let c = Config::from_toml_str("", &env(&[])).unwrap();
    assert_eq!(c.server.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
    assert_eq!(c.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(c.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(
        problem_keys(
            "[server]\nheader_read_timeout = \"0s\"\nidle_timeout = \"0s\"\nmax_connections = 0\n"
        ),
        [
            "server.header_read_timeout",
            "server.idle_timeout",
            "server.max_connections"
        ]
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
    for value in ["512KiB", "lots"] {
        let keys = problem_keys(&format!("[store]\nmemory_max_bytes = {value:?}\n"));
        assert_eq!(keys[0], "store.memory_max_bytes", "{value}: {keys:?}");
    }
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
    let c =
        Config::from_toml_str("", &env(&[("GATEHOUSE_CACHE_HEURISTIC_FRACTION", "1")])).unwrap();
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
        assert_eq!(problem_keys(&format!("[cache]\n{text}\n")), [key], "{text}");
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
    assert_eq!(
        problem_keys("[cache]\ntargeted_fields = [\"ok\", \"bad name\", \"Cache-Control\"]\n"),
        ["cache.targeted_fields[1]", "cache.targeted_fields[2]"]
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

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact_url("redis://user:secret@host:6379"),
        "redis://user:***@host:6379"
    );
    assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
}
