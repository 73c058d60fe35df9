//! Named origins (`[origins.NAME]`, `routes[].origin`), issue 10 item 5: two real
//! upstreams on 127.0.0.1:0 that say who they are, one sidecar in front of both.
//! A route with `origin = "auth"` reaches the second, every other request the
//! default; each origin has its own timeout and protocol; cached answers of the two
//! are never mixed (both stores); upgrades follow the route's origin; a reload that
//! moves a route takes effect, and a request under way finishes on its origin.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with `<name> <HTTP version>` (and
/// `x-upstream: <name>`), cacheable for a minute. A path ending in `/slow` is answered
/// after a second (for origin timeouts: real time is their subject); one ending in
/// `/held` waits for the upstream's `gate`.
/// An HTTP/1.1 `Upgrade` request gets `101` and, on the upgraded connection, the
/// upstream's name and then an echo of what it receives. Counts requests per path.
struct Upstream {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    gate: Gate,
}

impl Upstream {
    async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let counts = hits.clone();
        let gate = Gate::new();
        let held = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (counts, held) = (counts.clone(), held.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        *counts
                            .lock()
                            .unwrap()
                            .entry(req.uri().path().to_string())
                            .or_default() += 1;
                        let held = held.clone();
                        async move {
                            if req.uri().path().ends_with("/held") {
                                held.pass().await;
                            }
                            Ok::<_, Infallible>(answer(name, req).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream { addr, hits, gate }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn answer(
    name: &'static str,
    mut req: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    if req.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut io = TokioIo::new(io);
            let _ = io.write_all(format!("{name}\n").as_bytes()).await;
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        return http::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if req.uri().path().ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    http::Response::builder()
        .header("cache-control", "max-age=60")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(format!(
            "{name} {:?}",
            req.version()
        ))))
        .unwrap()
}

/// `[origin]` is `app`, `[origins.auth]` is `auth` with `auth_keys` added.
fn two_origins(app: &Upstream, auth: &Upstream, auth_keys: &str, rest: &str) -> String {
    format!(
        "[origin]\nurl = \"{}\"\n[origins.auth]\nurl = \"{}\"\n{auth_keys}\n{rest}",
        app.url(),
        auth.url()
    )
}

async fn get(gh: &Gatehouse, host: &str, path: &str) -> (u16, String, String) {
    let r = gh
        .client
        .get(gh.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, r.text().await.unwrap())
}

both_stores!(
    a_route_with_origin_auth_reaches_the_second_origin_and_others_the_default,
    |store: TestStore| async move {
        let app = Upstream::start("app").await;
        let auth = Upstream::start("auth").await;
        let routes = "[[routes]]\npath = \"/auth/{*rest}\"\norigin = \"auth\"\nmethods = [\"GET\", \"HEAD\", \"POST\"]\n[[routes]]\npath = \"/api/{*rest}\"\norigin = \"default\"\n";
        let text = format!(
            "{}{}",
            store.toml(&prefix("multi_reach")),
            two_origins(&app, &auth, "", routes)
        );
        let gh = Gatehouse::start_config(config(&text, None)).await;
        let (s, _, body) = get(&gh, "app.test", "/auth/login").await;
        assert_eq!((s, body.as_str()), (200, "auth HTTP/1.1"));
        let (_, _, body) = get(&gh, "app.test", "/api/me").await;
        assert_eq!(body, "app HTTP/1.1");
        let (_, _, body) = get(&gh, "app.test", "/no/route").await;
        assert_eq!(body, "app HTTP/1.1", "no route: the default origin");
        // A write passes through to the route's origin too.
        let r = gh
            .client
            .post(gh.url("/auth/logout"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-upstream"], "auth");
        assert_eq!(
            (
                auth.hits("/auth/login"),
                auth.hits("/auth/logout"),
                auth.hits("/api/me")
            ),
            (1, 1, 0)
        );
        assert_eq!(
            (
                app.hits("/api/me"),
                app.hits("/no/route"),
                app.hits("/auth/login")
            ),
            (1, 1, 0)
        );
        // A cached answer of the auth origin is answered again from the cache.
        let (_, cache, body) = get(&gh, "app.test", "/auth/login").await;
        assert!(cache.starts_with("gatehouse; hit"), "{cache}");
        assert_eq!(body, "auth HTTP/1.1");
        assert_eq!(auth.hits("/auth/login"), 1);
        // Each origin's requests are counted under its name.
        gh.assert_family(
            "gatehouse_origin_requests_total",
            &[
                (r#"origin="auth",result="ok""#, 2.0),
                (r#"origin="default",result="ok""#, 2.0),
            ],
        )
        .await;
        gh.shutdown().await;
    }
);

both_stores!(
    cached_answers_of_two_origins_are_never_mixed,
    |store: TestStore| async move {
        let app = Upstream::start("app").await;
        let auth = Upstream::start("auth").await;
        // By host: the same path on two authorities, each to its own origin.
        // By method: GET /q goes to auth, HEAD /q to the default, and GET and HEAD
        // share a key: only the origin in the key keeps them apart.
        let routes = r#"
[[routes]]
path = "/p"
hosts = ["app.test"]
ttl = "1m"
[[routes]]
path = "/p"
hosts = ["auth.test"]
origin = "auth"
ttl = "1m"
[[routes]]
path = "/q"
methods = ["GET"]
origin = "auth"
ttl = "1m"
[[routes]]
path = "/q"
methods = ["HEAD"]
ttl = "1m"
"#;
        let text = format!(
            "{}{}",
            store.toml(&prefix("multi_mixed")),
            two_origins(&app, &auth, "", routes)
        );
        let gh = Gatehouse::start_config(config(&text, None)).await;
        for _ in 0..2 {
            let (_, _, body) = get(&gh, "app.test", "/p").await;
            assert_eq!(body, "app HTTP/1.1");
            let (_, _, body) = get(&gh, "auth.test", "/p").await;
            assert_eq!(body, "auth HTTP/1.1");
        }
        assert_eq!(
            (app.hits("/p"), auth.hits("/p")),
            (1, 1),
            "each cached once"
        );

        // HEAD first: filled from the default origin (with a GET) and cached.
        let r = gh
            .client
            .head(gh.url("/q"))
            .header("host", "app.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-upstream"], "app");
        assert_eq!(app.hits("/q"), 1);
        // GET on the auth route must not be answered with the default origin's entry.
        let (_, cache, body) = get(&gh, "app.test", "/q").await;
        assert_eq!(body, "auth HTTP/1.1", "{cache}");
        assert_eq!(auth.hits("/q"), 1);
        let (_, cache, body) = get(&gh, "app.test", "/q").await;
        assert!(cache.starts_with("gatehouse; hit"), "{cache}");
        assert_eq!(body, "auth HTTP/1.1");
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_origin_has_its_own_timeout_and_protocol() {
    let app = Upstream::start("app").await;
    let auth = Upstream::start("auth").await;
    let routes = "[[routes]]\npath = \"/auth/{*rest}\"\norigin = \"auth\"\ncache = false\n[[routes]]\npath = \"/timed/{*rest}\"\norigin = \"auth\"\ntimeout = \"5s\"\ncache = false\n";
    // [origin] keeps its defaults (30s, HTTP/1.1); auth is h2c with a short timeout.
    let text = two_origins(
        &app,
        &auth,
        "protocol = \"h2c\"\ntimeout = \"200ms\"\n",
        routes,
    );
    let gh = Gatehouse::start_config(config(&text, None)).await;
    let (_, _, body) = get(&gh, "app.test", "/auth/x").await;
    assert_eq!(body, "auth HTTP/2.0", "h2c to the auth origin");
    let (_, _, body) = get(&gh, "app.test", "/x").await;
    assert_eq!(body, "app HTTP/1.1", "HTTP/1.1 to the default origin");

    // One second is beyond auth's 200ms, within [origin]'s 30s.
    let (status, _, body) = get(&gh, "app.test", "/auth/slow").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("ORIGIN_TIMEOUT"), "{body}");
    let (status, _, body) = get(&gh, "app.test", "/slow").await;
    assert_eq!((status, body.as_str()), (200, "app HTTP/1.1"));
    // A route's timeout still overrides its origin's.
    let (status, _, body) = get(&gh, "app.test", "/timed/slow").await;
    assert_eq!((status, body.as_str()), (200, "auth HTTP/2.0"));
    gh.assert_family(
        "gatehouse_origin_requests_total",
        &[
            (r#"origin="auth",result="timeout""#, 1.0),
            (r#"origin="default",result="timeout""#, 0.0),
        ],
    )
    .await;
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_goes_to_the_routes_origin() {
    let app = Upstream::start("app").await;
    let auth = Upstream::start("auth").await;
    let routes = "[[routes]]\npath = \"/ws/auth\"\norigin = \"auth\"\n";
    let gh = Gatehouse::start_config(config(&two_origins(&app, &auth, "", routes), None)).await;
    for (path, name) in [("/ws/auth", "auth"), ("/ws/app", "app")] {
        let mut tcp = tokio::net::TcpStream::connect(gh.proxy).await.unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // The 101 head, then the upstream's name on the upgraded connection.
        while !String::from_utf8_lossy(&got).contains(&format!("\r\n\r\n{name}\n")) {
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        tcp.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        tcp.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        assert_eq!(
            (auth.hits(path), app.hits(path)),
            if name == "auth" { (1, 0) } else { (0, 1) },
            "{path}"
        );
    }
    gh.shutdown().await;
}

fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_a_route_to_another_origin_and_requests_under_way_finish_on_theirs() {
    let app = Upstream::start("app").await;
    let auth = Upstream::start("auth").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let listeners =
        "[server]\nlisten = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let before = format!(
        "{listeners}[origin]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nttl = \"1m\"\n[[routes]]\npath = \"/held\"\ncache = false\n",
        app.url()
    );
    write(&path, &before);
    let cfg = gatehouse::Config::from_toml_str(&before, &HashMap::new()).unwrap();
    let gh = Gatehouse::start_with_path(cfg, Some(path.clone())).await;
    let state = gh.state().clone();
    let reload = || gatehouse::app::reload(&state);
    let (_, _, body) = get(&gh, "app.test", "/r").await;
    assert_eq!(body, "app HTTP/1.1");

    // Added: [origins.auth], and both routes moved to it.
    let after = format!(
        "{listeners}[origin]\nurl = \"{}\"\n[origins.auth]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nttl = \"1m\"\norigin = \"auth\"\n[[routes]]\npath = \"/held\"\ncache = false\norigin = \"auth\"\n",
        app.url(),
        auth.url()
    );
    write(&path, &after);
    reload().expect("the reload takes");
    let (_, cache, body) = get(&gh, "app.test", "/r").await;
    assert_eq!(
        body, "auth HTTP/1.1",
        "not the default origin's cached entry: {cache}"
    );
    assert_eq!((app.hits("/r"), auth.hits("/r")), (1, 1));

    // A request under way when its origin is removed finishes on it.
    let slow = {
        let client = gh.client.clone();
        let url = gh.url("/held");
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    };
    // auth holds it until the reload has taken.
    auth.gate.held(1).await;
    write(&path, &before);
    reload().expect("the reload takes");
    auth.gate.open();
    assert_eq!(slow.await.unwrap(), "auth HTTP/1.1");
    // Back on the default origin: its entry for /r is still cached.
    let (_, cache, body) = get(&gh, "app.test", "/r").await;
    assert_eq!(body, "app HTTP/1.1");
    assert!(cache.starts_with("gatehouse; hit"), "{cache}");

    // A route naming an origin the file does not declare is refused; the running
    // config stays.
    write(
        &path,
        &format!("{before}[[routes]]\npath = \"/n\"\norigin = \"nope\"\n"),
    );
    let err = reload().expect_err("refused").to_string();
    assert!(err.contains("routes[2].origin"), "{err}");
    let (_, _, body) = get(&gh, "app.test", "/r").await;
    assert_eq!(body, "app HTTP/1.1");
    gh.shutdown().await;
}
