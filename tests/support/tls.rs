//! Keys and certificates made with the openssl CLI for the test that needs them, and
//! the rustls configs that serve or trust them.

use std::process::Command;

/// Runs the openssl CLI in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a private key with `openssl genpkey <args>` into `dir` and its public
/// key beside it; returns (private PEM bytes, public key file).
pub fn genkey(dir: &std::path::Path, name: &str, args: &[&str]) -> (Vec<u8>, std::path::PathBuf) {
    let private = format!("{name}.pem");
    let public = format!("{name}.pub.pem");
    let mut gen = vec!["genpkey"];
    gen.extend_from_slice(args);
    gen.extend_from_slice(&["-out", &private]);
    openssl(dir, &gen);
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    (std::fs::read(dir.join(&private)).unwrap(), dir.join(public))
}

/// `openssl req` arguments for a new unencrypted EC P-256 key, written to the file
/// named next.
const NEW_EC_KEY: [&str; 6] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
];

/// Writes `ca.crt`, `server.crt` and `server.key` (EC P-256, the server cert for
/// 127.0.0.1 and localhost, signed by the CA) into `d` with the openssl CLI.
pub fn make_certs(d: &std::path::Path) {
    openssl(
        d,
        &[
            &["req", "-x509"][..],
            &NEW_EC_KEY[..],
            &[
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=gatehouse-test-ca",
            ][..],
        ]
        .concat(),
    );
    issue_cert(
        d,
        "server",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
}

/// Writes `<name>.key` and `<name>.crt` (EC P-256, subject `CN=<cn>`, the X.509 v3
/// extensions in `ext`) signed by the CA `make_certs` wrote into `d`.
pub fn issue_cert(d: &std::path::Path, name: &str, cn: &str, ext: &str) {
    let (key, csr, crt, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.cnf"),
    );
    let subject = format!("/CN={cn}");
    openssl(
        d,
        &[
            &["req"][..],
            &NEW_EC_KEY[..],
            &[
                key.as_str(),
                "-out",
                csr.as_str(),
                "-subj",
                subject.as_str(),
            ][..],
        ]
        .concat(),
    );
    std::fs::write(d.join(&cnf), ext).unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "1",
            "-extfile",
            &cnf,
        ],
    );
}

/// The certificates of the PEM file `ca` as the only trusted roots (and rustls's
/// ring provider installed, which every TLS test needs).
pub fn test_roots(ca: &std::path::Path) -> rustls::RootCertStore {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A rustls server config with `server.crt` and `server.key` from `d` (see
/// `make_certs`), no ALPN; with `client_auth`, clients must present a certificate
/// signed by `ca.crt`.
pub fn server_tls(d: &std::path::Path, client_auth: bool) -> rustls::ServerConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let roots = test_roots(&d.join("ca.crt"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(d.join("server.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(d.join("server.key")).unwrap();
    let builder = rustls::ServerConfig::builder();
    let builder = if client_auth {
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(certs, key).unwrap()
}
