//! Route-declared gates on the proxy path: capacity admission before forwarding (no
//! overbooking, idempotent per member, a failed request frees its place) and a lock
//! held for the length of a request (one at a time, fence forwarded).

mod support;

use std::sync::Arc;

use serde_json::{json, Value};
use support::*;

fn cfg(store: &TestStore, name: &str) -> String {
    format!(
        "{}{}{}",
        store.toml(&prefix(name)),
        capacity_route("/api/sessions/{id}/check-in", "sessions"),
        lock_route("/api/participants/{id}/edit", "participants")
    )
}

async fn check_in(gh: &Gatehouse, session: &str, member: &str) -> (u16, Value) {
    let r = gh
        .client
        .post(gh.url(&format!("/api/sessions/{session}/check-in")))
        .header("x-participant-id", member)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

async fn counter(gh: &Gatehouse, session: &str) -> Value {
    get_json(
        &gh.client,
        &gh.api_url(&format!("/v1/capacity/sessions/{session}")),
    )
    .await
}

both_stores!(
    capacity_gate_admits_before_forwarding,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            if s.headers["x-participant-id"] == "broken" {
                Reply::status(500, "{}")
            } else {
                Reply::status(201, "{\"checkedIn\":true}")
            }
        })
        .await;
        let gh = Arc::new(Gatehouse::start(&cfg(&store, "capgate"), &origin).await);
        // Undefined counter: nothing forwarded.
        let (status, body) = check_in(&gh, "s1", "p-1").await;
        assert_eq!(status, 503);
        assert_eq!(body["error"], "CAPACITY_NOT_DEFINED");
        assert_eq!(origin.total(), 0);

        let r = gh
            .client
            .put(gh.api_url("/v1/capacity/sessions/s1"))
            .json(&json!({"capacity": 20}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // 50 participants race for 20 places.
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let gh = gh.clone();
                tokio::spawn(async move { check_in(&gh, "s1", &format!("p-{i}")).await })
            })
            .collect();
        let mut admitted = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let (status, body) = t.await.unwrap();
            match status {
                201 => admitted.push(i),
                409 => {
                    assert_eq!(body["error"], "CAPACITY_FULL");
                    assert_eq!(body["remaining"], 0);
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(admitted.len(), 20);
        assert_eq!(origin.total(), 20, "the full ones never reached the origin");
        assert_eq!(counter(&gh, "s1").await["count"], 20);
        // A retry of an admitted participant is forwarded and counts nothing.
        let (status, _) = check_in(&gh, "s1", &format!("p-{}", admitted[0])).await;
        assert_eq!(status, 201);
        assert_eq!(counter(&gh, "s1").await["count"], 20);

        // A failed request frees the place it took.
        gh.client
            .put(gh.api_url("/v1/capacity/sessions/s2"))
            .json(&json!({"capacity": 1}))
            .send()
            .await
            .unwrap();
        let (status, _) = check_in(&gh, "s2", "broken").await;
        assert_eq!(status, 500);
        assert_eq!(counter(&gh, "s2").await["count"], 0);
        let (status, _) = check_in(&gh, "s2", "p-ok").await;
        assert_eq!(status, 201);
        // Without a member id the request is refused before anything is counted.
        let r = gh
            .client
            .post(gh.url("/api/sessions/s2/check-in"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "MEMBER_MISSING");
    }
);

both_stores!(
    lock_gate_serializes_requests_and_forwards_the_fence,
    |store: TestStore| async move {
        // The first edit is held at the origin (and holds the lock) until the test
        // has seen a second refused.
        let gate = Gate::new();
        let g = gate.clone();
        let origin = TestOrigin::start(move |s| {
            let fence = s.headers["x-gatehouse-fence"].to_str().unwrap().to_string();
            Reply::ok(fence).held_by(&g)
        })
        .await;
        let gh = Arc::new(Gatehouse::start(&cfg(&store, "lockgate"), &origin).await);
        let edit = |gh: Arc<Gatehouse>| async move {
            let r = gh
                .client
                .post(gh.url("/api/participants/7/edit"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").cloned();
            (status, retry, r.text().await.unwrap())
        };
        let first = tokio::spawn(edit(gh.clone()));
        gate.held(1).await;
        // While the first holds the lock, a second is refused without reaching the origin.
        let (status, retry, body) = edit(gh.clone()).await;
        assert_eq!(status, 409);
        assert!(retry.is_some());
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "LOCK_HELD");
        assert_eq!(body["owner"]["route"], "/api/participants/{id}/edit");
        gate.open();
        let (status, _, fence1) = first.await.unwrap();
        assert_eq!(status, 200);
        // Released with the answer: the next request gets it, with a larger fence.
        let (status, _, fence2) = edit(gh.clone()).await;
        assert_eq!(status, 200);
        assert!(fence2.parse::<u64>().unwrap() > fence1.parse::<u64>().unwrap());
        assert_eq!(origin.total(), 2);
    }
);

#[test]
fn gate_config_errors_name_the_key() {
    let text = r#"
[[routes]]
path = "/a/{id}"
[routes.capacity]
ns = "bad/ns"
id = "{nope}"
member = "{other}"
[[routes]]
path = "/b/{id}"
[routes.lock]
ns = "locks"
id = "{id}"
ttl = "0s"
"#;
    let errs = gatehouse::Config::from_toml_str(text, &Default::default()).unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "routes[0].capacity.ns",
        "routes[0].capacity.id",
        "routes[0].capacity.member",
        "routes[1].lock.ttl",
    ] {
        assert!(keys.contains(&key), "{key} not in {errs:?}");
    }
}
