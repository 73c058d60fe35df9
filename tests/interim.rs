//! 1xx interim responses from the origin (103 Early Hints, 102 Processing, 100
//! Continue): the final answer is intact, nothing of the interim ones is stored or
//! merged into it (a 103's `Link` included), over HTTP/1.1 and h2 to the client.
//! hyper 1.12's server cannot send interim responses on (see docs/http-caching.md),
//! so they are counted and dropped. The origin is a raw TCP one that writes the
//! interim heads itself.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EARLY_HINTS: &[u8] =
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";

/// A raw HTTP/1.1 origin: for each request, the interim heads its path asks for,
/// then a 200. Counts the requests it answered.
struct RawOrigin {
    url: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_origin() -> RawOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request head (the requests here have no body but a POST's).
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = format!("final {path}");
                    let cache_control = if path.starts_with("/nostore") {
                        "no-store"
                    } else {
                        "max-age=600"
                    };
                    let last = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let ok = if path.starts_with("/together") {
                        // Interim and final heads in one write.
                        let mut all = EARLY_HINTS.to_vec();
                        all.extend_from_slice(last.as_bytes());
                        s.write_all(&all).await.is_ok()
                    } else {
                        let mut ok = true;
                        let interim: &[&[u8]] = if path.starts_with("/processing") {
                            &[b"HTTP/1.1 102 Processing\r\n\r\n", EARLY_HINTS, EARLY_HINTS]
                        } else {
                            &[EARLY_HINTS]
                        };
                        for head in interim {
                            ok &= s.write_all(head).await.is_ok() && s.flush().await.is_ok();
                            // Apart on the wire, so gatehouse reads each on its own.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        ok && s.write_all(last.as_bytes()).await.is_ok()
                    };
                    if !ok {
                        return;
                    }
                }
            });
        }
    });
    RawOrigin {
        url,
        requests,
        task,
    }
}

fn status(r: &reqwest::Response) -> String {
    r.headers()["cache-status"].to_str().unwrap().to_string()
}

fn interim_series(code: u16) -> String {
    format!("gatehouse_origin_interim_responses_total{{origin=\"default\",status=\"{code}\"}}")
}

both_stores!(
    interim_responses_never_reach_the_stored_answer,
    |store: TestStore| async move {
        let origin = raw_origin().await;
        let text = store.toml(&prefix("interim"));
        let gh = Gatehouse::start_config(config(&text, Some(&origin.url))).await;
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        for (path, client) in [
            ("/hints", &gh.client),
            ("/together", &gh.client),
            ("/processing", &h2),
        ] {
            for round in 0..2 {
                let r = client.get(gh.url(path)).send().await.unwrap();
                assert_eq!(r.status(), 200, "{path}");
                assert!(
                    !r.headers().contains_key("link"),
                    "{path}: {:?}",
                    r.headers()
                );
                let cs = status(&r);
                if round == 0 {
                    assert_eq!(cs, "gatehouse; fwd=miss; stored", "{path}");
                } else {
                    assert!(cs.starts_with("gatehouse; hit"), "{path}: {cs}");
                }
                assert_eq!(r.text().await.unwrap(), format!("final {path}"));
            }
        }
        assert_eq!(origin.requests.load(Ordering::SeqCst), 3);
        // Counted, so an operator sees hints that cannot reach clients.
        assert_eq!(gh.metric(&interim_series(103)).await, 4.0);
        assert_eq!(gh.metric(&interim_series(102)).await, 1.0);
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_on_passed_requests_leave_the_answer_intact() {
    let origin = raw_origin().await;
    let text = TestStore::memory().toml(&prefix("interim-pass"));
    let gh = Gatehouse::start_config(config(&text, Some(&origin.url))).await;
    let r = gh.get("/nostore").await;
    assert_eq!(r.status(), 200);
    assert_eq!(status(&r), "gatehouse; fwd=miss; detail=no-store");
    assert!(!r.headers().contains_key("link"));
    assert_eq!(r.text().await.unwrap(), "final /nostore");
    let r = gh
        .client
        .post(gh.url("/nostore/write"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&r), "gatehouse; fwd=method");
    assert!(!r.headers().contains_key("link"));
    assert_eq!(r.text().await.unwrap(), "final /nostore/write");
    let r = gh.client.head(gh.url("/hints")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("link"));
    assert_eq!(origin.requests.load(Ordering::SeqCst), 3);
    assert_eq!(gh.metric(&interim_series(103)).await, 3.0);
    gh.shutdown().await;
}
