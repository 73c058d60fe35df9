//! gRPC end to end through gatehouse, with a real tonic origin and a real tonic
//! client (messages derived with prost, the service written over
//! `tonic::server::Grpc`, no codegen): unary, server, client and bidi streaming
//! (interleaved), errors trailers-only and in trailers after messages, `grpc-timeout`
//! deadlines, client cancellation reaching the origin, answers never stored (both
//! stores), h2c and h2 (TLS, ALPN) origins, the `:authority` the origin sees with
//! `preserve_host` true and false, and gatehouse's own refusals answered in gRPC form.

// tonic's `Status` is the error every gRPC call and handler returns, large or not.
#![allow(clippy::result_large_err)]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::sync::mpsc;
use tonic::body::BoxBody;
use tonic::{Code, Status};

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    n: u32,
}

fn msg(text: &str, n: u32) -> Msg {
    Msg {
        text: text.into(),
        n,
    }
}

type Codec = tonic::codec::ProstCodec<Msg, Msg>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// A closure as a tower service (what tower's `service_fn` is), so that it is a
/// tonic `UnaryService`, `ServerStreamingService`, ... by tonic's blanket impls.
struct Svc<F>(F);

impl<F, R, T, Fut> tonic::codegen::Service<R> for Svc<F>
where
    F: FnMut(R) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    type Response = T;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Fut {
        (self.0)(req)
    }
}

/// Sends its name when dropped: how a test learns, without sleeping, that the
/// origin's handler (or its response stream) was dropped: the call was cancelled.
struct Guard(mpsc::UnboundedSender<&'static str>, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

/// What one call to the origin looked like.
#[derive(Clone, Debug)]
struct Seen {
    authority: Option<String>,
    hosts: Vec<String>,
    version: http::Version,
}

struct Shared {
    calls: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    dropped: mpsc::UnboundedSender<&'static str>,
}

/// The tonic origin, `t.Echo`: `Unary` (echo; `fail` is INVALID_ARGUMENT,
/// trailers-only), `Hang` (never answers), `List` (`n` messages; with `fail`, then
/// NOT_FOUND in the trailers), `Trickle` (one message, then nothing), `Sum` (client
/// streaming), `Chat` (bidi: one answer per message, as it comes).
struct GrpcOrigin {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    dropped: tokio::sync::Mutex<mpsc::UnboundedReceiver<&'static str>>,
}

impl GrpcOrigin {
    async fn start(tls: Option<rustls::ServerConfig>) -> GrpcOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            dropped: tx,
        });
        let st = shared.clone();
        let svc = hyper::service::service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(dispatch(req, st).await) }
        });
        serve(listener, tls, svc);
        GrpcOrigin {
            addr,
            shared,
            dropped: tokio::sync::Mutex::new(rx),
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.shared.seen.lock().unwrap().last().cloned().unwrap()
    }

    /// Waits for the origin to drop the handler or stream named `what`.
    async fn dropped(&self, what: &str) {
        let mut rx = self.dropped.lock().await;
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the origin never saw {what} cancelled"));
        assert_eq!(got, Some(what));
    }
}

async fn dispatch(req: http::Request<Incoming>, st: Arc<Shared>) -> http::Response<BoxBody> {
    st.calls.fetch_add(1, Ordering::SeqCst);
    st.seen.lock().unwrap().push(Seen {
        authority: req.uri().authority().map(|a| a.to_string()),
        hosts: req
            .headers()
            .get_all(http::header::HOST)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
        version: req.version(),
    });
    let mut grpc = tonic::server::Grpc::new(Codec::default());
    let tx = st.dropped.clone();
    match req.uri().path() {
        "/t.Echo/Unary" => {
            let svc = Svc(|r: tonic::Request<Msg>| async move {
                let m = r.into_inner();
                if m.text == "fail" {
                    return Err(Status::invalid_argument("no such thing"));
                }
                Ok(tonic::Response::new(msg(&format!("echo {}", m.text), m.n)))
            });
            grpc.unary(svc, req).await
        }
        "/t.Echo/Hang" => {
            let svc = Svc(move |_: tonic::Request<Msg>| {
                let guard = Guard(tx.clone(), "hang");
                async move {
                    let _held = guard;
                    std::future::pending::<Result<tonic::Response<Msg>, Status>>().await
                }
            });
            grpc.unary(svc, req).await
        }
        "/t.Echo/List" => {
            let svc = Svc(|r: tonic::Request<Msg>| async move {
                let m = r.into_inner();
                let mut items: Vec<Result<Msg, Status>> = (0..m.n)
                    .map(|i| Ok(msg(&format!("{} {i}", m.text), i)))
                    .collect();
                if m.text == "fail" {
                    items.push(Err(Status::not_found("gone after the list")));
                }
                let s: MsgStream = Box::pin(futures_util::stream::iter(items));
                Ok(tonic::Response::new(s))
            });
            grpc.server_streaming(svc, req).await
        }
        "/t.Echo/Trickle" => {
            let svc = Svc(move |_: tonic::Request<Msg>| {
                let guard = Guard(tx.clone(), "trickle");
                async move {
                    let s = futures_util::stream::unfold((true, guard), |(first, g)| async move {
                        if first {
                            return Some((Ok(msg("first", 0)), (false, g)));
                        }
                        let _held = g;
                        std::future::pending::<()>().await;
                        None
                    });
                    let s: MsgStream = Box::pin(s);
                    Ok(tonic::Response::new(s))
                }
            });
            grpc.server_streaming(svc, req).await
        }
        "/t.Echo/Sum" => {
            let svc = Svc(|r: tonic::Request<tonic::Streaming<Msg>>| async move {
                let mut s = r.into_inner();
                let (mut count, mut total) = (0, 0);
                while let Some(m) = s.message().await? {
                    count += 1;
                    total += m.n;
                }
                Ok(tonic::Response::new(msg(
                    &format!("{count} messages"),
                    total,
                )))
            });
            grpc.client_streaming(svc, req).await
        }
        "/t.Echo/Chat" => {
            let svc = Svc(|r: tonic::Request<tonic::Streaming<Msg>>| async move {
                let s = futures_util::stream::unfold(r.into_inner(), |mut s| async move {
                    match s.message().await {
                        Ok(Some(m)) => Some((Ok(msg(&format!("re: {}", m.text), m.n)), s)),
                        Ok(None) => None,
                        Err(e) => Some((Err(e), s)),
                    }
                });
                let s: MsgStream = Box::pin(s);
                Ok(tonic::Response::new(s))
            });
            grpc.streaming(svc, req).await
        }
        _ => Status::unimplemented("no such method").into_http(),
    }
}

type GrpcClient = tonic::client::Grpc<Client<HttpConnector, BoxBody>>;

/// A tonic client speaking h2c to `http://{authority}` (resolved by the system:
/// `localhost` reaches 127.0.0.1).
async fn client(authority: &str) -> GrpcClient {
    let c = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut g = tonic::client::Grpc::with_origin(c, format!("http://{authority}").parse().unwrap());
    g.ready().await.unwrap();
    g
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

async fn unary(g: &mut GrpcClient, req: tonic::Request<Msg>) -> Result<Msg, Status> {
    g.unary(req, path("/t.Echo/Unary"), Codec::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Reads a stream to its end: the messages, and the status it ended with.
async fn drain(mut s: tonic::Streaming<Msg>) -> (Vec<Msg>, Result<(), Status>) {
    let mut got = Vec::new();
    loop {
        match s.message().await {
            Ok(Some(m)) => got.push(m),
            Ok(None) => return (got, Ok(())),
            Err(e) => return (got, Err(e)),
        }
    }
}

fn esc(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

/// The two origin transports: `(origin, [origin] lines)`; the temp dir holds the
/// certificates of the h2 one.
async fn origins(dir: &std::path::Path) -> Vec<(&'static str, GrpcOrigin, String)> {
    make_certs(dir);
    let plain = GrpcOrigin::start(None).await;
    let mut tls = server_tls(dir, false);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = GrpcOrigin::start(Some(tls)).await;
    let h2c = format!("url = {:?}\nprotocol = \"h2c\"\n", plain.url("http"));
    let h2 = format!(
        "url = {:?}\nprotocol = \"h2\"\nca_file = \"{}\"\n",
        tls.url("https"),
        esc(&dir.join("ca.crt"))
    );
    vec![("h2c", plain, h2c), ("h2", tls, h2)]
}

async fn gatehouse(origin: &str, rest: &str) -> Gatehouse {
    Gatehouse::start_config(config(&format!("[origin]\n{origin}\n{rest}"), None)).await
}

/// An h2c tonic origin, gatehouse in front of it (with `rest` in its config) and a
/// client of gatehouse.
async fn h2c(rest: &str) -> (GrpcOrigin, Gatehouse, GrpcClient) {
    let origin = GrpcOrigin::start(None).await;
    let table = format!("url = {:?}\nprotocol = \"h2c\"\n", origin.url("http"));
    let gh = gatehouse(&table, rest).await;
    let g = client(&gh.proxy.to_string()).await;
    (origin, gh, g)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_every_kind_of_streaming_pass_over_h2c_and_h2_origins() {
    let dir = tempfile::tempdir().unwrap();
    for (protocol, origin, table) in origins(dir.path()).await {
        let gh = gatehouse(&table, "").await;
        let mut g = client(&gh.proxy.to_string()).await;

        let got = unary(&mut g, tonic::Request::new(msg("hi", 7))).await;
        assert_eq!(got.unwrap(), msg("echo hi", 7), "{protocol}");
        assert_eq!(origin.last().version, http::Version::HTTP_2, "{protocol}");

        let list = g
            .server_streaming(
                tonic::Request::new(msg("item", 3)),
                path("/t.Echo/List"),
                Codec::default(),
            )
            .await
            .unwrap();
        let (items, end) = drain(list.into_inner()).await;
        assert_eq!(
            items,
            [msg("item 0", 0), msg("item 1", 1), msg("item 2", 2)],
            "{protocol}"
        );
        assert!(end.is_ok(), "{protocol}: {end:?}");

        let ups = futures_util::stream::iter([msg("a", 1), msg("b", 2), msg("c", 3)]);
        let sum = g
            .client_streaming(
                tonic::Request::new(ups),
                path("/t.Echo/Sum"),
                Codec::default(),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sum, msg("3 messages", 6), "{protocol}");

        // Bidi, interleaved: the next message is sent only once the answer to the
        // previous one has come back, so a proxy that buffered either direction
        // would never get past the first.
        let (tx, rx) = mpsc::channel::<Msg>(1);
        let ups =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        tx.send(msg("one", 1)).await.unwrap();
        let mut answers = g
            .streaming(
                tonic::Request::new(ups),
                path("/t.Echo/Chat"),
                Codec::default(),
            )
            .await
            .unwrap()
            .into_inner();
        for (i, word) in ["one", "two", "three"].iter().enumerate() {
            let next = tokio::time::timeout(Duration::from_secs(10), answers.message())
                .await
                .unwrap_or_else(|_| panic!("{protocol}: no answer to {word}: buffered?"))
                .unwrap()
                .unwrap();
            assert_eq!(
                next,
                msg(&format!("re: {word}"), i as u32 + 1),
                "{protocol}"
            );
            if let Some(w) = ["two", "three"].get(i) {
                tx.send(msg(w, i as u32 + 2)).await.unwrap();
            }
        }
        drop(tx);
        assert_eq!(answers.message().await.unwrap(), None, "{protocol}");

        // Every one counted once, as OK, at the origin and in the gRPC family.
        let ok = "gatehouse_grpc_responses_total{status=\"0\"}";
        assert!(gh.metric_reaches(ok, 4.0).await, "{protocol}");
        assert_eq!(
            gh.metric("gatehouse_origin_requests_total{origin=\"default\",result=\"ok\"}")
                .await,
            4.0,
            "{protocol}"
        );
        assert_eq!(origin.calls(), 4, "{protocol}");
        gh.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_trailers_only_and_after_messages_are_errors_in_the_metrics() {
    let (origin, gh, mut g) = h2c("").await;

    // Trailers-only: the status is in the response head.
    let e = unary(&mut g, tonic::Request::new(msg("fail", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "no such thing");

    // Messages, then the status in the trailers.
    let list = g
        .server_streaming(
            tonic::Request::new(msg("fail", 2)),
            path("/t.Echo/List"),
            Codec::default(),
        )
        .await
        .unwrap();
    let (items, end) = drain(list.into_inner()).await;
    assert_eq!(items.len(), 2);
    let e = end.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), "gone after the list");

    assert!(
        gh.metric_reaches("gatehouse_grpc_responses_total{status=\"5\"}", 1.0)
            .await
    );
    assert_eq!(
        gh.metric("gatehouse_grpc_responses_total{status=\"3\"}")
            .await,
        1.0
    );
    // Not mistaken for success: both are grpc_error at the origin, none ok.
    let series =
        |r: &str| format!("gatehouse_origin_requests_total{{origin=\"default\",result=\"{r}\"}}");
    assert_eq!(gh.metric(&series("grpc_error")).await, 2.0);
    assert_eq!(origin.calls(), 2);
    assert_eq!(gh.metric(&series("ok")).await, 0.0);
    let timed = gh.metrics().await;
    assert!(
        timed.contains(
            "gatehouse_origin_duration_seconds_count{origin=\"default\",result=\"grpc_error\",route=\"none\"} 2"
        ),
        "{timed}"
    );
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_ends_deadline_exceeded_and_the_origin_sees_the_cancel() {
    let (origin, gh, mut g) = h2c("").await;

    // No response head before the deadline.
    let mut req = tonic::Request::new(msg("x", 0));
    req.set_timeout(Duration::from_millis(300));
    let e = g
        .unary(req, path("/t.Echo/Hang"), Codec::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().starts_with("ORIGIN_TIMEOUT"), "{e:?}");
    origin.dropped("hang").await;

    // A head and a first message, then nothing until past the deadline.
    let mut req = tonic::Request::new(msg("x", 0));
    req.set_timeout(Duration::from_millis(500));
    let mut s = g
        .server_streaming(req, path("/t.Echo/Trickle"), Codec::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap(), Some(msg("first", 0)));
    let e = tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("the call ends at its deadline")
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    origin.dropped("trickle").await;
    assert!(
        gh.metric_reaches("gatehouse_grpc_responses_total{status=\"4\"}", 1.0)
            .await
    );
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancelling_a_call_reaches_the_origin() {
    let (origin, gh, mut g) = h2c("").await;
    let mut s = g
        .server_streaming(
            tonic::Request::new(msg("x", 0)),
            path("/t.Echo/Trickle"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap(), Some(msg("first", 0)));
    // The client gives up: its stream is reset, and so is the origin's.
    drop(s);
    origin.dropped("trickle").await;
    // Counted once, with no status from the origin.
    assert!(
        gh.metric_reaches("gatehouse_grpc_responses_total{status=\"missing\"}", 1.0)
            .await
    );
    gh.shutdown().await;
}

/// A hand-made gRPC GET (tonic only POSTs) on its own h2c connection: the
/// `Cache-Status` of the answer.
async fn grpc_get(gh: &Gatehouse, p: &str) -> String {
    let mut send = gh.h2c().await;
    let req = http::Request::get(format!("http://{}{p}", gh.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    resp.headers()["cache-status"].to_str().unwrap().to_string()
}

both_stores!(
    grpc_answers_are_never_stored,
    |store: TestStore| async move {
        let rest = format!(
            "{}[[routes]]\npath = \"/t.Echo/{{m}}\"\nmethods = [\"GET\", \"POST\"]\nttl = \"60s\"\n",
            store.toml(&prefix("grpc-store"))
        );
        let (origin, gh, mut g) = h2c(&rest).await;
        for n in 1..=2 {
            let got = unary(&mut g, tonic::Request::new(msg("same", 1))).await;
            assert_eq!(got.unwrap(), msg("echo same", 1));
            assert_eq!(
                origin.calls(),
                n,
                "the second identical call reached the origin"
            );
        }
        // Even a GET on a route with a ttl, answered 200: gRPC is a call, not a
        // document.
        assert!(grpc_get(&gh, "/t.Echo/Unary").await.contains("detail=grpc"));
        assert_eq!(origin.calls(), 3);
        let second = grpc_get(&gh, "/t.Echo/Unary").await;
        assert!(!second.starts_with("gatehouse; hit"), "{second}");
        assert_eq!(origin.calls(), 4);
        // The cache's miss path counts them too, once each: tonic's origin answers a
        // GET without a message 13 INTERNAL, trailers-only.
        let internal = "gatehouse_grpc_responses_total{status=\"13\"}";
        assert!(gh.metric_reaches(internal, 2.0).await);
        let ok = "gatehouse_grpc_responses_total{status=\"0\"}";
        assert_eq!(gh.metric(ok).await, 2.0);
        gh.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_sees_one_authority_per_preserve_host() {
    let dir = tempfile::tempdir().unwrap();
    for (protocol, origin, table) in origins(dir.path()).await {
        for preserve in [false, true] {
            let gh = gatehouse(&format!("{table}preserve_host = {preserve}\n"), "").await;
            let port = gh.proxy.port();
            // Two client hosts on one gatehouse: with preserve_host each keeps its
            // own, though both go to the one configured origin address.
            for host in ["localhost", "127.0.0.1"] {
                let mut g = client(&format!("{host}:{port}")).await;
                let got = unary(&mut g, tonic::Request::new(msg(host, 0))).await;
                assert_eq!(got.unwrap(), msg(&format!("echo {host}"), 0));
                let seen = origin.last();
                let want = if preserve {
                    format!("{host}:{port}")
                } else {
                    origin.addr.to_string()
                };
                let case = format!("{protocol} preserve_host={preserve} from {host}");
                assert_eq!(seen.authority.as_deref(), Some(want.as_str()), "{case}");
                assert!(
                    seen.hosts.is_empty(),
                    "{case}: a Host beside :authority: {seen:?}"
                );
            }
            gh.shutdown().await;
        }
    }
}

const SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-grpc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_s_own_refusals_are_grpc_statuses() {
    let rest = format!(
        "[auth]\nhs_secret = \"{SECRET}\"\n[[routes]]\npath = \"/t.Echo/{{m}}\"\nmethods = [\"POST\"]\nauth = \"required\"\n"
    );
    let (origin, gh, mut g) = h2c(&rest).await;
    let e = unary(&mut g, tonic::Request::new(msg("hi", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.metadata().get("www-authenticate").is_some(), "{e:?}");
    assert_eq!(origin.calls(), 0);
    // Counted as what it is, a 401, though the gRPC client got HTTP 200.
    assert_eq!(
        gh.metric("gatehouse_requests_total{route=\"/t.Echo/{m}\",status=\"401\"}")
            .await,
        1.0
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "u1", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut req = tonic::Request::new(msg("hi", 0));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert_eq!(unary(&mut g, req).await.unwrap(), msg("echo hi", 0));
    gh.shutdown().await;

    // An origin nobody listens on.
    let nowhere = format!(
        "url = \"http://127.0.0.1:{}\"\nprotocol = \"h2c\"\n",
        free_port()
    );
    let gh = gatehouse(&nowhere, "").await;
    let mut g = client(&gh.proxy.to_string()).await;
    let e = unary(&mut g, tonic::Request::new(msg("hi", 0)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("ORIGIN_UNREACHABLE: "), "{e:?}");
    gh.shutdown().await;
}
