//! Verification keys: what each key is (HMAC secret, RSA, EC P-256/P-384, Ed25519),
//! which algorithms it may verify, and loading from a shared secret or PEM files.
//!
//! A key's kind is fixed when it is loaded and decides which token algorithms may even
//! be tried with it, so an HS* token is never checked against a public key's bytes
//! used as an HMAC secret (algorithm confusion), and an ES384 token never against a
//! P-256 key.

use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};

/// RSA moduli shorter than this are refused (NIST SP 800-131A; RFC 7518 §3.3 asks for
/// at least 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;

/// What a key is; decides the algorithms it can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A shared secret: HS256/384/512.
    Hmac,
    /// An RSA public key: RS256/384/512 and PS256/384/512.
    Rsa,
    /// An EC public key on P-256: ES256.
    EcP256,
    /// An EC public key on P-384: ES384.
    EcP384,
    /// An Ed25519 public key: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg` at all.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Hmac => "hmac",
            KeyKind::Rsa => "rsa",
            KeyKind::EcP256 => "ec-p256",
            KeyKind::EcP384 => "ec-p384",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// One key that can verify signatures.
#[derive(Clone)]
pub struct VerifyKey {
    /// The JWK `kid`; `None` for the shared secret and PEM files.
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK `alg`, when the key set pins one for this key.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    // Key material stays out of logs, even public keys: they are noise there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// An immutable list of keys; replaced whole when a JWKS is re-fetched.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
}

impl KeySet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The HMAC key of `auth.hs_secret`: the secret's UTF-8 bytes, as written.
pub fn hmac_key(secret: &str) -> VerifyKey {
    VerifyKey {
        kid: None,
        kind: KeyKind::Hmac,
        alg: None,
        key: DecodingKey::from_secret(secret.as_bytes()),
    }
}

/// Reads one PEM public key file and detects its type: RSA (`PUBLIC KEY` or
/// `RSA PUBLIC KEY`), EC on P-256 or P-384, or Ed25519 (`PUBLIC KEY`). Private keys
/// and certificates are refused with a message saying so.
pub fn load_pem_file(path: &Path) -> Result<VerifyKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    parse_pem(&bytes)
}

/// Parses PEM text holding one public key (see `load_pem_file`).
pub fn parse_pem(bytes: &[u8]) -> Result<VerifyKey, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not a PEM text file".to_string())?;
    let label = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("no PEM block (-----BEGIN ...-----) found")?;
    if label.contains("PRIVATE KEY") {
        // A private key in a verifier's config is a leak waiting to happen, and
        // jsonwebtoken would read a PKCS#1 private key as if it were public.
        return Err("holds a private key; give the public key (openssl pkey -pubout)".into());
    }
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Err(format!(
            "PEM type {label:?} is not supported; give a PUBLIC KEY (SPKI) or RSA PUBLIC KEY"
        ));
    }
    // jsonwebtoken classifies the SPKI by its algorithm OID, so each constructor
    // accepts only its own key type.
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let der = key
            .try_get_as_bytes()
            .map_err(|_| "unreadable RSA key".to_string())?;
        let (n, e) = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key)(der)
        .map_err(|e| format!("invalid RSA public key: {e}"))?;
        return rsa_key(None, None, &n, &e);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        let point = key
            .try_get_as_bytes()
            .map_err(|_| "unreadable EC key".to_string())?;
        // An uncompressed SEC1 point: 0x04 || x || y.
        let kind = match (point.first(), point.len()) {
            (Some(4), 65) => KeyKind::EcP256,
            (Some(4), 97) => KeyKind::EcP384,
            _ => return Err("EC key is not an uncompressed P-256 or P-384 point".into()),
        };
        return Ok(VerifyKey {
            kid: None,
            kind,
            alg: None,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        let raw = key
            .try_get_as_bytes()
            .map_err(|_| "unreadable Ed25519 key".to_string())?;
        return ed25519_key(None, None, raw);
    }
    Err("not an RSA, EC (P-256/P-384) or Ed25519 public key".into())
}

/// An RSA key from its big-endian modulus and exponent.
pub fn rsa_key(
    kid: Option<String>,
    alg: Option<Algorithm>,
    n: &[u8],
    e: &[u8],
) -> Result<VerifyKey, String> {
    let n = strip_leading_zeros(n);
    let bits = match n.first() {
        None => 0,
        Some(b) => n.len() * 8 - b.leading_zeros() as usize,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key of {bits} bits is too short (at least {MIN_RSA_BITS})"
        ));
    }
    let e = strip_leading_zeros(e);
    if e.is_empty() || e.len() > 8 {
        return Err("RSA exponent is invalid".into());
    }
    Ok(VerifyKey {
        kid,
        kind: KeyKind::Rsa,
        alg,
        key: DecodingKey::from_rsa_raw_components(n, e),
    })
}

/// An EC key from its affine coordinates; their length must match the curve.
pub fn ec_key(
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    x: &[u8],
    y: &[u8],
) -> Result<VerifyKey, String> {
    let len = match kind {
        KeyKind::EcP256 => 32,
        KeyKind::EcP384 => 48,
        other => return Err(format!("{} is not an EC curve", other.name())),
    };
    if x.len() != len || y.len() != len {
        return Err(format!(
            "EC coordinates must be {len} bytes for {}",
            kind.name()
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(VerifyKey {
        kid,
        kind,
        alg,
        key: DecodingKey::from_ec_der(&point),
    })
}

/// An Ed25519 key from its 32 raw bytes.
pub fn ed25519_key(
    kid: Option<String>,
    alg: Option<Algorithm>,
    x: &[u8],
) -> Result<VerifyKey, String> {
    // jsonwebtoken slices `[..32]` at verify time: a shorter key would panic there.
    if x.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    Ok(VerifyKey {
        kid,
        kind: KeyKind::Ed25519,
        alg,
        key: DecodingKey::from_ed_der(x),
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().take_while(|&&x| x == 0).count();
    &b[i..]
}

/// base64url as JOSE writes it (no padding), tolerating padding some JWKS servers add.
pub(crate) const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(crate) fn b64url_lenient(s: &str) -> Result<Vec<u8>, String> {
    B64URL_LENIENT
        .decode(s.as_bytes())
        .map_err(|_| "invalid base64url".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_fit_only_their_own_algorithms() {
        use Algorithm::*;
        let all = [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ];
        let fitting = |k: KeyKind| all.iter().filter(|a| k.fits(**a)).count();
        assert_eq!(fitting(KeyKind::Hmac), 3);
        assert_eq!(fitting(KeyKind::Rsa), 6);
        assert_eq!(fitting(KeyKind::EcP256), 1);
        assert_eq!(fitting(KeyKind::EcP384), 1);
        assert_eq!(fitting(KeyKind::Ed25519), 1);
        // The confusion cases: no public key kind accepts an HMAC algorithm.
        for k in [
            KeyKind::Rsa,
            KeyKind::EcP256,
            KeyKind::EcP384,
            KeyKind::Ed25519,
        ] {
            assert!(!k.fits(HS256) && !k.fits(HS384) && !k.fits(HS512), "{k:?}");
        }
    }

    #[test]
    fn a_jwk_alg_narrows_the_kind() {
        let mut n = vec![0u8; 256];
        n[0] = 0x80;
        let k = rsa_key(Some("a".into()), Some(Algorithm::PS256), &n, &[1, 0, 1]).unwrap();
        assert!(k.fits(Algorithm::PS256));
        assert!(!k.fits(Algorithm::RS256));
    }

    #[test]
    fn short_or_odd_keys_are_refused() {
        let mut n = vec![0u8; 128];
        n[0] = 0x80;
        assert!(rsa_key(None, None, &n, &[1, 0, 1])
            .unwrap_err()
            .contains("1024 bits"));
        assert!(ed25519_key(None, None, &[1; 31]).is_err());
        assert!(ec_key(None, None, KeyKind::EcP256, &[1; 48], &[1; 48]).is_err());
        assert!(ec_key(None, None, KeyKind::Rsa, &[1; 32], &[1; 32]).is_err());
    }

    #[test]
    fn pem_private_keys_and_garbage_are_refused() {
        let err = parse_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(err.contains("private key"), "{err}");
        let err = parse_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        assert!(parse_pem(b"hello").is_err());
    }
}
