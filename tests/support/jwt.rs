//! JWT minting: a claims builder signed with an HS256 secret or a PEM key, and the
//! forged tokens (unsigned, payload swapped after signing) the refusal tests send.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// The HS256 secret most test configs' `[auth]` sections name.
pub const HS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-tests";
/// The `auth.issuer` and an `auth.audiences` entry the test configs name.
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "gatehouse-tests";

/// An `[auth]` section that trusts HS256 tokens signed with `HS_SECRET`, from
/// `ISSUER` to `AUDIENCE`; `extra` adds keys to it (e.g. `claims_to_headers`).
pub fn auth_section(extra: &str) -> String {
    format!(
        "\n[auth]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nalgorithms = [\"HS256\"]\nhs_secret = \"{HS_SECRET}\"\n{extra}\n"
    )
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token's claims, built up claim by claim, then signed.
#[derive(Clone, Debug, Default)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// No claims at all.
    pub fn new() -> Claims {
        Claims::default()
    }

    /// For `sub`, issued 5s ago and valid for ten more minutes.
    pub fn valid(sub: &str) -> Claims {
        let now = unix_now();
        Claims::new().sub(sub).iat(now - 5).exp(now + 600)
    }

    /// `valid`, from `ISSUER` to `AUDIENCE`.
    pub fn issued(sub: &str) -> Claims {
        Claims::valid(sub).iss(ISSUER).aud(AUDIENCE)
    }

    pub fn sub(self, sub: &str) -> Claims {
        self.claim("sub", sub)
    }
    pub fn exp(self, secs: i64) -> Claims {
        self.claim("exp", secs)
    }
    pub fn iat(self, secs: i64) -> Claims {
        self.claim("iat", secs)
    }
    pub fn nbf(self, secs: i64) -> Claims {
        self.claim("nbf", secs)
    }
    pub fn aud(self, aud: &str) -> Claims {
        self.claim("aud", aud)
    }
    pub fn iss(self, iss: &str) -> Claims {
        self.claim("iss", iss)
    }
    pub fn jti(self, jti: &str) -> Claims {
        self.claim("jti", jti)
    }

    /// Sets any claim (replacing one of that name).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Claims {
        self.0.insert(name.into(), value.into());
        self
    }

    /// Drops a claim.
    pub fn without(mut self, name: &str) -> Claims {
        self.0.remove(name);
        self
    }

    /// The claims as a JSON object.
    pub fn json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Signed HS256 with `secret`.
    pub fn hs256(&self, secret: &str) -> String {
        self.sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
    }

    /// Signed with the private key in `pem` (RSA for RS*/PS*, EC for ES*).
    pub fn pem(&self, alg: Algorithm, pem: &[u8]) -> String {
        self.sign(alg, &pem_key(alg, pem))
    }

    /// Signed by `key` with a header that names only `alg`.
    pub fn sign(&self, alg: Algorithm, key: &EncodingKey) -> String {
        self.sign_with(&Header::new(alg), key)
    }

    /// Signed by `key` with `header` as given (e.g. with a `kid`).
    pub fn sign_with(&self, header: &Header, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, &self.json(), key).unwrap()
    }

    /// `alg: none`, no signature.
    pub fn unsigned(&self) -> String {
        let head = serde_json::json!({"alg": "none", "typ": "JWT"});
        format!("{}.{}.", b64(&head), b64(&self.json()))
    }

    /// `signed` with its payload replaced by these claims (its signature kept).
    pub fn forged_into(&self, signed: &str) -> String {
        let parts: Vec<&str> = signed.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(&self.json()), parts[2])
    }
}

/// The signing key for `alg` from a private key in PEM.
pub fn pem_key(alg: Algorithm, pem: &[u8]) -> EncodingKey {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}
