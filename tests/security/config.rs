//! Config that would silently weaken the edge is refused at start, by `check` and
//! `run` alike: an empty override that unsets a secret, a guessable api token, an
//! api listener published without one, a route that an earlier one hides (its auth
//! never applies), and key files that would only fail once ports are bound.

use std::collections::HashMap;

use gatehouse::app::load::load_checked;
use gatehouse::Config;

use super::support::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The keys of the problems a config text has (none: it is accepted).
fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match Config::from_toml_str(text, &env(vars)) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

const TOKEN_32: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn an_empty_api_token_in_the_environment_does_not_switch_api_auth_off() {
    let p = problems("", &[("GATEHOUSE_API_TOKEN", "")]);
    assert_eq!(
        p,
        ["GATEHOUSE_API_TOKEN: is set but empty; unset it or give it a value"]
    );
    // `run` stops before the api listener exists.
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let path = write_file(
        dir.path(),
        "api.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:{api}\"\n"
        ),
    );
    let err = run_refused(&path, &[("GATEHOUSE_API_TOKEN", "")], api);
    assert!(
        err.contains("GATEHOUSE_API_TOKEN: is set but empty"),
        "{err}"
    );
}

#[test]
fn a_short_api_token_is_refused() {
    for token in ["x", "changeme", &TOKEN_32[1..]] {
        let text = format!("[api]\ntoken = \"{token}\"\n");
        let p = problems(&text, &[]);
        assert_eq!(p.len(), 1, "{token:?}: {p:?}");
        assert!(
            p[0].starts_with("api.token: must be at least 32 bytes"),
            "{p:?}"
        );
        let p = problems("", &[("GATEHOUSE_API_TOKEN", token)]);
        assert!(p[0].starts_with("api.token: "), "{p:?}");
    }
    assert!(problems(&format!("[api]\ntoken = \"{TOKEN_32}\"\n"), &[]).is_empty());
}

#[test]
fn an_api_listener_beyond_loopback_needs_a_token() {
    for addr in ["0.0.0.0:7070", "[::]:7070", "10.1.2.3:7070"] {
        let text = format!("[server]\napi_listen = \"{addr}\"\n");
        let p = problems(&text, &[]);
        assert_eq!(
            p,
            [format!(
                "server.api_listen: {addr} binds beyond loopback without api.token; set api.token (32+ bytes) or bind 127.0.0.1"
            )],
        );
        // With a token (from the file or, as the chart does, the environment) it is fine.
        assert!(problems(&format!("{text}[api]\ntoken = \"{TOKEN_32}\"\n"), &[]).is_empty());
        assert!(problems(&text, &[("GATEHOUSE_API_TOKEN", TOKEN_32)]).is_empty());
    }
    for addr in ["127.0.0.1:7070", "127.0.0.2:7070", "[::1]:7070"] {
        let text = format!("[server]\napi_listen = \"{addr}\"\n");
        assert!(problems(&text, &[]).is_empty(), "{addr}");
    }
}

#[test]
fn a_route_hidden_by_an_earlier_one_is_refused() {
    // The attack: `auth = "required"` on /api/admin never applies, because the open
    // /api route matches every request for it first.
    let text = r#"
[auth]
hs_secret = "an-hs256-secret-of-at-least-32-bytes!"
[[routes]]
path = "/api"
ttl = "1m"
[[routes]]
path = "/api/admin/{id}"
auth = "required"
cache = false
"#;
    assert_eq!(
        problems(text, &[]),
        ["routes[1].path: never matches: routes[0] (\"/api\") comes first and matches every method and path this route would"]
    );
    // A duplicate, and a template behind a {*rest} covering it.
    let text = r#"
[[routes]]
path = "/a/{id}"
[[routes]]
path = "/files/{*rest}"
[[routes]]
path = "/a/{n}"
methods = ["GET"]
[[routes]]
path = "/files/{dir}/{name}"
"#;
    let p = problems(text, &[]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("routes[2].path: never matches: routes[0] (\"/a/{id}\")"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("routes[3].path: never matches: routes[1] (\"/files/{*rest}\")"),
        "{p:?}"
    );
    // Not hidden: more methods, a narrower earlier route, or a prefix a template
    // cannot cover.
    let text = r#"
[[routes]]
path = "/api/items/{id}"
[[routes]]
path = "/api"
[[routes]]
path = "/b"
[[routes]]
path = "/b/{id}"
methods = ["GET", "PUT"]
[[routes]]
path = "/c/{id}"
[[routes]]
path = "/c"
"#;
    assert_eq!(problems(text, &[]), Vec::<String>::new());
}

#[test]
fn key_files_that_do_not_load_fail_check_naming_each_key_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pem = write_file(
        d,
        "rsa.pub.pem",
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    );
    let jwks = write_file(d, "jwks.json", "{\"keys\": [{\"kty\": \"RSA\", \"n\": 1}");
    let not_pem = write_file(d, "ca.crt", "not PEM at all\n");
    let text = format!(
        "[store]\ntls_ca_file = \"{}\"\n[auth]\nalgorithms = [\"RS256\"]\npublic_key_files = [\"{}\"]\njwks_file = \"{}\"\n",
        not_pem.display(),
        pem.display(),
        jwks.display()
    );
    // Validation alone accepts it: the files exist.
    assert!(problems(&text, &[]).is_empty());
    let path = write_file(d, "keys.toml", &text);
    let errs = load_checked(Some(&path), &env(&[("GATEHOUSE_API_TOKEN", "")])).unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "GATEHOUSE_API_TOKEN",
            "auth.public_key_files[0]",
            "auth.jwks_file",
            "store.tls_ca_file"
        ],
        "{errs:?}"
    );
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("(3 problems)"), "{err}");
    for key in [
        "auth.public_key_files[0]",
        "auth.jwks_file",
        "store.tls_ca_file",
    ] {
        assert!(
            err.contains(&format!("  {key}: ")),
            "{key} not named in: {err}"
        );
    }
    // A well-formed key of the right kind passes.
    let (_, public) = genkey(
        d,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let text = format!(
        "[auth]\nalgorithms = [\"RS256\"]\npublic_key_files = [\"{}\"]\n",
        public.display()
    );
    let path = write_file(d, "good.toml", &text);
    let (code, err) = check_config(&path, &[]);
    assert_eq!(code, Some(0), "{err}");
}
