//! Keys and certificates made with the openssl CLI for the test that needs them.

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

/// Writes `ca.crt`, `server.crt` and `server.key` (EC P-256, the server cert for
/// 127.0.0.1 and localhost, signed by the CA) into `d` with the openssl CLI.
pub fn make_certs(d: &std::path::Path) {
    let run = |args: &[&str]| openssl(d, args);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=gatehouse-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}
