//! The demo origin on its own, and gatehouse in front of it as `gatehouse demo` runs
//! them: real listeners on 127.0.0.1:0, `reqwest` as the client.

mod support;

use std::net::SocketAddr;

use gatehouse::demo::{self, DemoOrigin, BENCH_BODY_LEN};
use gatehouse::App;
use serde_json::Value;
use support::get_json;
use tokio::net::TcpListener;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

async fn stats(client: &reqwest::Client, origin: SocketAddr) -> Value {
    get_json(client, &format!("http://{origin}/__origin/stats")).await
}

fn count(stats: &Value, request: &str) -> u64 {
    stats["requests"][request].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn origin_answers_participants_check_ins_and_stats() {
    let listener = loopback().await;
    let origin = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(demo::serve_demo_origin(listener, async {
        let _ = stopped.await;
    }));
    let c = client();
    let base = format!("http://{origin}");

    let r = c
        .get(format!("{base}/api/participants/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("cache-control").is_none(),
        "the demo origin sends no freshness, so route ttls apply"
    );
    assert_eq!(r.headers()["content-type"], "application/json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["id"], 7);
    assert_eq!(p["checkedIn"], false);

    let r = c
        .get(format!("{base}/api/participants/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "NOT_FOUND");

    let check_in = format!("{base}/api/participants/7/check-in");
    let first = c.post(&check_in).send().await.unwrap();
    assert_eq!(first.status(), 201);
    let again = c.post(&check_in).send().await.unwrap();
    assert_eq!(again.status(), 200, "a second check-in changes nothing");
    let p: Value = again.json().await.unwrap();
    assert_eq!(p["checkedIn"], true);
    assert!(p["checkedInAt"].as_str().unwrap().ends_with('Z'));

    let sessions: Value = get_json(&c, &format!("{base}/api/sessions")).await;
    let keynote = &sessions["sessions"][0];
    assert_eq!(keynote["id"], p["sessionId"]);
    assert_eq!(keynote["checkedIn"], 1);
    assert_eq!(
        c.get(format!("{base}/api/sessions/9"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let r = c.get(format!("{base}/bench/static")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), BENCH_BODY_LEN);

    let s = stats(&c, origin).await;
    assert_eq!(count(&s, "GET /api/participants/7"), 1);
    assert_eq!(count(&s, "GET /api/participants/999"), 1);
    assert_eq!(count(&s, "POST /api/participants/7/check-in"), 2);
    assert_eq!(count(&s, "GET /bench/static"), 1);
    assert_eq!(s["total"], 7, "stats requests are not counted: {s}");

    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_third_session_turns_the_sixteenth_check_in_away() {
    let origin = DemoOrigin::start(loopback().await).unwrap();
    let c = client();
    // Participants 3, 6, ..., 48 attend session 3 (capacity 15).
    let mut statuses = Vec::new();
    for id in (3..=48).step_by(3) {
        let url = format!("http://{}/api/participants/{id}/check-in", origin.addr());
        statuses.push(c.post(url).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..15], [201; 15]);
    assert_eq!(statuses[15], 409);
    drop(c);
    origin.shutdown().await;
}

async fn demo_behind_gatehouse() -> (DemoOrigin, App) {
    let origin = DemoOrigin::start(loopback().await).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = demo::config(origin.addr(), any, any, any).expect("demo config is valid");
    let app = App::start(config, None).await.unwrap();
    (origin, app)
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()["cache-status"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn gatehouse_in_front_turns_a_miss_into_a_hit() {
    let (origin, app) = demo_behind_gatehouse().await;
    let c = client();
    let url = format!("http://{}/api/participants/7", app.proxy_addr);

    let first = c.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let status = cache_status(&first);
    assert!(status.contains("fwd=miss"), "{status}");
    assert!(status.contains("stored"), "{status}");
    let first_body = first.bytes().await.unwrap();

    let second = c.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 200);
    let status = cache_status(&second);
    assert!(status.starts_with("gatehouse; hit"), "{status}");
    assert_eq!(second.bytes().await.unwrap(), first_body);

    let s = stats(&c, origin.addr()).await;
    assert_eq!(count(&s, "GET /api/participants/7"), 1);

    // A check-in invalidates the participant (the route's invalidate_on).
    let check_in = format!("http://{}/api/participants/7/check-in", app.proxy_addr);
    assert!(c
        .post(&check_in)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let third = c.get(&url).send().await.unwrap();
    let status = cache_status(&third);
    assert!(status.contains("fwd=miss"), "{status}");
    let s = stats(&c, origin.addr()).await;
    assert_eq!(count(&s, "GET /api/participants/7"), 2);

    drop(c);
    app.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test]
async fn gatehouse_caches_the_404_and_coalesces_concurrent_misses() {
    let (origin, app) = demo_behind_gatehouse().await;
    let c = client();

    let missing = format!("http://{}/api/participants/999", app.proxy_addr);
    let first = c.get(&missing).send().await.unwrap();
    assert_eq!(first.status(), 404);
    assert!(cache_status(&first).contains("stored"));
    let second = c.get(&missing).send().await.unwrap();
    assert_eq!(second.status(), 404);
    let status = cache_status(&second);
    assert!(status.starts_with("gatehouse; hit"), "{status}");
    assert!(status.ends_with("detail=negative"), "{status}");

    // 20 clients ask for one uncached participant at once: the 300 ms origin read is
    // made once, every client gets the answer.
    let url = format!("http://{}/api/participants/8?fresh=1", app.proxy_addr);
    let answers = futures_util::future::join_all((0..20).map(|_| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap()["id"].clone(),
            )
        }
    }))
    .await;
    assert!(answers.iter().all(|(s, id)| *s == 200 && *id == 8));

    let s = stats(&c, origin.addr()).await;
    assert_eq!(count(&s, "GET /api/participants/999"), 1);
    assert_eq!(count(&s, "GET /api/participants/8?fresh=1"), 1, "{s}");

    drop(c);
    app.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test]
async fn the_demo_origin_tells_each_request_it_serves_and_a_hit_never_arrives() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let announce: demo::Announce = std::sync::Arc::new(move |line: &str| {
        seen.lock().unwrap().push(line.to_string());
    });
    let origin = DemoOrigin::start_announcing(loopback().await, Some(announce)).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = demo::config(origin.addr(), any, any, any).unwrap();
    let app = App::start(config, None).await.unwrap();
    let c = client();
    let url = format!("http://{}/api/participants/7", app.proxy_addr);
    let miss = c.get(&url).send().await.unwrap();
    assert!(cache_status(&miss).contains("fwd=miss"));
    let hit = c.get(&url).send().await.unwrap();
    assert!(cache_status(&hit).starts_with("gatehouse; hit"));
    let missing = format!("http://{}/api/participants/999", app.proxy_addr);
    assert_eq!(c.get(&missing).send().await.unwrap().status(), 404);

    let lines = lines.lock().unwrap().clone();
    assert_eq!(
        lines.len(),
        2,
        "one line per request the origin served: {lines:?}"
    );
    assert!(
        lines[0].starts_with("origin served GET /api/participants/7 -> 200 in "),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(" ms"), "{lines:?}");
    assert!(
        lines[1].starts_with("origin served GET /api/participants/999 -> 404 in "),
        "{lines:?}"
    );
    drop(c);
    app.shutdown().await;
    origin.shutdown().await;
}
