//! Properties of the request-target canonicaliser, over generated targets built from
//! the pieces attackers use (escapes of every class, dot-segments, slashes,
//! backslashes, multi-byte characters, broken escapes): it never panics, a canonical
//! form is its own canonical form, and through real listeners the origin receives
//! exactly the canonical target of whatever was sent, routed by that form.

use gatehouse::config::{Backslash, DuplicateSlashes, EscapedSlash, InvalidEncoding, PathPolicy};
use gatehouse::target::canonical_path_and_query;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::support::*;
use super::*;

const PIECES: &[&str] = &[
    "a", "B", "admin", "me", ".", "..", "/", "/", "/", "%", "%2e", "%2E", "%2f", "%2F", "%5c",
    "\\", "%00", "%41", "%61", "%c3", "%A9", "%c3%a9", "\u{e9}", "\u{65e5}", "%zz", "%4", "~", "-",
    "_", "%7e", "%25", "%20", "+", ";", "=", "&", "?", "@", ":", "!", "'", "(", "*",
];

fn target() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PIECES), 0..14)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn policies() -> Vec<PathPolicy> {
    vec![
        PathPolicy::default(),
        PathPolicy {
            escaped_slash: EscapedSlash::Keep,
            backslash: Backslash::Keep,
            duplicate_slashes: DuplicateSlashes::Keep,
            invalid_encoding: InvalidEncoding::Escape,
        },
        PathPolicy {
            escaped_slash: EscapedSlash::Decode,
            backslash: Backslash::Slash,
            duplicate_slashes: DuplicateSlashes::Merge,
            invalid_encoding: InvalidEncoding::Escape,
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_forms_are_total_idempotent_and_valid(t in target()) {
        for policy in policies() {
            let Ok(c) = canonical_path_and_query(&t, &policy) else { continue };
            prop_assert_eq!(canonical_path_and_query(&c, &policy), Ok(c.clone()), "policy {:?}", policy);
            prop_assert!(c.parse::<http::uri::PathAndQuery>().is_ok(), "{}", c);
            let path = c.split('?').next().unwrap();
            prop_assert!(path.starts_with('/'));
            for seg in path.split('/').skip(1) {
                prop_assert!(seg != "." && seg != "..", "dot-segment left in {}", c);
            }
            let bytes = c.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'%' {
                    let hex = &c[i + 1..i + 3];
                    prop_assert!(hex.bytes().all(|h| h.is_ascii_digit() || h.is_ascii_uppercase()), "{}", c);
                    let v = u8::from_str_radix(hex, 16).unwrap();
                    prop_assert!(!(v.is_ascii_alphanumeric() || b"-._~".contains(&v)), "unreserved left encoded in {}", c);
                }
            }
            if policy == PathPolicy::default() {
                prop_assert!(!path.contains("//") && !path.contains("%2F") && !path.contains("%5C") && !path.contains("%00"), "{}", c);
            }
        }
    }
}

/// Request-line bytes hyper takes as a target (no space, no `#`).
fn sendable(t: &str) -> bool {
    !t.contains([' ', '#'])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reaches_the_origin_is_the_canonical_target_routed_by_it() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let text = format!(
        "{}\n{}\n[[routes]]\npath = \"/admin\"\nauth = \"required\"\n\n[[routes]]\npath = \"/\"\n",
        TestStore::memory().toml(&prefix("sec-props")),
        auth_toml("")
    );
    let gh = Gatehouse::start(&text, &origin).await;
    let strict = PathPolicy::default();
    let mut runner = TestRunner::deterministic();
    let strategy = target();
    let mut forwarded = 0;
    for i in 0..400 {
        let t = strategy.new_tree(&mut runner).unwrap().current();
        // Aim a third of them at the protected route.
        let t = if i % 3 == 0 { format!("/admin{t}") } else { t };
        if !sendable(&t) {
            continue;
        }
        let before = origin.total();
        let r = get_raw(gh.proxy, &t, "Host: app.example\r\n")
            .await
            .unwrap_or_else(|| panic!("{t:?}: no answer"));
        match canonical_path_and_query(&t, &strict) {
            Err(_) => {
                assert_eq!(r.status, 400, "{t:?}");
                assert_eq!(origin.total(), before, "{t:?} reached the origin");
            }
            Ok(c) => {
                let path = c.split('?').next().unwrap();
                if path == "/admin" || path.starts_with("/admin/") {
                    assert_eq!(r.status, 401, "{t:?} (canonical {c}) walked past auth");
                    assert_eq!(origin.total(), before);
                } else {
                    assert_eq!(r.status, 200, "{t:?}");
                    assert_eq!(origin.last().unwrap().path, c, "{t:?}");
                    forwarded += 1;
                }
            }
        }
    }
    assert!(
        forwarded > 50,
        "the generator reached the origin {forwarded} times"
    );
    gh.shutdown().await;
}
