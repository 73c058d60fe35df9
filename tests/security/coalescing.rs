//! Vary-correct coalescing: a request woken by another request's fetch (in process or
//! across the fleet) takes that answer only if it selects the same variant.

use std::sync::Arc;
use std::time::Duration;

use super::support::*;
use crate::both_stores;

fn routes() -> &'static str {
    "\n[[routes]]\npath = \"/\"\nttl = \"10m\"\n"
}

/// An origin whose page is per cookie (and per language), said with `Vary`, and slow
/// enough that concurrent misses overlap.
async fn per_user_origin(delay: Duration) -> TestOrigin {
    TestOrigin::start(move |s| {
        let get = |n: &str| {
            s.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        Reply::ok(format!(
            "cookie={} lang={}",
            get("cookie"),
            get("accept-language")
        ))
        .header("vary", "Cookie, Accept-Language")
        .header("cache-control", "max-age=60")
        .delay(delay)
    })
    .await
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
        let origin = per_user_origin(Duration::from_millis(300)).await;
        let text = format!("{}{}", store.toml(&prefix("sec-vary")), routes());
        let gh = Arc::new(Gatehouse::start(&text, &origin).await);
        for round in 0..2 {
            let path = format!("/dashboard/{round}");
            let tasks: Vec<_> = (0..12)
                .map(|i| {
                    let gh = gh.clone();
                    let path = path.clone();
                    tokio::spawn(async move {
                        let cookie = format!("user=u{}", i % 4);
                        let lang = if i % 2 == 0 { "en" } else { "fr" };
                        let (body, status) = get_as(&gh, &path, &cookie, lang).await;
                        (cookie, lang, body, status)
                    })
                })
                .collect();
            for t in tasks {
                let (cookie, lang, body, status) = t.await.unwrap();
                assert_eq!(
                    body,
                    format!("cookie={cookie} lang={lang}"),
                    "{path}: handed another user's variant ({status})"
                );
            }
        }
        // Coalescing still works within one variant.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let gh = gh.clone();
                tokio::spawn(async move { get_as(&gh, "/same", "user=z", "en").await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().0, "cookie=user=z lang=en");
        }
        assert_eq!(origin.hits("/same"), 1);
        Arc::try_unwrap(gh).ok().unwrap().shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_waiters_never_take_another_variant() {
    let redis = RedisServer::start();
    let origin = per_user_origin(Duration::from_millis(300)).await;
    let p = prefix("sec-vary-fleet");
    let text = format!(
        "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{p}\"\n{}",
        redis.url(),
        routes()
    );
    let a = Arc::new(Gatehouse::start(&text, &origin).await);
    let b = Arc::new(Gatehouse::start(&text, &origin).await);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let gh = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let cookie = format!("user=u{}", i % 3);
                let (body, status) = get_as(&gh, "/fleet", &cookie, "en").await;
                (cookie, body, status)
            })
        })
        .collect();
    for t in tasks {
        let (cookie, body, status) = t.await.unwrap();
        assert_eq!(body, format!("cookie={cookie} lang=en"), "{status}");
    }
    Arc::try_unwrap(a).ok().unwrap().shutdown().await;
    Arc::try_unwrap(b).ok().unwrap().shutdown().await;
}

both_stores!(
    one_variants_background_refresh_never_stands_in_for_anothers,
    |store: TestStore| async move {
        // The first answer for each variant is already stale when it arrives (its
        // age is past max-age), so nothing waits for the clock; the refreshes are
        // fresh.
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = fills.clone();
        let origin = TestOrigin::start(move |s| {
            let lang = s.headers["accept-language"].to_str().unwrap().to_string();
            let reply = Reply::ok(format!("lang={lang}"))
                .header("vary", "Accept-Language")
                .header("cache-control", "max-age=1, stale-while-revalidate=60")
                .delay(Duration::from_millis(200));
            if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                reply.header("age", "2")
            } else {
                reply
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
        // Each variant was refreshed by its own background fetch.
        let refreshed = eventually(Duration::from_secs(5), || async {
            origin.hits("/news") == 4
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
