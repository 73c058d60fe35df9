//! Test support: real `redis-server` processes on free ports (never 6379), a Redis
//! Cluster of real processes, a counting origin on 127.0.0.1:0, and gatehouse itself
//! on real listeners. Everything is started and stopped by the tests themselves.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse::{App, Config};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A free TCP port on 127.0.0.1 (bound and released; a race is retried by callers).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Sends one inline command with a raw TCP connection and returns the reply text.
pub fn redis_raw(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// One real `redis-server` on a free port, with no persistence, in a temp dir.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// CA file when the server speaks TLS only.
    tls_ca: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..20 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
                extra: extra.clone(),
                tls_ca: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed?)");
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a
    /// CA made for the test (returned path: the CA's PEM file).
    pub fn start_tls() -> (RedisServer, std::path::PathBuf) {
        let certs = tempfile::tempdir().expect("tempdir");
        let d = certs.path();
        make_certs(d);
        let ca = d.join("ca.crt");
        for _ in 0..20 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
                extra: Vec::new(),
                tls_ca: Some(ca.clone()),
            };
            server.extra = vec![
                "--tls-cert-file".into(),
                d.join("server.crt").display().to_string(),
                "--tls-key-file".into(),
                d.join("server.key").display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            if server.spawn() {
                // Keep the certificate directory alive as long as the server.
                let kept = certs.keep();
                return (server, kept.join("ca.crt"));
            }
        }
        panic!("could not start a TLS redis-server");
    }

    fn ping(&self) -> bool {
        match &self.tls_ca {
            None => redis_raw(self.port, "PING").is_some_and(|r| r.starts_with("+PONG")),
            Some(ca) => Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(ca)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")),
        }
    }

    fn spawn(&mut self) -> bool {
        assert_ne!(self.port, 6379, "tests never use port 6379");
        let mut cmd = Command::new("redis-server");
        let (plain, tls) = if self.tls_ca.is_some() {
            ("0".to_string(), Some(self.port.to_string()))
        } else {
            (self.port.to_string(), None)
        };
        if let Some(tls_port) = tls {
            cmd.arg("--tls-port").arg(tls_port);
        }
        cmd.arg("--port")
            .arg(plain)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Ok(child) = cmd.spawn() else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return true;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (simulating an outage); `restart` brings it back on the
    /// same port, empty.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server restart on port {} failed",
            self.port
        );
    }

    pub fn cmd(&self, command: &str) -> String {
        redis_raw(self.port, command).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the openssl CLI in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a private key with `openssl genpkey <args>` into `dir` and its public
/// key beside it; returns (private PEM bytes, public key file).
pub fn genkey(dir: &std::path::Path, name: &str, args: &[&str]) -> (Vec<u8>, std::path::PathBuf) {
    let private = format!("{name}.pem");
    let public = format!("{name}.pub.pem");
    let mut gen = vec!["genpkey"];
    gen.extend_from_slice(args);
    gen.extend_from_slice(&["-out", &private]);
    openssl(dir, &gen);
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    (std::fs::read(dir.join(&private)).unwrap(), dir.join(public))
}

/// Writes `ca.crt`, `server.crt` and `server.key` (EC P-256, the server cert for
/// 127.0.0.1 and localhost, signed by the CA) into `d` with the openssl CLI.
pub fn make_certs(d: &std::path::Path) {
    let run = |args: &[&str]| openssl(d, args);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=gatehouse-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A Redis Sentinel process monitoring one master as `mymaster`.
pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    pub fn start(master: &RedisServer) -> Sentinel {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 1000\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .unwrap();
            let Ok(child) = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut s = Sentinel {
                child: Some(child),
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if redis_raw(port, "SENTINEL get-master-addr-by-name mymaster")
                    .is_some_and(|r| r.contains(&master.port.to_string()))
                {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            s.stop();
        }
        panic!("could not start redis sentinel");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local Redis Cluster of real processes (masters only).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes
                .iter()
                .all(|n| n.cmd("CLUSTER INFO").contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// What the test origin saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// What the test origin answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            ..Reply::ok(body)
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type ReplyFn = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A counting origin on 127.0.0.1:0 whose answers the test decides.
pub struct TestOrigin {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    total: Arc<AtomicUsize>,
    handler: Arc<Mutex<Arc<ReplyFn>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestOrigin {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> TestOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestOrigin::serve(listener, Arc::new(handler))
    }

    /// Starts on a given listener (to restart on the same port).
    pub fn serve(listener: tokio::net::TcpListener, handler: Arc<ReplyFn>) -> TestOrigin {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(Mutex::new(handler));
        let (s, t, h) = (seen.clone(), total.clone(), handler.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, t, h) = (s.clone(), t.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<Incoming>| {
                        let (s, t, h) = (s.clone(), t.clone(), h.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                // Copied: parsed header values share hyper's read
                                // buffer, and kept here they would pin one buffer
                                // per request for the life of the test.
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        let k = http::HeaderName::from_bytes(k.as_ref());
                                        let v = http::HeaderValue::from_bytes(v.as_bytes());
                                        (k.unwrap(), v.unwrap())
                                    })
                                    .collect(),
                                body,
                            };
                            t.fetch_add(1, Ordering::SeqCst);
                            s.lock().unwrap().push(seen.clone());
                            let f = h.lock().unwrap().clone();
                            let reply = f(&seen);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut resp = http::Response::new(Full::new(Bytes::from(reply.body)));
                            *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                            for (k, v) in reply.headers {
                                resp.headers_mut().append(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    http::HeaderValue::from_str(&v).unwrap(),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestOrigin {
            addr,
            seen,
            total,
            handler,
            task,
        }
    }

    /// Replaces how the origin answers from now on.
    pub fn set(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received in all.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Requests received for a path (with query, as sent).
    pub fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }

    /// Stops accepting (connections in flight are left to end).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which store a test runs against.
pub enum TestStore {
    Memory,
    Redis(RedisServer),
}

impl TestStore {
    pub fn memory() -> TestStore {
        TestStore::Memory
    }

    pub fn redis() -> TestStore {
        TestStore::Redis(RedisServer::start())
    }

    /// The `[store]` section for this store, with a key prefix unique to the test.
    pub fn toml(&self, prefix: &str) -> String {
        match self {
            TestStore::Memory => {
                format!("[store]\nbackend = \"memory\"\nkey_prefix = \"{prefix}\"\n")
            }
            TestStore::Redis(r) => format!(
                "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n",
                r.url()
            ),
        }
    }

    pub fn redis_server(&mut self) -> Option<&mut RedisServer> {
        match self {
            TestStore::Redis(r) => Some(r),
            TestStore::Memory => None,
        }
    }
}

/// Runs the same async test body against the memory store and a real Redis.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let f = $body;
                f($crate::support::TestStore::memory()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let f = $body;
                f($crate::support::TestStore::redis()).await;
            }
        }
    };
}

/// gatehouse on real listeners (127.0.0.1:0 unless the config says otherwise).
pub struct Gatehouse {
    pub app: Option<App>,
    pub proxy: SocketAddr,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
}

/// Builds a config from TOML text, filling listener addresses with 127.0.0.1:0 and
/// the origin URL when the text does not set them.
pub fn config(text: &str, origin: Option<&str>) -> Config {
    let mut table: toml::Table = text.parse().expect("test config is TOML");
    let server = table
        .entry("server")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    for key in ["listen", "api_listen", "admin_listen"] {
        server
            .entry(key)
            .or_insert_with(|| toml::Value::String("127.0.0.1:0".into()));
    }
    server
        .entry("shutdown_grace")
        .or_insert_with(|| toml::Value::String("5s".into()));
    if let Some(o) = origin {
        let origin = table
            .entry("origin")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
        origin
            .entry("url")
            .or_insert_with(|| toml::Value::String(o.into()));
    }
    let text = toml::to_string(&table).unwrap();
    match Config::from_toml_str(&text, &HashMap::new()) {
        Ok(c) => c,
        Err(errs) => panic!("test config invalid: {errs:?}\n{text}"),
    }
}

impl Gatehouse {
    pub async fn start(text: &str, origin: &TestOrigin) -> Gatehouse {
        Gatehouse::start_config(config(text, Some(&origin.url()))).await
    }

    pub async fn start_config(cfg: Config) -> Gatehouse {
        Gatehouse::start_with_path(cfg, None).await
    }

    /// Starts with a config file path (enables reloads).
    pub async fn start_with_path(cfg: Config, path: Option<std::path::PathBuf>) -> Gatehouse {
        let app = App::start(cfg, path).await.expect("gatehouse starts");
        Gatehouse {
            proxy: app.proxy_addr,
            api: app.api_addr,
            admin: app.admin_addr,
            app: Some(app),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line (exact name with labels, e.g.
    /// `gatehouse_cache_lookups_total{result="hit",tier="l1"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok())?
            })
            .unwrap_or(0.0)
    }

    pub fn state(&self) -> &Arc<gatehouse::app::AppState> {
        &self.app.as_ref().unwrap().state
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// Polls `check` until it holds or `within` passes (for effects that happen in
/// the background, e.g. pub/sub delivery); returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A unique key prefix for a test.
pub fn prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test:{test}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
