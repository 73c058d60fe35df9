//! Vary-correct coalescing: a request woken by another request's fetch (in process or
//! across the fleet) takes that answer only if it selects the same variant.

use std::sync::Arc;
use std::time::Duration;

use super::support::*;
use crate::both_stores;

fn routes() -> &'static str {
    "\n[[routes]]\npath = \"/\"\nttl = \"10m\"\n"
}

/// An origin whose page is per cookie (and per language), said with `Vary`, its
/// answers held at `gate` so that concurrent misses overlap.
fn per_user(gate: &Gate) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let gate = gate.clone();
    move |s| {
        let get = |n: &str| s.header(n).unwrap_or_default().to_string();
        Reply::ok(format!(
            "cookie={} lang={}",
            get("cookie"),
            get("accept-language")
        ))
        .header("vary", "Cookie, Accept-Language")
        .header("cache-control", "max-age=60")
        .held_by(&gate)
    }
}

/// Starts `n` concurrent GETs of `path`, the i-th on `fleet[i % fleet.len()]` with
/// `who(i)`'s cookie and language, while `gate` holds the origin's answers; opens it
/// once one fetch is held and `waiting` requests (over the fleet) wait for it, and
/// with more than one instance, every instance's leader has asked for the fleet
/// lease.
/// Answers each request's cookie, language, body and Cache-Status.
async fn overlapping(
    fleet: &[Arc<Gatehouse>],
    gate: &Gate,
    path: &str,
    n: usize,
    waiting: usize,
    who: impl Fn(usize) -> (String, &'static str),
) -> Vec<(String, &'static str, String, String)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gh = fleet[i % fleet.len()].clone();
            let path = path.to_string();
            let (cookie, lang) = who(i);
            tokio::spawn(async move {
                let (body, status) = get_as(&gh, &path, &cookie, lang).await;
                (cookie, lang, body, status)
            })
        })
        .collect();
    gate.held(1).await;
    wait_until(&format!("{waiting} waiters on {path}"), || async {
        let mut leases = 0.0;
        if fleet.len() > 1 {
            for gh in fleet {
                leases += gh.lease_requests().await;
            }
        }
        fleet.iter().map(|gh| gh.waiting()).sum::<usize>() == waiting
            && (fleet.len() == 1 || leases >= fleet.len() as f64)
    })
    .await;
    gate.open();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// Asserts every answer is the variant of the request's own cookie and language.
fn assert_own_variants(path: &str, answers: &[(String, &'static str, String, String)]) {
    for (cookie, lang, body, status) in answers {
        assert_eq!(
            *body,
            format!("cookie={cookie} lang={lang}"),
            "{path}: handed another user's variant ({status})"
        );
    }
}

async fn get_as(gh: &Gatehouse, path: &str, cookie: &str, lang: &str) -> (String, String) {
    let r = gh
        .client
        .get(gh.url(path))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    let status = r.headers()["cache-status"].to_str().unwrap().to_string();
    (r.text().await.unwrap(), status)
}

both_stores!(
    concurrent_misses_of_a_varying_response_get_their_own_variant,
    |store: TestStore| async move {
        let gate = Gate::new();
        let origin = TestOrigin::start(per_user(&gate)).await;
        let text = format!("{}{}", store.toml(&prefix("sec-vary")), routes());
        let gh = Arc::new(Gatehouse::start(&text, &origin).await);
        let fleet = [gh.clone()];
        for round in 0..2 {
            // Each round's first fetch is held while the eleven others wait for it.
            let gate = Gate::new();
            origin.set(per_user(&gate));
            let path = format!("/dashboard/{round}");
            let answers = overlapping(&fleet, &gate, &path, 12, 11, |i| {
                (
                    format!("user=u{}", i % 4),
                    if i % 2 == 0 { "en" } else { "fr" },
                )
            })
            .await;
            assert_own_variants(&path, &answers);
        }
        // Coalescing still works within one variant.
        let gate = Gate::new();
        origin.set(per_user(&gate));
        let answers = overlapping(&fleet, &gate, "/same", 10, 9, |_| ("user=z".into(), "en")).await;
        for (_, _, body, _) in &answers {
            assert_eq!(body, "cookie=user=z lang=en");
        }
        assert_eq!(origin.hits("/same"), 1);
        drop(fleet);
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_waiters_never_take_another_variant() {
    let redis = RedisServer::start();
    let gate = Gate::new();
    let origin = TestOrigin::start(per_user(&gate)).await;
    let p = prefix("sec-vary-fleet");
    let text = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{p}\"\n{}",
        redis.url(),
        routes()
    );
    let a = Arc::new(Gatehouse::start(&text, &origin).await);
    let b = Arc::new(Gatehouse::start(&text, &origin).await);
    // Eight requests on each instance: one fetch held, seven waiting on each
    // instance, the other instance's leader at the lease.
    let fleet = [a.clone(), b.clone()];
    let answers = overlapping(&fleet, &gate, "/fleet", 16, 14, |i| {
        (format!("user=u{}", i % 3), "en")
    })
    .await;
    assert_own_variants("/fleet", &answers);
    drop(fleet);
    Arc::try_unwrap(a).ok().unwrap().shutdown().await;
    Arc::try_unwrap(b).ok().unwrap().shutdown().await;
}

both_stores!(
    one_variants_background_refresh_never_stands_in_for_anothers,
    |store: TestStore| async move {
        // The first answer for each variant is already stale when it arrives (its
        // age is past max-age), so nothing waits for the clock; the refreshes are
        // fresh.
        // Both refreshes are held at the origin together.
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = fills.clone();
        let refreshes = Gate::new();
        let g = refreshes.clone();
        let origin = TestOrigin::start(move |s| {
            let lang = s.headers["accept-language"].to_str().unwrap().to_string();
            let reply = Reply::ok(format!("lang={lang}"))
                .header("vary", "Accept-Language")
                .header("cache-control", "max-age=1, stale-while-revalidate=60");
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                reply.header("age", "2")
            } else {
                reply.held_by(&g)
            }
        })
        .await;
        let text = format!("{}{}", store.toml(&prefix("sec-swr")), routes());
        let gh = Arc::new(Gatehouse::start(&text, &origin).await);
        for lang in ["en", "fr"] {
            assert_eq!(
                get_as(&gh, "/news", "", lang).await.0,
                format!("lang={lang}")
            );
        }
        assert_eq!(origin.hits("/news"), 2);
        let (en, fr) = tokio::join!(
            get_as(&gh, "/news", "", "en"),
            get_as(&gh, "/news", "", "fr")
        );
        assert_eq!(en.0, "lang=en");
        assert_eq!(fr.0, "lang=fr");
        assert!(en.1.contains("stale-while-revalidate"), "{}", en.1);
        assert!(fr.1.contains("stale-while-revalidate"), "{}", fr.1);
        // Each variant was refreshed by its own background fetch, both at once.
        refreshes.held(2).await;
        refreshes.open();
        let refreshed = eventually(Duration::from_secs(5), || async {
            origin.hits("/news") == 4
                && gh
                    .metric(r#"gatehouse_cache_stores_total{result="stored"}"#)
                    .await
                    >= 4.0
        })
        .await;
        assert!(refreshed, "refreshes: {}", origin.hits("/news") - 2);
        for lang in ["en", "fr"] {
            let (body, status) = get_as(&gh, "/news", "", lang).await;
            assert_eq!(body, format!("lang={lang}"));
            assert!(status.contains("hit"), "{status}");
        }
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
);
