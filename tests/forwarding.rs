//! Forwarding, errors, storability limits, coalescing edge cases, listeners and
//! lifecycle: each against a real origin and real listeners.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = r#"
[[routes]]
path = "/r"
ttl = "10m"

[[routes]]
path = "/over"
ttl = "10m"
override = true

[[routes]]
path = "/nocache"
cache = false

[cache]
max_object = "64KiB"
"#;

fn cfg(store: &TestStore, name: &str, extra: &str) -> String {
    format!("{}{}{}", store.toml(&prefix(name)), ROUTES, extra)
}

/// gatehouse on the memory store in front of `origin`, with the routes and `extra`.
async fn start_memory(origin: &TestOrigin, name: &str, extra: &str) -> Gatehouse {
    Gatehouse::start(&cfg(&TestStore::memory(), name, extra), origin).await
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let origin = TestOrigin::start(|_| {
        Reply::ok("x")
            .header("connection", "x-origin-private")
            .header("x-origin-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "1")
    })
    .await;
    let gh = start_memory(&origin, "hop", "").await;
    let r = gh
        .client
        .get(gh.url("/plain"))
        .header("connection", "x-client-private")
        .header("x-client-private", "1")
        .header("x-forwarded-for", "10.1.2.3")
        .header("host", "app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-origin-private"));
    assert!(!r.headers().contains_key("keep-alive"));
    assert_eq!(r.headers()["x-kept"], "1");
    assert_eq!(r.headers()["via"], "1.1 gatehouse");
    let seen = origin.last().unwrap();
    assert!(!seen.headers.contains_key("x-client-private"));
    assert_eq!(seen.headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "app.example");
    assert_eq!(seen.headers["host"], "app.example");
    assert_eq!(seen.headers["via"], "1.1 gatehouse");
    gh.shutdown().await;
}

#[tokio::test]
async fn writes_pass_through_untouched_with_their_bodies() {
    let origin = TestOrigin::start(|s| {
        Reply::status(
            201,
            format!("{} {}", s.method, String::from_utf8_lossy(&s.body)),
        )
    })
    .await;
    let gh = start_memory(&origin, "writes", "").await;
    let big = "a".repeat(200_000);
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = gh
            .client
            .request(method.clone(), gh.url("/r"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["cache-status"], "gatehouse; fwd=method");
        assert_eq!(r.text().await.unwrap(), format!("{method} {big}"));
    }
    assert_eq!(origin.total(), 3);
    gh.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_413_and_oversized_heads_431() {
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = start_memory(
        &origin,
        "limits",
        "[server]\nmax_body_bytes = \"1KiB\"\nmax_header_bytes = \"16KiB\"\n",
    )
    .await;
    let r = gh
        .client
        .post(gh.url("/r"))
        .body("a".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "BODY_TOO_LARGE");
    assert_eq!(origin.total(), 0, "nothing reached the origin");

    // A chunked body (no Content-Length) is cut off where it crosses the limit.
    let mut tcp = tokio::net::TcpStream::connect(gh.proxy).await.unwrap();
    let chunk = "a".repeat(600);
    let head =
        "POST /r HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..4 {
        let piece = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if tcp.write_all(piece.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("BODY_TOO_LARGE"), "{answer}");

    let r = gh
        .client
        .get(gh.url("/r"))
        .header("x-huge", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    gh.shutdown().await;
}

#[tokio::test]
async fn unreachable_origin_is_502_and_slow_origin_504_as_json() {
    let port = free_port();
    let gh = Gatehouse::start_config(config(
        &format!(
            "{}[origin]\nurl = \"http://127.0.0.1:{port}\"\nconnect_timeout = \"500ms\"\n",
            TestStore::memory().toml(&prefix("unreach"))
        ),
        None,
    ))
    .await;
    let r = gh.get("/r").await;
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("cache-status"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "ORIGIN_UNREACHABLE");
    gh.shutdown().await;

    // Held until the test ends: only gatehouse's 200ms origin.timeout (the time under
    // test) ends the wait.
    let never = Gate::new();
    let g = never.clone();
    let origin = TestOrigin::start(move |_| Reply::ok("late").held_by(&g)).await;
    let gh = start_memory(&origin, "slow", "[origin]\ntimeout = \"200ms\"\n").await;
    let r = gh.get("/r").await;
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "ORIGIN_TIMEOUT");
    gh.assert_metric(
        r#"gatehouse_origin_requests_total{origin="default",result="timeout"}"#,
        1.0,
    )
    .await;
    gh.shutdown().await;
}

both_stores!(
    what_must_not_be_stored_is_not,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| match s.path.as_str() {
            "/r/no-store" => Reply::ok("a").header("cache-control", "no-store"),
            "/r/private" => Reply::ok("b").header("cache-control", "private, max-age=60"),
            "/r/cookie" => Reply::ok("c").header("set-cookie", "sid=1"),
            "/plain/maxage" => Reply::ok("d").header("cache-control", "max-age=60"),
            "/plain/none" => Reply::ok("e"),
            "/over" => Reply::ok("f").header("cache-control", "max-age=0"),
            "/nocache" => Reply::ok("g").header("cache-control", "max-age=60"),
            _ => Reply::status(500, "?"),
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "nostore", ""), &origin).await;
        for path in [
            "/r/no-store",
            "/r/private",
            "/r/cookie",
            "/plain/none",
            "/nocache",
        ] {
            for _ in 0..2 {
                let r = gh.get(path).await;
                assert_eq!(r.status(), 200);
                assert!(
                    !r.headers()["cache-status"]
                        .to_str()
                        .unwrap()
                        .starts_with("gatehouse; hit"),
                    "{path}"
                );
            }
            assert_eq!(origin.hits(path), 2, "{path} must not be stored");
        }
        // Origin freshness without a route; a route override beats max-age=0.
        for path in ["/plain/maxage", "/over"] {
            gh.get(path).await;
            let r = gh.get(path).await;
            assert!(
                r.headers()["cache-status"]
                    .to_str()
                    .unwrap()
                    .starts_with("gatehouse; hit"),
                "{path}"
            );
            assert_eq!(origin.hits(path), 1, "{path}");
        }
        assert_eq!(
            gh.get("/nocache").await.headers()["cache-status"],
            "gatehouse; fwd=bypass"
        );
        gh.shutdown().await;
    }
);

#[tokio::test]
async fn responses_over_max_object_stream_through_uncached() {
    let big = vec![b'z'; 200_000];
    let body = big.clone();
    let origin = TestOrigin::start(move |_| Reply::ok(body.clone())).await;
    let gh = start_memory(&origin, "big", "").await;
    for expected in ["too-large", "hit-for-pass"] {
        let r = gh.get("/r/big").await;
        let status = r.headers()["cache-status"].to_str().unwrap().to_string();
        assert_eq!(status, format!("gatehouse; fwd=miss; detail={expected}"));
        assert_eq!(r.bytes().await.unwrap().len(), big.len());
    }
    assert_eq!(origin.hits("/r/big"), 2);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_answer_releases_waiters_to_fetch_on_their_own() {
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| {
        Reply::ok("mine")
            .header("cache-control", "no-store")
            .held_by(&g)
    })
    .await;
    let gh = Arc::new(start_memory(&origin, "release", "").await);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let gh = gh.clone();
            tokio::spawn(async move { gh.get("/r/u").await.status() })
        })
        .collect();
    // The leader's answer is held until the nine others wait for it.
    gate.held(1).await;
    wait_until("9 waiters", || async { gh.waiting() == 9 }).await;
    gate.open();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // None of them could share the leader's uncacheable answer.
    assert_eq!(origin.hits("/r/u"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_leader_hands_over_to_a_waiter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let never = Gate::new();
    let g = never.clone();
    let origin = TestOrigin::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            // The first fetch is held past origin.timeout: the leader fails.
            Reply::ok("too late").held_by(&g)
        } else {
            Reply::ok("fresh")
        }
    })
    .await;
    let gh = Arc::new(
        Gatehouse::start(
            &cfg(
                &TestStore::memory(),
                "handover",
                // Real time: the leader fails by this timeout, and the waiters must
                // have joined before it fires.
                "[origin]\ntimeout = \"1s\"\n",
            ),
            &origin,
        )
        .await,
    );
    let leader = {
        let gh = gh.clone();
        tokio::spawn(async move { gh.get("/r/h").await.status() })
    };
    never.held(1).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let gh = gh.clone();
            tokio::spawn(async move {
                let r = gh.get("/r/h").await;
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    wait_until("5 waiters before the leader times out", || async {
        gh.waiting() == 5
    })
    .await;
    assert_eq!(leader.await.unwrap(), 504);
    for w in waiters {
        assert_eq!(
            w.await.unwrap(),
            (reqwest::StatusCode::OK, "fresh".to_string())
        );
    }
    assert_eq!(
        origin.total(),
        2,
        "one failed fetch, then one handed-over fetch"
    );
    gh.assert_metric("gatehouse_coalesce_handovers_total", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_survives_the_disconnect_of_the_client_that_started_it() {
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| Reply::ok("kept").held_by(&g)).await;
    let gh = start_memory(&origin, "detach", "").await;
    let impatient = {
        let client = reqwest::Client::new();
        let url = gh.url("/r/d");
        tokio::spawn(async move { client.get(url).send().await })
    };
    gate.held(1).await;
    // The client gives up (its connection closes) while the origin still holds the
    // answer.
    impatient.abort();
    assert!(impatient.await.unwrap_err().is_cancelled());
    wait_until("the client's connection closed", || async {
        gh.metric("gatehouse_connections_open{listener=\"proxy\"}")
            .await
            == 0.0
    })
    .await;
    gate.open();
    // The fetch goes on and is stored although nobody waits for it.
    assert!(
        eventually(Duration::from_secs(3), || async {
            gh.state().cache.coalescer.in_flight() == 0 && origin.total() == 1
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            gh.metric(r#"gatehouse_cache_stores_total{result="stored"}"#)
                .await
                == 1.0
        })
        .await
    );
    let r = gh.get("/r/d").await;
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.total(), 1);
    gh.shutdown().await;
}

#[tokio::test]
async fn head_is_answered_from_a_cached_get_and_fills_with_get() {
    let origin = TestOrigin::start(|s| Reply::ok(format!("{} body", s.method))).await;
    let gh = start_memory(&origin, "head", "").await;
    let r = gh.client.head(gh.url("/r/h")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "8");
    assert_eq!(origin.last().unwrap().method, "GET");
    let r = gh.get("/r/h").await;
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(r.text().await.unwrap(), "GET body");
    assert_eq!(origin.total(), 1);
    gh.shutdown().await;
}

#[tokio::test]
async fn http2_cleartext_is_served_on_the_proxy_listener() {
    let origin = TestOrigin::start(|_| Reply::ok("over h2")).await;
    let gh = start_memory(&origin, "h2c", "").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(gh.url("/r/2")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["via"], "2 gatehouse");
    assert_eq!(r.text().await.unwrap(), "over h2");
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_redis_down_serves_from_origin_and_connects_when_it_returns() {
    let mut redis = RedisServer::start();
    redis.stop();
    let origin = TestOrigin::start(|_| Reply::ok("up")).await;
    let text = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{}\"\nconnect_timeout = \"200ms\"\n{ROUTES}",
        redis.url(),
        prefix("down")
    );
    let gh = Gatehouse::start(&text, &origin).await;
    let ready = gh.client.get(gh.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["store"], "down");
    gh.assert_metric("gatehouse_store_up", 0.0).await;

    // Serves from the origin, and from L1 on a repeat.
    assert_eq!(gh.get("/r/x").await.text().await.unwrap(), "up");
    let r = gh.get("/r/x").await;
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.total(), 1);

    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            gh.metric("gatehouse_store_up").await == 1.0
        })
        .await,
        "connects when Redis comes back"
    );
    let body: serde_json::Value = get_json(&gh.client, &gh.admin_url("/readyz")).await;
    assert_eq!(body["status"], "ready");
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_after_start_is_counted_as_a_reconnect_when_it_ends() {
    let mut store = TestStore::redis();
    let origin = TestOrigin::start(|_| Reply::ok("x")).await;
    let gh = Gatehouse::start(&cfg(&store, "reconnect", ""), &origin).await;
    gh.assert_metric("gatehouse_store_up", 1.0).await;
    store.redis_server().unwrap().stop();
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric("gatehouse_store_up").await == 0.0
        })
        .await
    );
    // Still serving.
    assert_eq!(gh.get("/r/during").await.status(), 200);
    store.redis_server().unwrap().restart();
    assert!(
        eventually(Duration::from_secs(10), || async {
            gh.metric("gatehouse_store_up").await == 1.0
        })
        .await
    );
    gh.assert_metric("gatehouse_store_reconnects_total", 1.0)
        .await;
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_off_first_and_lets_in_flight_requests_finish() {
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| Reply::ok("finished").held_by(&g)).await;
    let mut gh = start_memory(&origin, "drain", "[server]\ndrain_delay = \"300ms\"\n").await;
    let client = gh.client.clone();
    let url = gh.url("/nocache/slow");
    let in_flight = tokio::spawn(async move {
        let r = client.get(url).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    gate.held(1).await;
    let app = gh.app.take().unwrap();
    let admin = gh.admin_url("/readyz");
    let client = gh.client.clone();
    let stopping = tokio::spawn(app.shutdown());
    // During the drain delay readiness is 503 while the listener still answers.
    assert!(
        eventually(Duration::from_secs(2), || async {
            matches!(client.get(&admin).send().await, Ok(r) if r.status() == 503)
        })
        .await
    );
    // The shutdown waits for the request the origin still holds.
    assert!(!stopping.is_finished());
    gate.open();
    assert_eq!(
        in_flight.await.unwrap(),
        (reqwest::StatusCode::OK, "finished".to_string())
    );
    stopping.await.unwrap();
    assert!(reqwest::get(gh.url("/r")).await.is_err(), "listener closed");
}

#[tokio::test]
async fn admin_serves_liveness_and_the_contract_metrics() {
    let origin = TestOrigin::start(|_| Reply::ok("m")).await;
    let gh = start_memory(&origin, "admin", "").await;
    gh.get("/r/m").await;
    gh.get("/r/m").await;
    assert_eq!(
        gh.client
            .get(gh.admin_url("/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = gh.metrics().await;
    for name in [
        "gatehouse_requests_total{route=\"/r\",status=\"200\"} 2",
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_cache_lookups_total{result=\"hit\",tier=\"l1\"} 1",
        "gatehouse_origin_requests_total{origin=\"default\",result=\"ok\"} 1",
        "gatehouse_store_up 1",
        "gatehouse_l1_entries 1",
        "gatehouse_l1_bytes",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    gh.shutdown().await;
}

#[tokio::test]
async fn native_endpoints_and_proxied_paths_never_cross_listeners() {
    let origin = TestOrigin::start(|s| Reply::ok(format!("origin saw {}", s.path))).await;
    let gh = start_memory(&origin, "listeners", "").await;
    // /v1/... on the proxy listener is the app's own path: forwarded to the origin.
    let r = gh.get("/v1/cache/purge").await;
    assert_eq!(r.text().await.unwrap(), "origin saw /v1/cache/purge");
    // An app path on the api listener is not proxied.
    let r = gh.api_get("/r/x").await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "NO_ROUTE");
    assert_eq!(origin.total(), 1);
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_larger_than_the_flow_control_windows_pass_both_ways() {
    // 3 MiB each way: three times the 1 MiB stream and connection windows, so the
    // request body's window must be released as it is read and the response body
    // must wait for capacity.
    let origin = TestOrigin::start(|s| {
        let mut body = s.body.to_vec();
        body.reverse();
        Reply::ok(body).header("cache-control", "no-store")
    })
    .await;
    let gh = start_memory(
        &origin,
        "h2-windows",
        "[server]\nmax_body_bytes = \"8MiB\"\n",
    )
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let sent: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let r = h2
        .post(gh.url("/nocache/up"))
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        sent.len().to_string().as_str()
    );
    let mut expected = sent.clone();
    expected.reverse();
    assert!(r.bytes().await.unwrap() == expected);
    assert_eq!(origin.last().unwrap().body.len(), sent.len());
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_stream_reset_by_the_client_drops_its_request_to_the_origin() {
    // An origin that reads a request head and then waits: it notes when gatehouse
    // gives the request up (its connection closes) before an answer was sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let abandoned = Arc::new(AtomicUsize::new(0));
    let (s2, a2) = (seen.clone(), abandoned.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (seen, abandoned) = (s2.clone(), a2.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        abandoned.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            });
        }
    });
    let gh = Gatehouse::start_config(config(
        &cfg(&TestStore::memory(), "h2-reset", ""),
        Some(&url),
    ))
    .await;
    let tcp = tokio::net::TcpStream::connect(gh.proxy).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let req = http::Request::post(format!("http://{}/nocache/slow", gh.proxy))
        .body(())
        .unwrap();
    let (resp, mut body) = send.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"x"), true)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen.load(Ordering::SeqCst) == 1
        })
        .await
    );
    // RST_STREAM(CANCEL): the handler's future is dropped, and with it the origin
    // request.
    drop(resp);
    drop(body);
    assert!(
        eventually(Duration::from_secs(5), || async {
            abandoned.load(Ordering::SeqCst) == 1
        })
        .await,
        "the origin request outlived the client's reset"
    );
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_of_one_connection_are_answered_independently() {
    // The connection's streams share its task: a stream whose origin has not
    // answered must not hold the others, nor be lost when they finish.
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |s| {
        if s.path.ends_with("/slow") {
            Reply::ok("slow").held_by(&g)
        } else {
            Reply::ok("fast")
        }
    })
    .await;
    let gh = start_memory(&origin, "h2-streams", "").await;
    let mut h2 = gh.h2c::<http_body_util::Empty<bytes::Bytes>>().await;
    let get = |path: &str| {
        http::Request::get(format!("http://{}{path}", gh.proxy))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let slow = h2.send_request(get("/nocache/slow"));
    let slow = tokio::spawn(slow);
    gate.held(1).await;
    for i in 0..3 {
        let r = h2
            .send_request(get(&format!("/nocache/fast{i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "fast");
    }
    assert!(!slow.is_finished(), "the held stream was answered early");
    gate.open();
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), "slow");
    gh.shutdown().await;
}
