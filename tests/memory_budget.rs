//! The memory store is bounded by bytes, not only by TTL: 12,000 distinct 10 KiB
//! URLs through a cache of 8 MiB leave the process's resident memory near where it
//! was. One test in its own binary, so the RSS measured is its own.

mod support;

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use support::*;

const URLS: usize = 12_000;
const BODY: usize = 10 << 10;
const MAX_RSS_GROWTH: u64 = 64 << 20;

/// The process's resident set, in bytes (`/proc/self/statm`, field 2, in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident field");
    let page_size = std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    pages * page_size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_distinct_urls_stay_within_the_memory_budget() {
    let origin = TestOrigin::start(|_| Reply::ok(vec![b'x'; BODY])).await;
    let text = format!(
        "{}[cache]\nmax_bytes = \"8MiB\"\n[[routes]]\npath = \"/items\"\nttl = \"10m\"\n",
        TestStore::memory().toml(&prefix("budget"))
    );
    let gh = Gatehouse::start(&text, &origin).await;
    let fetch = |i: usize| {
        let gh = &gh;
        async move {
            let r = gh.get(&format!("/items/{i}")).await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap().len(), BODY);
        }
    };
    // Warm up connection pools and allocator arenas before the first reading.
    stream::iter(0..200).for_each_concurrent(16, fetch).await;
    let before = rss_bytes();
    stream::iter(200..URLS).for_each_concurrent(16, fetch).await;
    let after = rss_bytes();
    assert_eq!(origin.total(), URLS, "every URL was fetched once");

    let held = gh.metric("gatehouse_store_memory_bytes").await;
    let budget = gh.metric("gatehouse_store_memory_budget_bytes").await;
    let evictions = gh.metric("gatehouse_store_evictions_total").await;
    let l1 = gh.metric("gatehouse_l1_bytes").await;
    let growth = after.saturating_sub(before);
    eprintln!(
        "rss before {} MiB, after {} MiB, growth {} KiB; store holds {held} of {budget} bytes \
         ({evictions} evictions), L1 {l1} bytes",
        before >> 20,
        after >> 20,
        growth >> 10
    );
    assert_eq!(budget, (8u64 << 20) as f64, "the budget is cache.max_bytes");
    assert!(held > 0.0 && held <= budget, "{held} > {budget}");
    assert!(evictions > 0.0);
    assert!(
        growth < MAX_RSS_GROWTH,
        "resident memory grew {} MiB for {URLS} URLs of {} KiB",
        growth >> 20,
        BODY >> 10
    );
    // The newest URL is still served from the cache.
    let r = gh.get(&format!("/items/{}", URLS - 1)).await;
    assert!(
        r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit"),
        "{:?}",
        r.headers()
    );
    tokio::time::timeout(Duration::from_secs(10), gh.shutdown())
        .await
        .expect("shutdown");
}
