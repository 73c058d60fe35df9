//! One authority per request: the cache key and the forwarded `Host` are the same
//! value, whatever the absolute-form target, `Host` fields or h2 `:authority` say.

use super::support::*;
use super::*;

fn cached(store: &TestStore, name: &str, extra: &str) -> String {
    format!(
        "{}\n{extra}\n[[routes]]\npath = \"/\"\nttl = \"10m\"\n",
        store.toml(&prefix(name))
    )
}

/// An origin that builds its page from the Host it was asked for (password-reset
/// links, canonical URLs, tenant pages all do).
async fn host_echo() -> TestOrigin {
    TestOrigin::start(|s| {
        let host = s.header("host").unwrap_or_default().to_string();
        Reply::ok(format!("built for {host}"))
    })
    .await
}

both_stores!(
    an_absolute_form_target_cannot_poison_another_host,
    |store: TestStore| async move {
        let origin = host_echo().await;
        let gh = Gatehouse::start(&cached(&store, "sec-absolute", ""), &origin).await;
        // The attacker names the victim in the target and itself in Host.
        let r = get_raw(
            gh.proxy,
            "http://victim.example/home",
            "Host: evil.example\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"built for victim.example", "the target wins");
        assert_eq!(origin.last().unwrap().headers["host"], "victim.example");
        assert_eq!(
            origin.last().unwrap().headers["x-forwarded-host"],
            "victim.example"
        );
        // The victim's next visitor gets the victim's page, from the cache.
        let r = get_raw(gh.proxy, "/home", "Host: Victim.Example\r\n")
            .await
            .unwrap();
        assert_eq!(r.body, b"built for victim.example");
        assert!(r.header("cache-status").unwrap().contains("hit"));
        // And evil.example's own page is its own entry.
        let r = get_raw(gh.proxy, "/home", "Host: evil.example\r\n")
            .await
            .unwrap();
        assert_eq!(r.body, b"built for evil.example");
        assert_eq!(origin.total(), 2);
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn duplicate_missing_or_malformed_hosts_are_400() {
    let origin = host_echo().await;
    let gh = Gatehouse::start(&cached(&TestStore::memory(), "sec-hosts", ""), &origin).await;
    for (head, code) in [
        ("Host: a.example\r\nHost: b.example\r\n", "DUPLICATE_HEADER"),
        ("", "HOST_MISSING"),
        ("Host: user@a.example\r\n", "INVALID_HOST"),
        ("Host: a.example/x\r\n", "INVALID_HOST"),
        ("Host: a.example:99999\r\n", "INVALID_HOST"),
    ] {
        let r = get_raw(gh.proxy, "/x", head).await.unwrap();
        assert_eq!(r.status, 400, "{head:?}");
        assert_eq!(r.json()["error"], code, "{head:?}");
    }
    // HTTP/1.0 without Host is allowed (it had none).
    let r = raw(gh.proxy, b"GET /x HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(origin.total(), 1);
    // Spellings of one authority are one cache entry.
    for h in ["app.example", "APP.example:80", "app.example."] {
        let r = get_raw(gh.proxy, "/same", &format!("Host: {h}\r\n"))
            .await
            .unwrap();
        assert_eq!(r.body, b"built for app.example", "{h}");
    }
    assert_eq!(origin.hits("/same"), 1);
    gh.shutdown().await;
}

both_stores!(
    unknown_authorities_are_refused_and_never_cached,
    |store: TestStore| async move {
        let origin = host_echo().await;
        let gh = Gatehouse::start(
            &cached(
                &store,
                "sec-allow",
                "[server]\nhosts = [\"app.example\", \"*.tenant.example\"]",
            ),
            &origin,
        )
        .await;
        for h in ["evil.example", "tenant.example", "app.example.evil"] {
            let r = get_raw(gh.proxy, "/home", &format!("Host: {h}\r\n"))
                .await
                .unwrap();
            assert_eq!(r.status, 421, "{h}");
            assert_eq!(r.json()["error"], "HOST_NOT_ALLOWED");
        }
        let r = get_raw(
            gh.proxy,
            "http://evil.example/home",
            "Host: app.example\r\n",
        )
        .await
        .unwrap();
        assert_eq!(
            r.status, 421,
            "the absolute-form authority is the one judged"
        );
        assert_eq!(origin.total(), 0);
        for h in ["app.example", "a.tenant.example:8080"] {
            let r = get_raw(gh.proxy, "/home", &format!("Host: {h}\r\n"))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{h}");
        }
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn a_route_can_be_limited_to_hosts() {
    let origin = host_echo().await;
    let text = format!(
        "{}\n{}\n[[routes]]\npath = \"/\"\nhosts = [\"admin.example\"]\nauth = \"required\"\n\n[[routes]]\npath = \"/\"\n",
        TestStore::memory().toml(&prefix("sec-route-hosts")),
        auth_toml("")
    );
    let gh = Gatehouse::start(&text, &origin).await;
    let r = get_raw(gh.proxy, "/x", "Host: admin.example\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // The absolute-form authority decides the route too.
    let r = get_raw(gh.proxy, "http://admin.example/x", "Host: app.example\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = get_raw(gh.proxy, "/x", "Host: app.example\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(origin.total(), 1);
    gh.shutdown().await;
}

#[tokio::test]
async fn h2_authority_and_host_must_agree() {
    let origin = host_echo().await;
    let gh = Gatehouse::start(&cached(&TestStore::memory(), "sec-h2", ""), &origin).await;
    let tcp = tokio::net::TcpStream::connect(gh.proxy).await.unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut h2 = h2.ready().await.unwrap();
    let send = |h2: &mut h2::client::SendRequest<bytes::Bytes>, host: Option<&str>| {
        let mut req = http::Request::get("http://victim.example/page");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let (resp, _) = h2.send_request(req.body(()).unwrap(), true).unwrap();
        resp
    };
    let resp = send(&mut h2, Some("evil.example")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(origin.total(), 0);
    let mut h2 = h2.ready().await.unwrap();
    let resp = send(&mut h2, Some("VICTIM.example")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut h2 = h2.ready().await.unwrap();
    let resp = send(&mut h2, None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.total(), 1, "the second answer came from the cache");
    assert_eq!(origin.last().unwrap().headers["host"], "victim.example");
    gh.shutdown().await;
}
