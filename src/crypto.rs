//! The process's one rustls crypto provider (ring), installed before any TLS
//! configuration is built: the proxy listener's, an https origin's, an https JWKS
//! URL's, the store's.

/// Installs ring as the process's rustls provider (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
