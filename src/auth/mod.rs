//! Edge authorization: bearer-token extraction and JWT verification (issue 5, items 1
//! and the verification half of 3). Revocation is layered on top by the caller, keyed
//! by `Claims::revocation_id`.
//!
//! - `extract_token` finds the token (Authorization: Bearer, then the configured cookie,
//!   then the configured header).
//! - `Verifier` checks it against `[auth]` and caches what passed.
//! - `Rejection` says why not, with the contract's status, code, metric label and
//!   `WWW-Authenticate` value.

mod claims;
mod extract;
pub mod jwks;
pub mod jwt;
pub mod keys;
mod rejection;

#[cfg(test)]
mod tests;

pub use claims::{signing_input_sha256, Claims, RevocationId};
pub use extract::{extract_token, find_token, TokenSource};
pub use jwks::{FetchHook, HttpFetcher, JwksFetcher};
pub use jwt::{AuthError, Verifier, VerifierOptions};
pub use rejection::{Rejection, REALM};
