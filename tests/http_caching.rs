//! RFC 9111 behaviour as a shared cache, purges, and L1 coherence across instances.
//! Staleness is produced with the origin's `Age` header (an entry can be born stale)
//! rather than by waiting.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const ROUTES: &str = r#"
[[routes]]
path = "/api/participants/{id}"
ttl = "10m"
tags = ["participant:{id}"]
invalidate_on = ["POST /api/participants/{id}/check-in"]

[[routes]]
path = "/routed"
ttl = "10m"
stale_if_error = "5m"

[cache]
max_variants = 2
"#;

fn cfg(store: &TestStore, name: &str) -> String {
    format!("{}{}", store.toml(&prefix(name)), ROUTES)
}

fn status(r: &reqwest::Response) -> String {
    r.headers()["cache-status"].to_str().unwrap().to_string()
}

async fn get_with(gh: &Gatehouse, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut b = gh.client.get(gh.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.send().await.unwrap()
}

both_stores!(
    freshness_follows_s_maxage_max_age_expires_and_age,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| match s.path.as_str() {
            "/s" => Reply::ok("s").header("cache-control", "max-age=0, s-maxage=60"),
            "/age-spent" => Reply::ok("a")
                .header("cache-control", "max-age=60")
                .header("age", "60"),
            "/age-half" => Reply::ok("h")
                .header("cache-control", "max-age=60")
                .header("age", "30"),
            "/expires" => Reply::ok("e")
                .header(
                    "date",
                    &httpdate::fmt_http_date(std::time::SystemTime::now()),
                )
                .header(
                    "expires",
                    &httpdate::fmt_http_date(
                        std::time::SystemTime::now() + Duration::from_secs(120),
                    ),
                ),
            "/expired" => Reply::ok("x").header("expires", "0"),
            "/dup" => Reply::ok("d")
                .header("cache-control", "max-age=60")
                .header("cache-control", "max-age=30"),
            "/quoted" => Reply::ok("q").header("cache-control", "max-age=\"60\""),
            _ => Reply::status(404, ""),
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "fresh"), &origin).await;
        for (path, cached) in [
            ("/s", true),
            ("/age-spent", false),
            ("/age-half", true),
            ("/expires", true),
            ("/expired", false),
            ("/dup", false),
            ("/quoted", true),
        ] {
            gh.get(path).await;
            let r = gh.get(path).await;
            let hit = status(&r).starts_with("gatehouse; hit");
            assert_eq!(hit, cached, "{path}: {}", status(&r));
            assert_eq!(origin.hits(path), if cached { 1 } else { 2 }, "{path}");
        }
        // Age from the origin is counted in what we send on.
        let r = gh.get("/age-half").await;
        let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
        assert!((30..=40).contains(&age), "age {age}");
        gh.shutdown().await;
    }
);

both_stores!(
    vary_keeps_variants_apart_normalizes_and_refuses_star,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            let lang = s.header("accept-language").unwrap_or_default().to_string();
            if s.path == "/star" {
                return Reply::ok("star")
                    .header("cache-control", "max-age=60")
                    .header("vary", "*");
            }
            Reply::ok(format!("hello {lang}"))
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language")
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "vary"), &origin).await;
        let en = get_with(&gh, "/v", &[("accept-language", "en")]).await;
        assert_eq!(en.text().await.unwrap(), "hello en");
        let fr = get_with(&gh, "/v", &[("accept-language", "fr")]).await;
        assert_eq!(fr.text().await.unwrap(), "hello fr");
        // Same variant, differently written: a hit.
        let en2 = get_with(&gh, "/v", &[("accept-language", "EN")]).await;
        assert!(
            status(&en2).starts_with("gatehouse; hit"),
            "{}",
            status(&en2)
        );
        assert_eq!(en2.text().await.unwrap(), "hello en");
        let fr2 = get_with(&gh, "/v", &[("accept-language", "fr")]).await;
        assert_eq!(fr2.text().await.unwrap(), "hello fr");
        assert_eq!(origin.hits("/v"), 2);
        // A third variant with max_variants = 2 pushes one of the first two out.
        get_with(&gh, "/v", &[("accept-language", "de")]).await;
        let before = origin.hits("/v");
        for lang in ["en", "fr", "de"] {
            get_with(&gh, "/v", &[("accept-language", lang)]).await;
        }
        assert!(
            origin.hits("/v") > before,
            "a variant beyond the cap was evicted"
        );
        // Vary: * is never served from cache.
        gh.get("/star").await;
        gh.get("/star").await;
        assert_eq!(origin.hits("/star"), 2);
        gh.shutdown().await;
    }
);

both_stores!(
    conditional_requests_both_ways,
    |store: TestStore| async move {
        let version = Arc::new(AtomicUsize::new(1));
        let v = version.clone();
        let origin = TestOrigin::start(move |s| {
            let etag = "\"e1\"";
            let ver = v.load(Ordering::SeqCst).to_string();
            match s.path.as_str() {
                "/cond" => Reply::ok("body")
                    .header("cache-control", "max-age=60")
                    .header("etag", etag)
                    .header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
                // no-cache: every reuse is revalidated; a 304 refreshes stored headers.
                "/validate" => {
                    if s.header("if-none-match") == Some(etag) {
                        Reply::status(304, "")
                            .header("etag", etag)
                            .header("x-version", &ver)
                    } else {
                        Reply::ok("full")
                            .header("cache-control", "max-age=60, no-cache")
                            .header("etag", etag)
                            .header("x-version", &ver)
                    }
                }
                // Born stale (Age = max-age) but kept for revalidation thanks to its ETag.
                "/stale-etag" => {
                    if s.headers.contains_key("if-none-match") {
                        Reply::status(304, "").header("cache-control", "max-age=60")
                    } else {
                        Reply::ok("kept")
                            .header("cache-control", "max-age=60")
                            .header("age", "60")
                            .header("etag", etag)
                    }
                }
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "cond"), &origin).await;
        gh.get("/cond").await;
        let r = get_with(&gh, "/cond", &[("if-none-match", "W/\"e1\", \"other\"")]).await;
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"], "\"e1\"");
        let r = get_with(
            &gh,
            "/cond",
            &[("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT")],
        )
        .await;
        assert_eq!(r.status(), 304);
        let r = get_with(
            &gh,
            "/cond",
            &[("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(origin.hits("/cond"), 1, "conditionals answered from cache");

        let r = gh.get("/validate").await;
        assert_eq!(r.headers()["x-version"], "1");
        version.store(2, Ordering::SeqCst);
        let r = gh.get("/validate").await;
        assert_eq!(r.status(), 200);
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        assert_eq!(
            r.headers()["x-version"],
            "2",
            "headers updated from the 304"
        );
        assert_eq!(r.text().await.unwrap(), "full");
        let seen = origin.seen();
        let revalidation = seen
            .iter()
            .filter(|s| s.path == "/validate")
            .nth(1)
            .unwrap();
        assert_eq!(revalidation.headers["if-none-match"], "\"e1\"");

        gh.get("/stale-etag").await;
        let r = gh.get("/stale-etag").await;
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        assert_eq!(r.text().await.unwrap(), "kept");
        // Fresh again after the 304 gave new freshness.
        let r = gh.get("/stale-etag").await;
        assert!(status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
        assert_eq!(origin.hits("/stale-etag"), 2);
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn request_directives_are_honoured() {
    let origin = TestOrigin::start(|_| Reply::ok("r").header("cache-control", "max-age=60")).await;
    let gh = Gatehouse::start(&cfg(&TestStore::memory(), "reqdir"), &origin).await;
    gh.get("/d").await;
    assert_eq!(origin.hits("/d"), 1);
    get_with(&gh, "/d", &[("cache-control", "no-cache")]).await;
    get_with(&gh, "/d", &[("pragma", "no-cache")]).await;
    get_with(&gh, "/d", &[("cache-control", "max-age=0")]).await;
    assert_eq!(origin.hits("/d"), 4);
    let r = get_with(&gh, "/never", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(r.status(), 504);
    assert_eq!(origin.hits("/never"), 0);
    gh.shutdown().await;
}

both_stores!(
    stale_while_revalidate_refreshes_once_in_the_background,
    |store: TestStore| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        // The refresh is held at the origin until every stale answer is in.
        let refresh = Gate::new();
        let g = refresh.clone();
        let origin = TestOrigin::start(move |_| {
            let i = c.fetch_add(1, Ordering::SeqCst);
            let r = Reply::ok(format!("v{i}"))
                .header("cache-control", "max-age=60, stale-while-revalidate=300")
                .header("age", if i == 0 { "61" } else { "0" });
            if i == 0 {
                r
            } else {
                r.held_by(&g)
            }
        })
        .await;
        let gh = Arc::new(Gatehouse::start(&cfg(&store, "swr"), &origin).await);
        assert_eq!(gh.get("/swr").await.text().await.unwrap(), "v0");
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let gh = gh.clone();
                tokio::spawn(async move {
                    let r = gh.get("/swr").await;
                    (status(&r), r.text().await.unwrap())
                })
            })
            .collect();
        for t in tasks {
            let (cs, body) = within("a stale answer", t).await.unwrap();
            // Served stale at once while one refresh runs.
            assert_eq!(body, "v0");
            assert_eq!(cs, "gatehouse; hit; detail=stale-while-revalidate");
        }
        refresh.held(1).await;
        refresh.open();
        assert!(
            eventually(Duration::from_secs(5), || async {
                gh.get("/swr").await.text().await.unwrap() == "v1"
            })
            .await
        );
        assert_eq!(origin.hits("/swr"), 2, "exactly one background refresh");
    }
);

both_stores!(
    stale_if_error_serves_stale_when_the_origin_fails,
    |store: TestStore| async move {
        let failing = Arc::new(AtomicUsize::new(0));
        let f = failing.clone();
        let origin = TestOrigin::start(move |s| {
            if f.load(Ordering::SeqCst) == 1 {
                return Reply::status(503, "down");
            }
            match s.path.as_str() {
                "/sie" => Reply::ok("old")
                    .header("cache-control", "max-age=60, stale-if-error=300")
                    .header("age", "61"),
                "/mr" => Reply::ok("strict")
                    .header(
                        "cache-control",
                        "max-age=60, must-revalidate, stale-if-error=300",
                    )
                    .header("age", "61"),
                "/routed" => Reply::ok("route-old")
                    .header("cache-control", "max-age=60")
                    .header("age", "61"),
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "sie"), &origin).await;
        for p in ["/sie", "/mr", "/routed"] {
            gh.get(p).await;
        }
        failing.store(1, Ordering::SeqCst);
        let r = gh.get("/sie").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            status(&r),
            "gatehouse; fwd=stale; fwd-status=503; detail=stale-if-error"
        );
        assert_eq!(r.text().await.unwrap(), "old");
        let r = gh.get("/routed").await;
        assert_eq!(
            r.text().await.unwrap(),
            "route-old",
            "route stale_if_error applies"
        );
        // must-revalidate: never served stale.
        let r = gh.get("/mr").await;
        assert_eq!(r.status(), 503);
        // The origin gone entirely: still stale.
        origin.stop();
        let r = gh.get("/sie").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "old");
        gh.shutdown().await;
    }
);

both_stores!(
    successful_writes_invalidate_target_location_and_invalidate_on,
    |store: TestStore| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        let origin = TestOrigin::start(move |s| {
            let i = c.fetch_add(1, Ordering::SeqCst);
            match (s.method.as_str(), s.path.as_str()) {
                ("GET", _) => {
                    Reply::ok(format!("{} #{i}", s.path)).header("cache-control", "max-age=600")
                }
                ("POST", "/fail") => Reply::status(500, "no"),
                ("POST", "/items") => Reply::status(201, "")
                    .header("location", "/items/9")
                    .header("content-location", "http://elsewhere.example/items/10"),
                _ => Reply::status(200, "ok"),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "inval"), &origin).await;
        for p in [
            "/items",
            "/items/9",
            "/api/participants/7",
            "/fail",
            "/api/participants/8",
        ] {
            gh.get(p).await;
        }
        let post = |path: &'static str| gh.client.post(gh.url(path)).send();
        post("/items").await.unwrap();
        post("/fail").await.unwrap();
        post("/api/participants/7/check-in").await.unwrap();
        for (path, purged) in [
            ("/items", true),
            ("/items/9", true),
            ("/api/participants/7", true),
            ("/fail", false),
            ("/api/participants/8", false),
        ] {
            let r = gh.get(path).await;
            assert_eq!(
                !status(&r).starts_with("gatehouse; hit"),
                purged,
                "{path}: {}",
                status(&r)
            );
        }
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn authorization_and_hit_for_pass() {
    let origin = TestOrigin::start(|s| match s.path.as_str() {
        "/private-ish" => Reply::ok("for you").header("cache-control", "max-age=60"),
        "/public" => Reply::ok("for all").header("cache-control", "public, max-age=60"),
        _ => Reply::ok("nope").header("cache-control", "no-store"),
    })
    .await;
    let gh = Gatehouse::start(&cfg(&TestStore::memory(), "authz"), &origin).await;
    let authed = [("authorization", "Bearer abc")];
    get_with(&gh, "/private-ish", &authed).await;
    get_with(&gh, "/private-ish", &authed).await;
    assert_eq!(
        origin.hits("/private-ish"),
        2,
        "not stored for a request with credentials"
    );
    get_with(&gh, "/public", &authed).await;
    let r = get_with(&gh, "/public", &authed).await;
    assert!(status(&r).starts_with("gatehouse; hit"));
    // An entry stored for anonymous requests is not served to one with credentials.
    gh.get("/private-ish").await;
    let r = get_with(&gh, "/private-ish", &authed).await;
    assert!(!status(&r).starts_with("gatehouse; hit"));

    gh.get("/uncacheable").await;
    let r = gh.get("/uncacheable").await;
    assert_eq!(status(&r), "gatehouse; fwd=miss; detail=hit-for-pass");
    gh.shutdown().await;
}

both_stores!(
    purge_by_url_tag_prefix_and_soft,
    |store: TestStore| async move {
        let version = Arc::new(AtomicUsize::new(1));
        let v = version.clone();
        let origin = TestOrigin::start(move |s| {
            let ver = v.load(Ordering::SeqCst);
            if s.headers.contains_key("if-none-match") {
                return Reply::status(304, "");
            }
            let mut r = Reply::ok(format!("{} v{ver}", s.path))
                .header("cache-control", "max-age=600")
                .header("etag", "\"x\"");
            if s.path.starts_with("/tagged") {
                r = r.header("surrogate-key", "menu bakery-1");
            }
            r
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "purge"), &origin).await;
        let api = |body: serde_json::Value| {
            gh.client
                .post(gh.api_url("/v1/cache/purge"))
                .json(&body)
                .send()
        };
        for p in [
            "/api/participants/1",
            "/api/participants/2",
            "/tagged/a",
            "/tagged/b",
            "/pre/x",
            "/pre/y?q=1",
            "/other",
        ] {
            gh.get(p).await;
        }
        // Another host, same path: purged too when the URL is given as a path.
        get_with(&gh, "/api/participants/1", &[("host", "other.example")]).await;
        let r = api(serde_json::json!({"urls": ["/api/participants/1"]}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 2);
        let r = api(serde_json::json!({"tags": ["participant:2"]}))
            .await
            .unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 1);
        let r = api(serde_json::json!({"tags": ["menu"]})).await.unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 2);
        let r = api(serde_json::json!({"prefix": "/pre/"})).await.unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 2);
        for (path, purged) in [
            ("/api/participants/1", true),
            ("/api/participants/2", true),
            ("/tagged/a", true),
            ("/tagged/b", true),
            ("/pre/x", true),
            ("/pre/y?q=1", true),
            ("/other", false),
        ] {
            let r = gh.get(path).await;
            assert_eq!(
                !status(&r).starts_with("gatehouse; hit"),
                purged,
                "{path}: {}",
                status(&r)
            );
        }
        // Soft: kept, but stale — revalidated with its validator.
        let r = api(serde_json::json!({"urls": ["/other"], "soft": true}))
            .await
            .unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["purged"], 1);
        let r = gh.get("/other").await;
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        // Bad bodies name the field.
        let r = api(serde_json::json!({"urls": ["/a"], "tags": ["b"]}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = api(serde_json::json!({"prefix": "nope"})).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["field"],
            "prefix"
        );
        gh.shutdown().await;
    }
);

/// Two instances on one real Redis in front of an origin whose body (cacheable for
/// 10 minutes) the test changes: (redis, body, origin, A, B).
async fn two_instances(
    name: &str,
) -> (
    TestStore,
    Arc<Mutex<String>>,
    TestOrigin,
    Gatehouse,
    Gatehouse,
) {
    let store = TestStore::redis();
    let body = Arc::new(Mutex::new("v1".to_string()));
    let b = body.clone();
    let origin = TestOrigin::start(move |_| {
        Reply::ok(b.lock().unwrap().clone()).header("cache-control", "max-age=600")
    })
    .await;
    let text = cfg(&store, name);
    let a = Gatehouse::start(&text, &origin).await;
    let b_gh = Gatehouse::start(&text, &origin).await;
    (store, body, origin, a, b_gh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_reaches_every_instance_l1_within_a_second() {
    let (_store, body, _origin, a, b_gh) = two_instances("coherence").await;
    let get = |gh: &Gatehouse| {
        gh.client
            .get(gh.url("/c"))
            .header("host", "shared.example")
            .send()
    };
    assert_eq!(get(&a).await.unwrap().text().await.unwrap(), "v1");
    assert_eq!(get(&b_gh).await.unwrap().text().await.unwrap(), "v1");
    // Both now answer from their own L1.
    let r = get(&b_gh).await.unwrap();
    assert!(status(&r).starts_with("gatehouse; hit"));
    *body.lock().unwrap() = "v2".into();
    a.api_post("/v1/cache/purge", &serde_json::json!({"urls": ["/c"]}))
        .await;
    assert!(
        eventually(Duration::from_secs(1), || async {
            get(&b_gh).await.unwrap().text().await.unwrap() == "v2"
        })
        .await,
        "B's L1 dropped the purged entry within a second"
    );
    assert!(b_gh.metric("gatehouse_invalidations_received_total").await >= 1.0);
    assert!(a.metric("gatehouse_invalidations_sent_total").await >= 1.0);
    a.shutdown().await;
    b_gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_feed_distrusts_l1_and_its_return_flushes_it() {
    let mut store = TestStore::redis();
    let origin = TestOrigin::start(|_| Reply::ok("x").header("cache-control", "max-age=600")).await;
    let gh = Gatehouse::start(
        &format!(
            "{}\n[cache]\ncoherence_grace = \"200ms\"\n",
            store.toml(&prefix("lost"))
        ),
        &origin,
    )
    .await;
    gh.get("/l").await;
    assert!(status(&gh.get("/l").await).starts_with("gatehouse; hit"));
    store.redis_server().unwrap().stop();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_store_subscription_up").await == 0.0
        })
        .await
    );
    // Past the grace, the L1 entry is no longer treated as fresh: the origin is asked.
    assert!(
        eventually(Duration::from_secs(3), || async {
            !status(&gh.get("/l").await).starts_with("gatehouse; hit")
        })
        .await
    );
    assert!(origin.hits("/l") >= 2);
    store.redis_server().unwrap().restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            gh.metric("gatehouse_l1_flushes_total").await >= 1.0
        })
        .await,
        "L1 dropped when the feed returned"
    );
    gh.shutdown().await;
}

both_stores!(
    a_fill_racing_a_purge_never_reinstalls_the_old_entry,
    |store: TestStore| async move {
        let body = Arc::new(Mutex::new("old".to_string()));
        let b = body.clone();
        let old = Gate::new();
        let g = old.clone();
        let origin = TestOrigin::start(move |_| {
            let v = b.lock().unwrap().clone();
            let r = Reply::ok(v.clone()).header("cache-control", "max-age=600");
            if v == "old" {
                r.held_by(&g)
            } else {
                r
            }
        })
        .await;
        let gh = Arc::new(Gatehouse::start(&cfg(&store, "race"), &origin).await);
        let slow = {
            let gh = gh.clone();
            tokio::spawn(async move { gh.get("/race").await.text().await.unwrap() })
        };
        old.held(1).await;
        // The purge lands while the old answer is still on its way.
        *body.lock().unwrap() = "new".into();
        let r = gh
            .api_post("/v1/cache/purge", &serde_json::json!({"urls": ["/race"]}))
            .await;
        assert_eq!(r.status(), 200);
        old.open();
        assert_eq!(slow.await.unwrap(), "old");
        assert_eq!(gh.get("/race").await.text().await.unwrap(), "new");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_origin_fetch_per_fleet() {
    let store = TestStore::redis();
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| {
        Reply::ok("fleet")
            .header("cache-control", "max-age=600")
            .held_by(&g)
    })
    .await;
    let text = cfg(&store, "fleet");
    let a = Arc::new(Gatehouse::start(&text, &origin).await);
    let b = Arc::new(Gatehouse::start(&text, &origin).await);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let gh = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let r = gh
                .client
                .get(gh.url("/fleet"))
                .header("host", "shared.example")
                .send()
                .await
                .unwrap();
            (status(&r), r.text().await.unwrap())
        }));
    }
    // One fetch is held at the origin while 29 requests wait for it on each
    // instance, and the other instance's leader has found the fleet lease taken.
    gate.held(1).await;
    wait_until("58 waiters and both leaders at the lease", || async {
        a.waiting() + b.waiting() == 58
            && a.lease_requests().await + b.lease_requests().await >= 2.0
    })
    .await;
    gate.open();
    let mut collapsed = 0;
    for t in tasks {
        let (cs, body) = t.await.unwrap();
        assert_eq!(body, "fleet");
        collapsed += usize::from(cs.contains("collapsed"));
    }
    assert_eq!(collapsed, 59, "all but the fetching request collapsed");
    assert_eq!(origin.hits("/fleet"), 1, "one fetch for both instances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_one_instance_drops_the_old_copy_from_every_l1() {
    let (_store, body, origin, a, b_gh) = two_instances("refresh").await;
    let get = |gh: &Gatehouse, cc: Option<&'static str>| {
        let mut r = gh
            .client
            .get(gh.url("/fresh"))
            .header("host", "shared.example");
        if let Some(cc) = cc {
            r = r.header("cache-control", cc);
        }
        r.send()
    };
    get(&a, None).await.unwrap();
    assert_eq!(get(&b_gh, None).await.unwrap().text().await.unwrap(), "v1");
    assert!(status(&get(&b_gh, None).await.unwrap()).starts_with("gatehouse; hit"));
    // A client forces A to refetch; A stores v2.
    *body.lock().unwrap() = "v2".into();
    assert_eq!(
        get(&a, Some("no-cache"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v2"
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            get(&b_gh, None).await.unwrap().text().await.unwrap() == "v2"
        })
        .await,
        "B dropped its v1 copy and read v2 from L2"
    );
    assert_eq!(origin.total(), 2);
    a.shutdown().await;
    b_gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_drops_every_variant_from_l1_even_with_the_store_down() {
    let mut store = TestStore::redis();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let origin = TestOrigin::start(move |s| {
        let i = c.fetch_add(1, Ordering::SeqCst);
        if s.method == "POST" {
            return Reply::ok("saved");
        }
        Reply::ok(format!("v{i}"))
            .header("cache-control", "max-age=600")
            .header("vary", "accept-language")
    })
    .await;
    // A long grace keeps L1 trusted through the outage: only the write may drop it.
    let text = format!(
        "{}\n[cache]\ncoherence_grace = \"1h\"\n",
        store.toml(&prefix("downwrite"))
    );
    let gh = Gatehouse::start(&text, &origin).await;
    for lang in ["en", "fr"] {
        get_with(&gh, "/w", &[("accept-language", lang)]).await;
        let r = get_with(&gh, "/w", &[("accept-language", lang)]).await;
        assert!(status(&r).starts_with("gatehouse; hit"), "{lang}");
    }
    store.redis_server().unwrap().stop();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_store_up").await == 0.0
        })
        .await
    );
    let r = gh.client.post(gh.url("/w")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for lang in ["en", "fr"] {
        let r = get_with(&gh, "/w", &[("accept-language", lang)]).await;
        assert!(
            !status(&r).starts_with("gatehouse; hit"),
            "{lang}: {}",
            status(&r)
        );
    }
    gh.shutdown().await;
}

/// An IMF-fixdate turned into the obsolete RFC 850 and asctime forms of the same
/// instant (RFC 9110 §5.6.7).
fn date_forms(t: std::time::SystemTime) -> (String, String, String) {
    let imf = httpdate::fmt_http_date(t);
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (wd, day, mon, year, time) = (
        &imf[0..3],
        &imf[5..7],
        &imf[8..11],
        &imf[12..16],
        &imf[17..25],
    );
    let long = match wd {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let rfc850 = format!("{long}, {day}-{mon}-{} {time} GMT", &year[2..]);
    let padded = format!("{:>2}", day.trim_start_matches('0'));
    let asctime = format!("{wd} {mon} {padded} {time} {year}");
    (imf, rfc850, asctime)
}

both_stores!(
    dates_and_age_are_parsed_as_the_rfcs_robustness_rules_say,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            let now = std::time::SystemTime::now();
            let (date, _, _) = date_forms(now);
            let (imf, rfc850, asctime) = date_forms(now + Duration::from_secs(120));
            let expires = match s.path.as_str() {
                "/exp/imf" => imf,
                "/exp/rfc850" => rfc850,
                "/exp/asctime" => asctime,
                // HTTP-date is case-sensitive: invalid, so already expired (§5.3).
                "/exp/lower" => imf.to_lowercase(),
                // A two-digit year is never read as more than 50 years in the past.
                "/exp/rfc850-2070" => "Wednesday, 01-Jan-70 00:00:00 GMT".into(),
                _ => String::new(),
            };
            let mut r = Reply::ok(s.path.clone()).header("date", &date);
            if !expires.is_empty() {
                return r.header("expires", &expires);
            }
            r = r.header("cache-control", "MAX-AGE=60");
            match s.path.as_str() {
                "/age/list" => r.header("age", "30, 50"),
                "/age/lines" => r.header("age", "30").header("age", "90"),
                "/age/junk" => r.header("age", "90s"),
                "/age/huge" => r.header("age", "99999999999999999999999"),
                _ => r,
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "parsing"), &origin).await;
        for (path, cached, ages) in [
            ("/exp/imf", true, 0..=10),
            ("/exp/rfc850", true, 0..=10),
            ("/exp/asctime", true, 0..=10),
            ("/exp/lower", false, 0..=10),
            ("/exp/rfc850-2070", true, 0..=10),
            // Directive names are case-insensitive (RFC 9111 §5.2).
            ("/age/none", true, 0..=10),
            // Age: the first member of a list counts (RFC 9111 §5.1) ...
            ("/age/list", true, 30..=40),
            ("/age/lines", true, 30..=40),
            // ... an invalid one is ignored, and a huge one is 2^31 (stale).
            ("/age/junk", true, 0..=10),
            ("/age/huge", false, 0..=0),
        ] {
            gh.get(path).await;
            let r = gh.get(path).await;
            let hit = status(&r).starts_with("gatehouse; hit");
            assert_eq!(hit, cached, "{path}: {}", status(&r));
            assert_eq!(origin.hits(path), if cached { 1 } else { 2 }, "{path}");
            if cached {
                let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
                assert!(ages.contains(&age), "{path}: age {age}");
            }
        }
        gh.shutdown().await;
    }
);

both_stores!(
    targeted_cache_control_overrides_cache_control_for_gatehouse_alone,
    |store: TestStore| async move {
        let failing = Arc::new(AtomicUsize::new(0));
        let f = failing.clone();
        let origin = TestOrigin::start(move |s| {
            if f.load(Ordering::SeqCst) == 1 {
                return Reply::status(503, "down");
            }
            let future =
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
            let r = Reply::ok(s.path.clone());
            match s.path.as_str() {
                // "Cache 10 minutes" to the sidecar, "no-cache" to browsers.
                "/t/sidecar" => r
                    .header("cache-control", "no-cache")
                    .header("gatehouse-cache-control", "max-age=600"),
                "/t/cdn" => r
                    .header("cache-control", "max-age=600")
                    .header("cdn-cache-control", "no-store"),
                // The first field of the list wins over the next.
                "/t/both" => r
                    .header("gatehouse-cache-control", "max-age=600")
                    .header("cdn-cache-control", "no-store"),
                // Cache-Control is ignored as a whole, `private` included (RFC 9213 §2.1).
                "/t/private" => r
                    .header("cache-control", "private")
                    .header("cdn-cache-control", "max-age=600"),
                // A field that fails to parse is ignored: Cache-Control applies.
                "/t/unparsable" => r
                    .header("cache-control", "no-store")
                    .header("gatehouse-cache-control", "Max-Age=600"),
                // An invalid member is ignored, the rest applies.
                "/t/member" => r
                    .header("cache-control", "no-store")
                    .header("gatehouse-cache-control", "no-store=1, max-age=600"),
                // Expires is ignored with the targeted field.
                "/t/expires" => r
                    .header("expires", &future)
                    .header("gatehouse-cache-control", "must-revalidate"),
                // Age counts against the targeted max-age.
                "/t/age" => r
                    .header("cache-control", "max-age=600")
                    .header("gatehouse-cache-control", "max-age=60")
                    .header("age", "60"),
                "/t/swr" => r
                    .header("cache-control", "no-cache")
                    .header(
                        "gatehouse-cache-control",
                        "max-age=1, stale-while-revalidate=600",
                    )
                    .header("age", "5"),
                "/t/sie" => r
                    .header("cache-control", "no-store")
                    .header("gatehouse-cache-control", "max-age=60, stale-if-error=600")
                    .header("age", "61"),
                "/t/mr" => r
                    .header("cache-control", "max-age=60, stale-if-error=600")
                    .header(
                        "cdn-cache-control",
                        "max-age=60, must-revalidate, stale-if-error=600",
                    )
                    .header("age", "61")
                    .header("etag", "\"m\""),
                "/t/edge" => r.header("edge-cache-control", "max-age=600"),
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "targeted"), &origin).await;
        for (path, cached) in [
            ("/t/sidecar", true),
            ("/t/cdn", false),
            ("/t/both", true),
            ("/t/private", true),
            ("/t/unparsable", false),
            ("/t/member", true),
            ("/t/expires", false),
            ("/t/age", false),
        ] {
            let first = gh.get(path).await;
            assert!(
                !first.headers().contains_key("gatehouse-cache-control"),
                "{path}: gatehouse's field is removed from what it passes on"
            );
            let r = gh.get(path).await;
            let hit = status(&r).starts_with("gatehouse; hit");
            assert_eq!(hit, cached, "{path}: {}", status(&r));
            assert_eq!(origin.hits(path), if cached { 1 } else { 2 }, "{path}");
            assert!(
                !r.headers().contains_key("gatehouse-cache-control"),
                "{path}: gatehouse's field is removed from cached answers"
            );
        }
        // Cache-Control and CDN-Cache-Control reach the client untouched.
        let r = gh.get("/t/sidecar").await;
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let r = gh.get("/t/both").await;
        assert_eq!(r.headers()["cdn-cache-control"], "no-store");
        // Passed answers (an unsafe method) lose it too.
        let r = gh.client.post(gh.url("/t/sidecar")).send().await.unwrap();
        assert!(!r.headers().contains_key("gatehouse-cache-control"));
        assert_eq!(r.headers()["cache-control"], "no-cache");
        // Targeted stale windows and must-revalidate.
        gh.get("/t/swr").await;
        let r = gh.get("/t/swr").await;
        assert_eq!(status(&r), "gatehouse; hit; detail=stale-while-revalidate");
        gh.get("/t/sie").await;
        gh.get("/t/mr").await;
        failing.store(1, Ordering::SeqCst);
        let r = gh.get("/t/sie").await;
        assert_eq!(r.status(), 200, "targeted stale-if-error: {}", status(&r));
        assert_eq!(r.text().await.unwrap(), "/t/sie");
        let r = gh.get("/t/mr").await;
        assert_eq!(r.status(), 503, "targeted must-revalidate: never stale");
        gh.shutdown().await;

        // The list is configurable: another field, and Gatehouse-Cache-Control is then
        // an ordinary header, obeyed by nobody here and passed on.
        failing.store(0, Ordering::SeqCst);
        let text = format!(
            "{}targeted_fields = [\"Edge-Cache-Control\"]\n",
            cfg(&store, "targeted-own")
        );
        let gh = Gatehouse::start(&text, &origin).await;
        for (path, cached) in [("/t/edge", true), ("/t/sidecar", false)] {
            let before = origin.hits(path);
            gh.get(path).await;
            let r = gh.get(path).await;
            assert_eq!(status(&r).starts_with("gatehouse; hit"), cached, "{path}");
            assert_eq!(origin.hits(path) - before, if cached { 1 } else { 2 });
            assert!(!r.headers().contains_key("edge-cache-control"), "{path}");
        }
        let r = gh.get("/t/sidecar").await;
        assert_eq!(r.headers()["gatehouse-cache-control"], "max-age=600");
        gh.shutdown().await;
    }
);

both_stores!(
    heuristic_freshness_is_opt_in_capped_and_shown,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            let now = std::time::SystemTime::now();
            let ago = |secs: u64| httpdate::fmt_http_date(now - Duration::from_secs(secs));
            let r = Reply::ok(s.path.clone()).header("date", &ago(0));
            match s.path.as_str() {
                // 10% of 1000 s.
                "/h/lm" | "/routed/h" => r.header("last-modified", &ago(1000)),
                // 10% of 10 days, capped at heuristic_max.
                "/h/capped" => r.header("last-modified", &ago(864_000)),
                "/h/none" => r,
                "/h/explicit" => r
                    .header("cache-control", "max-age=5")
                    .header("last-modified", &ago(1000)),
                // 302 is not heuristically cacheable (RFC 9110 §15.1).
                "/h/status" => Reply::status(302, "")
                    .header("date", &ago(0))
                    .header("last-modified", &ago(1000)),
                "/h/future" => r.header(
                    "last-modified",
                    &httpdate::fmt_http_date(now + Duration::from_secs(1000)),
                ),
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let text = format!(
            "{}heuristic_fraction = 0.1\nheuristic_max = \"1h\"\n",
            cfg(&store, "heuristic")
        );
        let gh = Gatehouse::start(&text, &origin).await;
        let ttl = |s: &str| -> Option<u64> {
            s.split("; ")
                .find_map(|p| p.strip_prefix("ttl="))
                .map(|t| t.parse().unwrap())
        };
        for (path, ttls, heuristic) in [
            ("/h/lm", Some(95..=100), true),
            ("/h/capped", Some(3590..=3600), true),
            ("/h/none", None, false),
            ("/h/explicit", Some(0..=5), false),
            ("/h/status", None, false),
            ("/h/future", None, false),
            // A route ttl wins over the heuristic.
            ("/routed/h", Some(590..=600), false),
        ] {
            let first = gh.get(path).await;
            let r = gh.get(path).await;
            let cs = status(&r);
            match ttls {
                Some(range) => {
                    assert!(cs.starts_with("gatehouse; hit"), "{path}: {cs}");
                    let t = ttl(&cs).unwrap();
                    assert!(range.contains(&t), "{path}: ttl {t}");
                    assert_eq!(
                        cs.ends_with("; detail=heuristic"),
                        heuristic,
                        "{path}: {cs}"
                    );
                    let stored = status(&first);
                    let want = if heuristic {
                        "gatehouse; fwd=miss; stored; detail=heuristic"
                    } else {
                        "gatehouse; fwd=miss; stored"
                    };
                    assert_eq!(stored, want, "{path}");
                }
                None => assert!(!cs.starts_with("gatehouse; hit"), "{path}: {cs}"),
            }
        }
        gh.shutdown().await;
        // Off by default.
        let gh = Gatehouse::start(&cfg(&store, "heuristic-off"), &origin).await;
        gh.get("/h/lm").await;
        let r = gh.get("/h/lm").await;
        assert!(!status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
        gh.shutdown().await;
    }
);

both_stores!(
    revalidation_is_conditional_complete_and_per_variant,
    |store: TestStore| async move {
        let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
        let origin = TestOrigin::start(move |s| {
            let h = |n: &str| s.header(n).unwrap_or_default().to_string();
            let lang = h("accept-language");
            match s.path.as_str() {
                // Never fresh, but with a validator: revalidated, not refetched.
                "/nc/etag" | "/nc/max0" => {
                    let cc = if s.path == "/nc/etag" {
                        "no-cache"
                    } else {
                        "max-age=0"
                    };
                    if h("if-none-match") == "\"e1\"" {
                        return Reply::status(304, "")
                            .header("cache-control", cc)
                            .header("etag", "\"e1\"");
                    }
                    Reply::ok("full")
                        .header("cache-control", cc)
                        .header("etag", "\"e1\"")
                }
                "/nc/lm" => {
                    if h("if-modified-since") == lm {
                        return Reply::status(304, "").header("cache-control", "no-cache");
                    }
                    Reply::ok("full")
                        .header("cache-control", "no-cache")
                        .header("last-modified", lm)
                }
                // A 304 that names another representation updates nothing: the
                // stored body is not passed off as current.
                "/mismatch" => {
                    if !h("if-none-match").is_empty() {
                        return Reply::status(304, "")
                            .header("cache-control", "no-cache")
                            .header("etag", "\"v2\"");
                    }
                    let (body, etag) = if h("x-round") == "2" {
                        ("second", "\"v2\"")
                    } else {
                        ("first", "\"v1\"")
                    };
                    Reply::ok(body)
                        .header("cache-control", "no-cache")
                        .header("etag", etag)
                }
                "/weak" => {
                    if h("if-none-match") == "W/\"w\"" {
                        return Reply::status(304, "")
                            .header("cache-control", "no-cache")
                            .header("etag", "\"w\"")
                            .header("x-updated", "yes");
                    }
                    Reply::ok("weak")
                        .header("cache-control", "no-cache")
                        .header("etag", "W/\"w\"")
                }
                // A 304 updates every stored field but the framing ones.
                "/upd" => {
                    if h("if-none-match") == "\"u\"" {
                        let bare = Reply {
                            headers: Vec::new(),
                            ..Reply::status(304, "")
                        };
                        return bare
                            .header("cache-control", "max-age=600")
                            .header("etag", "\"u\"")
                            .header("x-version", "2")
                            .header("x-new", "yes")
                            .header("link", "<b>")
                            .header("content-type", "text/html");
                    }
                    Reply::ok("full body")
                        .header("cache-control", "max-age=60, no-cache")
                        .header("etag", "\"u\"")
                        .header("x-version", "1")
                        .header("link", "<a1>")
                        .header("link", "<a2>")
                }
                // Each variant is revalidated with its own validator and the request
                // headers that selected it, in the foreground and in the background.
                "/vary/bg" | "/vary/fg" => {
                    let cc = if s.path == "/vary/bg" {
                        "max-age=1, stale-while-revalidate=600"
                    } else {
                        "max-age=0"
                    };
                    let etag = format!("\"{lang}\"");
                    if h("if-none-match") == etag {
                        return Reply::status(304, "")
                            .header("cache-control", cc)
                            .header("etag", &etag)
                            .header("vary", "accept-language");
                    }
                    Reply::ok(format!("hello {lang}"))
                        .header("cache-control", cc)
                        .header("etag", &etag)
                        .header("vary", "accept-language")
                        .header("age", "5")
                }
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "reval"), &origin).await;
        for (path, conditional, value) in [
            ("/nc/etag", "if-none-match", "\"e1\""),
            ("/nc/max0", "if-none-match", "\"e1\""),
            ("/nc/lm", "if-modified-since", lm),
        ] {
            let r = gh.get(path).await;
            assert_eq!(status(&r), "gatehouse; fwd=miss; stored", "{path}");
            for _ in 0..2 {
                let r = gh.get(path).await;
                assert_eq!(
                    status(&r),
                    "gatehouse; fwd=stale; fwd-status=304; stored",
                    "{path}"
                );
                assert_eq!(r.text().await.unwrap(), "full", "{path}");
                let last = origin.last().unwrap();
                assert_eq!(last.headers[conditional], value, "{path}");
            }
            assert_eq!(origin.hits(path), 3, "{path}");
        }

        gh.get("/mismatch").await;
        let r = get_with(&gh, "/mismatch", &[("x-round", "2")]).await;
        assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
        assert_eq!(r.headers()["etag"], "\"v2\"");
        assert_eq!(r.text().await.unwrap(), "second");
        let seen = origin.seen();
        let asked: Vec<bool> = seen
            .iter()
            .filter(|s| s.path == "/mismatch")
            .map(|s| s.headers.contains_key("if-none-match"))
            .collect();
        assert_eq!(asked, [false, true, false], "asked again, unconditionally");
        // A strong ETag in a 304 identifies only the same strong ETag, not a weak one.
        gh.get("/weak").await;
        let r = gh.get("/weak").await;
        assert!(!r.headers().contains_key("x-updated"), "{}", status(&r));

        gh.get("/upd").await;
        let r = gh.get("/upd").await;
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        let links: Vec<_> = r.headers().get_all("link").iter().collect();
        assert_eq!(
            links,
            ["<b>"],
            "a field the 304 sends replaces every stored line"
        );
        assert_eq!(r.headers()["x-version"], "2");
        assert_eq!(r.headers()["x-new"], "yes");
        assert_eq!(r.headers()["content-type"], "text/html");
        assert_eq!(r.headers()["content-length"], "9");
        assert_eq!(r.text().await.unwrap(), "full body");
        // The stored Cache-Control was updated: no-cache is gone, max-age=600 holds.
        let r = gh.get("/upd").await;
        assert!(status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
        assert_eq!(r.headers()["cache-control"], "max-age=600");
        assert_eq!(origin.hits("/upd"), 2);

        for path in ["/vary/fg", "/vary/bg"] {
            for lang in ["en", "fr"] {
                get_with(&gh, path, &[("accept-language", lang)]).await;
            }
            for lang in ["fr", "en"] {
                let r = get_with(&gh, path, &[("accept-language", lang)]).await;
                assert_eq!(r.text().await.unwrap(), format!("hello {lang}"), "{path}");
            }
            let revalidated = |lang: &str| {
                origin.seen().iter().any(|s| {
                    s.path == path
                        && s.header("accept-language") == Some(lang)
                        && s.header("if-none-match") == Some(&format!("\"{lang}\""))
                })
            };
            assert!(
                eventually(Duration::from_secs(5), || async {
                    revalidated("en") && revalidated("fr")
                })
                .await,
                "{path}: each variant revalidated with its own language and ETag"
            );
            assert!(
                !origin.seen().iter().any(|s| s.path == path
                    && s.headers.get("if-none-match").is_some_and(|inm| {
                        let l = s.headers.get("accept-language").unwrap().to_str().unwrap();
                        inm.to_str().unwrap() != format!("\"{l}\"")
                    })),
                "{path}: never another variant's validator"
            );
        }
        gh.shutdown().await;
    }
);

/// How the raw origin answers the next requests.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RawMode {
    /// A complete response (`Connection: close`).
    Serve,
    /// Reads the request, then closes without a byte of answer.
    Close,
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// A complete head whose body breaks off after a few bytes.
    CutBody,
}

/// An origin of raw TCP on 127.0.0.1:0, to fail in the ways a real one does.
struct RawOrigin {
    addr: std::net::SocketAddr,
    mode: Arc<Mutex<RawMode>>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    /// `head(path)` gives the extra header lines of the path's answer.
    async fn start(head: fn(&str) -> String) -> RawOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(RawMode::Serve));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (m, reqs) = (mode.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let (m, reqs) = (m.clone(), reqs.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                    reqs.lock().unwrap().push(text);
                    let mode = *m.lock().unwrap();
                    let body = format!("body of {path}");
                    let head = format!(
                        "HTTP/1.1 200 OK\r\n{}content-length: {}\r\nconnection: close\r\n\r\n",
                        head(&path),
                        body.len()
                    );
                    match mode {
                        RawMode::Serve => {
                            let _ = sock.write_all(format!("{head}{body}").as_bytes()).await;
                            let _ = sock.shutdown().await;
                        }
                        RawMode::Close => drop(sock),
                        RawMode::Reset => {
                            let _ = sock.set_zero_linger();
                            drop(sock);
                        }
                        RawMode::CutBody => {
                            let _ = sock.write_all(format!("{head}bo").as_bytes()).await;
                            let _ = sock.flush().await;
                            // Real time: the head must be read before the reset
                            // discards it, and nothing tells this side it was.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let _ = sock.set_zero_linger();
                            drop(sock);
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            mode,
            requests,
            task,
        }
    }

    fn set(&self, mode: RawMode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self, path: &str) -> usize {
        let line = format!("GET {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&line))
            .count()
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each entry is born stale (`Age: 61` against `max-age=60`), so every request
/// goes to the origin; `true` when the RFCs let a failure be answered stale.
const STALE_ON_FAILURE: &[(&str, &str, Option<&str>, bool)] = &[
    ("/sof/sie", "max-age=60, stale-if-error=300", None, true),
    // The route /routed gives stale_if_error = 5m.
    ("/routed/sof", "max-age=60", None, true),
    // Past its stale-while-revalidate window, stale-if-error still applies.
    (
        "/sof/swr-sie",
        "max-age=60, stale-while-revalidate=1, stale-if-error=300",
        None,
        true,
    ),
    // The request's own stale-if-error (RFC 5861 §4); kept for its ETag.
    ("/sof/req", "max-age=60", Some("stale-if-error=300"), true),
    ("/sof/none", "max-age=60", None, false),
    (
        "/sof/mr",
        "max-age=60, must-revalidate, stale-if-error=300",
        None,
        false,
    ),
    (
        "/sof/pr",
        "max-age=60, proxy-revalidate, stale-if-error=300",
        None,
        false,
    ),
    (
        "/sof/nc",
        "max-age=60, no-cache, stale-if-error=300",
        None,
        false,
    ),
    ("/sof/smax", "s-maxage=60, stale-if-error=300", None, false),
    (
        "/sof/mr-req",
        "max-age=60, must-revalidate",
        Some("stale-if-error=300"),
        false,
    ),
    ("/sof/nc-req", "no-cache", Some("stale-if-error=300"), false),
];

fn stale_on_failure_head(path: &str) -> String {
    let cc = STALE_ON_FAILURE
        .iter()
        .chain(
            [(
                "/sof/swr",
                "max-age=60, stale-while-revalidate=300",
                None,
                true,
            )]
            .iter(),
        )
        .chain(
            [(
                "/sof/mr-swr",
                "max-age=60, must-revalidate, stale-while-revalidate=300",
                None,
                false,
            )]
            .iter(),
        )
        .find(|(p, ..)| *p == path)
        .map_or("no-store", |(_, cc, ..)| cc);
    format!("cache-control: {cc}\r\netag: \"x\"\r\nage: 61\r\n")
}

/// Origin requests gatehouse has finished, whatever their result.
async fn origin_requests(gh: &Gatehouse) -> f64 {
    gh.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("gatehouse_origin_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

both_stores!(
    stale_answers_every_origin_failure_the_rfcs_allow_and_no_other,
    |store: TestStore| async move {
        let origin = RawOrigin::start(stale_on_failure_head).await;
        let text = cfg(&store, "sof");
        let gh =
            Gatehouse::start_config(config(&text, Some(&format!("http://{}", origin.addr)))).await;
        let req = |path: &'static str, cc: Option<&'static str>| {
            let mut b = gh.client.get(gh.url(path));
            if let Some(cc) = cc {
                b = b.header("cache-control", cc);
            }
            b.send()
        };
        for (path, ..) in STALE_ON_FAILURE {
            let r = req(path, None).await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
        for path in ["/sof/swr", "/sof/mr-swr"] {
            req(path, None).await.unwrap();
        }
        for mode in [RawMode::Close, RawMode::Reset, RawMode::CutBody] {
            origin.set(mode);
            for &(path, _, request_cc, stale) in STALE_ON_FAILURE {
                let before = origin.hits(path);
                let r = req(path, request_cc).await.unwrap();
                assert_eq!(
                    origin.hits(path),
                    before + 1,
                    "{mode:?} {path}: asked the origin"
                );
                if stale {
                    assert_eq!(r.status(), 200, "{mode:?} {path}");
                    assert_eq!(
                        status(&r),
                        "gatehouse; fwd=stale; detail=stale-if-error",
                        "{mode:?} {path}"
                    );
                    assert_eq!(r.text().await.unwrap(), format!("body of {path}"));
                } else {
                    assert_eq!(r.status(), 502, "{mode:?} {path}: {}", status(&r));
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["error"], "ORIGIN_UNREACHABLE", "{mode:?} {path}");
                }
            }
            // stale-while-revalidate answers at once and keeps answering after the
            // background refresh has failed; must-revalidate forbids it.
            for _ in 0..2 {
                let finished = origin_requests(&gh).await;
                let r = req("/sof/swr", None).await.unwrap();
                assert_eq!(r.status(), 200, "{mode:?}");
                assert_eq!(status(&r), "gatehouse; hit; detail=stale-while-revalidate");
                assert_eq!(r.text().await.unwrap(), "body of /sof/swr");
                let failed = eventually(Duration::from_secs(5), || async {
                    origin_requests(&gh).await > finished
                })
                .await;
                assert!(failed, "{mode:?}: the background refresh never ended");
            }
            let r = req("/sof/mr-swr", None).await.unwrap();
            assert_eq!(r.status(), 502, "{mode:?} /sof/mr-swr");
        }
        // Back to serving: revalidated, and nothing was lost meanwhile.
        origin.set(RawMode::Serve);
        let r = req("/sof/sie", None).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
        gh.shutdown().await;
    }
);

both_stores!(
    set_cookie_is_passed_stripped_or_stored_as_the_route_says,
    |store: TestStore| async move {
        let revalidations = Arc::new(AtomicUsize::new(0));
        let n = revalidations.clone();
        let slow = Gate::new();
        let g = slow.clone();
        let origin = TestOrigin::start(move |s| {
            if s.headers.contains_key("if-none-match") {
                let i = n.fetch_add(1, Ordering::SeqCst);
                let r = Reply::status(304, "")
                    .header("cache-control", "no-cache")
                    .header("etag", "\"c\"");
                // Only the first revalidation sets a cookie.
                return if i == 0 {
                    r.header("set-cookie", "sid=from-304")
                } else {
                    r
                };
            }
            let r = Reply::ok(s.path.clone())
                .header("set-cookie", "sid=1; Path=/")
                .header("set-cookie", "theme=dark");
            match s.path.as_str() {
                "/ck/reval" => r
                    .header("cache-control", "no-cache")
                    .header("etag", "\"c\""),
                "/ck/slow" => r.header("cache-control", "max-age=60").held_by(&g),
                _ => r.header("cache-control", "max-age=60"),
            }
        })
        .await;
        let text = format!(
            "{}\n[[routes]]\npath = \"/ck\"\nset_cookie = \"strip\"\n\n[[routes]]\npath = \"/keep\"\nset_cookie = \"store\"\n\n[[routes]]\npath = \"/pass\"\nset_cookie = \"pass\"\n",
            cfg(&store, "cookie")
        );
        let gh = Arc::new(Gatehouse::start(&text, &origin).await);
        let cookies = |r: &reqwest::Response| -> Vec<String> {
            r.headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        };
        // pass (the default, and unrouted): never stored, every answer its own cookie.
        for path in ["/pass/a", "/unrouted"] {
            for detail in ["set-cookie", "hit-for-pass"] {
                let r = gh.get(path).await;
                assert_eq!(status(&r), format!("gatehouse; fwd=miss; detail={detail}"));
                assert_eq!(cookies(&r), ["sid=1; Path=/", "theme=dark"], "{path}");
            }
            assert_eq!(origin.hits(path), 2, "{path}");
        }
        // strip: stored without it; the client that fetched it gets its cookies,
        // later hits never do.
        let r = gh.get("/ck/a").await;
        assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
        assert_eq!(cookies(&r), ["sid=1; Path=/", "theme=dark"]);
        let r = gh.get("/ck/a").await;
        assert!(status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
        assert!(cookies(&r).is_empty());
        assert_eq!(origin.hits("/ck/a"), 1);
        // ... nor do requests collapsed onto that fetch.
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let gh = gh.clone();
                tokio::spawn(async move { gh.get("/ck/slow").await })
            })
            .collect();
        slow.held(1).await;
        wait_until("5 requests collapsed onto the fetch", || async {
            gh.waiting() == 5
        })
        .await;
        slow.open();
        let mut with_cookie = 0;
        for t in tasks {
            let r = t.await.unwrap();
            if !cookies(&r).is_empty() {
                with_cookie += 1;
                assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
            }
        }
        assert_eq!(origin.hits("/ck/slow"), 1);
        assert_eq!(with_cookie, 1, "only the client whose request fetched it");
        // ... and a 304's cookie goes to the client it answered, never into the store.
        gh.get("/ck/reval").await;
        let r = gh.get("/ck/reval").await;
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        assert_eq!(cookies(&r), ["sid=from-304"]);
        let r = gh.get("/ck/reval").await;
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        assert!(cookies(&r).is_empty(), "{:?}", cookies(&r));
        // store: stored whole, every client gets the cookie.
        for _ in 0..2 {
            let r = gh.get("/keep/a").await;
            assert_eq!(cookies(&r), ["sid=1; Path=/", "theme=dark"]);
        }
        assert_eq!(origin.hits("/keep/a"), 1);
    }
);

both_stores!(
    equivalent_accept_headers_share_a_variant_and_codings_never_mix,
    |store: TestStore| async move {
        let slow = Gate::new();
        let g = slow.clone();
        let origin = TestOrigin::start(move |s| {
            let h = |n: &str| s.header(n).unwrap_or_default().to_ascii_lowercase();
            let ae = h("accept-encoding");
            let wants_gzip = ae
                .split(',')
                .any(|m| m.trim().starts_with("gzip") && !m.replace(' ', "").ends_with("q=0"));
            let coded = |r: Reply| {
                if wants_gzip || s.path == "/ae/liar" {
                    r.header("content-encoding", "gzip")
                } else {
                    r
                }
            };
            let body = if wants_gzip || s.path == "/ae/liar" {
                "GZ"
            } else {
                "plain"
            };
            let r = Reply::ok(body).header("cache-control", "max-age=600");
            if s.path == "/ae/liar-slow" {
                return r
                    .header("vary", "Accept-Encoding")
                    .header("content-encoding", "gzip")
                    .held_by(&g);
            }
            match s.path.as_str() {
                "/al" => Reply::ok(format!("lang {}", h("accept-language")))
                    .header("cache-control", "max-age=600")
                    .header("vary", "Accept-Language"),
                "/ae/vary" | "/ae/liar" => coded(r.header("vary", "Accept-Encoding")),
                // An origin that compresses but forgets Vary.
                "/ae/novary" => coded(r),
                _ => Reply::status(404, ""),
            }
        })
        .await;
        let text = format!(
            "{}[cache]\nmax_variants = 8\n",
            store.toml(&prefix("vary-norm"))
        );
        let gh = Gatehouse::start(&text, &origin).await;
        let gh = &gh;
        let lang =
            |v: &'static str| async move { get_with(gh, "/al", &[("accept-language", v)]).await };
        lang("en-US,en;q=0.9,fr;q=0").await;
        for same in [
            "en;q=0.90, EN-us",
            "en-us , en ; q=0.9",
            "fr;q=0, en-us;q=1.0, en;q=0.9",
        ] {
            let r = lang(same).await;
            assert!(
                status(&r).starts_with("gatehouse; hit"),
                "{same}: {}",
                status(&r)
            );
        }
        let r = lang("en, en-US;q=0.9").await;
        assert!(
            !status(&r).starts_with("gatehouse; hit"),
            "another preference"
        );
        assert_eq!(origin.hits("/al"), 2);

        for path in ["/ae/vary", "/ae/novary"] {
            let ae = |v: Option<&'static str>| async move {
                let h: Vec<(&str, &str)> = v.map(|v| ("accept-encoding", v)).into_iter().collect();
                get_with(gh, path, &h).await
            };
            let r = ae(Some("gzip, deflate")).await;
            assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
            for same in ["deflate, gzip", "GZIP;q=1.0, Deflate"] {
                let r = ae(Some(same)).await;
                assert!(status(&r).starts_with("gatehouse; hit"), "{path} {same}");
                assert_eq!(r.text().await.unwrap(), "GZ");
            }
            for other in [Some("br"), Some("gzip;q=0, br"), Some("identity"), None] {
                for _ in 0..2 {
                    let r = ae(other).await;
                    assert!(
                        !r.headers().contains_key("content-encoding"),
                        "{path} {other:?}: a client that does not accept gzip got gzip"
                    );
                    assert_eq!(r.text().await.unwrap(), "plain", "{path} {other:?}");
                }
            }
            // With Vary, the gzip variant is still there for those who take it. (Without,
            // the identity answer says it varies on nothing and replaces it: identity
            // is acceptable to everyone.)
            if path == "/ae/vary" {
                let r = ae(Some("gzip,deflate")).await;
                assert!(status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
                assert_eq!(r.headers()["content-encoding"], "gzip");
            }
        }
        // An origin that answers gzip to a request that did not accept it: passed on
        // as the origin said, but never served from the cache to that request again.
        for ae in [&[("accept-encoding", "br")][..], &[]] {
            for _ in 0..2 {
                let r = get_with(gh, "/ae/liar", ae).await;
                assert!(
                    !status(&r).starts_with("gatehouse; hit"),
                    "{ae:?}: {}",
                    status(&r)
                );
            }
        }
        assert_eq!(origin.hits("/ae/liar"), 4);
        // ... nor to requests collapsed onto that fetch.
        let (answers, ()) = tokio::join!(
            futures_util::future::join_all((0..4).map(|_| get_with(
                gh,
                "/ae/liar-slow",
                &[("accept-encoding", "br")]
            )),),
            async {
                slow.held(1).await;
                wait_until("3 requests waiting on the fetch", || async {
                    gh.waiting() == 3
                })
                .await;
                slow.open();
            }
        );
        for r in &answers {
            assert!(!status(r).contains("collapsed"), "{}", status(r));
        }
    }
);
