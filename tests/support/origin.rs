//! The test origin: a counting HTTP/1.1 and HTTP/2 server on 127.0.0.1:0 whose
//! answers the test decides, and the `Gate` that holds its answers until the test
//! lets them go.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Serves `svc` on every connection `listener` accepts: HTTP/1.1 or HTTP/2 (h2c by
/// prior knowledge, or by ALPN over TLS with `tls`), each connection in its own task.
pub fn serve<S, B>(
    listener: tokio::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
    svc: S,
) -> tokio::task::JoinHandle<()>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, svc) = (acceptor.clone(), svc.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(a) => {
                        let Ok(tls) = a.accept(tcp).await else { return };
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    })
}

/// What the test origin saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A request header's value, when the request had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// What the test origin answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Real time the answer takes: only for tests whose subject is time (a slow
    /// origin against a timeout). To make requests overlap, hold them at a `Gate`.
    pub delay: Duration,
    /// Holds the answer until the gate opens.
    pub gate: Option<Gate>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
            delay: Duration::ZERO,
            gate: None,
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
    /// Holds this answer at `gate` until the test opens it.
    pub fn held_by(mut self, gate: &Gate) -> Reply {
        self.gate = Some(gate.clone());
        self
    }
}

/// Holds the origin's answers until the test opens it, and counts the requests it
/// holds: a test that needs requests to overlap knows they did (`held`) instead of
/// hoping a delay was long enough. Once open it stays open.
#[derive(Clone, Debug)]
pub struct Gate(Arc<GateState>);

#[derive(Debug)]
struct GateState {
    open: tokio::sync::watch::Sender<bool>,
    held: tokio::sync::watch::Sender<usize>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(GateState {
            open: tokio::sync::watch::Sender::new(false),
            held: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// Lets every held answer go, and every later one through at once.
    pub fn open(&self) {
        self.0.open.send_replace(true);
    }

    /// Waits until `n` requests have been held here in all (panics after 10s, when
    /// they never came).
    pub async fn held(&self, n: usize) {
        let mut rx = self.0.held.subscribe();
        let arrived = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| *h >= n));
        if arrived.await.is_err() {
            panic!("{} of {n} requests reached the gate", *rx.borrow());
        }
    }

    /// Requests held here in all (released ones included).
    pub fn count(&self) -> usize {
        *self.0.held.borrow()
    }

    /// Holds the caller until the gate opens (counted in `held`): for the origins a
    /// test writes itself.
    pub async fn pass(&self) {
        let mut open = self.0.open.subscribe();
        self.0.held.send_modify(|h| *h += 1);
        let _ = open.wait_for(|o| *o).await;
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
                            if let Some(gate) = &reply.gate {
                                gate.pass().await;
                            }
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
