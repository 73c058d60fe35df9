//! The redis store over TLS, Sentinel and Cluster: two gatehouse instances share L2
//! (the second serves what the first fetched), and a purge on one reaches the other.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const ROUTES: &str = r#"
[[routes]]
path = "/t"
ttl = "10m"
"#;

/// A fetch on A, an L2 hit on B, a purge through B seen by A.
async fn shared_cache_works(store_section: &str) {
    let body = Arc::new(Mutex::new("v1".to_string()));
    let b = body.clone();
    let origin = TestOrigin::start(move |_| Reply::ok(b.lock().unwrap().clone())).await;
    let text = format!("{store_section}{ROUTES}");
    let a = Gatehouse::start(&text, &origin).await;
    let b_gh = Gatehouse::start(&text, &origin).await;
    assert_eq!(a.metric("gatehouse_store_up").await, 1.0, "A connected");
    let get = |gh: &Gatehouse, path: &'static str| {
        gh.client
            .get(gh.url(path))
            .header("host", "fleet.example")
            .send()
    };
    assert_eq!(get(&a, "/t/1").await.unwrap().text().await.unwrap(), "v1");
    let r = get(&b_gh, "/t/1").await.unwrap();
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.total(), 1, "B answered from L2");
    *body.lock().unwrap() = "v2".into();
    let purge = b_gh
        .api_post("/v1/cache/purge", &serde_json::json!({"urls": ["/t/1"]}))
        .await;
    assert_eq!(purge.status(), 200);
    assert!(
        eventually(Duration::from_secs(1), || async {
            get(&a, "/t/1").await.unwrap().text().await.unwrap() == "v2"
        })
        .await,
        "the purge reached A's L1"
    );
    a.shutdown().await;
    b_gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls() {
    let (redis, ca) = RedisServer::start_tls();
    let section = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\ntls_ca_file = \"{}\"\nkey_prefix = \"{}\"\n",
        redis.url(),
        ca.display(),
        prefix("tls")
    );
    assert!(redis.url().starts_with("rediss://"));
    shared_cache_works(&section).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinel() {
    let master = RedisServer::start();
    let sentinel = Sentinel::start(&master);
    let section = format!(
        "[store]\nbackend = \"redis\"\nkey_prefix = \"{}\"\n[store.sentinel]\nmaster = \"mymaster\"\nnodes = [\"{}\"]\n",
        prefix("sentinel"),
        sentinel.url()
    );
    shared_cache_works(&section).await;
    // The data is on the master the sentinel named.
    assert!(
        master
            .cmd("DBSIZE")
            .trim_start_matches(':')
            .trim()
            .parse::<u64>()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let section = format!(
        "[store]\nbackend = \"redis\"\nkey_prefix = \"{}\"\ncluster = [{}]\n",
        prefix("cluster"),
        nodes.join(", ")
    );
    shared_cache_works(&section).await;
}
