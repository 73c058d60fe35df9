//! What a verified token says: its claims, and the key a revocation of it is stored
//! under. Shared by the verifier (`jwt`), the proxy (claims to headers) and
//! revocations, none of which needs the others to read a token's claims.

use std::borrow::Cow;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The claims of a verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub iss: Option<String>,
    /// `aud` as a list (a single string becomes one element; absent is empty).
    pub aud: Vec<String>,
    /// Seconds since the epoch (fractional NumericDates are rounded down).
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    /// SHA-256 (lowercase hex) of the signing input `base64url(header).base64url(payload)`
    /// as received: the revocation key of a token without `jti` (see `revocation_id`).
    pub signing_input_sha256: String,
    /// Every claim of the payload, as sent.
    pub all: Map<String, Value>,
}

/// What a revocation of this token is keyed on (docs/api.md, docs/openapi.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationId<'a> {
    /// The token's `jti`.
    Jti(&'a str),
    /// SHA-256 hex of the signing input, for a token without `jti`; never the raw token.
    SigningInput(&'a str),
}

impl Claims {
    /// The claim `name` as a header value for `claims_to_headers`: a string as is, any
    /// other JSON value (number, boolean, array, object) as its JSON text. `None` when
    /// the claim is absent or null. The caller still checks the result is a valid
    /// header value (a string claim may hold control characters).
    pub fn header_value(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.all.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(Cow::Borrowed(s)),
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    /// The key a revocation of this token is stored under.
    pub fn revocation_id(&self) -> RevocationId<'_> {
        match &self.jti {
            Some(j) => RevocationId::Jti(j),
            None => RevocationId::SigningInput(&self.signing_input_sha256),
        }
    }
}

/// SHA-256 (lowercase hex) of a compact JWS's signing input: everything before the last
/// `.`, exactly as received. The canonical revocation key of a token without `jti`:
/// unlike a hash of the whole token it does not change when the signature is re-encoded
/// (ECDSA signatures are malleable). `None` unless the token has exactly three parts.
pub fn signing_input_sha256(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(hex::encode(Sha256::digest(
        &token.as_bytes()[..h.len() + 1 + p.len()],
    )))
}
