//! Micro-benches of the steps every cacheable request takes: making the request
//! canonical (target, authority, header hygiene), cache key derivation,
//! `Cache-Control` parsing, the L1 lookup, and the L2 entry encoding.
//!
//! `cargo bench --bench hot_paths` (about a minute); results and machine in
//! `benches/README.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::cache::entry::{self, Entry, Flags, StoredResponse};
use gatehouse::cache::l1::L1;
use gatehouse::cache::CacheKey;
use gatehouse::config::RouteConfig;
use gatehouse::proxy::cache_key;
use gatehouse::proxy::directives::parse_cache_control;
use gatehouse::routes::Router;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};

/// The request headers of a typical browser call through a sidecar.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::HOST,
        HeaderValue::from_static("checkin.example.com"),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(
        header::ACCEPT_LANGUAGE,
        HeaderValue::from_static("en-GB,en;q=0.9,  fr;q=0.8"),
    );
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"),
    );
    h.insert(
        "x-request-id",
        HeaderValue::from_static("7f0c2a5e-3b1d-4c6e-9a8f-0d1e2f3a4b5c"),
    );
    h
}

/// A 1 KiB JSON answer as the L1 and L2 hold it.
fn sample_entry() -> Entry {
    let body = format!(
        "{{\"id\":7,\"name\":\"Frances Lovelace\",\"notes\":\"{}\"}}",
        "x".repeat(970)
    );
    Entry::Response(StoredResponse {
        status: StatusCode::OK,
        headers: vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::DATE,
                HeaderValue::from_static("Sun, 22 Nov 2026 03:42:02 GMT"),
            ),
            (header::ETAG, HeaderValue::from_static("\"p7-v3\"")),
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("7f0c2a5e-3b1d-4c6e-9a8f-0d1e2f3a4b5c"),
            ),
        ],
        body: Bytes::from(body),
        // Stored now, so it stays fresh in L1 for the whole run.
        request_time: gatehouse::clock::now_ms(),
        response_time: gatehouse::clock::now_ms(),
        initial_age: 0,
        freshness: 3_600_000,
        stale_while_revalidate: 10_000,
        stale_if_error: 300_000,
        keep: 0,
        flags: Flags::default(),
        tags: vec!["participant:7".into()],
        variant: vec![("accept-language".into(), Some("en-gb, en".into()))],
    })
}

fn cache_key(c: &mut Criterion) {
    let headers = request_headers();
    let plain: Uri = "/api/participants/7?include=sessions".parse().unwrap();
    let encoded: Uri = "/api/participants/%37/%7Eprofile?q=a%2fb".parse().unwrap();
    let router = Router::new(
        &[RouteConfig {
            vary: vec!["accept-language".into()],
            ..RouteConfig::new("/api/participants/{id}")
        }],
        Default::default(),
    )
    .unwrap();
    let route = router.routes()[0].clone();

    let mut g = c.benchmark_group("cache_key");
    g.bench_function("no_route", |b| {
        b.iter(|| cache_key::for_request(black_box(&plain), black_box(&headers), None, None))
    });
    g.bench_function("route_with_vary", |b| {
        b.iter(|| {
            cache_key::for_request(black_box(&plain), black_box(&headers), Some(&route), None)
        })
    });
    g.bench_function("percent_encoded_path", |b| {
        b.iter(|| cache_key::for_request(black_box(&encoded), black_box(&headers), None, None))
    });
    g.finish();
}

/// `proxy::inbound::canonicalize`: what every request pays before routing.
fn inbound(c: &mut Criterion) {
    let config = gatehouse::Config::default();
    let metrics = gatehouse::metrics::Metrics::new();
    let headers = request_headers();
    let request = |target: &'static str| {
        let mut r = http::Request::new(());
        *r.uri_mut() = Uri::from_static(target);
        *r.headers_mut() = headers.clone();
        r
    };
    let mut g = c.benchmark_group("inbound");
    for (name, target) in [
        ("canonical_already", "/api/participants/7?include=sessions"),
        (
            "percent_encoded",
            "/api/participants/%37/./%7Eprofile?q=a%2fb",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || request(target),
                |mut r| {
                    gatehouse::proxy::inbound::canonicalize(&mut r, &config, false, &metrics)
                        .unwrap();
                    r
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn entry_encoding(c: &mut Criterion) {
    let e = sample_entry();
    let bytes = entry::encode(&e);
    assert_eq!(entry::decode(bytes.clone()).unwrap(), e);

    let mut g = c.benchmark_group("entry_1KiB");
    g.bench_function("encode", |b| b.iter(|| entry::encode(black_box(&e))));
    // `decode` takes `Bytes`: the clone is a reference-count increment, as in L2 reads.
    g.bench_function("decode", |b| {
        b.iter(|| entry::decode(black_box(bytes.clone())))
    });
    g.finish();
}

fn l1_lookup(c: &mut Criterion) {
    let l1 = L1::new(64 << 20);
    let entry = Arc::new(entry::Record::Entry(Arc::new(sample_entry())));
    // The ids of real keys, as the proxy makes them.
    let id = |i: &str| {
        CacheKey::new(
            &format!("checkin.example.com/api/participants/{i}"),
            format!("/api/participants/{i}"),
        )
        .id
    };
    let keys: Vec<_> = (0..10_000).map(|i| id(&i.to_string())).collect();
    for k in &keys {
        l1.insert(k.clone(), entry.clone());
    }
    let hit = &id("4242");
    let miss = &id("none");
    assert!(l1.get(hit).is_some());

    let mut g = c.benchmark_group("l1_10k_entries");
    g.bench_function("hit", |b| b.iter(|| l1.get(black_box(hit))));
    g.bench_function("miss", |b| b.iter(|| l1.get(black_box(miss))));
    g.finish();
}

fn cache_control(c: &mut Criterion) {
    let headers = |values: &[&'static str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::CACHE_CONTROL, HeaderValue::from_static(v));
        }
        h
    };
    let absent = headers(&[]);
    let typical = headers(&["public, max-age=60, stale-while-revalidate=30"]);
    let busy = headers(&[
        "private=\"set-cookie, x-user\", no-cache=\"x-a\", max-age=\"600\"",
        "s-maxage=120, must-revalidate, stale-if-error=86400, x-vendor-ext=\"a,b\"",
    ]);

    let mut g = c.benchmark_group("parse_cache_control");
    g.bench_function("absent", |b| {
        b.iter(|| parse_cache_control(black_box(&absent)))
    });
    g.bench_function("typical", |b| {
        b.iter(|| parse_cache_control(black_box(&typical)))
    });
    g.bench_function("two_lines_quoted", |b| {
        b.iter(|| parse_cache_control(black_box(&busy)))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = inbound, cache_key, cache_control, l1_lookup, entry_encoding
}
criterion_main!(hot_paths);
