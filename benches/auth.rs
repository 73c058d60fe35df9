//! The per-request cost of auth on the hot path, in process: a repeat token answered
//! by the verified-token cache (SHA-256 of the token, one moka lookup, time claims
//! re-checked) and its revocation status answered by the in-process view (no store
//! round trip). `benches/auth.sh` measures the same end to end with wrk; this bench
//! isolates what auth adds, which the shared machine's noise hides there.
//!
//! Run: `cargo bench --bench auth`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::auth::Verifier;
use gatehouse::config::Config;
use gatehouse::coordination::revocation::{Lifetimes, Revocations, Verdict};
use gatehouse::metrics::Metrics;
use gatehouse::store::Store;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "bench-secret-of-at-least-thirty-two-bytes";

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "bench-user", "jti": "bench-1", "iat": now, "exp": now + 3600});
    encode(&Header::new(alg), &claims, key).unwrap()
}

fn openssl(args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs")
        .status
        .success();
    assert!(ok, "openssl {args:?}");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("ec.pem");
    let public = dir.path().join("ec.pub.pem");
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p(&private),
    ]);
    openssl(&["pkey", "-in", &p(&private), "-pubout", "-out", &p(&public)]);

    let cfg = Config::default();
    let mut hs = cfg.auth.clone();
    hs.hs_secret = Some(SECRET.into());
    let mut es = cfg.auth.clone();
    es.algorithms = vec!["ES256".into()];
    es.public_key_files = vec![public.clone()];
    let cases = [
        (
            "HS256",
            Verifier::new(&hs).unwrap(),
            token(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            ),
        ),
        (
            "ES256",
            Verifier::new(&es).unwrap(),
            token(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&std::fs::read(&private).unwrap()).unwrap(),
            ),
        ),
    ];

    let metrics = Arc::new(Metrics::new());
    let revocations = Arc::new(Revocations::new(
        Store::new(&cfg.store, metrics.clone()),
        metrics,
    ));
    let _subscriber = revocations.spawn_subscriber();
    let life = Lifetimes::of(&cfg.auth);

    let mut group = c.benchmark_group("auth");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, verifier, token) in &cases {
        let claims = verifier.verify_sync(token).unwrap();
        let first = rt.block_on(revocations.check(&claims, life)).unwrap();
        assert_eq!(first, Verdict::NotRevoked);
        group.bench_function(
            format!("{name} repeat token: verify + revocation view"),
            |b| {
                b.iter(|| {
                    let claims = verifier.verify_sync(token).unwrap();
                    assert_eq!(revocations.check_local(&claims), Some(Verdict::NotRevoked));
                })
            },
        );
    }
    let (_, verifier, token) = &cases[1];
    group.bench_function("ES256 first sight: signature check (uncached)", |b| {
        b.iter(|| rt.block_on(verifier.verify_signature(token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
