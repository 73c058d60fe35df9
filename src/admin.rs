//! The admin listener: `GET /livez`, `GET /readyz`, `GET /metrics`.
//!
//! `/readyz` is 200 when config is loaded and listeners are bound, and the store is
//! reachable or the instance is serving degraded by policy (the proxy keeps serving
//! from L1 and the origin while Redis is down, so that is reported as degraded but
//! ready); 503 with a JSON reason as soon as shutdown begins.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use crate::app::AppState;
use crate::body::{full, Body, RequestBody};
use crate::error::{json_response, Error, ErrorCode};

pub struct Admin {
    pub state: Arc<AppState>,
}

impl crate::server::Handler for Admin {
    async fn call(
        &self,
        req: http::Request<RequestBody>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        handle(&self.state, req)
    }
}

fn handle(state: &AppState, req: http::Request<RequestBody>) -> http::Response<Body> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return Error::new(
            ErrorCode::MethodNotAllowed,
            "the admin listener answers GET only",
        )
        .with_header(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        )
        .into_response();
    }
    match req.uri().path() {
        "/livez" => json_response(http::StatusCode::OK, &json!({"status": "live"})),
        "/readyz" => readyz(state),
        "/metrics" => {
            state.refresh_gauges();
            let mut resp = http::Response::new(full(state.metrics.render()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => Error::new(
            ErrorCode::NotFound,
            "admin paths are /livez, /readyz and /metrics",
        )
        .into_response(),
    }
}

fn readyz(state: &AppState) -> http::Response<Body> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return json_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "shutting_down", "reason": "shutdown has begun"}),
        );
    }
    if !state.listeners_bound.load(Ordering::SeqCst) {
        return json_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "starting", "reason": "listeners are not bound yet"}),
        );
    }
    let store_up = state.store.is_up();
    let serve_degraded = state.runtime.load().config.store.serve_degraded;
    if !store_up && !serve_degraded {
        return json_response(
            http::StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not_ready", "store": "down", "reason": "store unreachable and store.serve_degraded = false"}),
        );
    }
    let body = json!({
        "status": if store_up { "ready" } else { "degraded" },
        "store": if store_up { "up" } else { "down" },
        "reason": if store_up {
            "store reachable"
        } else {
            "store unreachable: serving from L1 and the origin; coordination answers 503"
        },
    });
    json_response(http::StatusCode::OK, &body)
}
