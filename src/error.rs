//! Errors that leave gatehouse as an HTTP answer, and the ONE mapping from error to
//! response: `{"error": "CODE", "message": "..."}` plus optional fields and headers.
//! Every code is an [`ErrorCode`], which alone decides the status and who is to blame
//! (the log level); every domain error (`CoordError`, `StoreError`, `OriginError`,
//! `Rejection`, `RevokeError`, the gates' `Refusal`) becomes an answer through its
//! `From` impl here. Client errors, and every 4xx whatever its source (a refusal is
//! the client's business, not an operator's), are logged at debug; origin and store
//! errors at warn, internal errors at error; bodies never carry internals (store
//! addresses, stack traces).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::auth::Rejection;
use crate::body::{full, Body};
use crate::clock::rfc3339_ms;
use crate::coordination::capacity::Counter;
use crate::coordination::lock::Holder;
use crate::coordination::revocation::RevokeError;
use crate::coordination::CoordError;
use crate::store::StoreError;

/// Who caused an error: decides the log level, never the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Client,
    Origin,
    Store,
    Internal,
}

/// Defines `ErrorCode` with, for each code, its contract spelling, status and source.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $text:literal, $status:ident, $source:ident;)*) => {
        /// Every `error` code gatehouse answers with (docs/api.md, "Error codes").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in the order docs/api.md lists them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The contract's spelling, the JSON body's `error`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }

            /// The one status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$name => StatusCode::$status,)*
                }
            }

            /// Who is to blame, for the log level.
            pub fn source(self) -> Source {
                match self {
                    $(ErrorCode::$name => Source::$source,)*
                }
            }
        }
    };
}

error_codes! {
    BadRequest = "BAD_REQUEST", BAD_REQUEST, Client;
    InvalidPath = "INVALID_PATH", BAD_REQUEST, Client;
    InvalidHost = "INVALID_HOST", BAD_REQUEST, Client;
    HostMissing = "HOST_MISSING", BAD_REQUEST, Client;
    AuthorityMismatch = "AUTHORITY_MISMATCH", BAD_REQUEST, Client;
    DuplicateHeader = "DUPLICATE_HEADER", BAD_REQUEST, Client;
    MemberMissing = "MEMBER_MISSING", BAD_REQUEST, Client;
    MemberInvalid = "MEMBER_INVALID", BAD_REQUEST, Client;
    /// The api listener without `Authorization: Bearer <api.token>`.
    Unauthorized = "UNAUTHORIZED", UNAUTHORIZED, Client;
    TokenMissing = "TOKEN_MISSING", UNAUTHORIZED, Client;
    TokenInvalid = "TOKEN_INVALID", UNAUTHORIZED, Client;
    TokenExpired = "TOKEN_EXPIRED", UNAUTHORIZED, Client;
    TokenRevoked = "TOKEN_REVOKED", UNAUTHORIZED, Client;
    AudienceNotAllowed = "AUDIENCE_NOT_ALLOWED", FORBIDDEN, Client;
    AudienceMismatch = "AUDIENCE_MISMATCH", FORBIDDEN, Client;
    PurgeNotAllowed = "PURGE_NOT_ALLOWED", FORBIDDEN, Client;
    NotFound = "NOT_FOUND", NOT_FOUND, Client;
    NoRoute = "NO_ROUTE", NOT_FOUND, Client;
    NotAdmitted = "NOT_ADMITTED", NOT_FOUND, Client;
    NotLocked = "NOT_LOCKED", NOT_FOUND, Client;
    NotRevoked = "NOT_REVOKED", NOT_FOUND, Client;
    MethodNotAllowed = "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED, Client;
    CapacityFull = "CAPACITY_FULL", CONFLICT, Client;
    LockHeld = "LOCK_HELD", CONFLICT, Client;
    NotOwner = "NOT_OWNER", CONFLICT, Client;
    TransferGone = "TRANSFER_GONE", GONE, Client;
    BodyTooLarge = "BODY_TOO_LARGE", PAYLOAD_TOO_LARGE, Client;
    RangeNotSatisfiable = "RANGE_NOT_SATISFIABLE", RANGE_NOT_SATISFIABLE, Client;
    HostNotAllowed = "HOST_NOT_ALLOWED", MISDIRECTED_REQUEST, Client;
    Internal = "INTERNAL", INTERNAL_SERVER_ERROR, Internal;
    OriginUnreachable = "ORIGIN_UNREACHABLE", BAD_GATEWAY, Origin;
    OriginTlsError = "ORIGIN_TLS_ERROR", BAD_GATEWAY, Origin;
    /// Carries `Retry-After: 1`, whoever builds it.
    StoreUnavailable = "STORE_UNAVAILABLE", SERVICE_UNAVAILABLE, Store;
    CapacityNotDefined = "CAPACITY_NOT_DEFINED", SERVICE_UNAVAILABLE, Internal;
    KeysUnavailable = "KEYS_UNAVAILABLE", SERVICE_UNAVAILABLE, Origin;
    OriginTimeout = "ORIGIN_TIMEOUT", GATEWAY_TIMEOUT, Origin;
    /// `Cache-Control: only-if-cached` with nothing usable cached: the client's ask.
    NotCached = "NOT_CACHED", GATEWAY_TIMEOUT, Client;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer made by gatehouse itself.
#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    /// An answer with `code`'s status and source.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            status: code.status(),
            code,
            message: message.into(),
            source: code.source(),
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
        Error::new(ErrorCode::BadRequest, message).with_field("field", field)
    }

    /// 400 `BAD_REQUEST`: the request body could not be read to its end.
    pub fn bad_request_body() -> Error {
        Error::new(
            ErrorCode::BadRequest,
            "the request body is malformed or was cut short",
        )
    }

    /// 503 `STORE_UNAVAILABLE`: the store gave no answer, nothing was changed.
    pub fn store_unavailable() -> Error {
        Error::new(
            ErrorCode::StoreUnavailable,
            "the store cannot be reached; nothing was changed",
        )
    }

    pub fn origin_unreachable(detail: &str) -> Error {
        Error::new(
            ErrorCode::OriginUnreachable,
            format!("the origin could not be reached ({detail})"),
        )
    }

    /// The TLS handshake with an `https://` origin failed (certificate not trusted,
    /// wrong name, client certificate refused).
    pub fn origin_tls_error(detail: &str) -> Error {
        Error::new(
            ErrorCode::OriginTlsError,
            format!("TLS with the origin failed ({detail})"),
        )
    }

    pub fn origin_timeout() -> Error {
        Error::new(
            ErrorCode::OriginTimeout,
            "the origin did not answer in time",
        )
    }

    pub fn body_too_large(limit: u64) -> Error {
        Error::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 409 `CAPACITY_FULL` with the counter (`count`, `capacity`, `remaining: 0`).
    pub fn capacity_full(message: impl Into<String>, counter: &Counter) -> Error {
        Error::new(ErrorCode::CapacityFull, message)
            .with_field("count", counter.count)
            .with_field("capacity", counter.capacity)
            .with_field("remaining", 0)
    }

    /// 409 `LOCK_HELD` with the holder (`owner`, `expiresAt`) and `Retry-After` (its
    /// remaining seconds).
    pub fn lock_held(message: impl Into<String>, holder: &Holder) -> Error {
        Error::new(ErrorCode::LockHeld, message)
            .with_field("owner", holder.owner.clone())
            .with_field("expiresAt", rfc3339_ms(holder.expires_ms))
            .with_header(
                http::header::RETRY_AFTER,
                HeaderValue::from(holder.retry_after_secs()),
            )
    }

    /// 404 `NOT_CACHED`: the api has no entry under that id. The one code answered
    /// with two statuses (the proxy's `only-if-cached` miss is 504), both fixed by
    /// the contract.
    pub fn no_cached_entry(id: &str) -> Error {
        let mut e = Error::new(ErrorCode::NotCached, format!("no cached entry {id}"));
        e.status = StatusCode::NOT_FOUND;
        e
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, message)
    }

    /// The JSON body.
    pub fn body_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), Value::from(self.code.as_str()));
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
        let code = self.code.as_str();
        match source {
            Source::Client => {
                tracing::debug!(code, status = self.status.as_u16(), "{}", self.message)
            }
            Source::Origin | Source::Store => {
                tracing::warn!(code, "{}", self.message)
            }
            Source::Internal => tracing::error!(code, "{}", self.message),
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
        if self.code == ErrorCode::StoreUnavailable
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
            code: self.code,
            message: self.message,
        });
        resp
    }
}

// The proxy's two domain errors live here, beside their one mapping, so that
// `error` imports nothing of `proxy` (`proxy::origin` and `proxy::gates` re-export
// them).

/// Why the origin gave no response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginError {
    /// Connection refused, reset, DNS, connect timeout: 502 `ORIGIN_UNREACHABLE`.
    Unreachable(String),
    /// The TLS handshake with an `https://` origin failed (untrusted certificate,
    /// wrong name, client certificate refused): 502 `ORIGIN_TLS_ERROR`.
    Tls(String),
    /// No response head within `origin.timeout`: 504 `ORIGIN_TIMEOUT`.
    Timeout,
    /// The client's body went past `server.max_body_bytes` while being streamed.
    BodyTooLarge,
    /// The client's body failed while being streamed (malformed chunked encoding, cut
    /// short): 400 `BAD_REQUEST`, the client's fault, not the origin's.
    ClientBody,
}

impl OriginError {
    /// The `result` label of `gatehouse_origin_requests_total` and
    /// `gatehouse_origin_duration_seconds`.
    pub fn label(&self) -> &'static str {
        match self {
            OriginError::Timeout => "timeout",
            OriginError::Unreachable(_) => "unreachable",
            OriginError::Tls(_) => "tls_error",
            OriginError::BodyTooLarge => "body_too_large",
            OriginError::ClientBody => "client_body_error",
        }
    }
}

/// Why a gate did not let the request through; its answer is `Error::from`.
#[derive(Debug)]
pub enum Refusal {
    /// 400 `MEMBER_MISSING`: the request carries no member id.
    MemberMissing,
    /// 400 `MEMBER_INVALID`: the member id is outside the contract's pattern.
    MemberInvalid,
    /// 409 `CAPACITY_FULL`.
    Full {
        ns: String,
        id: String,
        count: Counter,
    },
    /// 503 `CAPACITY_NOT_DEFINED`: the route names a counter nobody defined.
    NotDefined { ns: String, id: String },
    /// 409 `LOCK_HELD`, with the holder and `Retry-After`.
    Held {
        ns: String,
        id: String,
        holder: Holder,
    },
}

/// A store that gave no answer: 503 `STORE_UNAVAILABLE` (the caller logs the cause
/// with its context).
impl From<StoreError> for Error {
    fn from(_: StoreError) -> Error {
        Error::store_unavailable()
    }
}

/// A coordination outcome that is no answer, as the api and the proxy's gates say it:
/// an invalid value is 400 naming the field, a store that gave no answer is 503
/// `STORE_UNAVAILABLE`.
impl From<CoordError> for Error {
    fn from(e: CoordError) -> Error {
        match e {
            CoordError::Invalid { field, message } => {
                Error::bad_request(field, format!("{field}: {message}"))
            }
            CoordError::Store(e) => {
                tracing::warn!(error = %e, "coordination call failed: store unavailable");
                e.into()
            }
        }
    }
}

/// A revocation not (fully) made: 503 `STORE_UNAVAILABLE` either way; repeating the
/// call is safe.
impl From<RevokeError> for Error {
    fn from(e: RevokeError) -> Error {
        match e {
            RevokeError::NotRecorded(e) => e.into(),
            RevokeError::NotAnnounced(_) => Error::new(
                ErrorCode::StoreUnavailable,
                "the revocation was recorded but not yet announced to every instance; repeat the call",
            ),
        }
    }
}

/// Why the origin gave no response head.
impl From<OriginError> for Error {
    fn from(e: OriginError) -> Error {
        match e {
            OriginError::Unreachable(d) => Error::origin_unreachable(&d),
            OriginError::Tls(d) => Error::origin_tls_error(&d),
            OriginError::Timeout => Error::origin_timeout(),
            OriginError::BodyTooLarge => Error::new(
                ErrorCode::BodyTooLarge,
                "the request body is larger than server.max_body_bytes",
            ),
            OriginError::ClientBody => Error::bad_request_body(),
        }
    }
}

/// A token that did not pass: 403 `AUDIENCE_NOT_ALLOWED` for a wrong audience, 401
/// otherwise (`TOKEN_MISSING`, `TOKEN_EXPIRED`, `TOKEN_REVOKED`, else
/// `TOKEN_INVALID`), with the RFC 6750 challenge.
impl From<Rejection> for Error {
    fn from(r: Rejection) -> Error {
        let code = match r {
            Rejection::Missing => ErrorCode::TokenMissing,
            Rejection::Expired => ErrorCode::TokenExpired,
            Rejection::Revoked => ErrorCode::TokenRevoked,
            Rejection::AudienceNotAllowed => ErrorCode::AudienceNotAllowed,
            _ => ErrorCode::TokenInvalid,
        };
        let e = Error::new(code, r.message());
        match HeaderValue::from_str(&r.www_authenticate()) {
            Ok(v) => e.with_header(http::header::WWW_AUTHENTICATE, v),
            Err(_) => e,
        }
    }
}

/// A route gate that did not let the request through (nothing was forwarded).
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::MemberMissing => Error::new(
                ErrorCode::MemberMissing,
                "this route admits callers by a member id the request does not carry",
            ),
            Refusal::MemberInvalid => Error::new(
                ErrorCode::MemberInvalid,
                "the member id must match [A-Za-z0-9._:-]{1,200}",
            ),
            Refusal::Full { ns, id, count } => {
                Error::capacity_full(format!("{ns}/{id} is full"), &count)
            }
            Refusal::NotDefined { ns, id } => Error::new(
                ErrorCode::CapacityNotDefined,
                format!("no capacity is defined for {ns}/{id} (PUT /v1/capacity/{ns}/{id})"),
            ),
            Refusal::Held { ns, id, holder } => {
                Error::lock_held(format!("{ns}/{id} is held by another request"), &holder)
            }
        }
    }
}

/// Marks a response as gatehouse's own error answer (its code and message), so the
/// proxy can answer a gRPC request with it in gRPC form (`proxy::grpc::local_reply`).
#[derive(Clone, Debug)]
pub struct Local {
    pub code: ErrorCode,
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
        let built = Error::new(ErrorCode::StoreUnavailable, "m");
        for e in [Error::store_unavailable(), built] {
            let resp = e.into_response();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            let all: Vec<_> = resp.headers().get_all("retry-after").iter().collect();
            assert_eq!(all, ["1"]);
        }
    }

    #[test]
    fn refusals_log_at_debug_and_failures_at_warn_or_error() {
        for &code in ErrorCode::ALL {
            let level = match (code.status().is_client_error(), code.source()) {
                (true, _) | (_, Source::Client) => "DEBUG",
                (_, Source::Origin | Source::Store) => "WARN",
                (_, Source::Internal) => "ERROR",
            };
            let lines = crate::logging::capture(|| {
                let _ = Error::new(code, "m").into_response();
            });
            assert_eq!(lines.len(), 1, "{code}: {lines:?}");
            assert_eq!(lines[0]["level"], level, "{code}");
        }
        // A 4xx is a refusal even when an origin or the store led to it.
        let mut e = Error::new(ErrorCode::BodyTooLarge, "m");
        e.source = Source::Origin;
        let lines = crate::logging::capture(|| {
            let _ = e.into_response();
        });
        assert_eq!(lines[0]["level"], "DEBUG");
        for (code, level) in [
            (ErrorCode::OriginUnreachable, "WARN"),
            (ErrorCode::StoreUnavailable, "WARN"),
            (ErrorCode::Internal, "ERROR"),
            (ErrorCode::NotCached, "DEBUG"),
        ] {
            let lines = crate::logging::capture(|| {
                let _ = Error::new(code, "m").into_response();
            });
            assert_eq!(lines[0]["level"], level, "{code}");
        }
    }

    #[test]
    fn every_code_is_spelled_once_and_listed_in_the_api_docs() {
        let docs = include_str!("../docs/api.md");
        let table: Vec<&str> = docs
            .split("## Error codes")
            .nth(1)
            .expect("docs/api.md has an \"Error codes\" section")
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter(|l| l.starts_with("| `"))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is spelled twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{text}"
            );
            let row = format!("| `{text}` | {} |", code.status().as_u16());
            assert!(
                table.iter().any(|l| l.starts_with(&row)),
                "docs/api.md's error-code table has no row starting {row:?}"
            );
        }
        assert_eq!(
            table.len(),
            ErrorCode::ALL.len(),
            "the table lists a code gatehouse does not have"
        );
    }

    #[test]
    fn rejections_follow_the_contract() {
        let answer = |r: Rejection| {
            let e = Error::from(r);
            (e.status, e.code.as_str())
        };
        for (r, status, code) in [
            (
                Rejection::Missing,
                StatusCode::UNAUTHORIZED,
                "TOKEN_MISSING",
            ),
            (
                Rejection::Expired,
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
            ),
            (
                Rejection::Revoked,
                StatusCode::UNAUTHORIZED,
                "TOKEN_REVOKED",
            ),
            (
                Rejection::AudienceNotAllowed,
                StatusCode::FORBIDDEN,
                "AUDIENCE_NOT_ALLOWED",
            ),
        ] {
            assert_eq!(answer(r), (status, code), "{r:?}");
        }
        for r in [
            Rejection::Malformed,
            Rejection::BadSignature,
            Rejection::AlgorithmNotAllowed,
            Rejection::UnknownKey,
            Rejection::IssuerMismatch,
            Rejection::NotYetValid,
        ] {
            assert_eq!(
                answer(r),
                (StatusCode::UNAUTHORIZED, "TOKEN_INVALID"),
                "{r:?}"
            );
        }
        for r in Rejection::ALL {
            let e = Error::from(r);
            assert!(
                e.headers
                    .iter()
                    .any(|(k, _)| k == http::header::WWW_AUTHENTICATE),
                "{r:?}"
            );
        }
    }
}
