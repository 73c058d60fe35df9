//! Why a request's token was not accepted, its metric label, message and RFC 6750
//! `WWW-Authenticate` value. Its status and error code are `crate::error`'s
//! `From<Rejection>` (the one mapping to HTTP).

/// The realm named in every `WWW-Authenticate` challenge.
pub const REALM: &str = "gatehouse";

/// A token that did not pass. A normal outcome of verification, never a panic.
/// Answered (`crate::error`) as:
///
/// | variant | status | `error` code |
/// |---|---|---|
/// | `Missing` | 401 | `TOKEN_MISSING` |
/// | `Expired` | 401 | `TOKEN_EXPIRED` |
/// | `Revoked` | 401 | `TOKEN_REVOKED` |
/// | `AudienceNotAllowed` | 403 | `AUDIENCE_NOT_ALLOWED` |
/// | every other variant | 401 | `TOKEN_INVALID` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    /// No token in `Authorization: Bearer`, the configured cookie or the configured header.
    #[error("no bearer token")]
    Missing,
    /// Not three base64url parts, header or payload not a JSON object, a claim of the
    /// wrong type, a `crit` header, or a token too large.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is `none`, unknown, not in `auth.algorithms`, or not one the
    /// key named by `kid` can verify.
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No configured key has the token's `kid` (after a JWKS re-fetch when one is
    /// allowed), or no key of the algorithm's family exists.
    #[error("unknown signing key")]
    UnknownKey,
    /// The JWKS URL has not yet answered with usable keys, so nothing can be verified.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// No candidate key verified the signature.
    #[error("bad signature")]
    BadSignature,
    /// The `exp` claim is absent.
    #[error("token has no exp claim")]
    MissingExpiry,
    /// `exp` + leeway is not after now.
    #[error("token expired")]
    Expired,
    /// `nbf` is later than now + leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is later than now + leeway.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `auth.issuer` is set and `iss` is absent or different.
    #[error("issuer mismatch")]
    IssuerMismatch,
    /// `auth.audiences` is non-empty and no `aud` value is among them (or `aud` is absent).
    #[error("audience not allowed")]
    AudienceNotAllowed,
    /// The token verified but is revoked: by its `jti` (or its signing input), or by a
    /// revocation of its subject that is later than its `iat`.
    #[error("token revoked")]
    Revoked,
}

impl Rejection {
    /// Every variant, for metric pre-registration and tests.
    pub const ALL: [Rejection; 13] = [
        Rejection::Missing,
        Rejection::Malformed,
        Rejection::AlgorithmNotAllowed,
        Rejection::UnknownKey,
        Rejection::KeysUnavailable,
        Rejection::BadSignature,
        Rejection::MissingExpiry,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::IssuedInFuture,
        Rejection::IssuerMismatch,
        Rejection::AudienceNotAllowed,
        Rejection::Revoked,
    ];

    /// The label of `gatehouse_auth_rejections_total{reason}`: a fixed snake_case word.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Malformed => "malformed",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            Rejection::UnknownKey => "unknown_key",
            Rejection::KeysUnavailable => "keys_unavailable",
            Rejection::BadSignature => "bad_signature",
            Rejection::MissingExpiry => "missing_exp",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::IssuedInFuture => "issued_in_future",
            Rejection::IssuerMismatch => "issuer_mismatch",
            Rejection::AudienceNotAllowed => "audience_not_allowed",
            Rejection::Revoked => "revoked",
        }
    }

    /// A human message for the JSON body's `message`. Fixed text: it never quotes the
    /// token or a claim.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "a bearer token is required",
            Rejection::Malformed => "the token is not a well-formed JWT",
            Rejection::AlgorithmNotAllowed => "the token's signing algorithm is not allowed",
            Rejection::UnknownKey => "the token was signed by an unknown key",
            Rejection::KeysUnavailable => "the signing keys are not available yet",
            Rejection::BadSignature => "the token's signature is invalid",
            Rejection::MissingExpiry => "the token has no expiry",
            Rejection::Expired => "the token has expired",
            Rejection::NotYetValid => "the token is not valid yet",
            Rejection::IssuedInFuture => "the token was issued in the future",
            Rejection::IssuerMismatch => "the token's issuer is not accepted",
            Rejection::AudienceNotAllowed => "the token's audience is not allowed",
            Rejection::Revoked => "the token has been revoked",
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3): `Bearer realm="gatehouse"` when no
    /// token was sent (§3.1: no error code then), otherwise with
    /// `error="invalid_token"` and a fixed `error_description`.
    pub fn www_authenticate(self) -> String {
        match self {
            Rejection::Missing => format!("Bearer realm=\"{REALM}\""),
            // The description is one of the fixed strings above: no quotes or
            // backslashes to escape, and nothing taken from the request.
            other => format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                other.message()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reasons_are_distinct_metric_labels() {
        let reasons: HashSet<&str> = Rejection::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons.len(), Rejection::ALL.len());
        for r in reasons {
            assert!(
                r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{r}"
            );
        }
    }

    #[test]
    fn www_authenticate_follows_rfc_6750() {
        assert_eq!(
            Rejection::Missing.www_authenticate(),
            "Bearer realm=\"gatehouse\""
        );
        assert_eq!(
            Rejection::Expired.www_authenticate(),
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        );
        for r in Rejection::ALL {
            let v = r.www_authenticate();
            assert!(http::HeaderValue::from_str(&v).is_ok(), "{v}");
            assert!(!r.message().contains(['"', '\\']), "{r:?}");
        }
    }
}
