//! TLS for the proxy listener (rustls with the ring provider): certificate chain and
//! key from PEM files, ALPN offering h2 and http/1.1.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Installs ring as the process's rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the acceptor, or says which file is wrong.
pub fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, String> {
    install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| format!("server.tls.cert: cannot read {}: {e}", cfg.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "server.tls.cert: invalid PEM in {}: {e}",
                cfg.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert: no certificate in {}",
            cfg.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        format!(
            "server.tls.key: cannot read a private key from {}: {e}",
            cfg.key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
