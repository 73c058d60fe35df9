//! The built-in demo: a small check-in API (the demo origin) and gatehouse in front of
//! it, both on loopback, for `gatehouse demo`; and the origin alone for
//! `gatehouse demo-origin` (the load harness's origin).
//!
//! The demo origin answers, always as JSON and without `Cache-Control` (existing
//! backends rarely send it, so gatehouse's route `ttl`s apply):
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/participants/{id}` | 200 for ids 1..=50, 404 `NOT_FOUND` otherwise; takes [`PARTICIPANT_DELAY`] |
//! | `POST /api/participants/{id}/check-in` | 201 first time, 200 when already checked in; 409 `SESSION_FULL` when the participant's session is full; 404 for unknown ids |
//! | `GET /api/sessions`, `GET /api/sessions/{id}` | the sessions with capacity and check-in count; take [`SESSION_DELAY`] |
//! | `GET /bench/static` | a fixed [`BENCH_BODY_LEN`]-byte body, at once (for load tests) |
//! | `GET /bench/bytes/{size}/{key}` | `size` bytes (at most [`BENCH_MAX_BYTES`]) of text, the same for every `key`; `?delay_ms=N` (at most 10 000) answers after N ms (the benches' working sets and slow misses) |
//! | `GET /__origin/stats` | how many requests the origin served, per method, path and query |
//!
//! `GET` routes answer `HEAD` too. `/__origin/...` requests are not counted.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{full, Body, RequestBody};
use crate::config::{Config, ConfigError};
use crate::server::{self, Handler, Limits};
use crate::App;

/// Participants `1..=PARTICIPANTS` exist.
pub const PARTICIPANTS: u32 = 50;
/// How long a participant read takes (so concurrent misses visibly coalesce).
pub const PARTICIPANT_DELAY: Duration = Duration::from_millis(300);
/// How long a session read takes.
pub const SESSION_DELAY: Duration = Duration::from_millis(100);
/// Size of the `GET /bench/static` body.
pub const BENCH_BODY_LEN: usize = 1024;
/// Largest `GET /bench/bytes/{size}/{key}` body.
pub const BENCH_MAX_BYTES: usize = 1 << 20;
/// Longest `?delay_ms=` a `/bench/bytes` request may ask for.
const BENCH_MAX_DELAY_MS: u64 = 10_000;
/// Distinct `/__origin/stats` keys kept; later ones are counted under `"(other)"`.
const MAX_STATS_KEYS: usize = 1000;
/// How long in-flight demo-origin requests may finish after shutdown begins.
const ORIGIN_GRACE: Duration = Duration::from_secs(5);

/// Where `gatehouse demo` tries to listen; a port already taken is replaced by a free one.
pub const DEMO_ORIGIN: &str = "127.0.0.1:3000";
pub const DEMO_PROXY: &str = "127.0.0.1:8080";
pub const DEMO_API: &str = "127.0.0.1:7070";
pub const DEMO_ADMIN: &str = "127.0.0.1:9100";

struct Session {
    id: u32,
    title: &'static str,
    room: &'static str,
    starts_at: &'static str,
    capacity: u32,
}

// Participant `id` attends session `(id - 1) % 3 + 1`: 17, 17 and 16 participants, so
// the third session (capacity 15) turns the 16th check-in away.
const SESSIONS: [Session; 3] = [
    Session {
        id: 1,
        title: "Opening keynote",
        room: "Main hall",
        starts_at: "2025-06-12T09:00:00Z",
        capacity: 50,
    },
    Session {
        id: 2,
        title: "Hands-on Rust",
        room: "Room 2",
        starts_at: "2025-06-12T10:30:00Z",
        capacity: 20,
    },
    Session {
        id: 3,
        title: "Caching without tears",
        room: "Room 3",
        starts_at: "2025-06-12T10:30:00Z",
        capacity: 15,
    },
];

const FIRST_NAMES: [&str; 10] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tony",
];
const LAST_NAMES: [&str; 5] = ["Lovelace", "Hopper", "Turing", "Liskov", "Knuth"];

#[derive(Default)]
struct State {
    /// Check-in time (RFC 3339) per participant id.
    checked_in: BTreeMap<u32, String>,
    requests: BTreeMap<String, u64>,
    total: u64,
}

/// Told one line per request the demo origin serves (`gatehouse demo` prints them,
/// so each curl that reaches the origin shows, and a cache hit shows none).
pub type Announce = Arc<dyn Fn(&str) + Send + Sync>;

/// The demo origin's request handler.
#[derive(Clone, Default)]
struct DemoHandler {
    state: Arc<Mutex<State>>,
    announce: Option<Announce>,
}

impl Handler for DemoHandler {
    async fn call(&self, req: Request<RequestBody>, _peer: SocketAddr) -> Response<Body> {
        let Some(announce) = &self.announce else {
            return self.handle(req).await;
        };
        let started = std::time::Instant::now();
        let line = format!(
            "origin served {} {}",
            req.method(),
            req.uri().path_and_query().map_or("/", |pq| pq.as_str())
        );
        let resp = self.handle(req).await;
        announce(&format!(
            "{line} -> {} in {} ms",
            resp.status().as_u16(),
            started.elapsed().as_millis()
        ));
        resp
    }
}

impl DemoHandler {
    async fn handle(&self, req: Request<RequestBody>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if !path.starts_with("/__origin/") {
            self.count(&req);
        }
        let method = req.method().clone();
        let read = method == Method::GET || method == Method::HEAD;
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (read, method == Method::POST, segments.as_slice()) {
            (true, _, ["bench", "static"]) => bench_static(),
            (true, _, ["bench", "bytes", size, _key]) => bench_bytes(size, req.uri().query()).await,
            (true, _, ["__origin", "stats"]) => self.stats(),
            (true, _, [""]) => index(),
            (true, _, ["api", "participants", id]) => {
                tokio::time::sleep(PARTICIPANT_DELAY).await;
                self.participant(id)
            }
            (true, _, ["api", "sessions"]) => {
                tokio::time::sleep(SESSION_DELAY).await;
                let state = self.state.lock().expect("demo state");
                let all: Vec<Value> = SESSIONS.iter().map(|s| session_json(s, &state)).collect();
                json_answer(StatusCode::OK, &json!({ "sessions": all }))
            }
            (true, _, ["api", "sessions", id]) => {
                tokio::time::sleep(SESSION_DELAY).await;
                let state = self.state.lock().expect("demo state");
                match SESSIONS.iter().find(|s| id.parse() == Ok(s.id)) {
                    Some(s) => json_answer(StatusCode::OK, &session_json(s, &state)),
                    None => not_found(&format!("no session {id}")),
                }
            }
            (_, true, ["api", "participants", id, "check-in"]) => {
                // The body carries nothing the demo needs; read it so the connection
                // can be reused.
                let _ = Limited::new(req.into_body(), 64 << 10).collect().await;
                self.check_in(id)
            }
            (_, _, ["api", "participants", _, "check-in"]) => method_not_allowed("POST"),
            (
                false,
                _,
                ["api", "participants", _]
                | ["api", "sessions"]
                | ["api", "sessions", _]
                | ["bench", "static"]
                | ["bench", "bytes", _, _]
                | ["__origin", "stats"]
                | [""],
            ) => method_not_allowed("GET, HEAD"),
            _ => not_found(&format!("no route for {path}")),
        }
    }

    fn count(&self, req: &Request<RequestBody>) {
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let key = format!("{} {target}", req.method());
        let mut state = self.state.lock().expect("demo state");
        state.total += 1;
        let full = state.requests.len() >= MAX_STATS_KEYS;
        match state.requests.get_mut(&key) {
            Some(n) => *n += 1,
            None if full => *state.requests.entry("(other)".into()).or_default() += 1,
            None => {
                state.requests.insert(key, 1);
            }
        }
    }

    fn stats(&self) -> Response<Body> {
        let state = self.state.lock().expect("demo state");
        json_answer(
            StatusCode::OK,
            &json!({ "total": state.total, "requests": state.requests }),
        )
    }

    fn participant(&self, id: &str) -> Response<Body> {
        let Some(id) = participant_id(id) else {
            return not_found(&format!("no participant {id}"));
        };
        let state = self.state.lock().expect("demo state");
        json_answer(StatusCode::OK, &participant_json(id, &state))
    }

    fn check_in(&self, id: &str) -> Response<Body> {
        let Some(id) = participant_id(id) else {
            return not_found(&format!("no participant {id}"));
        };
        let mut state = self.state.lock().expect("demo state");
        if state.checked_in.contains_key(&id) {
            return json_answer(StatusCode::OK, &participant_json(id, &state));
        }
        let session = &SESSIONS[session_index(id)];
        let count = checked_in_count(session, &state);
        if count >= session.capacity {
            return json_answer(
                StatusCode::CONFLICT,
                &json!({
                    "error": "SESSION_FULL",
                    "message": format!("session {} is full", session.id),
                    "count": count,
                    "capacity": session.capacity,
                    "remaining": 0,
                }),
            );
        }
        state
            .checked_in
            .insert(id, crate::clock::rfc3339_ms(crate::clock::now_ms()));
        json_answer(StatusCode::CREATED, &participant_json(id, &state))
    }
}

fn participant_id(text: &str) -> Option<u32> {
    // Only canonical decimal ids exist: "07" and "+7" are other resources.
    if text.starts_with(['0', '+']) {
        return None;
    }
    text.parse()
        .ok()
        .filter(|id| (1..=PARTICIPANTS).contains(id))
}

fn session_index(participant: u32) -> usize {
    (participant as usize - 1) % SESSIONS.len()
}

fn checked_in_count(session: &Session, state: &State) -> u32 {
    state
        .checked_in
        .keys()
        .filter(|&&p| SESSIONS[session_index(p)].id == session.id)
        .count() as u32
}

fn participant_json(id: u32, state: &State) -> Value {
    let i = id as usize - 1;
    let first = FIRST_NAMES[i % FIRST_NAMES.len()];
    let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    let checked_in_at = state.checked_in.get(&id);
    json!({
        "id": id,
        "name": format!("{first} {last}"),
        "email": format!("{}.{}{id}@example.com", first.to_lowercase(), last.to_lowercase()),
        "sessionId": SESSIONS[session_index(id)].id,
        "checkedIn": checked_in_at.is_some(),
        "checkedInAt": checked_in_at,
    })
}

fn session_json(s: &Session, state: &State) -> Value {
    let count = checked_in_count(s, state);
    json!({
        "id": s.id,
        "title": s.title,
        "room": s.room,
        "startsAt": s.starts_at,
        "capacity": s.capacity,
        "checkedIn": count,
        "remaining": s.capacity.saturating_sub(count),
    })
}

fn index() -> Response<Body> {
    json_answer(
        StatusCode::OK,
        &json!({
            "service": "gatehouse demo origin",
            "endpoints": [
                "GET /api/participants/{id}   (1..=50; ~300 ms)",
                "POST /api/participants/{id}/check-in",
                "GET /api/sessions",
                "GET /api/sessions/{id}",
                "GET /bench/static",
                "GET /bench/bytes/{size}/{key}?delay_ms=N",
                "GET /__origin/stats",
            ],
        }),
    )
}

fn bench_static() -> Response<Body> {
    static BODY: [u8; BENCH_BODY_LEN] = bench_body();
    let mut resp = Response::new(full(Bytes::from_static(&BODY)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `size` bytes cut from one shared buffer (no copy per answer), after `delay_ms`.
async fn bench_bytes(size: &str, query: Option<&str>) -> Response<Body> {
    static BUFFER: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let size = match size.parse::<usize>() {
        Ok(n) if n <= BENCH_MAX_BYTES => n,
        _ => {
            return json_answer(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "BAD_SIZE",
                    "message": format!("size must be a number of bytes up to {BENCH_MAX_BYTES}") }),
            )
        }
    };
    let delay = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("delay_ms="))
        .map(str::parse::<u64>);
    match delay {
        Some(Ok(ms)) if ms <= BENCH_MAX_DELAY_MS => {
            tokio::time::sleep(Duration::from_millis(ms)).await
        }
        Some(_) => {
            return json_answer(
                StatusCode::BAD_REQUEST,
                &json!({ "error": "BAD_DELAY",
                    "message": format!("delay_ms must be a number of milliseconds up to {BENCH_MAX_DELAY_MS}") }),
            )
        }
        None => {}
    }
    let buffer = BUFFER.get_or_init(|| {
        Bytes::from_iter((0..BENCH_MAX_BYTES).map(|i| match i % 64 {
            63 => b'\n',
            n => b'a' + (n % 26) as u8,
        }))
    });
    let mut resp = Response::new(full(buffer.slice(..size)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `BENCH_BODY_LEN` bytes of printable text ending in a newline.
const fn bench_body() -> [u8; BENCH_BODY_LEN] {
    let mut body = [0u8; BENCH_BODY_LEN];
    let mut i = 0;
    while i < BENCH_BODY_LEN {
        body[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    body[BENCH_BODY_LEN - 1] = b'\n';
    body
}

fn json_answer(status: StatusCode, value: &Value) -> Response<Body> {
    // The newline keeps `curl` output readable in the demo.
    let mut resp = Response::new(full(Bytes::from(format!("{value}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn not_found(message: &str) -> Response<Body> {
    json_answer(
        StatusCode::NOT_FOUND,
        &json!({ "error": "NOT_FOUND", "message": message }),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = json_answer(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({ "error": "METHOD_NOT_ALLOWED", "message": format!("allowed: {allow}") }),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Serves the demo origin on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish (for at most 5 s).
pub async fn serve_demo_origin(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let task = spawn_server(listener, rx, None);
    shutdown.await;
    let _ = tx.send(true);
    task.await.map_err(std::io::Error::other)
}

fn spawn_server(
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    announce: Option<Announce>,
) -> tokio::task::JoinHandle<()> {
    let handler = DemoHandler {
        announce,
        ..DemoHandler::default()
    };
    server::serve(
        "demo-origin",
        listener,
        None,
        Arc::new(handler),
        Limits::default(),
        None,
        shutdown,
        ORIGIN_GRACE,
    )
}

/// A demo origin running in the background, as started by [`DemoOrigin::start`].
pub struct DemoOrigin {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoOrigin {
    /// Starts serving on `listener` in a background task.
    pub fn start(listener: TcpListener) -> std::io::Result<DemoOrigin> {
        DemoOrigin::start_announcing(listener, None)
    }

    /// Like `start`, telling `announce` one line per request served.
    pub fn start_announcing(
        listener: TcpListener,
        announce: Option<Announce>,
    ) -> std::io::Result<DemoOrigin> {
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let task = spawn_server(listener, rx, announce);
        Ok(DemoOrigin {
            addr,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for in-flight requests (at most 5 s).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The demo's gatehouse config: memory store, gatehouse on the given addresses in
/// front of `origin`, and routes for the check-in API. Parsed and validated like a
/// user's file (the process environment is not applied: the demo is the same
/// everywhere).
pub fn config(
    origin: SocketAddr,
    proxy: SocketAddr,
    api: SocketAddr,
    admin: SocketAddr,
) -> Result<Config, Vec<ConfigError>> {
    let text = format!(
        r#"
[server]
listen = "{proxy}"
api_listen = "{api}"
admin_listen = "{admin}"
shutdown_grace = "5s"

[origin]
url = "http://{origin}"

[store]
backend = "memory"
key_prefix = "gatehouse:demo"

[log]
level = "warn"

[[routes]]
path = "/api/participants/{{id}}"
ttl = "30s"
negative_ttl = "15s"
tags = ["participant:{{id}}"]
invalidate_on = ["POST /api/participants/{{id}}/check-in"]

[[routes]]
path = "/api/sessions"
ttl = "10s"

[[routes]]
path = "/bench/static"
ttl = "10m"
"#
    );
    Config::from_toml_str(&text, &Default::default())
}

/// `preferred` when it can be bound now, else the same IP with port 0 (the
/// listener then picks a free port).
fn free_or_any(preferred: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::new(preferred.ip(), 0),
    }
}

/// `gatehouse demo` before gatehouse starts: the origin's listener is bound and the
/// config is built, so the caller can set up logging from it.
pub struct Prepared {
    pub config: Config,
    origin: TcpListener,
}

/// A running demo: the origin and gatehouse in front of it.
pub struct Demo {
    pub origin: DemoOrigin,
    pub app: App,
}

impl Demo {
    /// Binds the demo origin (127.0.0.1:3000 or a free port) and builds the config
    /// for gatehouse (8080, 7070 and 9100 on 127.0.0.1, each replaced by a free port
    /// when taken).
    pub async fn prepare() -> anyhow::Result<Prepared> {
        let origin = match TcpListener::bind(DEMO_ORIGIN).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind("127.0.0.1:0").await?,
        };
        let addr = |s: &str| free_or_any(s.parse().expect("demo addresses are valid"));
        let config = config(
            origin.local_addr()?,
            addr(DEMO_PROXY),
            addr(DEMO_API),
            addr(DEMO_ADMIN),
        )
        .map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("the demo config is invalid: {}", list.join("; "))
        })?;
        Ok(Prepared { config, origin })
    }

    /// Ready-to-print instructions: the addresses and `curl` lines that show a miss
    /// then a hit, a cached 404, coalescing and the metrics.
    pub fn guide(&self) -> String {
        let p = self.app.proxy_addr;
        let o = self.origin.addr();
        let a = self.app.api_addr;
        let m = self.app.admin_addr;
        let t = r#"-w '\n(%{time_total}s)\n'"#;
        format!(
            "\
gatehouse demo is running (memory store). Ctrl-C stops it. Each request that reaches
the origin prints a line here (\"origin served GET ...\"): a cache hit prints none.

  proxy   http://{p}   clients call this
  origin  http://{o}   the demo check-in API (participant reads take ~300 ms)
  api     http://{a}   native /v1 endpoints
  admin   http://{m}   /livez /readyz /metrics

1. A miss, then a hit: compare Cache-Status and the time taken.
   curl -si {t} http://{p}/api/participants/7
   curl -si {t} http://{p}/api/participants/7

2. An unknown participant: the 404 is cached as a negative entry (15 s), so the
   second answer comes from the cache (Cache-Status: ...; detail=negative).
   curl -si http://{p}/api/participants/999
   curl -si http://{p}/api/participants/999

3. Coalescing: 20 concurrent misses on one new key make 1 origin request.
   k=$RANDOM; seq 20 | xargs -P20 -I{{}} curl -s -o /dev/null \"http://{p}/api/participants/8?fresh=$k\"
   curl -s http://{o}/__origin/stats

4. A check-in goes to the origin (writes are never cached) and, through the route's
   invalidate_on, drops participant 7 from the cache: the next read is a miss.
   curl -si -X POST http://{p}/api/participants/7/check-in
   curl -si http://{p}/api/participants/7

5. Metrics: lookups by tier and result, origin requests, coalesced waiters.
   curl -s http://{m}/metrics | grep -E '^gatehouse_(cache_lookups|origin_requests|coalesced)'
"
        )
    }

    /// Stops gatehouse (drain), then the origin.
    pub async fn shutdown(self) {
        self.app.shutdown().await;
        self.origin.shutdown().await;
    }
}

impl Prepared {
    /// Starts the demo origin and gatehouse with the prepared config; the origin
    /// prints a line on stdout for each request it serves.
    pub async fn start(self) -> anyhow::Result<Demo> {
        let print: Announce = Arc::new(|line: &str| println!("{line}"));
        let origin = DemoOrigin::start_announcing(self.origin, Some(print))?;
        match App::start(self.config, None).await {
            Ok(app) => Ok(Demo { origin, app }),
            Err(e) => {
                origin.shutdown().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_ids_in_range_exist() {
        assert_eq!(participant_id("7"), Some(7));
        assert_eq!(participant_id("50"), Some(50));
        for bad in ["0", "51", "07", "+7", "-1", "x", ""] {
            assert_eq!(participant_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn demo_config_is_valid_and_routes_participants() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let cfg = config(addr(3000), addr(8080), addr(7070), addr(9100)).unwrap();
        assert_eq!(cfg.routes[0].path, "/api/participants/{id}");
        assert_eq!(cfg.routes[0].ttl, Some(Duration::from_secs(30)));
        assert_eq!(cfg.routes[0].negative_ttl, Some(Duration::from_secs(15)));
        assert_eq!(cfg.origin.url.to_string(), "http://127.0.0.1:3000/");
    }

    #[test]
    fn bench_body_is_printable_text_ending_in_a_newline() {
        let body = bench_body();
        assert!(body[..BENCH_BODY_LEN - 1]
            .iter()
            .all(u8::is_ascii_lowercase));
        assert_eq!(body[BENCH_BODY_LEN - 1], b'\n');
    }

    async fn body_of(resp: Response<Body>) -> (StatusCode, Bytes) {
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn bench_bytes_answers_the_size_asked_and_refuses_bad_input() {
        let (status, body) = body_of(bench_bytes("100000", None).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 100_000);
        assert_eq!(body[63], b'\n');
        let (_, empty) = body_of(bench_bytes("0", Some("delay_ms=0")).await).await;
        assert!(empty.is_empty());
        let too_big = (BENCH_MAX_BYTES + 1).to_string();
        for (size, query) in [
            (too_big.as_str(), None),
            ("x", None),
            ("1", Some("delay_ms=soon")),
            ("1", Some("a=1&delay_ms=10001")),
        ] {
            let (status, body) = body_of(bench_bytes(size, query).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{size} {query:?}");
            assert!(body.starts_with(b"{\"error\":\"BAD_"), "{body:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bench_bytes_waits_delay_ms_before_answering() {
        let started = tokio::time::Instant::now();
        let (status, _) = body_of(bench_bytes("16", Some("x=y&delay_ms=5")).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(started.elapsed(), Duration::from_millis(5));
    }
}
