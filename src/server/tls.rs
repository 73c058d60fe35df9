//! TLS for the proxy listener (rustls with the ring provider): certificate chain and
//! key from PEM files, ALPN offering h2 and http/1.1. Also the loading of PEM CA
//! bundles (`store.tls_ca_file`, `auth.jwks_ca_file`), so every PEM file the config
//! names is judged the same way.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsConfig};

fn problem(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message,
    }
}

/// The certificates of a PEM file (at least one), or what is wrong with it.
pub fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(key, format!("invalid PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(problem(
            key,
            format!("no PEM certificate in {}", path.display()),
        ));
    }
    Ok(certs)
}

/// A CA bundle as root certificates, or what is wrong with it.
pub fn ca_roots(key: &str, path: &Path) -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(key, path)? {
        roots.add(c).map_err(|e| {
            problem(
                key,
                format!("{}: not a CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// Builds the acceptor, or says which files are wrong (each one).
pub fn acceptor(cfg: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, Vec<ConfigError>> {
    crate::crypto::install_provider();
    let certs = certificates("server.tls.cert", &cfg.cert);
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        problem(
            "server.tls.key",
            format!("cannot read a private key from {}: {e}", cfg.key.display()),
        )
    });
    let (certs, key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            vec![problem(
                "server.tls",
                format!("certificate and key do not fit: {e}"),
            )]
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
