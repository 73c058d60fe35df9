//! Filling the memory store past its byte budget (a flood of distinct URLs) must not
//! cost the coordination state anything, and must not let a purge miss an entry: what
//! was purged is never served again, from either tier.

use serde_json::{json, Value};

use super::support::*;
use crate::both_stores;

const BODY: usize = 10 << 10;

/// A memory store of 1 MiB under an L1 of 4 MiB: a few hundred 10 KiB answers
/// overflow the store many times, while L1 keeps them all.
fn cfg(store: &TestStore, name: &str) -> String {
    format!(
        r#"{}memory_max_bytes = "1MiB"

[cache]
max_bytes = "4MiB"
max_object = "64KiB"

[[routes]]
path = "/items/{{id}}"
ttl = "10m"
tags = ["item:{{id}}"]

[[routes]]
path = "/docs"
ttl = "10m"

[[routes]]
path = "/fill"
ttl = "10m"
"#,
        store.toml(&prefix(name))
    )
}

async fn origin() -> TestOrigin {
    TestOrigin::start(|s| {
        if s.path.starts_with("/fill/") {
            Reply::ok(vec![b'f'; BODY])
        } else {
            Reply::ok(format!("origin answer for {}", s.path))
        }
    })
    .await
}

/// Sends `n` distinct 10 KiB URLs through the proxy.
async fn flood(gh: &Gatehouse, from: usize, n: usize) {
    for i in from..from + n {
        let r = gh.get(&format!("/fill/{i}")).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}

/// Evictions happened (the memory store) or the store has no budget (Redis).
async fn assert_overflowed(gh: &Gatehouse, store: &TestStore) {
    if matches!(store, TestStore::Memory) {
        let evictions = gh.metric("gatehouse_store_evictions_total").await;
        assert!(evictions > 100.0, "{evictions} evictions");
        let held = gh.metric("gatehouse_store_memory_bytes").await;
        assert!(held <= (1u64 << 20) as f64, "{held} bytes held");
    }
}

both_stores!(
    coordination_state_survives_a_flood_of_cache_writes,
    |store: TestStore| async move {
        let origin = origin().await;
        let gh = Gatehouse::start(&cfg(&store, "sec-mem-coord"), &origin).await;
        use reqwest::Method;
        let c = "/v1/capacity/sessions/s-1";
        assert_eq!(
            api_json(&gh, Method::PUT, c, json!({"capacity": 3}))
                .await
                .0,
            200
        );
        let admit = || {
            api_json(
                &gh,
                Method::POST,
                "/v1/capacity/sessions/s-1/admissions",
                json!({"memberId": "p-1"}),
            )
        };
        let a = admit().await;
        assert_eq!(a.0, 201, "{a:?}");
        let l = "/v1/locks/docs/d-1";
        let owner = json!({"userId": "alice", "sessionId": "s-alice"});
        let lock = api_json(
            &gh,
            Method::POST,
            l,
            json!({"ttlMs": 300_000, "owner": owner}),
        )
        .await;
        assert_eq!(lock.0, 201, "{lock:?}");
        let payload = json!({"participant": 17});
        let xfer = api_json(
            &gh,
            Method::POST,
            "/v1/transfers",
            json!({"payload": payload, "ttlMs": 60_000, "audience": "admin"}),
        )
        .await;
        assert_eq!(xfer.0, 201, "{xfer:?}");

        flood(&gh, 0, 400).await;
        assert_overflowed(&gh, &store).await;

        let a = api_json(&gh, Method::GET, c, Value::Null).await;
        assert_eq!(
            (a.0, &a.1["capacity"], &a.1["count"]),
            (200, &json!(3), &json!(1)),
            "{a:?}"
        );
        // The admitted member is still admitted: nothing is counted twice.
        let a = admit().await;
        assert_eq!((a.0, &a.1["count"]), (200, &json!(1)), "{a:?}");
        let held = api_json(&gh, Method::GET, l, Value::Null).await;
        assert_eq!(held.0, 200, "{held:?}");
        assert_eq!(held.1["fence"], lock.1["fence"]);
        assert_eq!(held.1["owner"]["userId"], "alice");
        let other = json!({"userId": "mallory", "sessionId": "s-m"});
        let a = api_json(&gh, Method::POST, l, json!({"ttlMs": 1000, "owner": other})).await;
        assert_eq!((a.0, &a.1["error"]), (409, &json!("LOCK_HELD")), "{a:?}");
        let a = api_json(
            &gh,
            Method::POST,
            &format!("{l}/renew"),
            json!({"lockToken": lock.1["lockToken"], "ttlMs": 300_000}),
        )
        .await;
        assert_eq!((a.0, &a.1["fence"]), (200, &lock.1["fence"]), "{a:?}");
        let a = api_json(
            &gh,
            Method::POST,
            "/v1/transfers/claim",
            json!({"token": xfer.1["token"], "audience": "admin"}),
        )
        .await;
        assert_eq!((a.0, &a.1["payload"]), (200, &payload), "{a:?}");
        gh.shutdown().await;
    }
);

/// Caches `old` (L1 keeps it through the flood while the memory store evicts it,
/// oldest first, with the indexes a purge would find it by),
/// floods the store, caches `new` (live in the store when the purge comes), purges
/// both with `purge`, and checks that each is fetched from the origin again.
async fn purge_after_flood(store: TestStore, old: &str, new: &str, purge: Value) {
    let origin = origin().await;
    let gh = Gatehouse::start(&cfg(&store, "sec-mem-purge"), &origin).await;
    assert_eq!(gh.get(old).await.status(), 200);
    assert_eq!(gh.get(old).await.status(), 200);
    flood(&gh, 0, 300).await;
    assert_eq!(gh.get(new).await.status(), 200);
    assert_eq!(gh.get(new).await.status(), 200);
    flood(&gh, 300, 5).await;
    assert_overflowed(&gh, &store).await;

    let r = gh.api_post("/v1/cache/purge", &purge).await;
    assert_eq!(r.status(), 200);
    for path in [old, new] {
        let before = origin.hits(path);
        let r = gh.get(path).await;
        let status = r.headers()["cache-status"].to_str().unwrap().to_string();
        assert_eq!(r.text().await.unwrap(), format!("origin answer for {path}"));
        assert_eq!(
            origin.hits(path),
            before + 1,
            "{path} was purged but served without asking the origin ({status})"
        );
    }
    gh.shutdown().await;
}

both_stores!(
    tag_purges_after_heavy_eviction_are_never_missed,
    |store: TestStore| async move {
        let tags = json!({"tags": ["item:old", "item:new"]});
        purge_after_flood(store, "/items/old", "/items/new", tags).await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_purges_after_heavy_eviction_are_never_missed() {
    let prefix = json!({"prefix": "/docs/"});
    purge_after_flood(TestStore::memory(), "/docs/old", "/docs/new", prefix).await;
}

/// The same on Redis, where the path list is a lexicographic range (every member at
/// one score, expiries kept apart): a prefix purge misses no path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_purges_after_heavy_eviction_are_never_missed_on_redis() {
    let prefix = json!({"prefix": "/docs/"});
    purge_after_flood(TestStore::redis(), "/docs/old", "/docs/new", prefix).await;
}
