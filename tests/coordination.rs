//! The native coordination endpoints (docs/api.md, docs/openapi.yaml): capacity, locks, transfers — every
//! status code of the contract on both stores, contention with several instances
//! sharing one real Redis, Redis Cluster, a store outage, NOSCRIPT recovery, and the
//! capacity sync to the origin.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse::metrics::Metrics;
use gatehouse::store::coord::CAPACITY_SHARDS;
use gatehouse::store::Store;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

/// One api answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

async fn start(text: &str) -> Gatehouse {
    Gatehouse::start_config(config(text, None)).await
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("api answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        body,
        headers,
    }
}

async fn call(gh: &Gatehouse, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut req = gh.client.request(method, gh.api_url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

async fn get(gh: &Gatehouse, path: &str) -> Answer {
    call(gh, Method::GET, path, None).await
}

async fn post(gh: &Gatehouse, path: &str, body: Value) -> Answer {
    call(gh, Method::POST, path, Some(body)).await
}

async fn put(gh: &Gatehouse, path: &str, body: Value) -> Answer {
    call(gh, Method::PUT, path, Some(body)).await
}

async fn delete(gh: &Gatehouse, path: &str) -> Answer {
    call(gh, Method::DELETE, path, None).await
}

async fn unlock(gh: &Gatehouse, path: &str, token: &str) -> Answer {
    send(
        gh.client
            .delete(gh.api_url(path))
            .header("lock-token", token),
    )
    .await
}

async fn raw(gh: &Gatehouse, method: Method, path: &str, body: &str) -> Answer {
    send(
        gh.client
            .request(method, gh.api_url(path))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn owner(user: &str) -> Value {
    json!({"userId": user, "sessionId": format!("s-{user}")})
}

fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.body["error"], code, "{a:?}");
    assert!(a.body["message"].is_string(), "{a:?}");
}

// ---------------------------------------------------------------- capacity

both_stores!(capacity_contract, |store: TestStore| async move {
    let gh = start(&store.toml(&prefix("cap"))).await;
    let c = "/v1/capacity/sessions/s-1";

    assert_error(&get(&gh, c).await, 404, "NOT_FOUND");
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-1"})).await;
    assert_error(&a, 404, "NOT_FOUND");

    let a = put(&gh, c, json!({"capacity": 2})).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["capacity"], 2);
    assert_eq!(a.body["count"], 0);
    assert_eq!(a.body["remaining"], 2);
    let v0 = a.body["version"].as_u64().unwrap();

    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-1"})).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["admitted"], true);
    assert_eq!(a.body["count"], 1);
    assert_eq!(a.body["capacity"], 2);
    assert_eq!(a.body["remaining"], 1);
    assert!(a.body["version"].as_u64().unwrap() > v0);

    // A retry of an admitted member: 200, same body, nothing counted twice.
    let again = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-1"})).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, a.body);

    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-2"})).await;
    assert_eq!(a.status, 201);
    let full = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-3"})).await;
    assert_error(&full, 409, "CAPACITY_FULL");
    assert_eq!(full.body["count"], 2);
    assert_eq!(full.body["capacity"], 2);
    assert_eq!(full.body["remaining"], 0);

    // Lowering below the count is allowed; nobody new until count < capacity.
    let a = put(&gh, c, json!({"capacity": 1})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["count"], 2);
    assert_eq!(a.body["remaining"], 0);
    assert_eq!(
        delete(&gh, &format!("{c}/admissions/p-1")).await.status,
        204
    );
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-3"})).await;
    assert_error(&a, 409, "CAPACITY_FULL");
    assert_eq!(
        delete(&gh, &format!("{c}/admissions/p-2")).await.status,
        204
    );
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "p-3"})).await;
    assert_eq!(a.status, 201);

    let a = delete(&gh, &format!("{c}/admissions/p-1")).await;
    assert_error(&a, 404, "NOT_ADMITTED");
    let a = delete(&gh, "/v1/capacity/sessions/none/admissions/p-1").await;
    assert_error(&a, 404, "NOT_ADMITTED");

    let a = get(&gh, c).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        (a.body["capacity"].clone(), a.body["count"].clone()),
        (json!(1), json!(1))
    );

    // The optional capacity defines the counter on first use, and only then.
    let d = "/v1/capacity/sessions/s-2/admissions";
    let a = post(&gh, d, json!({"memberId": "p-1", "capacity": 1})).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["capacity"], 1);
    let a = post(&gh, d, json!({"memberId": "p-2", "capacity": 5})).await;
    assert_error(&a, 409, "CAPACITY_FULL");

    gh.assert_family(
        "gatehouse_capacity_admissions_total",
        &[
            (r#"result="admitted""#, 4.0),
            (r#"result="already_admitted""#, 1.0),
            (r#"result="full""#, 3.0),
            (r#"result="not_found""#, 1.0),
        ],
    )
    .await;
    gh.shutdown().await;
});

both_stores!(
    malformed_requests_name_the_field,
    |store: TestStore| async move {
        let gh = start(&store.toml(&prefix("bad"))).await;
        let c = "/v1/capacity/sessions/s-1";
        let a = raw(&gh, Method::PUT, c, "{not json").await;
        assert_error(&a, 400, "BAD_REQUEST");
        let a = raw(&gh, Method::PUT, c, "").await;
        assert_error(&a, 400, "BAD_REQUEST");
        assert_eq!(a.body["field"], "body");
        let a = put(&gh, c, json!({"capacity": -1})).await;
        assert_error(&a, 400, "BAD_REQUEST");
        assert_eq!(a.body["field"], "capacity");
        let a = put(&gh, c, json!({"capacity": 1, "colour": "red"})).await;
        assert_eq!(a.body["field"], "colour", "{a:?}");
        let a = put(&gh, c, json!({})).await;
        assert_eq!(a.body["field"], "capacity", "{a:?}");
        put(&gh, c, json!({"capacity": 1})).await;
        let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "a b"})).await;
        assert_error(&a, 400, "BAD_REQUEST");
        assert_eq!(a.body["field"], "memberId");
        let a = post(&gh, &format!("{c}/admissions"), json!({"member": "p-1"})).await;
        assert_eq!(a.status, 400);
        let a = get(&gh, "/v1/capacity/bad%20ns/s-1").await;
        assert_error(&a, 400, "BAD_REQUEST");
        assert_eq!(a.body["field"], "ns");
        let a = get(&gh, &format!("/v1/capacity/ns/{}", "x".repeat(201))).await;
        assert_eq!(a.body["field"], "id", "{a:?}");
        let a = delete(&gh, "/v1/capacity/ns/id/admissions/a%24b").await;
        assert_eq!(a.body["field"], "memberId", "{a:?}");

        let l = "/v1/locks/docs/d-1";
        let a = post(&gh, l, json!({"ttlMs": 0, "owner": owner("u1")})).await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("ttlMs")));
        let a = post(&gh, l, json!({"ttlMs": 1000, "owner": "me"})).await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("owner")));
        let a = post(&gh, l, json!({"ttlMs": 1000})).await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("owner")));
        let a = post(
            &gh,
            l,
            json!({"ttlMs": 1000, "owner": owner("u1"), "waitMs": 3_600_000}),
        )
        .await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("waitMs")));
        let a = post(&gh, l, json!({"ttlMs": "soon", "owner": owner("u1")})).await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("ttlMs")));
        let a = delete(&gh, l).await;
        assert_error(&a, 400, "BAD_REQUEST");
        assert_eq!(a.body["field"], "Lock-Token");
        let a = post(&gh, &format!("{l}/renew"), json!({"ttlMs": 1000})).await;
        assert_eq!(
            (a.status, a.body["field"].clone()),
            (400, json!("lockToken"))
        );

        let t = "/v1/transfers";
        let a = post(
            &gh,
            t,
            json!({"payload": {}, "ttlMs": 300_001, "audience": "admin"}),
        )
        .await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("ttlMs")));
        let a = post(
            &gh,
            t,
            json!({"payload": {}, "ttlMs": 0, "audience": "admin"}),
        )
        .await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("ttlMs")));
        let a = post(&gh, t, json!({"ttlMs": 1000, "audience": "admin"})).await;
        assert_eq!((a.status, a.body["field"].clone()), (400, json!("payload")));
        let a = post(&gh, "/v1/transfers/claim", json!({"token": "x"})).await;
        assert_eq!(
            (a.status, a.body["field"].clone()),
            (400, json!("audience"))
        );

        // Routes are exact: a brace-less path is not a prefix on the api listener.
        assert_error(
            &post(&gh, "/v1/transfers/other", json!({})).await,
            404,
            "NO_ROUTE",
        );
        assert_error(&get(&gh, "/v1/nothing").await, 404, "NO_ROUTE");
        assert_error(&get(&gh, "/v1/transfers").await, 405, "METHOD_NOT_ALLOWED");
        gh.shutdown().await;
    }
);

// ---------------------------------------------------------------- locks

both_stores!(lock_contract, |store: TestStore| async move {
    let gh = start(&store.toml(&prefix("lock"))).await;
    let l = "/v1/locks/docs/d-1";
    assert_error(&get(&gh, l).await, 404, "NOT_LOCKED");

    let a = post(&gh, l, json!({"ttlMs": 60_000, "owner": owner("alice")})).await;
    assert_eq!(a.status, 201, "{a:?}");
    let token = a.body["lockToken"].as_str().unwrap().to_string();
    assert!(token.len() >= 22, "128+ bits: {token}");
    let fence = a.body["fence"].as_u64().unwrap();
    assert_eq!(fence, 1);
    assert_eq!(a.body["owner"], owner("alice"));
    let expires = a.body["expiresAt"].as_str().unwrap().to_string();
    assert!(expires.ends_with('Z') && expires.contains('T'), "{expires}");

    let held = post(&gh, l, json!({"ttlMs": 1000, "owner": owner("bob")})).await;
    assert_error(&held, 409, "LOCK_HELD");
    assert_eq!(held.body["owner"], owner("alice"));
    assert_eq!(held.body["expiresAt"], expires.as_str());
    let retry: u64 = held.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    let a = get(&gh, l).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["owner"], owner("alice"));
    assert_eq!(a.body["fence"], fence);
    assert_eq!(a.body["expiresAt"], expires.as_str());
    assert!(
        a.body.get("lockToken").is_none(),
        "the token is never shown again"
    );

    // A non-owner can neither renew nor release.
    let forged = "AAAAAAAAAAAAAAAAAAAAAA";
    let a = post(
        &gh,
        &format!("{l}/renew"),
        json!({"lockToken": forged, "ttlMs": 1000}),
    )
    .await;
    assert_error(&a, 409, "NOT_OWNER");
    assert_error(&unlock(&gh, l, forged).await, 409, "NOT_OWNER");
    assert_eq!(get(&gh, l).await.body["fence"], fence);

    let a = post(
        &gh,
        &format!("{l}/renew"),
        json!({"lockToken": token, "ttlMs": 120_000}),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["fence"], fence, "renewal keeps the fence");
    assert!(a.body["expiresAt"].as_str().unwrap() > expires.as_str());

    assert_eq!(unlock(&gh, l, &token).await.status, 204);
    assert_error(&get(&gh, l).await, 404, "NOT_LOCKED");
    assert_error(&unlock(&gh, l, &token).await, 404, "NOT_LOCKED");
    let a = post(
        &gh,
        &format!("{l}/renew"),
        json!({"lockToken": token, "ttlMs": 1000}),
    )
    .await;
    assert_error(&a, 404, "NOT_LOCKED");

    let a = post(&gh, l, json!({"ttlMs": 1000, "owner": owner("bob")})).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["fence"], 2);
    assert_ne!(a.body["lockToken"], token.as_str());

    gh.assert_family(
        "gatehouse_lock_operations_total",
        &[
            (r#"op="acquire",result="held""#, 1.0),
            (r#"op="release",result="not_owner""#, 1.0),
        ],
    )
    .await;
    gh.shutdown().await;
});

both_stores!(
    fences_keep_growing_across_expiry,
    |store: TestStore| async move {
        let gh = start(&store.toml(&prefix("fence"))).await;
        let l = "/v1/locks/docs/d-2";
        let mut last = 0;
        for _ in 0..3 {
            let a = post(&gh, l, json!({"ttlMs": 30, "owner": owner("a")})).await;
            assert_eq!(a.status, 201, "{a:?}");
            let fence = a.body["fence"].as_u64().unwrap();
            assert!(fence > last, "{fence} after {last}");
            last = fence;
            assert!(
                eventually(Duration::from_secs(5), || async {
                    get(&gh, l).await.status == 404
                })
                .await,
                "the lock expires"
            );
        }
        gh.shutdown().await;
    }
);

both_stores!(max_hold_caps_renewals, |store: TestStore| async move {
    let text = format!(
        "{}[locks]\nmax_hold = \"10m\"\n",
        store.toml(&prefix("hold"))
    );
    let gh = start(&text).await;
    let l = "/v1/locks/docs/d-3";
    let a = post(&gh, l, json!({"ttlMs": 3_600_000, "owner": owner("a")})).await;
    assert_eq!(a.status, 201);
    let capped = a.body["expiresAt"].as_str().unwrap().to_string();
    let token = a.body["lockToken"].as_str().unwrap().to_string();
    let a = post(
        &gh,
        &format!("{l}/renew"),
        json!({"lockToken": token, "ttlMs": 3_600_000}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body["expiresAt"],
        capped.as_str(),
        "no renewal extends past acquisition + max_hold"
    );
    let retry: u64 = post(&gh, l, json!({"ttlMs": 1000, "owner": owner("b")}))
        .await
        .headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= 600, "{retry}");
    gh.shutdown().await;
});

/// Starts a waiter, waits until its first attempt was refused, releases, and checks
/// the waiter got the lock well before its waitMs ran out — with `wait_poll` at an
/// hour, only the release notification can have woken it.
async fn waiter_is_woken_by_release(holder: &Gatehouse, waiter: Arc<Gatehouse>) {
    let l = "/v1/locks/docs/wake";
    let a = post(
        holder,
        l,
        json!({"ttlMs": 600_000, "owner": owner("holder")}),
    )
    .await;
    assert_eq!(a.status, 201);
    let token = a.body["lockToken"].as_str().unwrap().to_string();
    let fence = a.body["fence"].as_u64().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            waiter.state().store.subscription_live()
        })
        .await
    );
    let attempts = r#"gatehouse_store_command_duration_seconds_count{command="lock_acquire"}"#;
    let before = waiter.metric(attempts).await;
    let wait_ms = 30_000u64;
    let started = std::time::Instant::now();
    let w = waiter.clone();
    let task = tokio::spawn(async move {
        let a = post(
            &w,
            l,
            json!({"ttlMs": 10_000, "owner": owner("waiter"), "waitMs": wait_ms}),
        )
        .await;
        (a, started.elapsed())
    });
    assert!(
        eventually(Duration::from_secs(10), || async {
            waiter.metric(attempts).await > before
        })
        .await,
        "the waiter tried once and is waiting"
    );
    assert!(
        !task.is_finished(),
        "the waiter waits while the lock is held"
    );
    assert_eq!(unlock(holder, l, &token).await.status, 204);
    let (a, elapsed) = task.await.unwrap();
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["owner"], owner("waiter"));
    assert!(a.body["fence"].as_u64().unwrap() > fence);
    assert!(
        elapsed < Duration::from_millis(wait_ms),
        "woken by the release, not by its waitMs running out ({elapsed:?})"
    );
}

both_stores!(wait_is_woken_by_release, |store: TestStore| async move {
    let text = format!(
        "{}[locks]\nwait_poll = \"1h\"\n",
        store.toml(&prefix("wake"))
    );
    let gh = Arc::new(start(&text).await);
    waiter_is_woken_by_release(&gh, gh.clone()).await;
    Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_instance_wakes_a_waiter_on_another() {
    let store = TestStore::redis();
    let text = format!(
        "{}[locks]\nwait_poll = \"1h\"\n",
        store.toml(&prefix("wake2"))
    );
    let a = start(&text).await;
    let b = Arc::new(start(&text).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.state().store.subscription_live()
        })
        .await
    );
    waiter_is_woken_by_release(&a, b.clone()).await;
    a.shutdown().await;
    Arc::try_unwrap(b).ok().unwrap().shutdown().await;
}

both_stores!(
    a_waiter_gets_an_expired_lock_without_any_release,
    |store: TestStore| async move {
        let gh = start(&store.toml(&prefix("expirewait"))).await;
        let l = "/v1/locks/docs/lapse";
        let a = post(&gh, l, json!({"ttlMs": 300, "owner": owner("holder")})).await;
        assert_eq!(a.status, 201);
        let a = post(
            &gh,
            l,
            json!({"ttlMs": 1000, "owner": owner("waiter"), "waitMs": 20_000}),
        )
        .await;
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body["fence"], 2);
        // A short wait that runs out answers 409 like no wait at all.
        let a = post(
            &gh,
            l,
            json!({"ttlMs": 1000, "owner": owner("late"), "waitMs": 20}),
        )
        .await;
        assert_error(&a, 409, "LOCK_HELD");
        assert_eq!(a.body["owner"], owner("waiter"));
        gh.shutdown().await;
    }
);

// ---------------------------------------------------------------- transfers

both_stores!(transfer_contract, |store: TestStore| async move {
    let gh = start(&store.toml(&prefix("xfer"))).await;
    let payload = json!({"participant": 17, "seat": "A-3"});
    let a = post(
        &gh,
        "/v1/transfers",
        json!({"payload": payload, "ttlMs": 60_000, "audience": "admin"}),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    let token = a.body["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43, "256 bits, base64url without padding");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(a.body["expiresAt"].as_str().unwrap().ends_with('Z'));

    let claim = |audience: &'static str, token: String| {
        let gh = &gh;
        async move {
            post(
                gh,
                "/v1/transfers/claim",
                json!({"token": token, "audience": audience}),
            )
            .await
        }
    };
    // The wrong audience is refused and consumes nothing.
    assert_error(
        &claim("kiosk", token.clone()).await,
        403,
        "AUDIENCE_MISMATCH",
    );
    let a = claim("admin", token.clone()).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["payload"], payload);
    assert_error(&claim("admin", token.clone()).await, 410, "TRANSFER_GONE");
    assert_error(
        &claim("admin", "never-issued".into()).await,
        410,
        "TRANSFER_GONE",
    );

    let a = post(
        &gh,
        "/v1/transfers",
        json!({"payload": [1, 2], "ttlMs": 20, "audience": "admin"}),
    )
    .await;
    let short = a.body["token"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(5), || {
            let c = claim("kiosk", short.clone());
            async move { c.await.status == 410 }
        })
        .await,
        "an expired transfer is gone"
    );

    gh.assert_metric(r#"gatehouse_transfer_claims_total{result="claimed"}"#, 1.0)
        .await;
    assert!(
        gh.metric(r#"gatehouse_transfer_claims_total{result="gone"}"#)
            .await
            >= 3.0
    );
    assert!(
        gh.metric(r#"gatehouse_transfer_claims_total{result="audience_mismatch"}"#)
            .await
            >= 1.0
    );
    gh.shutdown().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_stored_under_the_hash_of_their_token_only() {
    let store = TestStore::redis();
    let p = prefix("xferkey");
    let gh = start(&store.toml(&p)).await;
    let a = post(
        &gh,
        "/v1/transfers",
        json!({"payload": {"secret": "s"}, "ttlMs": 60_000, "audience": "admin"}),
    )
    .await;
    let token = a.body["token"].as_str().unwrap().to_string();
    let TestStore::Redis(redis) = &store else {
        unreachable!()
    };
    let keys = redis.cmd("KEYS *");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    };
    assert!(keys.contains(&format!("{p}:xfer:{{{digest}}}")), "{keys}");
    assert!(!keys.contains(&token), "{keys}");
    gh.shutdown().await;
}

// ---------------------------------------------------------------- api token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_is_required_as_a_bearer_token_when_set() {
    let secret = "a-long-api-token-for-tests-32-bytes-or-more";
    let text = format!(
        "{}[api]\ntoken = \"{secret}\"\n",
        TestStore::memory().toml(&prefix("token"))
    );
    let gh = start(&text).await;
    let c = "/v1/capacity/sessions/s-1";
    let a = get(&gh, c).await;
    assert_error(&a, 401, "UNAUTHORIZED");
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let a = send(gh.client.get(gh.api_url(c)).bearer_auth("wrong-token")).await;
    assert_error(&a, 401, "UNAUTHORIZED");
    let a = send(
        gh.client
            .get(gh.api_url(c))
            .basic_auth(secret, None::<&str>),
    )
    .await;
    assert_error(&a, 401, "UNAUTHORIZED");
    let a = send(
        gh.client
            .put(gh.api_url(c))
            .bearer_auth(secret)
            .json(&json!({"capacity": 3})),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let a = send(gh.client.get(gh.api_url(c)).bearer_auth(secret)).await;
    assert_eq!(a.status, 200, "{a:?}");
    gh.shutdown().await;
}

// ---------------------------------------------------------------- contention

/// Several instances sharing one Redis.
async fn fleet(store: &TestStore, p: &str, n: usize) -> Vec<Arc<Gatehouse>> {
    // Thousands of requests queue on each instance's store connection in a debug
    // build on a small machine; the default 500ms would (rightly) answer 503.
    let text = format!("{}command_timeout = \"10s\"\n", store.toml(p));
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Arc::new(start(&text).await));
    }
    v
}

async fn shutdown_all(fleet: Vec<Arc<Gatehouse>>) {
    for gh in fleet {
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_members_race_for_five_hundred_places_across_three_instances() {
    let store = TestStore::redis();
    let fleet = fleet(&store, &prefix("race"), 3).await;
    let c = "/v1/capacity/event/e-1";
    assert_eq!(
        put(&fleet[0], c, json!({"capacity": 500})).await.status,
        200
    );
    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("{c}/admissions");
            let body = json!({"memberId": format!("m-{i}")});
            let first = post(&fleet[i % 3], &path, body.clone()).await.status;
            // An admitted member retries through the other instances (a client that
            // lost the answer): nothing may be counted twice.
            let mut retries = Vec::new();
            if first == 201 {
                for k in 1..3 {
                    retries.push(post(&fleet[(i + k) % 3], &path, body.clone()).await.status);
                }
            }
            (first, retries)
        }));
    }
    let (mut admitted, mut full) = (0, 0);
    for t in tasks {
        let (first, retries) = t.await.unwrap();
        match first {
            201 => admitted += 1,
            409 => full += 1,
            other => panic!("unexpected status {other}"),
        }
        assert!(retries.iter().all(|s| *s == 200), "{retries:?}");
    }
    assert_eq!(admitted, 500, "exactly capacity admitted");
    assert_eq!(full, 500);
    let a = get(&fleet[2], c).await;
    assert_eq!(a.body["count"], 500, "{a:?}");
    assert_eq!(a.body["remaining"], 0);
    shutdown_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_of_one_transfer_have_exactly_one_winner() {
    let store = TestStore::redis();
    let fleet = fleet(&store, &prefix("claims"), 3).await;
    let a = post(
        &fleet[0],
        "/v1/transfers",
        json!({"payload": {"n": 1}, "ttlMs": 60_000, "audience": "admin"}),
    )
    .await;
    let token = a.body["token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..50usize {
        let (gh, token) = (fleet[i % 3].clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            post(
                &gh,
                "/v1/transfers/claim",
                json!({"token": token, "audience": "admin"}),
            )
            .await
        }));
    }
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap().status).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 1), (410, 49)]));
    let mut gone = 0.0;
    for gh in &fleet {
        gone += gh
            .metric(r#"gatehouse_transfer_claims_total{result="gone"}"#)
            .await;
    }
    assert_eq!(gone, 49.0);
    shutdown_all(fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_race_for_one_lock_round_after_round() {
    let store = TestStore::redis();
    let fleet = fleet(&store, &prefix("lockrace"), 2).await;
    let l = "/v1/locks/room/r-1";
    let mut last_fence = 0;
    let mut stale_tokens: Vec<String> = Vec::new();
    for round in 0..20 {
        let race = |i: usize| {
            let gh = fleet[i].clone();
            tokio::spawn(async move {
                let who = format!("owner-{i}");
                (
                    who.clone(),
                    post(&gh, l, json!({"ttlMs": 30_000, "owner": owner(&who)})).await,
                )
            })
        };
        let (a, b) = (race(0), race(1));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let (winner, loser) = match (a.1.status, b.1.status) {
            (201, 409) => (a, b),
            (409, 201) => (b, a),
            other => panic!("round {round}: expected one holder, got {other:?}"),
        };
        assert_error(&loser.1, 409, "LOCK_HELD");
        assert_eq!(
            loser.1.body["owner"],
            owner(&winner.0),
            "the loser is told who holds it"
        );
        assert!(loser.1.headers.contains_key("retry-after"));
        let fence = winner.1.body["fence"].as_u64().unwrap();
        assert!(
            fence > last_fence,
            "round {round}: fence {fence} after {last_fence}"
        );
        last_fence = fence;
        let token = winner.1.body["lockToken"].as_str().unwrap().to_string();
        // Earlier holders' tokens (a paused client waking up) are refused.
        for stale in &stale_tokens {
            let r = post(
                &fleet[round % 2],
                &format!("{l}/renew"),
                json!({"lockToken": stale, "ttlMs": 1000}),
            )
            .await;
            assert_error(&r, 409, "NOT_OWNER");
            assert_error(
                &unlock(&fleet[(round + 1) % 2], l, stale).await,
                409,
                "NOT_OWNER",
            );
        }
        assert_eq!(get(&fleet[round % 2], l).await.body["fence"], fence);
        assert_eq!(unlock(&fleet[round % 2], l, &token).await.status, 204);
        stale_tokens.push(token);
        if stale_tokens.len() > 3 {
            stale_tokens.remove(0);
        }
    }
    shutdown_all(fleet).await;
}

// ---------------------------------------------------------------- store outages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_503_and_loses_nothing() {
    // Persistent, so the restarted server has what was written before the outage.
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut store = TestStore::Redis(redis);
    let gh = start(&store.toml(&prefix("outage"))).await;
    let c = "/v1/capacity/event/e-9";
    put(&gh, c, json!({"capacity": 10})).await;
    for m in ["m-1", "m-2", "m-3"] {
        let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": m})).await;
        assert_eq!(a.status, 201);
    }
    let lock = post(
        &gh,
        "/v1/locks/doc/1",
        json!({"ttlMs": 600_000, "owner": owner("a")}),
    )
    .await;
    let xfer = post(
        &gh,
        "/v1/transfers",
        json!({"payload": {"k": "v"}, "ttlMs": 300_000, "audience": "admin"}),
    )
    .await;

    store.redis_server().unwrap().stop();
    let down = [
        get(&gh, c).await,
        put(&gh, c, json!({"capacity": 11})).await,
        post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-4"})).await,
        delete(&gh, &format!("{c}/admissions/m-1")).await,
        post(
            &gh,
            "/v1/locks/doc/1",
            json!({"ttlMs": 1000, "owner": owner("b")}),
        )
        .await,
        get(&gh, "/v1/locks/doc/1").await,
        post(
            &gh,
            "/v1/locks/doc/1/renew",
            json!({"lockToken": "t", "ttlMs": 1000}),
        )
        .await,
        unlock(&gh, "/v1/locks/doc/1", "t").await,
        post(
            &gh,
            "/v1/transfers",
            json!({"payload": 1, "ttlMs": 1000, "audience": "admin"}),
        )
        .await,
        post(
            &gh,
            "/v1/transfers/claim",
            json!({"token": xfer.body["token"], "audience": "admin"}),
        )
        .await,
    ];
    for a in &down {
        assert_error(a, 503, "STORE_UNAVAILABLE");
        assert!(a.headers.contains_key("retry-after"));
    }
    gh.assert_metric(
        r#"gatehouse_capacity_admissions_total{result="error"}"#,
        1.0,
    )
    .await;

    store.redis_server().unwrap().restart();
    assert!(
        eventually(Duration::from_secs(15), || async {
            get(&gh, c).await.status == 200
        })
        .await,
        "answers again once the store is back"
    );
    let a = get(&gh, c).await;
    assert_eq!(
        a.body["count"], 3,
        "nothing lost, nothing half-applied: {a:?}"
    );
    assert_eq!(a.body["capacity"], 10);
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-4"})).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["count"], 4);
    let a = get(&gh, "/v1/locks/doc/1").await;
    assert_eq!(a.body["fence"], lock.body["fence"], "{a:?}");
    let a = post(
        &gh,
        "/v1/transfers/claim",
        json!({"token": xfer.body["token"], "audience": "admin"}),
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_from_redis_are_loaded_again() {
    let store = TestStore::redis();
    let gh = start(&store.toml(&prefix("noscript"))).await;
    let c = "/v1/capacity/event/e-2";
    put(&gh, c, json!({"capacity": 5})).await;
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-1"})).await;
    assert_eq!(a.status, 201);
    let TestStore::Redis(redis) = &store else {
        unreachable!()
    };
    assert!(redis.cmd("SCRIPT FLUSH").starts_with("+OK"));
    let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-2"})).await;
    assert_eq!(
        a.status, 201,
        "NOSCRIPT is answered by loading the script: {a:?}"
    );
    assert_eq!(a.body["count"], 2);
    let a = post(
        &gh,
        "/v1/locks/l/1",
        json!({"ttlMs": 1000, "owner": owner("a")}),
    )
    .await;
    assert_eq!(a.status, 201);
    gh.shutdown().await;
}

// ---------------------------------------------------------------- cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_runs_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    let origin = TestOrigin::start(|_| Reply::ok("")).await;
    let text = format!(
        "[store]\nbackend = \"redis\"\ncluster = [{}]\nkey_prefix = \"{}\"\n\
         [capacity]\nsync_url = \"{}/sync\"\nsync_interval = \"50ms\"\n",
        nodes.join(", "),
        prefix("cluster"),
        origin.url()
    );
    let gh = start(&text).await;

    // Counters in several shards (so several slots, on different nodes).
    for i in 0..8 {
        let c = format!("/v1/capacity/event/c-{i}");
        assert_eq!(put(&gh, &c, json!({"capacity": 1})).await.status, 200);
        let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-1"})).await;
        assert_eq!(a.status, 201, "{a:?}");
        let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-1"})).await;
        assert_eq!(a.status, 200);
        let a = post(&gh, &format!("{c}/admissions"), json!({"memberId": "m-2"})).await;
        assert_error(&a, 409, "CAPACITY_FULL");
        assert_eq!(get(&gh, &c).await.body["count"], 1);
    }
    assert_eq!(
        delete(&gh, "/v1/capacity/event/c-0/admissions/m-1")
            .await
            .status,
        204
    );

    for i in 0..4 {
        let l = format!("/v1/locks/doc/{i}");
        let a = post(&gh, &l, json!({"ttlMs": 10_000, "owner": owner("a")})).await;
        assert_eq!(a.status, 201, "{a:?}");
        let token = a.body["lockToken"].as_str().unwrap().to_string();
        assert_error(
            &post(&gh, &l, json!({"ttlMs": 10_000, "owner": owner("b")})).await,
            409,
            "LOCK_HELD",
        );
        assert_eq!(get(&gh, &l).await.status, 200);
        let r = post(
            &gh,
            &format!("{l}/renew"),
            json!({"lockToken": token, "ttlMs": 20_000}),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(unlock(&gh, &l, &token).await.status, 204);
    }

    for _ in 0..4 {
        let a = post(
            &gh,
            "/v1/transfers",
            json!({"payload": {"x": 1}, "ttlMs": 10_000, "audience": "admin"}),
        )
        .await;
        assert_eq!(a.status, 201, "{a:?}");
        let claim = json!({"token": a.body["token"], "audience": "admin"});
        assert_eq!(
            post(&gh, "/v1/transfers/claim", claim.clone()).await.status,
            200
        );
        assert_error(
            &post(&gh, "/v1/transfers/claim", claim).await,
            410,
            "TRANSFER_GONE",
        );
    }

    // ... and the sync's take/settle scripts, shard by shard.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let latest = latest_synced(&origin.seen());
            (0..8).all(|i| latest.contains_key(&("event".to_string(), format!("c-{i}"))))
        })
        .await,
        "every counter reached the origin"
    );
    gh.shutdown().await;
}

// ---------------------------------------------------------------- capacity sync

/// The newest (version, count, capacity) the origin received per (ns, id).
fn latest_synced(seen: &[Seen]) -> BTreeMap<(String, String), (u64, u64, u64)> {
    let mut latest = BTreeMap::new();
    for s in seen {
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&s.body) else {
            continue;
        };
        for item in items {
            let key = (
                item["ns"].as_str().unwrap().to_string(),
                item["id"].as_str().unwrap().to_string(),
            );
            let v = (
                item["version"].as_u64().unwrap(),
                item["count"].as_u64().unwrap(),
                item["capacity"].as_u64().unwrap(),
            );
            let e = latest.entry(key).or_insert(v);
            if v.0 > e.0 {
                *e = v;
            }
        }
    }
    latest
}

both_stores!(
    capacity_changes_reach_the_origin_with_versions_despite_failures,
    |store: TestStore| async move {
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        // The origin fails its first two batches.
        let origin = TestOrigin::start(move |_| {
            if c2.fetch_add(1, Ordering::SeqCst) < 2 {
                Reply::status(500, "down")
            } else {
                Reply::status(204, "")
            }
        })
        .await;
        let text = format!(
        "{}[capacity]\nsync_url = \"{}/internal/capacity\"\nsync_interval = \"20ms\"\nsync_batch = 2\n",
        store.toml(&prefix("sync")),
        origin.url()
    );
        let gh = start(&text).await;
        let mut expected = BTreeMap::new();
        for (i, cap) in [(1, 3u64), (2, 5), (3, 7)] {
            let c = format!("/v1/capacity/sessions/s-{i}");
            put(&gh, &c, json!({"capacity": cap})).await;
            for m in 0..i {
                post(
                    &gh,
                    &format!("{c}/admissions"),
                    json!({"memberId": format!("m-{m}")}),
                )
                .await;
            }
            let a = get(&gh, &c).await;
            expected.insert(
                ("sessions".to_string(), format!("s-{i}")),
                (
                    a.body["version"].as_u64().unwrap(),
                    a.body["count"].as_u64().unwrap(),
                    cap,
                ),
            );
        }
        let delivered = |origin: &TestOrigin| {
            let seen = origin.seen();
            latest_synced(seen.get(2..).unwrap_or_default())
        };
        assert!(
            eventually(Duration::from_secs(20), || async {
                delivered(&origin) == expected
            })
            .await,
            "every counter's latest version delivered: {:?} vs {expected:?}",
            delivered(&origin)
        );
        let first = origin.seen()[0].clone();
        assert_eq!(first.method, "POST");
        assert_eq!(first.path, "/internal/capacity");
        assert_eq!(first.headers["content-type"], "application/json");
        assert!(origin
            .seen()
            .iter()
            .all(|s| serde_json::from_slice::<Vec<Value>>(&s.body).unwrap().len() <= 2));
        assert!(
            gh.metric(r#"gatehouse_capacity_sync_batches_total{result="error"}"#)
                .await
                >= 2.0
        );
        assert!(
            gh.metric(r#"gatehouse_capacity_sync_batches_total{result="ok"}"#)
                .await
                >= 2.0
        );

        // A later change is posted again, with a newer version.
        let before = expected[&("sessions".to_string(), "s-1".to_string())].0;
        let a = post(
            &gh,
            "/v1/capacity/sessions/s-1/admissions",
            json!({"memberId": "late"}),
        )
        .await;
        assert_eq!(a.status, 201);
        assert!(
            eventually(Duration::from_secs(10), || async {
                delivered(&origin)[&("sessions".to_string(), "s-1".to_string())].0 > before
            })
            .await
        );
        gh.shutdown().await;
    }
);

both_stores!(
    a_lease_never_settled_is_taken_again,
    |store: TestStore| async move {
        // What an instance that dies mid-post leaves behind.
        let cfg = config(&store.toml(&prefix("lease")), None);
        let s = Store::new(&cfg.store, Arc::new(Metrics::new()));
        assert!(s.wait_until_up(Duration::from_secs(5)).await);
        for i in 0..40 {
            s.capacity_set("ns", &format!("c-{i}"), 1).await.unwrap();
        }
        let mut first = HashSet::new();
        for shard in 0..CAPACITY_SHARDS {
            for item in s
                .capacity_sync_take(shard, 100, Duration::from_secs(2))
                .await
                .unwrap()
            {
                assert_eq!(item.counter.unwrap().version, 1);
                first.insert(item.name);
            }
        }
        assert_eq!(first.len(), 40);
        for shard in 0..CAPACITY_SHARDS {
            let again = s
                .capacity_sync_take(shard, 100, Duration::from_secs(60))
                .await
                .unwrap();
            assert!(again.is_empty(), "leased names are not handed out twice");
        }
        let second = Arc::new(std::sync::Mutex::new(HashSet::new()));
        assert!(
            eventually(Duration::from_secs(10), || {
                let (s, second) = (s.clone(), second.clone());
                async move {
                    for shard in 0..CAPACITY_SHARDS {
                        let items = s
                            .capacity_sync_take(shard, 100, Duration::from_secs(60))
                            .await
                            .unwrap();
                        second
                            .lock()
                            .unwrap()
                            .extend(items.into_iter().map(|i| i.name));
                    }
                    second.lock().unwrap().len() == 40
                }
            })
            .await,
            "expired leases are handed out again"
        );
        // Settled as failed: back in the dirty set at once.
        let names: Vec<String> = second.lock().unwrap().iter().cloned().collect();
        for shard in 0..CAPACITY_SHARDS {
            let mine: Vec<String> = names
                .iter()
                .filter(|n| gatehouse::store::coord::capacity_shard(n) == shard)
                .cloned()
                .collect();
            s.capacity_sync_settle(shard, &mine, false).await.unwrap();
        }
        let mut third = 0;
        for shard in 0..CAPACITY_SHARDS {
            let items = s
                .capacity_sync_take(shard, 100, Duration::from_secs(60))
                .await
                .unwrap();
            third += items.len();
            let names: Vec<String> = items.into_iter().map(|i| i.name).collect();
            s.capacity_sync_settle(shard, &names, true).await.unwrap();
        }
        assert_eq!(third, 40);
        for shard in 0..CAPACITY_SHARDS {
            assert!(s
                .capacity_sync_take(shard, 100, Duration::from_millis(1))
                .await
                .unwrap()
                .is_empty());
        }
        s.shutdown();
    }
);
