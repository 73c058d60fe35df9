//! Range requests (RFC 9110 §14, RFC 9111 §3.3–3.4): ranges cut from a cached
//! complete 200, what is ignored, `If-Range`, ranged misses (filled with the whole
//! representation, coalesced with plain ones, passed with their `Range` when too
//! large to store), and 206 answers from the origin never stored.

mod support;

use std::time::{Duration, SystemTime};

use support::*;

const BODY: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

const CONFIG: &str = r#"
[cache]
max_object = "1KiB"
"#;

fn cfg(store: &TestStore, name: &str) -> String {
    format!("{}{}", store.toml(&prefix(name)), CONFIG)
}

fn status(r: &reqwest::Response) -> String {
    r.headers()["cache-status"].to_str().unwrap().to_string()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn get_with(gh: &Gatehouse, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut b = gh.client.get(gh.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.send().await.unwrap()
}

async fn range(gh: &Gatehouse, path: &str, value: &str) -> reqwest::Response {
    get_with(gh, path, &[("range", value)]).await
}

/// What a test origin that implements ranges itself answers: a 206 for
/// `bytes=first-last`, the whole body otherwise.
fn origin_reply(s: &Seen, body: &[u8], cache_control: &str) -> Reply {
    let asked = s
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match asked {
        Some((first, last)) => {
            let last = last.min(body.len() - 1);
            Reply::status(206, body[first..=last].to_vec())
                .header(
                    "content-range",
                    &format!("bytes {first}-{last}/{}", body.len()),
                )
                .header("cache-control", cache_control)
        }
        None => Reply::ok(body.to_vec()).header("cache-control", cache_control),
    }
}

fn big_body() -> Vec<u8> {
    (0..4096u32).map(|i| b'a' + (i % 26) as u8).collect()
}

both_stores!(
    single_ranges_are_cut_from_the_cached_response,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|_| {
            Reply::ok(BODY)
                .header("cache-control", "max-age=600")
                .header("etag", "\"v1\"")
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "cut"), &origin).await;
        let r = gh.get("/doc").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "accept-ranges").as_deref(), Some("bytes"));
        for (value, part, content_range) in [
            ("bytes=0-4", "abcde", "bytes 0-4/26"),
            ("bytes=-3", "xyz", "bytes 23-25/26"),
            ("bytes=20-", "uvwxyz", "bytes 20-25/26"),
            ("bytes=10-1000", "klmnopqrstuvwxyz", "bytes 10-25/26"),
            ("bytes=-100", "abcdefghijklmnopqrstuvwxyz", "bytes 0-25/26"),
            ("BYTES=0-0", "a", "bytes 0-0/26"),
        ] {
            let r = range(&gh, "/doc", value).await;
            assert_eq!(r.status(), 206, "{value}");
            assert!(
                status(&r).starts_with("gatehouse; hit; ttl="),
                "{value}: {}",
                status(&r)
            );
            assert_eq!(header(&r, "content-range").as_deref(), Some(content_range));
            assert_eq!(header(&r, "content-length"), Some(part.len().to_string()));
            assert_eq!(header(&r, "accept-ranges").as_deref(), Some("bytes"));
            assert_eq!(header(&r, "etag").as_deref(), Some("\"v1\""));
            assert_eq!(header(&r, "content-type").as_deref(), Some("text/plain"));
            assert!(r.headers().contains_key("age"));
            assert_eq!(r.text().await.unwrap(), part, "{value}");
        }
        for value in ["bytes=26-", "bytes=-0", "bytes=1000-2000"] {
            let r = range(&gh, "/doc", value).await;
            assert_eq!(r.status(), 416, "{value}");
            assert_eq!(header(&r, "content-range").as_deref(), Some("bytes */26"));
            assert!(status(&r).starts_with("gatehouse; hit"), "{}", status(&r));
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "RANGE_NOT_SATISFIABLE");
        }
        assert_eq!(origin.hits("/doc"), 1);
        gh.shutdown().await;
    }
);

both_stores!(
    ranges_that_are_ignored_get_the_whole_response,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| match s.path.as_str() {
            "/missing" => Reply::status(404, "not here").header("cache-control", "max-age=600"),
            _ => Reply::ok(BODY).header("cache-control", "max-age=600"),
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "ignored"), &origin).await;
        gh.get("/doc").await;
        // Several ranges get the whole representation (no multipart/byteranges).
        for value in [
            "bytes=0-1,5-6",
            "bytes=0-0,-1",
            "items=0-1",
            "bytes=5-1",
            "bytes=x-",
            "bytes 0-1",
            "bytes=",
        ] {
            let r = range(&gh, "/doc", value).await;
            assert_eq!(r.status(), 200, "{value}");
            assert!(!r.headers().contains_key("content-range"), "{value}");
            assert!(status(&r).starts_with("gatehouse; hit"), "{value}");
            assert_eq!(r.bytes().await.unwrap(), BODY, "{value}");
        }
        // HEAD: range handling is defined for GET only.
        let r = gh
            .client
            .head(gh.url("/doc"))
            .header("range", "bytes=0-4")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length").as_deref(), Some("26"));
        assert_eq!(header(&r, "accept-ranges").as_deref(), Some("bytes"));
        assert!(!r.headers().contains_key("content-range"));
        assert!(r.bytes().await.unwrap().is_empty());
        // A negative entry answers its 404 whatever the range.
        gh.get("/missing").await;
        let r = range(&gh, "/missing", "bytes=0-1").await;
        assert_eq!(r.status(), 404);
        assert!(status(&r).ends_with("detail=negative"), "{}", status(&r));
        assert!(!r.headers().contains_key("content-range"));
        assert!(!r.headers().contains_key("accept-ranges"));
        assert_eq!(r.text().await.unwrap(), "not here");
        assert_eq!(origin.hits("/doc"), 1);
        assert_eq!(origin.hits("/missing"), 1);
        gh.shutdown().await;
    }
);

both_stores!(
    if_range_sends_the_range_only_for_a_strong_validator,
    |store: TestStore| async move {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let modified = httpdate::fmt_http_date(now - Duration::from_secs(60));
        let (d, m) = (date.clone(), modified.clone());
        let origin = TestOrigin::start(move |s| {
            let r = Reply::ok(BODY)
                .header("cache-control", "max-age=600")
                .header("date", &d);
            match s.path.as_str() {
                // Modified in the second it was sent: a weak validator.
                "/weak-date" => r.header("last-modified", &d),
                "/weak-tag" => r.header("etag", "W/\"v1\""),
                _ => r.header("etag", "\"v1\"").header("last-modified", &m),
            }
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "ifrange"), &origin).await;
        for p in ["/strong", "/weak-date", "/weak-tag"] {
            gh.get(p).await;
        }
        let other = httpdate::fmt_http_date(now - Duration::from_secs(120));
        for (path, if_range, partial) in [
            ("/strong", "\"v1\"", true),
            ("/strong", "\"v2\"", false),
            ("/strong", "W/\"v1\"", false),
            ("/strong", modified.as_str(), true),
            ("/strong", other.as_str(), false),
            ("/strong", "not a validator", false),
            ("/weak-date", date.as_str(), false),
            ("/weak-tag", "\"v1\"", false),
            ("/weak-tag", "W/\"v1\"", false),
        ] {
            let r = get_with(&gh, path, &[("range", "bytes=0-2"), ("if-range", if_range)]).await;
            let want = if partial { 206 } else { 200 };
            assert_eq!(r.status(), want, "{path} If-Range: {if_range}");
            let body = r.bytes().await.unwrap();
            assert_eq!(&body[..], if partial { &BODY[..3] } else { BODY });
        }
        // The validators come first: a matching If-None-Match is 304, range or not.
        let r = get_with(
            &gh,
            "/strong",
            &[("range", "bytes=0-2"), ("if-none-match", "\"v1\"")],
        )
        .await;
        assert_eq!(r.status(), 304);
        for p in ["/strong", "/weak-date", "/weak-tag"] {
            assert_eq!(origin.hits(p), 1, "{p}");
        }
        gh.shutdown().await;
    }
);

both_stores!(
    a_ranged_miss_fills_with_the_whole_response_and_later_ranges_hit,
    |store: TestStore| async move {
        let origin = TestOrigin::start(|s| {
            if s.path == "/stale" {
                // Born stale (Age = max-age), kept for revalidation by its ETag.
                if s.headers.contains_key("if-none-match") {
                    return Reply::status(304, "")
                        .header("cache-control", "max-age=60")
                        .header("age", "60");
                }
                return Reply::ok(BODY)
                    .header("cache-control", "max-age=60")
                    .header("age", "60")
                    .header("etag", "\"s1\"");
            }
            Reply::ok(BODY).header("cache-control", "max-age=600")
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "fill"), &origin).await;
        let r = get_with(
            &gh,
            "/cold",
            &[("range", "bytes=2-4"), ("if-range", "\"x\"")],
        )
        .await;
        // If-Range cannot hold for an entry without an ETag: the whole response.
        assert_eq!(r.status(), 200);
        assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
        let r = range(&gh, "/cold2", "bytes=2-4").await;
        assert_eq!(r.status(), 206);
        assert_eq!(status(&r), "gatehouse; fwd=miss; stored");
        assert_eq!(header(&r, "content-range").as_deref(), Some("bytes 2-4/26"));
        assert_eq!(r.text().await.unwrap(), "cde");
        for seen in origin.seen() {
            assert_eq!(seen.method, "GET");
            assert!(!seen.headers.contains_key("range"), "{seen:?}");
            assert!(!seen.headers.contains_key("if-range"), "{seen:?}");
        }
        let r = range(&gh, "/cold2", "bytes=-2").await;
        assert_eq!(r.status(), 206);
        assert!(status(&r).starts_with("gatehouse; hit"));
        assert_eq!(r.text().await.unwrap(), "yz");
        let r = gh.get("/cold2").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), BODY);
        assert_eq!(origin.hits("/cold2"), 1);

        // A stale entry is revalidated without the Range; the slice comes from it.
        gh.get("/stale").await;
        let r = range(&gh, "/stale", "bytes=0-1").await;
        assert_eq!(r.status(), 206);
        assert_eq!(status(&r), "gatehouse; fwd=stale; fwd-status=304; stored");
        assert_eq!(r.text().await.unwrap(), "ab");
        let last = origin.last().unwrap();
        assert_eq!(last.headers["if-none-match"], "\"s1\"");
        assert!(!last.headers.contains_key("range"));
        assert_eq!(origin.hits("/stale"), 2);
        gh.shutdown().await;
    }
);

both_stores!(
    ranged_and_plain_misses_share_one_fetch,
    |store: TestStore| async move {
        let gate = Gate::new();
        let g = gate.clone();
        let origin = TestOrigin::start(move |_| {
            Reply::ok(BODY)
                .header("cache-control", "max-age=600")
                .held_by(&g)
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "share"), &origin).await;
        // A ranged miss leads (its fill must ask for the whole representation);
        // the rest, plain and ranged, wait for it and cut their own answers.
        let asks: Vec<(Option<&str>, u16, &[u8])> = vec![
            (Some("bytes=0-1"), 206, b"ab"),
            (None, 200, BODY),
            (Some("bytes=-2"), 206, b"yz"),
            (Some("bytes=5-"), 206, &BODY[5..]),
            (Some("bytes=0-1,3-4"), 200, BODY),
            (Some("bytes=30-"), 416, b""),
            (None, 200, BODY),
            (Some("bytes=25-25"), 206, b"z"),
        ];
        let mut tasks = Vec::new();
        for (i, (value, _, _)) in asks.iter().enumerate() {
            let mut b = gh.client.get(gh.url("/shared"));
            if let Some(v) = value {
                b = b.header("range", *v);
            }
            tasks.push(tokio::spawn(async move {
                let r = b.send().await.unwrap();
                let code = r.status().as_u16();
                let cs = status(&r);
                (code, cs, r.bytes().await.unwrap())
            }));
            if i == 0 {
                gate.held(1).await;
            }
        }
        wait_until("7 waiters", || async { gh.waiting() == 7 }).await;
        gate.open();
        let mut collapsed = 0;
        for (task, (value, code, part)) in tasks.into_iter().zip(&asks) {
            let (got, cs, body) = task.await.unwrap();
            assert_eq!(got, *code, "{value:?}: {cs}");
            if *code != 416 {
                assert_eq!(&body[..], *part, "{value:?}");
            }
            collapsed += cs.contains("collapsed") as usize;
        }
        assert_eq!(origin.hits("/shared"), 1);
        assert_eq!(collapsed, 7, "the waiters took the leader's answer");
        let fill = origin.last().unwrap();
        assert!(!fill.headers.contains_key("range"), "{fill:?}");
        gh.shutdown().await;
    }
);

both_stores!(
    a_ranged_miss_too_large_to_store_asks_the_origin_for_the_range,
    |store: TestStore| async move {
        let big = big_body();
        let b = big.clone();
        let origin = TestOrigin::start(move |s| origin_reply(s, &b, "max-age=600")).await;
        let gh = Gatehouse::start(&cfg(&store, "large"), &origin).await;
        let r = range(&gh, "/big", "bytes=100-109").await;
        assert_eq!(r.status(), 206);
        assert_eq!(status(&r), "gatehouse; fwd=miss; detail=range");
        assert_eq!(
            header(&r, "content-range").as_deref(),
            Some("bytes 100-109/4096")
        );
        assert_eq!(&r.bytes().await.unwrap()[..], &big[100..110]);
        // The whole representation was asked for first (its Content-Length is over
        // max_object), then the range alone.
        let seen = origin.seen();
        assert_eq!(seen.len(), 2);
        assert!(!seen[0].headers.contains_key("range"));
        assert_eq!(seen[1].headers["range"], "bytes=100-109");

        // The origin's 206 (max-age=600) was not stored, and the URL is now passed
        // with its range without the whole-representation attempt.
        let r = range(&gh, "/big", "bytes=100-109").await;
        assert_eq!(r.status(), 206);
        assert_eq!(status(&r), "gatehouse; fwd=miss; detail=range");
        assert_eq!(&r.bytes().await.unwrap()[..], &big[100..110]);
        let seen = origin.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].headers["range"], "bytes=100-109");
        let r = gh.get("/big").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 4096);
        gh.shutdown().await;
    }
);

both_stores!(
    origin_partial_answers_are_never_stored,
    |store: TestStore| async move {
        // An origin that answers 206 even to a request without Range.
        let origin = TestOrigin::start(|_| {
            Reply::status(206, "abc")
                .header("content-range", "bytes 0-2/26")
                .header("cache-control", "max-age=600")
        })
        .await;
        let gh = Gatehouse::start(&cfg(&store, "partial"), &origin).await;
        for _ in 0..2 {
            let r = range(&gh, "/p", "bytes=0-2").await;
            assert_eq!(r.status(), 206);
            assert!(!status(&r).contains("hit"), "{}", status(&r));
            assert_eq!(r.text().await.unwrap(), "abc");
            let r = gh.get("/p").await;
            assert_eq!(r.status(), 206);
            assert_eq!(status(&r), "gatehouse; fwd=miss; detail=status");
        }
        assert_eq!(origin.hits("/p"), 4);
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_answer_sends_waiting_ranges_to_the_origin() {
    let gate = Gate::new();
    let g = gate.clone();
    let origin = TestOrigin::start(move |s| {
        let r = origin_reply(s, BODY, "no-store");
        if s.headers.contains_key("range") {
            r
        } else {
            r.held_by(&g)
        }
    })
    .await;
    let gh = Gatehouse::start(&cfg(&TestStore::memory(), "uncacheable"), &origin).await;
    // A plain miss leads; a ranged request waits for it.
    let url = gh.url("/nostore");
    let client = gh.client.clone();
    let plain = tokio::spawn(async move { client.get(url).send().await.unwrap() });
    gate.held(1).await;
    let (r, ()) = tokio::join!(range(&gh, "/nostore", "bytes=1-3"), async {
        wait_until("the ranged request waiting", || async { gh.waiting() == 1 }).await;
        gate.open();
    });
    // Released by the uncacheable answer, it asked the origin for its range alone.
    assert_eq!(r.status(), 206);
    assert_eq!(status(&r), "gatehouse; fwd=miss; detail=range");
    assert_eq!(r.text().await.unwrap(), "bcd");
    let p = plain.await.unwrap();
    assert_eq!(p.status(), 200);
    assert_eq!(status(&p), "gatehouse; fwd=miss; detail=no-store");
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["range"], "bytes=1-3");
    // Hit-for-pass: ranges go straight to the origin.
    let r = range(&gh, "/nostore", "bytes=0-0").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "a");
    assert_eq!(origin.seen().len(), 3);

    // The first ranged miss of an uncacheable URL gets the origin's whole answer
    // (RFC 9110 §14.2 lets it ignore the range).
    let r = range(&gh, "/other", "bytes=1-3").await;
    assert_eq!(r.status(), 200);
    assert_eq!(status(&r), "gatehouse; fwd=miss; detail=no-store");
    assert_eq!(r.bytes().await.unwrap(), BODY);
    gh.shutdown().await;
}
