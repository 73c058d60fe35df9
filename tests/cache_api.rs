//! Looking inside the cache on the api listener (entries by prefix, one entry, stats)
//! and the optional `PURGE` method on the proxy listener, on both stores.

mod support;

use serde_json::Value;
use support::*;

fn cfg(store: &TestStore, name: &str, extra: &str) -> String {
    format!(
        "{}{extra}\n[[routes]]\npath = \"/\"\nttl = \"10m\"\ntags = [\"all\"]\n",
        store.toml(&prefix(name))
    )
}

async fn origin() -> TestOrigin {
    TestOrigin::start(|s| {
        let mut r = Reply::ok(format!("body of {}", s.path));
        if s.path.starts_with("/a/2") {
            r = r.header("vary", "Accept-Language");
        }
        r
    })
    .await
}

async fn api(gh: &Gatehouse, path: &str) -> (u16, Value) {
    let r = gh.client.get(gh.api_url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

both_stores!(
    entries_are_listed_by_prefix_paged_and_shown_one_by_one,
    |store: TestStore| async move {
        let origin = origin().await;
        let gh = Gatehouse::start(&cfg(&store, "inspect", ""), &origin).await;
        gh.get("/a/1").await;
        for lang in ["en", "fr"] {
            gh.client
                .get(gh.url("/a/2"))
                .header("accept-language", lang)
                .send()
                .await
                .unwrap();
        }
        gh.get("/b/1").await;
        let (status, body) = api(&gh, "/v1/cache/entries?prefix=/a/").await;
        assert_eq!(status, 200, "{body}");
        let entries = body["entries"].as_array().unwrap();
        let paths: Vec<&str> = entries
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/a/1", "/a/2", "/a/2"], "{body}");
        let mut langs: Vec<&str> = entries[1..]
            .iter()
            .map(|e| e["variant"]["accept-language"].as_str().unwrap())
            .collect();
        langs.sort();
        assert_eq!(langs, ["en", "fr"]);
        for e in entries {
            assert_eq!(e["status"], 200);
            assert_eq!(e["tiers"], serde_json::json!(["l1", "l2"]), "{e}");
            assert!(e["freshSeconds"].as_u64().unwrap() > 590);
            assert_eq!(e["tags"], serde_json::json!(["all"]));
            assert!(e["bytes"].as_u64().unwrap() > 0);
        }
        assert_eq!(body["next"], Value::Null);
        // A page of one path, then the next.
        let (_, first) = api(&gh, "/v1/cache/entries?prefix=/a/&limit=1").await;
        assert_eq!(first["entries"].as_array().unwrap().len(), 1);
        assert_eq!(first["next"], "/a/1");
        let (_, second) = api(&gh, "/v1/cache/entries?prefix=/a/&limit=1&after=/a/1").await;
        assert_eq!(second["entries"][0]["path"], "/a/2");
        // The prefix is read canonically, as purges read it.
        let (_, canonical) = api(&gh, "/v1/cache/entries?prefix=/%61/").await;
        assert_eq!(canonical["entries"].as_array().unwrap().len(), 3);
        // One entry, with its stored headers.
        let id = entries[0]["id"].as_str().unwrap();
        let (status, one) = api(&gh, &format!("/v1/cache/entries/{id}")).await;
        assert_eq!(status, 200, "{one}");
        assert!(one["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "content-type" && h[1] == "text/plain"));
        let (status, missing) = api(&gh, "/v1/cache/entries/0000000000000000:00").await;
        assert_eq!(status, 404);
        assert_eq!(missing["error"], "NOT_CACHED");
        // Only the id as listed names the entry: not another spelling of it, not its
        // path's marker, not the keys kept beside it.
        let (path_hash, _) = id.split_once(':').unwrap();
        for other in [
            id.to_ascii_uppercase(),
            format!("{path_hash}:-"),
            format!("{path_hash}:tomb"),
            format!("{id}:lease"),
            format!("{id}:variants"),
        ] {
            let (status, body) = api(&gh, &format!("/v1/cache/entries/{other}")).await;
            assert_eq!(status, 404, "{other}: {body}");
            assert_eq!(body["error"], "NOT_CACHED", "{other}");
        }
        let (status, bad) = api(&gh, "/v1/cache/entries?limit=0").await;
        assert_eq!(status, 400);
        assert_eq!(bad["error"], "BAD_REQUEST");
        gh.shutdown().await;
    }
);

both_stores!(
    stats_count_lookups_per_tier,
    |store: TestStore| async move {
        let origin = origin().await;
        let gh = Gatehouse::start(&cfg(&store, "stats", ""), &origin).await;
        gh.get("/s").await;
        gh.get("/s").await;
        gh.get("/s").await;
        let (status, s) = api(&gh, "/v1/cache/stats").await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["l1"]["hits"], 2, "{s}");
        assert!(s["l1"]["entries"].as_u64().unwrap() >= 1);
        assert!(s["l1"]["bytes"].as_u64().unwrap() > 0);
        assert!(s["l1"]["hitRatio"].as_f64().unwrap() > 0.5);
        assert!(s["l2"]["misses"].as_u64().unwrap() >= 1);
        match store {
            TestStore::Memory => {
                assert_eq!(s["l2"]["backend"], "memory");
                assert!(s["l2"]["bytes"].as_u64().unwrap() > 0);
            }
            TestStore::Redis(_) => {
                assert_eq!(s["l2"]["backend"], "redis");
                assert_eq!(s["l2"]["bytes"], Value::Null);
            }
        }
        gh.shutdown().await;
    }
);

both_stores!(
    the_purge_method_is_answered_only_when_enabled_and_allowed,
    |store: TestStore| async move {
        let origin = origin().await;
        let purge = |gh: &Gatehouse, path: &str| {
            gh.client
                .request(http::Method::from_bytes(b"PURGE").unwrap(), gh.url(path))
                .send()
        };
        // Off by default: PURGE is the origin's business.
        let gh = Gatehouse::start(&cfg(&store, "purge-off", ""), &origin).await;
        let r = purge(&gh, "/p").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(origin.last().unwrap().method, "PURGE");
        gh.shutdown().await;

        let gh = Gatehouse::start(
            &cfg(&store, "purge-on", "[cache]\npurge_method = true\n"),
            &origin,
        )
        .await;
        gh.get("/p/1").await;
        gh.get("/p/1").await;
        assert_eq!(origin.hits("/p/1"), 1);
        let r = purge(&gh, "/p/./%31").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["purged"], 1);
        gh.get("/p/1").await;
        assert_eq!(origin.hits("/p/1"), 2, "purged, fetched again");
        assert!(!origin
            .seen()
            .iter()
            .any(|s| s.method == "PURGE" && s.path == "/p/1"));
        gh.shutdown().await;

        let gh = Gatehouse::start(
            &cfg(
                &store,
                "purge-denied",
                "[cache]\npurge_method = true\npurge_allow = [\"10.0.0.0/8\"]\n",
            ),
            &origin,
        )
        .await;
        gh.get("/q").await;
        let before = origin.total();
        let r = purge(&gh, "/q").await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "PURGE_NOT_ALLOWED"
        );
        assert_eq!(origin.total(), before, "neither purged nor forwarded");
        let r = gh.get("/q").await;
        assert!(r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit"));
        gh.shutdown().await;
    }
);

#[test]
fn purge_networks_are_validated() {
    let errs = gatehouse::Config::from_toml_str(
        "[cache]\npurge_allow = [\"10.0.0.0/33\", \"nope\"]\n",
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|e| e.key == "cache.purge_allow"));
    let net: gatehouse::config::Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.9.8.7".parse().unwrap()));
    assert!(!net.contains("11.0.0.1".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
    let v6: gatehouse::config::Cidr = "::1".parse().unwrap();
    assert!(v6.contains("::1".parse().unwrap()));
    assert!(!v6.contains("::2".parse().unwrap()));
}
