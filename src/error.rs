//! Errors that leave gatehouse as an HTTP answer, and the ONE mapping from error to
//! response: `{"error": "CODE", "message": "..."}` plus optional fields and headers.
//! Client errors, and every 4xx whatever its source (a refusal is the client's
//! business, not an operator's), are logged at debug; origin and store errors at
//! warn, internal errors at error; bodies never carry internals (store addresses,
//! stack traces).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::body::{full, Body};

/// Who caused an error: decides the log level, never the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Client,
    Origin,
    Store,
    Internal,
}

/// An error answer made by gatehouse itself.
#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub source: Source,
    pub fields: Map<String, Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        source: Source,
    ) -> Error {
        Error {
            status,
            code,
            message: message.into(),
            source,
            fields: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Error {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Error {
        self.headers.push((name, value));
        self
    }

    /// 400 `BAD_REQUEST` naming the field.
    pub fn bad_request(field: &str, message: impl Into<String>) -> Error {
        Error::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            message,
            Source::Client,
        )
        .with_field("field", field)
    }

    /// 400 `BAD_REQUEST`: the request body could not be read to its end.
    pub fn bad_request_body() -> Error {
        Error::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request body is malformed or was cut short",
            Source::Client,
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, code, message, Source::Client)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::new(StatusCode::CONFLICT, code, message, Source::Client)
    }

    pub fn store_unavailable() -> Error {
        Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the store cannot be reached; nothing was changed",
            Source::Store,
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    pub fn origin_unreachable(detail: &str) -> Error {
        Error::new(
            StatusCode::BAD_GATEWAY,
            "ORIGIN_UNREACHABLE",
            format!("the origin could not be reached ({detail})"),
            Source::Origin,
        )
    }

    /// The TLS handshake with an `https://` origin failed (certificate not trusted,
    /// wrong name, client certificate refused).
    pub fn origin_tls_error(detail: &str) -> Error {
        Error::new(
            StatusCode::BAD_GATEWAY,
            "ORIGIN_TLS_ERROR",
            format!("TLS with the origin failed ({detail})"),
            Source::Origin,
        )
    }

    pub fn origin_timeout() -> Error {
        Error::new(
            StatusCode::GATEWAY_TIMEOUT,
            "ORIGIN_TIMEOUT",
            "the origin did not answer in time",
            Source::Origin,
        )
    }

    pub fn body_too_large(limit: u64) -> Error {
        Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("the request body is larger than {limit} bytes"),
            Source::Client,
        )
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            message,
            Source::Internal,
        )
    }

    /// The JSON body.
    pub fn body_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), Value::from(self.code));
        m.insert("message".into(), Value::from(self.message.clone()));
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// The one mapping to an HTTP response; logs by source (a 4xx at debug).
    pub fn into_response(self) -> http::Response<Body> {
        let source = if self.status.is_client_error() {
            Source::Client
        } else {
            self.source
        };
        match source {
            Source::Client => tracing::debug!(
                code = self.code,
                status = self.status.as_u16(),
                "{}",
                self.message
            ),
            Source::Origin | Source::Store => {
                tracing::warn!(code = self.code, "{}", self.message)
            }
            Source::Internal => tracing::error!(code = self.code, "{}", self.message),
        }
        let body = Bytes::from(self.body_json().to_string());
        let mut resp = http::Response::new(full(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        // Every 503 STORE_UNAVAILABLE says when to retry, whoever built it.
        if self.code == "STORE_UNAVAILABLE"
            && !self
                .headers
                .iter()
                .any(|(k, _)| k == http::header::RETRY_AFTER)
        {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        for (k, v) in self.headers {
            h.append(k, v);
        }
        resp.extensions_mut().insert(Local {
            code: self.code.to_string(),
            message: self.message,
        });
        resp
    }
}

/// Marks a response as gatehouse's own error answer (its code and message), so the
/// proxy can answer a gRPC request with it in gRPC form (`proxy::grpc::local_reply`).
#[derive(Clone, Debug)]
pub struct Local {
    pub code: String,
    pub message: String,
}

/// A JSON success answer.
pub fn json_response(status: StatusCode, value: &Value) -> http::Response<Body> {
    let mut resp = http::Response::new(full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// An empty answer (204 and friends).
pub fn empty_response(status: StatusCode) -> http::Response<Body> {
    let mut resp = http::Response::new(crate::body::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_unavailable_always_carries_retry_after() {
        let built = Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "m",
            Source::Store,
        );
        for e in [Error::store_unavailable(), built] {
            let resp = e.into_response();
            let all: Vec<_> = resp.headers().get_all("retry-after").iter().collect();
            assert_eq!(all, ["1"]);
        }
    }

    #[test]
    fn refusals_log_at_debug_and_failures_at_warn_or_error() {
        let cases = [
            (StatusCode::UNAUTHORIZED, Source::Client, "DEBUG"),
            (StatusCode::CONFLICT, Source::Client, "DEBUG"),
            // A 4xx is a refusal even when an origin or the store led to it.
            (StatusCode::PAYLOAD_TOO_LARGE, Source::Origin, "DEBUG"),
            (StatusCode::GONE, Source::Store, "DEBUG"),
            (StatusCode::BAD_GATEWAY, Source::Origin, "WARN"),
            (StatusCode::SERVICE_UNAVAILABLE, Source::Store, "WARN"),
            (StatusCode::INTERNAL_SERVER_ERROR, Source::Internal, "ERROR"),
        ];
        for (status, source, level) in cases {
            let lines = crate::logging::capture(|| {
                let _ = Error::new(status, "CODE", "m", source).into_response();
            });
            assert_eq!(lines.len(), 1, "{status}: {lines:?}");
            assert_eq!(lines[0]["level"], level, "{status} from {source:?}");
        }
    }
}
