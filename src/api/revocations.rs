//! Token revocation on the api listener (docs/api.md, docs/openapi.yaml):
//!
//! | call | answer |
//! |---|---|
//! | `POST /v1/revocations` `{"token"}` | 204: its `jti` (or, without one, the SHA-256 of its signing input) is revoked until its `exp` |
//! | `POST /v1/revocations` `{"jti", "expiresAt"}` | 204 |
//! | `POST /v1/revocations` `{"sub", "issuedBefore"}` | 204: every token of `sub` with an earlier `iat` (or none) is revoked |
//! | `GET /v1/revocations/{jti}` | 200 `{"revoked": true, "expiresAt"}` · 404 `NOT_REVOKED` |
//!
//! - A token must verify signature-wise with `[auth]`'s keys (400 `BAD_REQUEST`,
//!   field `token`, otherwise: no one revokes by forged claims); its times, issuer and
//!   audience are not checked. A token already past `exp` + `auth.leeway` is refused
//!   by every instance anyway: 204, nothing recorded.
//! - `expiresAt` / `issuedBefore` are RFC 3339. A `jti` whose `expiresAt` (+ leeway)
//!   has passed, or a subject whose `issuedBefore` + `auth.max_token_lifetime`
//!   (+ leeway) has passed, needs no record: 204, nothing recorded.
//! - 503 `STORE_UNAVAILABLE` when the store cannot take the record (nothing changed),
//!   or took it but the announcement to the fleet failed (repeat the call: revoking is
//!   idempotent).
//! - The token is never logged, stored or echoed.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiRequest, HandlerFuture};
use crate::app::AppState;
use crate::auth::Rejection;
use crate::clock;
use crate::coordination::revocation::Lifetimes;
use crate::error::{empty_response, json_response, Error, ErrorCode};

/// Longest `jti` or `sub` accepted in a request body, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RevokeBody {
    token: Option<String>,
    jti: Option<String>,
    expires_at: Option<String>,
    sub: Option<String>,
    issued_before: Option<String>,
}

/// What a body asks to revoke, once its shape is checked.
enum Request {
    Token(String),
    Jti { jti: String, expires_at_ms: i64 },
    Subject { sub: String, issued_before_ms: i64 },
}

impl RevokeBody {
    fn into_request(self) -> Result<Request, Error> {
        let shape =
            "give one of {\"token\"}, {\"jti\", \"expiresAt\"} or {\"sub\", \"issuedBefore\"}";
        let extra =
            |field: &str| Error::bad_request(field, format!("{field}: unexpected here; {shape}"));
        match (self.token, self.jti, self.sub) {
            (Some(token), None, None) => {
                if self.expires_at.is_some() {
                    return Err(extra("expiresAt"));
                }
                if self.issued_before.is_some() {
                    return Err(extra("issuedBefore"));
                }
                if token.is_empty() {
                    return Err(Error::bad_request("token", "token: must not be empty"));
                }
                Ok(Request::Token(token))
            }
            (None, Some(jti), None) => {
                if self.issued_before.is_some() {
                    return Err(extra("issuedBefore"));
                }
                let jti = name("jti", jti)?;
                let at = self.expires_at.ok_or_else(|| {
                    Error::bad_request("expiresAt", "expiresAt: required with jti")
                })?;
                Ok(Request::Jti {
                    jti,
                    expires_at_ms: parse_instant("expiresAt", &at)?,
                })
            }
            (None, None, Some(sub)) => {
                if self.expires_at.is_some() {
                    return Err(extra("expiresAt"));
                }
                let sub = name("sub", sub)?;
                let at = self.issued_before.ok_or_else(|| {
                    Error::bad_request("issuedBefore", "issuedBefore: required with sub")
                })?;
                Ok(Request::Subject {
                    sub,
                    issued_before_ms: parse_instant("issuedBefore", &at)?,
                })
            }
            (None, None, None) => Err(Error::bad_request("body", format!("body: {shape}"))),
            (Some(_), _, _) => Err(Error::bad_request(
                "token",
                format!("token: cannot be combined with jti or sub; {shape}"),
            )),
            (None, Some(_), Some(_)) => Err(extra("sub")),
        }
    }
}

fn name(field: &str, value: String) -> Result<String, Error> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(Error::bad_request(
            field,
            format!("{field}: must be 1 to {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(value)
}

/// An RFC 3339 timestamp as Unix milliseconds (years 1970 to 9999).
pub fn parse_instant(field: &str, text: &str) -> Result<i64, Error> {
    let ms = clock::parse_rfc3339(text).ok_or_else(|| {
        Error::bad_request(
            field,
            format!("{field}: expected an RFC 3339 time such as \"2030-01-01T00:00:00Z\""),
        )
    })?;
    if !(0..=i128::from(clock::MAX_RFC3339_MS)).contains(&ms) {
        return Err(Error::bad_request(
            field,
            format!("{field}: must be between 1970 and 9999"),
        ));
    }
    Ok(ms as i64)
}

/// Unix milliseconds as RFC 3339 in UTC (`2030-01-01T00:00:00Z`, with a fraction only
/// when there is one).
pub fn format_instant(ms: i64) -> String {
    clock::rfc3339(ms).unwrap_or_else(|| ms.to_string())
}

/// `POST /v1/revocations`.
pub fn post(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let request = req.json::<RevokeBody>()?.into_request()?;
        let runtime = state.runtime.load_full();
        let life = Lifetimes::of(&runtime.config.auth);
        let revocations = &state.revocations;
        let done = match request {
            Request::Jti { jti, expires_at_ms } => {
                revocations.revoke_jti(&jti, expires_at_ms, life).await
            }
            Request::Subject {
                sub,
                issued_before_ms,
            } => {
                revocations
                    .revoke_subject(&sub, issued_before_ms, life)
                    .await
            }
            Request::Token(token) => {
                let Some(verifier) = runtime.verifier.as_ref() else {
                    return Err(Error::bad_request(
                        "token",
                        "token: [auth] has no keys to verify it with; revoke by jti and expiresAt",
                    ));
                };
                let claims = match verifier.verify_signature(&token).await {
                    Ok(c) => c,
                    Err(Rejection::KeysUnavailable) => {
                        // The JWKS URL has not answered yet: a retry may succeed.
                        return Err(Error::new(
                            ErrorCode::KeysUnavailable,
                            "the signing keys are not available yet; retry",
                        ));
                    }
                    Err(r) => {
                        return Err(Error::bad_request(
                            "token",
                            format!("token: does not verify: {}", r.message()),
                        ))
                    }
                };
                revocations.revoke_token(&claims, life).await
            }
        };
        done?;
        Ok(empty_response(StatusCode::NO_CONTENT))
    })
}

/// `GET /v1/revocations/{jti}`.
pub fn get(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let jti = req.segment("jti")?;
        match state.revocations.jti_status(&jti).await {
            Ok(Some(at)) => Ok(json_response(
                StatusCode::OK,
                &json!({"revoked": true, "expiresAt": format_instant(at)}),
            )),
            Ok(None) => Err(Error::new(
                ErrorCode::NotRevoked,
                "no revocation is recorded for this jti",
            )),
            Err(e) => Err(e.into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_rfc_3339() {
        assert_eq!(parse_instant("t", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_instant("t", "2030-01-01T01:00:00.250+01:00").unwrap(),
            1_893_456_000_250
        );
        assert_eq!(format_instant(1_893_456_000_000), "2030-01-01T00:00:00Z");
        assert_eq!(format_instant(1_893_456_000_250), "2030-01-01T00:00:00.25Z");
        for bad in ["", "tomorrow", "2030-01-01", "1969-12-31T23:59:59Z"] {
            let e = parse_instant("expiresAt", bad).unwrap_err();
            assert_eq!(e.fields["field"], "expiresAt", "{bad}");
        }
    }

    fn shape(body: &str) -> Result<Request, Error> {
        crate::api::parse_json::<RevokeBody>(body.as_bytes())?.into_request()
    }

    #[test]
    fn bodies_name_the_field_that_is_wrong() {
        let field = |body: &str| match shape(body) {
            Err(e) => {
                assert_eq!(e.code.as_str(), "BAD_REQUEST", "{body}");
                e.fields["field"].as_str().unwrap().to_string()
            }
            Ok(_) => panic!("{body} was accepted"),
        };
        assert_eq!(field("{}"), "body");
        assert_eq!(field(r#"{"jti":"a"}"#), "expiresAt");
        assert_eq!(field(r#"{"sub":"u"}"#), "issuedBefore");
        assert_eq!(field(r#"{"jti":"a","expiresAt":"soon"}"#), "expiresAt");
        assert_eq!(
            field(r#"{"jti":"","expiresAt":"2030-01-01T00:00:00Z"}"#),
            "jti"
        );
        assert_eq!(field(r#"{"token":"x","jti":"a"}"#), "token");
        assert_eq!(
            field(r#"{"token":"x","expiresAt":"2030-01-01T00:00:00Z"}"#),
            "expiresAt"
        );
        assert_eq!(field(r#"{"jti":"a","sub":"u"}"#), "sub");
        assert_eq!(field(r#"{"token":5}"#), "token");
        assert_eq!(field(r#"{"tokn":"x"}"#), "tokn");
        assert!(matches!(
            shape(r#"{"sub":"u","issuedBefore":"2030-01-01T00:00:00Z"}"#),
            Ok(Request::Subject {
                issued_before_ms: 1_893_456_000_000,
                ..
            })
        ));
    }
}
