//! The proxy path against a real origin, real listeners, and both stores.

mod support;

use std::sync::Arc;

use support::*;

fn routes(prefix: &str) -> String {
    format!(
        r#"
[[routes]]
path = "/api/participants/{{id}}"
ttl = "10m"
negative_ttl = "30s"
tags = ["participant:{{id}}"]

[[routes]]
path = "/api/override"
ttl = "10m"
override = true

[[routes]]
path = "/api/nocache"
cache = false

[[routes]]
path = "/api/shortttl"
ttl = "1s"

[cache]
max_object = "64KiB"
lock_timeout = "5s"

# {prefix}
"#
    )
}

both_stores!(
    miss_then_hit_with_cache_status,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| Reply::ok("participant 7")).await;
        let p = prefix("miss_then_hit");
        let gh = Gatehouse::start(&format!("{}{}", store.toml(&p), routes(&p)), &origin).await;

        let r1 = gh.get("/api/participants/7").await;
        assert_eq!(r1.status(), 200);
        assert_eq!(r1.headers()["cache-status"], "gatehouse; fwd=miss; stored");
        assert_eq!(r1.text().await.unwrap(), "participant 7");

        let r2 = gh.get("/api/participants/7").await;
        assert_eq!(r2.status(), 200);
        let status = r2.headers()["cache-status"].to_str().unwrap().to_string();
        assert!(status.starts_with("gatehouse; hit; ttl="), "{status}");
        assert!(r2.headers().contains_key("age"));
        assert_eq!(r2.text().await.unwrap(), "participant 7");
        assert_eq!(origin.hits("/api/participants/7"), 1);
        gh.assert_metric(
            r#"gatehouse_cache_lookups_total{result="hit",tier="l1"}"#,
            1.0,
        )
        .await;
        gh.shutdown().await;
    }
);

both_stores!(
    five_hundred_concurrent_cold_gets_make_one_origin_request,
    |store: TestStore| async move {
        let gate = Gate::new();
        let g = gate.clone();
        let origin = TestOrigin::start(move |_| Reply::ok("slow").held_by(&g)).await;
        let p = prefix("coalesce500");
        let gh =
            Arc::new(Gatehouse::start(&format!("{}{}", store.toml(&p), routes(&p)), &origin).await);
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let gh = gh.clone();
            tasks.push(tokio::spawn(async move {
                let r = gh.get("/api/participants/42").await;
                let status = r.status();
                let cs = r.headers()["cache-status"].to_str().unwrap().to_string();
                (status, cs, r.text().await.unwrap())
            }));
        }
        // One fetch held at the origin, the 499 others waiting for it.
        gate.held(1).await;
        wait_until("499 waiters", || async { gh.waiting() == 499 }).await;
        gate.open();
        let mut collapsed = 0;
        for t in tasks {
            let (status, cs, body) = t.await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(body, "slow");
            if cs.contains("collapsed") {
                collapsed += 1;
            }
        }
        assert_eq!(
            origin.hits("/api/participants/42"),
            1,
            "exactly one origin fetch"
        );
        assert_eq!(collapsed, 499);
        gh.assert_metric("gatehouse_coalesced_requests_total", 499.0)
            .await;
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
);

both_stores!(
    a_404_served_fifty_times_makes_one_origin_request,
    |store: TestStore| async move {
        let origin =
            TestOrigin::start(|_| Reply::status(404, "{\"error\":\"no such participant\"}")).await;
        let p = prefix("negative");
        let gh = Gatehouse::start(&format!("{}{}", store.toml(&p), routes(&p)), &origin).await;
        for i in 0..50 {
            let r = gh.get("/api/participants/999").await;
            assert_eq!(r.status(), 404);
            if i > 0 {
                assert!(r.headers()["cache-status"]
                    .to_str()
                    .unwrap()
                    .starts_with("gatehouse; hit"));
            }
            assert_eq!(
                r.text().await.unwrap(),
                "{\"error\":\"no such participant\"}"
            );
        }
        assert_eq!(origin.hits("/api/participants/999"), 1);
        gh.assert_metrics(&[
            (
                r#"gatehouse_cache_lookups_total{result="negative_hit",tier="l1"}"#,
                49.0,
            ),
            (r#"gatehouse_cache_stores_total{result="negative"}"#, 1.0),
        ])
        .await;
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_entry_written_by_one_instance_is_served_by_another() {
    let store = TestStore::redis();
    let origin = TestOrigin::start(|_| Reply::ok("shared")).await;
    let p = prefix("l2share");
    let text = format!("{}{}", store.toml(&p), routes(&p));
    let a = Gatehouse::start(&text, &origin).await;
    let b = Gatehouse::start(&text, &origin).await;
    // Behind one load balancer every instance sees the same Host.
    let get = |gh: &Gatehouse| {
        gh.client
            .get(gh.url("/api/participants/5"))
            .header("host", "checkin.example")
            .send()
    };
    assert_eq!(get(&a).await.unwrap().text().await.unwrap(), "shared");
    let r = get(&b).await.unwrap();
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(r.text().await.unwrap(), "shared");
    assert_eq!(
        origin.total(),
        1,
        "the second instance never touched the origin"
    );
    b.assert_metric(
        r#"gatehouse_cache_lookups_total{result="hit",tier="l2"}"#,
        1.0,
    )
    .await;
    // ... and the L2 hit filled B's L1.
    get(&b).await.unwrap();
    b.assert_metric(
        r#"gatehouse_cache_lookups_total{result="hit",tier="l1"}"#,
        1.0,
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
