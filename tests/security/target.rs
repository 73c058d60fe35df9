//! One canonical request target: every spelling of a path meets the same route, auth
//! mode, gate and cache key, and the origin receives exactly what was matched.

use std::sync::Arc;

use serde_json::json;

use super::support::*;
use super::*;

/// GET `target` on the proxy listener, `Host: app.example`.
async fn get_app(gh: &Gatehouse, target: &str) -> Raw {
    get_raw(gh.proxy, target, "Host: app.example\r\n")
        .await
        .unwrap()
}

/// Each target sent is answered 200 and reaches the origin as the path beside it.
async fn assert_forwarded_as(gh: &Gatehouse, origin: &TestOrigin, cases: &[(&str, &str)]) {
    for (sent, seen) in cases {
        let r = get_app(gh, sent).await;
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(origin.last().unwrap().path, *seen, "{sent}");
    }
}

/// An app in front of an origin that decodes paths as Express and NestJS do: the
/// auth-only `/api/me`, a shared report cached only for verified callers, a
/// capacity-gated check-in, and a catch-all cached route that anyone may read.
fn app(store: &TestStore, name: &str) -> String {
    format!(
        r#"{store}
{auth}
[[routes]]
path = "/api/me"
auth = "required"
key_by = "sub"
ttl = "10m"

[[routes]]
path = "/api/report"
auth = "required"

[[routes]]
path = "/account"
auth = "required"

{capacity}
[[routes]]
path = "/"
ttl = "10m"
"#,
        store = store.toml(&prefix(name)),
        auth = auth_toml("token_cookie = \"session\""),
        capacity = capacity_route("/api/sessions/{id}/check-in", "sessions"),
    )
}

/// Spellings of `/api/me` an origin that decodes and normalises reads as `/api/me`.
const ME_SPELLINGS: &[&str] = &[
    "/api/m%65",
    "/api/%6De",
    "/api/M%65/../me",
    "/api/./me",
    "/api/x/../me",
    "/api/x/%2e%2e/me",
    "/api/x/.%2E/me",
    "/x/../../api/me",
    "/%61pi/me",
];

both_stores!(
    encoded_paths_cannot_walk_past_auth,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| Reply::ok(format!("page for {}", s.path))).await;
        let gh = Gatehouse::start(&app(&store, "sec-auth"), &origin).await;
        for spelling in ME_SPELLINGS {
            let r = get_app(&gh, spelling).await;
            assert_eq!(r.status, 401, "{spelling} reached /api/me without a token");
            assert_eq!(r.json()["error"], "TOKEN_MISSING", "{spelling}");
        }
        assert_eq!(
            origin.total(),
            0,
            "no spelling of /api/me reached the origin"
        );
        // With a token, every spelling is the same request: one key, one origin fetch,
        // and the origin sees the canonical path.
        let t = token(Some("alice"));
        for spelling in ME_SPELLINGS {
            let r = get_raw(
                gh.proxy,
                spelling,
                &format!("Host: app.example\r\nAuthorization: Bearer {t}\r\n"),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200, "{spelling}");
            assert_eq!(r.body, b"page for /api/me", "{spelling}");
        }
        assert_eq!(origin.hits("/api/me"), 1);
        assert_eq!(origin.total(), 1);
        gh.shutdown().await;
    }
);

both_stores!(
    an_auth_route_cached_entry_is_not_read_through_another_spelling,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| {
            Reply::ok("quarterly figures").header("cache-control", "public, max-age=600")
        })
        .await;
        let gh = Gatehouse::start(&app(&store, "sec-report"), &origin).await;
        let t = token(Some("alice"));
        let r = gh.get_bearer("/api/report", &t).await;
        assert_eq!(r.status(), 200);
        // Stored: the response said public.
        let r = gh.get_bearer("/api/report", &t).await;
        assert!(r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit"));
        for spelling in ["/api/rep%6Frt", "/api/./report", "/api/x/../report"] {
            let r = get_raw(gh.proxy, spelling, "Host: 127.0.0.1\r\n")
                .await
                .unwrap();
            assert_eq!(
                r.status, 401,
                "{spelling} read the cached report anonymously"
            );
            assert!(!String::from_utf8_lossy(&r.body).contains("quarterly"));
        }
        assert_eq!(origin.total(), 1);
        gh.shutdown().await;
    }
);

both_stores!(
    a_cookie_identified_page_is_never_stored_as_shared,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            let who = s.header("x-user-id").unwrap_or("nobody").to_string();
            Reply::ok(format!("account of {who}"))
        })
        .await;
        let gh = Gatehouse::start(&app(&store, "sec-cookie"), &origin).await;
        let cookie = format!("Cookie: session={}\r\n", token(Some("alice")));
        // The catch-all route caches for 10 minutes; a spelling of /account must not
        // land there with alice's page.
        let r = get_raw(
            gh.proxy,
            "/acc%6Funt",
            &format!("Host: app.example\r\n{cookie}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"account of alice");
        for spelling in ["/account", "/acc%6Funt", "/x/../account"] {
            let r = get_app(&gh, spelling).await;
            assert_eq!(r.status, 401, "{spelling}");
            assert!(!String::from_utf8_lossy(&r.body).contains("alice"));
        }
        gh.shutdown().await;
    }
);

both_stores!(
    encoded_paths_cannot_walk_past_a_full_capacity_gate,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| Reply::status(201, "{}")).await;
        let gh = Arc::new(Gatehouse::start(&app(&store, "sec-gate"), &origin).await);
        let r = gh
            .client
            .put(gh.api_url("/v1/capacity/sessions/s1"))
            .json(&json!({"capacity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let post = |target: &str, member: &str| {
            format!(
                "POST {target} HTTP/1.1\r\nHost: app.example\r\nx-participant-id: {member}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        };
        let r = raw(
            gh.proxy,
            post("/api/sessions/s1/check-in", "p-1").as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201);
        for (i, spelling) in [
            "/api/sessions/s1/check-%69n",
            "/api/sessions/s1/./check-in",
            "/api/sessions/x/../s1/check-in",
            "/api/sessions/%73%31/check-in",
        ]
        .iter()
        .enumerate()
        {
            let r = raw(gh.proxy, post(spelling, &format!("p-{}", i + 2)).as_bytes())
                .await
                .unwrap();
            assert_eq!(r.status, 409, "{spelling} walked past the full gate");
            assert_eq!(r.json()["error"], "CAPACITY_FULL");
        }
        assert_eq!(
            origin.total(),
            1,
            "only the admitted check-in was forwarded"
        );
        let c: Value = get_json(&gh.client, &gh.api_url("/v1/capacity/sessions/s1")).await;
        assert_eq!(c["count"], 1);
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
);

#[tokio::test]
async fn the_origin_receives_exactly_the_canonical_target() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&app(&TestStore::memory(), "sec-exact"), &origin).await;
    assert_forwarded_as(
        &gh,
        &origin,
        &[
            ("/a/%7Euser/%41", "/a/~user/A"),
            ("/a/b/../c/./d", "/a/c/d"),
            ("/p?q=%41%2f&r=+", "/p?q=A%2F&r=+"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a%3bb", "/a%3Bb"),
            ("/p?", "/p"),
            ("http://app.example/abs?x=1", "/abs?x=1"),
        ],
    )
    .await;
    gh.shutdown().await;
}

both_stores!(
    ambiguous_spellings_are_400_json_and_never_forwarded,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| Reply::ok("x")).await;
        let gh = Gatehouse::start(&app(&store, "sec-ambiguous"), &origin).await;
        for (target, reason) in [
            ("/api%2Fme", "encoded-slash"),
            ("/api%2fme", "encoded-slash"),
            ("/api\\me", "backslash"),
            ("/api%5Cme", "backslash"),
            ("/api/me%00", "nul"),
            ("//api/me", "duplicate-slash"),
            ("/api//me", "duplicate-slash"),
            ("/api/me%zz", "invalid-encoding"),
            ("/100%", "invalid-encoding"),
            ("/%c3", "invalid-utf8"),
            ("/\u{e9}%", "invalid-encoding"),
            ("/%\u{e9}", "invalid-encoding"),
            ("/x?q=%g1", "invalid-encoding"),
            ("*", "not-origin-form"),
        ] {
            // `*` with any method but OPTIONS names nothing at all.
            let req =
                format!("GET {target} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n");
            let r = raw(gh.proxy, req.as_bytes())
                .await
                .unwrap_or_else(|| panic!("{target}: the connection closed without an answer"));
            assert_eq!(r.status, 400, "{target}");
            assert_eq!(r.json()["error"], "INVALID_PATH", "{target}");
            assert_eq!(r.json()["reason"], reason, "{target}");
        }
        // CONNECT (authority-form) names no resource of the origin's, and a reverse
        // proxy opens no tunnels: 405 (docs/api.md, "Protocols"). `OPTIONS *` asks
        // about gatehouse itself: answered here, never forwarded (RFC 9110 §9.3.7).
        // Both name the methods the proxy takes.
        let connect =
            &b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n"[..];
        let options = &b"OPTIONS * HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"[..];
        for (req, status) in [(connect, 405), (options, 200)] {
            let r = raw(gh.proxy, req).await.expect("answered");
            assert_eq!(r.status, status);
            let allow = r.header("allow");
            assert_eq!(allow, Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
            if status == 405 {
                assert_eq!(r.json()["error"], "METHOD_NOT_ALLOWED");
            } else {
                assert_eq!(r.header("content-length"), Some("0"));
            }
        }
        assert_eq!(origin.total(), 0);
        assert!(
            gh.metric("gatehouse_request_rejections_total{reason=\"encoded-slash\"}")
                .await
                >= 2.0
        );
        // gatehouse is still serving.
        let r = get_app(&gh, "/fine").await;
        assert_eq!(r.status, 200);
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn the_path_policy_is_configurable() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let text = format!(
        "{}\n[server]\nescaped_slash = \"keep\"\nbackslash = \"slash\"\nduplicate_slashes = \"merge\"\ninvalid_encoding = \"escape\"\n[[routes]]\npath = \"/files/{{name}}\"\nttl = \"1m\"\n",
        TestStore::memory().toml(&prefix("sec-policy"))
    );
    let gh = Gatehouse::start(&text, &origin).await;
    assert_forwarded_as(
        &gh,
        &origin,
        &[
            ("/files/a%2fb", "/files/a%2Fb"),
            ("/files\\x", "/files/x"),
            ("//files///y", "/files/y"),
            ("/100%", "/100%25"),
        ],
    )
    .await;
    // An encoded slash kept as data stays inside its segment: one route parameter.
    let r = get_app(&gh, "/files/a%2F..%2Fb").await;
    assert_eq!(r.status, 200);
    assert_eq!(origin.last().unwrap().path, "/files/a%2F..%2Fb");
    gh.shutdown().await;
}

both_stores!(
    purge_takes_the_canonical_spelling_and_refuses_bad_ones_without_panicking,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| Reply::ok("v")).await;
        let gh = Gatehouse::start(&app(&store, "sec-purge"), &origin).await;
        let r = gh.get("/p/1").await;
        assert_eq!(r.status(), 200);
        assert_eq!(origin.hits("/p/1"), 1);
        gh.get("/p/1").await;
        assert_eq!(origin.hits("/p/1"), 1, "cached");
        for bad in ["/\u{e9}%", "/%\u{e9}", "/a%2Fb", "/a%00"] {
            let r = gh
                .api_post("/v1/cache/purge", &json!({ "urls": [bad] }))
                .await;
            assert_eq!(r.status(), 400, "{bad}");
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "BAD_REQUEST");
        }
        // Another spelling of the cached path purges it.
        let r = gh
            .api_post("/v1/cache/purge", &json!({ "urls": ["/p/./%31"] }))
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["purged"], 1);
        gh.get("/p/1").await;
        assert_eq!(origin.hits("/p/1"), 2, "purged through another spelling");
        gh.shutdown().await;
    }
);

both_stores!(
    case_and_trailing_slash_variants_meet_the_route_the_framework_would_use,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| Reply::ok(format!("page for {}", s.path))).await;
        let text = format!(
            "{}\n{}\n[[routes]]\npath = \"/api/participants/{{id}}\"\nauth = \"required\"\n\n[[routes]]\npath = \"/api/me\"\nauth = \"required\"\n\n[[routes]]\npath = \"/\"\nttl = \"10m\"\n",
            store.toml(&prefix("sec-case")),
            auth_toml("")
        );
        let gh = Gatehouse::start(&text, &origin).await;
        // Express, NestJS and Spring route all of these to the protected handlers.
        for spelling in [
            "/API/ME",
            "/Api/Me/",
            "/api/participants/7/",
            "/API/Participants/7",
            "/api/PARTICIPANTS/%37/",
        ] {
            let r = get_app(&gh, spelling).await;
            assert_eq!(r.status, 401, "{spelling} walked past auth");
        }
        assert_eq!(origin.total(), 0);
        gh.shutdown().await;

        // An operator whose origin routes exactly can say so.
        let text = format!(
            "{}\n{}\n[server]\nroute_case = \"sensitive\"\nroute_trailing_slash = \"exact\"\n[[routes]]\npath = \"/api/participants/{{id}}\"\nauth = \"required\"\n",
            store.toml(&prefix("sec-case-exact")),
            auth_toml("")
        );
        let gh = Gatehouse::start(&text, &origin).await;
        for spelling in ["/API/participants/7", "/api/participants/7/"] {
            let r = get_app(&gh, spelling).await;
            assert_eq!(r.status, 200, "{spelling}");
        }
        let r = get_app(&gh, "/api/participants/7").await;
        assert_eq!(r.status, 401);
        gh.shutdown().await;
    }
);
