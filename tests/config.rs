//! The config file contract and the CLI: config.toml lists every key with its default;
//! `check` and `run` reject bad config naming each key, before any port is bound.

mod support;

use std::collections::{BTreeSet, HashMap};

use gatehouse::Config;
use support::{check_config, free_port, gatehouse_bin, run_refused, write_file};

fn repo_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap()
}

/// `section.key` for every `key = ...` line (commented or not) in config.toml.
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim().trim_start_matches('#').trim();
        if l.starts_with('[') {
            let name = l.trim_start_matches('[').split(']').next().unwrap_or("");
            section = if l.starts_with("[[") {
                format!("{name}[]")
            } else if let Some(sub) = name.strip_prefix("routes.") {
                // A table inside a [[routes]] entry.
                format!("routes[].{sub}")
            } else if name.starts_with("origins.") {
                // The example of a named origin stands for every [origins.NAME].
                "origins.<name>".to_string()
            } else {
                name.to_string()
            };
            continue;
        }
        let Some((key, _)) = l.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if section.is_empty() {
            continue;
        }
        keys.insert(format!("{section}.{key}"));
    }
    keys
}

#[test]
fn config_toml_lists_every_key_with_its_default() {
    let text = repo_config();
    let parsed = Config::from_toml_str(&text, &HashMap::new()).expect("config.toml is valid");
    assert_eq!(
        parsed,
        Config::default(),
        "config.toml values are the defaults"
    );

    let known: BTreeSet<String> = Config::known_keys()
        .into_iter()
        // Tables themselves (server.tls, routes) are not keys.
        .filter(|k| {
            !Config::known_keys().iter().any(|other| {
                other != k
                    && (other.starts_with(&format!("{k}.")) || other.starts_with(&format!("{k}[]")))
            })
        })
        .collect();
    let documented = documented_keys(&text);
    let missing: Vec<_> = known.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "keys the code reads but config.toml does not list: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "keys config.toml lists but the code does not read: {stale:?}"
    );
}

#[test]
fn check_prints_every_problem_with_its_key_path_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[origin]
timeout = "forever"
[store]
backend = "redis"
url = "http://not-redis"
[[routes]]
path = "/a"
[[routes]]
path = "/b"
[[routes]]
path = "/c"
ttl = "10 parsecs"
[cache]
no_such_key = 1
"#,
    )
    .unwrap();
    let (code, err) = check_config(&path, &[]);
    assert_ne!(code, Some(0), "{err}");
    for key in ["origin.timeout", "routes[2].ttl", "cache.no_such_key"] {
        assert!(err.contains(key), "{key} not named in: {err}");
    }

    std::fs::write(&path, "").unwrap();
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn check_applies_environment_overrides_like_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "").unwrap();
    let (code, err) = check_config(&path, &[("GATEHOUSE_ORIGIN_TIMEOUT", "soon")]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("origin.timeout"), "{err}");
}

#[test]
fn run_with_bad_config_exits_2_before_binding_any_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"ftp://x\"\n"),
    )
    .unwrap();
    assert!(run_refused(&path, &[], port).contains("origin.url"));
}

#[test]
fn version_is_printed() {
    let out = gatehouse_bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gatehouse "));
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a TOML example") + 8;
    let end = start + readme[start..].find("```").unwrap();
    if let Err(errs) = Config::from_toml_str(&readme[start..end], &HashMap::new()) {
        panic!("README's config example is invalid: {errs:?}");
    }
}

/// A PEM block whose body is not a key ("not a key").
const BAD_PEM_KEY: &str = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";

#[test]
fn an_empty_environment_override_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "ok.toml", "");
    let (code, err) = check_config(&path, &[("GATEHOUSE_API_TOKEN", "")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("GATEHOUSE_API_TOKEN: is set but empty; unset it or give it a value"),
        "{err}"
    );
    let (code, err) = check_config(&path, &[("GATEHOUSE_CACHE_MAX_BYTES", "")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("GATEHOUSE_CACHE_MAX_BYTES"), "{err}");
    // REDIS_URL is not an override but a fallback: empty, it is unset.
    let (code, err) = check_config(&path, &[("REDIS_URL", "")]);
    assert_eq!(code, Some(0), "{err}");

    let port = free_port();
    let path = write_file(
        dir.path(),
        "run.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let err = run_refused(&path, &[("GATEHOUSE_API_TOKEN", "")], port);
    assert!(err.contains("GATEHOUSE_API_TOKEN"), "{err}");
}

/// A config naming files of every kind `run` loads, each one broken.
fn broken_files(dir: &std::path::Path, listen: u16) -> std::path::PathBuf {
    let not_pem = "this is not PEM\n";
    let tls_cert = write_file(dir, "tls.crt", not_pem);
    let tls_key = write_file(dir, "tls.key", not_pem);
    let public_key = write_file(dir, "jwt.pub.pem", BAD_PEM_KEY);
    let jwks = write_file(dir, "jwks.json", "{\"keys\": [");
    let store_ca = write_file(dir, "redis-ca.crt", not_pem);
    let jwks_ca = write_file(dir, "jwks-ca.crt", not_pem);
    let origin_ca = write_file(dir, "origin-ca.crt", not_pem);
    let origin_cert = write_file(dir, "origin-client.crt", not_pem);
    let origin_key = write_file(dir, "origin-client.key", not_pem);
    write_file(
        dir,
        "files.toml",
        &format!(
            r#"[server]
listen = "127.0.0.1:{listen}"
api_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[server.tls]
cert = "{}"
key = "{}"
[store]
tls_ca_file = "{}"
[auth]
algorithms = ["RS256"]
public_key_files = ["{}"]
jwks_file = "{}"
jwks_ca_file = "{}"
[origin]
url = "https://127.0.0.1:8443"
ca_file = "{}"
client_cert_file = "{}"
client_key_file = "{}"
"#,
            tls_cert.display(),
            tls_key.display(),
            store_ca.display(),
            public_key.display(),
            jwks.display(),
            jwks_ca.display(),
            origin_ca.display(),
            origin_cert.display(),
            origin_key.display(),
        ),
    )
}

const EVERY_FILE_KEY: &[&str] = &[
    "server.tls.cert",
    "server.tls.key",
    "store.tls_ca_file",
    "auth.public_key_files[0]",
    "auth.jwks_file",
    "auth.jwks_ca_file",
    "origin.ca_file",
    "origin.client_cert_file",
    "origin.client_key_file",
];

#[test]
fn check_loads_every_file_run_would_and_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = broken_files(dir.path(), 0);
    let (code, err) = check_config(&path, &[("GATEHOUSE_ORIGIN_TIMEOUT", "soon")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("(10 problems)"), "{err}");
    for key in EVERY_FILE_KEY.iter().chain(&["origin.timeout"]) {
        assert!(
            err.contains(&format!("  {key}: ")),
            "{key} not named in: {err}"
        );
    }
}

#[test]
fn run_fails_on_files_it_cannot_load_before_binding_any_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = broken_files(dir.path(), port);
    let err = run_refused(&path, &[], port);
    for key in EVERY_FILE_KEY {
        assert!(
            err.contains(&format!("  {key}: ")),
            "{key} not named in: {err}"
        );
    }
}

/// The keys of every problem `check` would report for a config text.
fn problems(text: &str, env: &[(&str, &str)]) -> Vec<gatehouse::config::ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml_str(text, &env).unwrap_err()
}

#[test]
fn templates_naming_a_parameter_the_path_lacks_are_refused() {
    let errs = problems(
        r#"
[[routes]]
path = "/t/{id}"
tags = ["t:{idd}", "t:{id}"]
invalidate_on = ["POST /t/save", "POST /t/{id}/save"]
[routes.lock]
ns = "t"
id = "{ident}"
"#,
        &[],
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].tags[0]",
            "routes[0].invalidate_on[0]",
            "routes[0].lock.id"
        ],
        "{errs:?}"
    );
    assert!(errs[0].message.contains("{idd}"), "{}", errs[0].message);
    assert!(errs[1].message.contains("{id}"), "{}", errs[1].message);
    assert!(errs[2].message.contains("{ident}"), "{}", errs[2].message);
}

#[test]
fn parse_errors_and_cross_key_problems_come_in_one_report() {
    // One value that does not parse and one cross-key problem elsewhere: both at once
    // (the cross-key checks used to wait until every value parsed).
    let errs = problems(
        "[origin]\ntimeout = \"soon\"\n[cache]\nmax_bytes = \"1MiB\"\nmax_object = \"2MiB\"\n[[routes]]\npath = \"/a/{id}\"\ntags = [\"a:{x}\"]\n",
        &[],
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for key in ["origin.timeout", "cache.max_object", "routes[0].tags[0]"] {
        assert!(keys.contains(&key), "{key} missing from {errs:?}");
    }
    // A key that failed to parse is not judged again from its default.
    let errs = problems("[cache]\nmax_bytes = \"lots\"\n", &[]);
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let errs = problems("", &[("GATEHOUSE_CACHE_MAX_BYTES", "lots")]);
    assert_eq!(errs[0].key, "cache.max_bytes");
    assert!(
        errs[0].message.contains("set by GATEHOUSE_CACHE_MAX_BYTES"),
        "{}",
        errs[0].message
    );
    let errs = problems(
        "[server.tls]\nkey = \"/nonexistent.key\"\n",
        &[("GATEHOUSE_SERVER_TLS_CERT", "/nonexistent.pem")],
    );
    assert!(
        errs.iter()
            .any(|e| e.message.contains("set by GATEHOUSE_SERVER_TLS_CERT")),
        "{errs:?}"
    );
}

#[test]
fn an_unknown_log_level_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // "infoo" would otherwise be read as a target name: every line filtered out.
    let path = write_file(dir.path(), "typo.toml", "[log]\nlevel = \"infoo\"\n");
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("  log.level: unknown level \"infoo\""),
        "{err}"
    );

    let path = write_file(
        dir.path(),
        "ok.toml",
        "[log]\nlevel = \"info,gatehouse=debug\"\n",
    );
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(0), "{err}");
    // GATEHOUSE_LOG overrides log.level: held to the same rule, named as itself.
    let (code, err) = check_config(&path, &[("GATEHOUSE_LOG", "verbose")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("  GATEHOUSE_LOG: unknown level \"verbose\""),
        "{err}"
    );
}

#[test]
fn durations_take_decimals_and_go_units_in_every_key() {
    let text = r#"
[server]
shutdown_grace = "1.5s"
idle_timeout = "1m30s"
[origin]
timeout = "0.5m"
connect_timeout = "1500ms"
[cache]
coherence_grace = "250000us"
[[routes]]
path = "/a"
ttl = "1.5h"
"#;
    let cfg = Config::from_toml_str(text, &HashMap::new()).expect("valid");
    use std::time::Duration;
    assert_eq!(cfg.server.shutdown_grace, Duration::from_millis(1500));
    assert_eq!(cfg.server.idle_timeout, Duration::from_secs(90));
    assert_eq!(cfg.origin.timeout, Duration::from_secs(30));
    assert_eq!(cfg.origin.connect_timeout, Duration::from_millis(1500));
    assert_eq!(cfg.cache.coherence_grace, Duration::from_millis(250));
    assert_eq!(cfg.routes[0].ttl, Some(Duration::from_secs(5400)));

    let errs = Config::from_toml_str(
        "[origin]\ntimeout = \"1.5 s\"\n[[routes]]\npath = \"/a\"\nttl = \"2 hours\"\n",
        &HashMap::new(),
    )
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["origin.timeout", "routes[0].ttl"], "{errs:?}");
}

#[test]
fn origin_tls_and_protocol_keys_are_validated_naming_each_key() {
    let keys =
        |text: &str| -> Vec<String> { problems(text, &[]).into_iter().map(|e| e.key).collect() };
    let k =
        keys("[origin]\nurl = \"http://127.0.0.1:1\"\nprotocol = \"h2\"\nsni = \"a.example\"\n");
    assert!(k.contains(&"origin.protocol".to_string()), "{k:?}");
    assert!(k.contains(&"origin.sni".to_string()), "{k:?}");
    let k = keys("[origin]\nurl = \"https://127.0.0.1:1\"\nprotocol = \"h2c\"\n");
    assert_eq!(k, ["origin.protocol"]);
    let k = keys("[origin]\nprotocol = \"h3\"\n");
    assert_eq!(k, ["origin.protocol"]);
    let k = keys(&format!(
        "[origin]\nurl = \"https://127.0.0.1:1\"\nclient_cert_file = {:?}\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")
    ));
    assert_eq!(k, ["origin.client_key_file"]);
    let k = keys("[[routes]]\npath = \"/a\"\ntimeout = \"0s\"\n");
    assert_eq!(k, ["routes[0].timeout"]);
    assert!(Config::from_toml_str(
        "[origin]\nurl = \"https://app.internal:8443\"\nprotocol = \"auto\"\n",
        &HashMap::new()
    )
    .is_ok());
}

#[test]
fn named_origins_default_to_the_constants_and_are_validated_naming_each_key() {
    use gatehouse::config::{OriginProtocol, DEFAULT_ORIGIN_POOL_MAX_IDLE, DEFAULT_ORIGIN_TIMEOUT};
    let text = "[origin]\nurl = \"http://127.0.0.1:1\"\ntimeout = \"5s\"\npool_max_idle = 4\nprotocol = \"h2c\"\n[origins.auth]\nurl = \"http://127.0.0.1:2\"\n[origins.billing_v2]\nurl = \"https://billing.internal:8443\"\nprotocol = \"h2\"\ntimeout = \"2s\"\n[[routes]]\npath = \"/a\"\norigin = \"auth\"\n[[routes]]\npath = \"/b\"\norigin = \"default\"\n";
    let c = Config::from_toml_str(text, &HashMap::new()).unwrap();
    let auth = &c.origins["auth"];
    // What a named origin leaves out is the default, not [origin]'s value.
    assert_eq!(auth.timeout, DEFAULT_ORIGIN_TIMEOUT);
    assert_eq!(auth.pool_max_idle, DEFAULT_ORIGIN_POOL_MAX_IDLE);
    assert_eq!(auth.protocol, OriginProtocol::Http1);
    assert_eq!(c.origins["billing_v2"].protocol, OriginProtocol::H2);
    assert_eq!(c.routes[0].origin.as_deref(), Some("auth"));

    let keys = |text: &str| -> Vec<String> {
        let mut k: Vec<String> = problems(text, &[]).into_iter().map(|e| e.key).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys("[origins.auth]\ntimeout = \"1s\"\n"),
        ["origins.auth.url"]
    );
    assert_eq!(
        keys("[origins.auth]\nurl = \"http://a:1\"\nprotocol = \"h2\"\ntimeout = \"0s\"\nbogus = 1\n"),
        ["origins.auth.bogus", "origins.auth.protocol", "origins.auth.timeout"]
    );
    assert_eq!(
        keys("[origins.default]\nurl = \"http://a:1\"\n"),
        ["origins.default"]
    );
    assert_eq!(
        keys("[origins.Auth]\nurl = \"http://a:1\"\n"),
        ["origins.Auth"]
    );
    assert_eq!(
        keys("[origins.a-b]\nurl = \"http://a:1\"\n"),
        ["origins.a-b"]
    );
    assert_eq!(keys("origins = { auth = 1 }\n"), ["origins.auth"]);
    assert_eq!(
        keys("[origins.auth]\nurl = \"ftp://a\"\n"),
        ["origins.auth.url"]
    );
    assert_eq!(
        keys("[origins.auth]\nurl = \"http://a:1\"\nsni = \"a.example\"\nclient_key_file = \"/nonexistent\"\n"),
        [
            "origins.auth.client_cert_file",
            "origins.auth.client_key_file",
            "origins.auth.sni"
        ]
    );
}

#[test]
fn named_origins_take_environment_overrides_by_name() {
    let text = "[origins.auth]\nurl = \"http://127.0.0.1:2\"\n[origins.auth_connect]\nurl = \"http://127.0.0.1:3\"\n";
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let c = Config::from_toml_str(
        text,
        &env(&[
            ("GATEHOUSE_ORIGINS_AUTH_URL", "http://10.0.0.9:4000"),
            ("GATEHOUSE_ORIGINS_AUTH_POOL_MAX_IDLE", "8"),
        ]),
    )
    .unwrap();
    assert_eq!(c.origins["auth"].url, "http://10.0.0.9:4000");
    assert_eq!(c.origins["auth"].pool_max_idle, 8);
    // A bad value names its variable.
    let errs = problems(text, &[("GATEHOUSE_ORIGINS_AUTH_TIMEOUT", "soon")]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "origins.auth.timeout");
    assert!(
        errs[0].message.contains("GATEHOUSE_ORIGINS_AUTH_TIMEOUT"),
        "{errs:?}"
    );
    // An origin the file does not declare cannot be made from the environment.
    let errs = problems(text, &[("GATEHOUSE_ORIGINS_BILLING_URL", "http://b:1")]);
    assert_eq!(errs[0].key, "GATEHOUSE_ORIGINS_BILLING_URL", "{errs:?}");
    // auth.connect_timeout or auth_connect.timeout: refused, not guessed.
    let errs = problems(text, &[("GATEHOUSE_ORIGINS_AUTH_CONNECT_TIMEOUT", "1s")]);
    assert_eq!(
        errs[0].key, "GATEHOUSE_ORIGINS_AUTH_CONNECT_TIMEOUT",
        "{errs:?}"
    );
    assert!(errs[0].message.contains("ambiguous"), "{errs:?}");
}

#[test]
fn a_route_naming_an_unknown_origin_is_refused_by_check_and_run_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let path = write_file(
        dir.path(),
        "routes.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[origins.auth]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"/b\"\norigin = \"auth\"\n[[routes]]\npath = \"/c\"\norigin = \"default\"\n[[routes]]\npath = \"/d\"\norigin = \"billing\"\n"
        ),
    );
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("routes[3].origin"), "{err}");
    assert!(err.contains("billing"), "{err}");
    assert!(
        !err.contains("routes[1]") && !err.contains("routes[2]"),
        "{err}"
    );
    let err = run_refused(&path, &[], port);
    assert!(err.contains("routes[3].origin"), "{err}");
}

#[test]
fn check_loads_a_named_origins_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_file(dir.path(), "ca.pem", "not a certificate\n");
    let path = write_file(
        dir.path(),
        "tls.toml",
        &format!(
            "[origins.auth]\nurl = \"https://auth.internal:8443\"\nca_file = {:?}\n",
            ca.display().to_string()
        ),
    );
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("origins.auth.ca_file"), "{err}");
}
