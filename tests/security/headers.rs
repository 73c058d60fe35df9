//! Headers only gatehouse sets, hop-by-hop lists that cannot be turned against it,
//! the verified credential forwarded alone, and per-user keys that are per user.

use super::support::*;
use super::*;

fn app(store: &TestStore, name: &str) -> String {
    format!(
        r#"{store}
{auth}
[[routes]]
path = "/me"
auth = "required"

{lock}
[[routes]]
path = "/profile"
auth = "optional"
key_by = "sub"
ttl = "10m"
"#,
        store = store.toml(&prefix(name)),
        auth = auth_toml("token_cookie = \"session\"\ntoken_header = \"x-token\""),
        lock = lock_route("/edit/{id}", "docs"),
    )
}

fn header(s: &Seen, name: &str) -> Option<String> {
    s.headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_connection_list_cannot_remove_what_gatehouse_adds() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&app(&TestStore::memory(), "sec-conn"), &origin).await;
    let t = token(Some("alice"));
    let r = get_raw(
        gh.proxy,
        "/me",
        &format!(
            "Host: app.example\r\nAuthorization: Bearer {t}\r\nConnection: host, x-user-id, x-forwarded-for, x-forwarded-host, via, x-client-private\r\nx-client-private: 1\r\n"
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = origin.last().unwrap();
    assert_eq!(header(&seen, "host").as_deref(), Some("app.example"));
    assert_eq!(header(&seen, "x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        header(&seen, "x-forwarded-host").as_deref(),
        Some("app.example")
    );
    assert!(header(&seen, "x-forwarded-for").is_some());
    assert_eq!(header(&seen, "via").as_deref(), Some("1.1 gatehouse"));
    assert!(header(&seen, "authorization").is_some());
    assert!(
        header(&seen, "x-client-private").is_none(),
        "the client's own hop-by-hop field is removed"
    );

    // The lock gate's fence survives a Connection list naming it.
    let r = raw(
        gh.proxy,
        b"POST /edit/7 HTTP/1.1\r\nHost: app.example\r\nConnection: x-gatehouse-fence\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let fence = header(&origin.last().unwrap(), "x-gatehouse-fence").expect("fence forwarded");
    assert!(fence.parse::<u64>().unwrap() >= 1);

    // Naming Authorization drops it before auth looks: the request is anonymous.
    let r = get_raw(
        gh.proxy,
        "/me",
        &format!("Host: app.example\r\nAuthorization: Bearer {t}\r\nConnection: authorization\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    gh.shutdown().await;
}

both_stores!(
    spoofed_gatehouse_and_claims_headers_are_stripped_on_every_route,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| Reply::ok("x")).await;
        let gh = Gatehouse::start(&app(&store, "sec-spoof"), &origin).await;
        let spoofed = "X-Gatehouse-Fence: 999999\r\nx_gatehouse_fence: 999999\r\nX-Gatehouse-Anything: 1\r\nX-User-Id: admin\r\nx_user_id: admin\r\nX_USER_ID: admin\r\n";
        // A route with no gate and no auth, an optional-auth route without a token,
        // and the locked route: none forwards a client's copy.
        for (target, method) in [("/plain", "GET"), ("/profile", "GET"), ("/edit/1", "POST")] {
            let req = format!(
                "{method} {target} HTTP/1.1\r\nHost: app.example\r\n{spoofed}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let r = raw(gh.proxy, req.as_bytes()).await.unwrap();
            assert_eq!(r.status, 200, "{target}");
            let seen = origin.last().unwrap();
            for name in seen.headers.keys() {
                let n = name.as_str().replace('_', "-");
                assert!(
                    !n.starts_with("x-gatehouse-")
                        || (target == "/edit/1" && n == "x-gatehouse-fence"),
                    "{target}: {name} reached the origin"
                );
                assert_ne!(n, "x-user-id", "{target}: a claims header was forged");
            }
            if target == "/edit/1" {
                let fence = header(&seen, "x-gatehouse-fence").unwrap();
                assert_ne!(fence, "999999", "the fence is gatehouse's own");
            }
        }
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn only_the_verified_credential_is_forwarded() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&app(&TestStore::memory(), "sec-cred"), &origin).await;
    let alice = token(Some("alice"));
    // Verified from the cookie: a Basic credential for someone else is not forwarded.
    let r = get_raw(
        gh.proxy,
        "/me",
        &format!("Host: a\r\nCookie: session={alice}\r\nAuthorization: Basic Ym9iOnB3\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = origin.last().unwrap();
    assert!(header(&seen, "authorization").is_none());
    assert_eq!(header(&seen, "x-user-id").as_deref(), Some("alice"));
    // Verified from x-token: a second x-token value is not forwarded.
    let r = get_raw(
        gh.proxy,
        "/me",
        &format!("Host: a\r\nx-token: {alice}\r\nx-token: bobs-token\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let seen = origin.last().unwrap();
    let values: Vec<_> = seen.headers.get_all("x-token").iter().collect();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].to_str().unwrap(), alice);
    // Two Authorization fields: which one would the origin read? Refused.
    let r = get_raw(
        gh.proxy,
        "/plain",
        &format!("Host: a\r\nAuthorization: Bearer {alice}\r\nAuthorization: Bearer other\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "DUPLICATE_HEADER");
    assert_eq!(origin.total(), 2);
    gh.shutdown().await;
}

both_stores!(
    per_user_keys_without_a_user_are_never_shared,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            let who = header(s, "x-user-id").unwrap_or_else(|| {
                if s.headers.contains_key("authorization") {
                    "a token holder".into()
                } else {
                    "anonymous".into()
                }
            });
            Reply::ok(format!("profile of {who}"))
        })
        .await;
        let gh = Gatehouse::start(&app(&store, "sec-keyby"), &origin).await;
        let no_sub = token(None);
        for _ in 0..2 {
            let r = gh.get_bearer("/profile", &no_sub).await;
            assert_eq!(r.status(), 200);
            assert!(r.headers()["cache-status"]
                .to_str()
                .unwrap()
                .contains("detail=no-subject"));
        }
        // An anonymous caller never gets what a sub-less token was answered, and is
        // not cached either.
        for _ in 0..2 {
            let r = gh.get("/profile").await;
            assert_eq!(r.text().await.unwrap(), "profile of anonymous");
        }
        assert_eq!(origin.hits("/profile"), 4, "nothing shared, nothing cached");
        // A real user is keyed and cached per user.
        let alice = token(Some("alice"));
        for _ in 0..2 {
            let r = gh.get_bearer("/profile", &alice).await;
            assert_eq!(r.text().await.unwrap(), "profile of alice");
        }
        assert_eq!(origin.hits("/profile"), 5);
        gh.shutdown().await;
    }
);
