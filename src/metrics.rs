//! Every collector, on a registry this process owns (no global registry), rendered
//! in the Prometheus text format by the admin listener. Names are the contract's
//! (`docs/api.md`); every name starts with `gatehouse_`, except the standard `process_*`
//! family (CPU, memory, file descriptors, threads, start time).
//!
//! Each HELP text names the labels its family has, and no others, after its last
//! " by " (outside parentheses, where the values are listed): "Proxied requests by
//! route and status". The test `help_names_exactly_the_labels_of_each_family` holds
//! every family to that, so an operator reading `/metrics` can trust the HELP line.

use http::{HeaderValue, StatusCode};
use prometheus::core::{Collector, Desc};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The `result` labels of `gatehouse_cache_lookups_total`.
pub const LOOKUP_RESULTS: &[&str] = &["hit", "negative_hit", "miss", "vary_miss", "error"];

/// The `listener` labels of the `gatehouse_connections_*` metrics.
pub const LISTENERS: &[&str] = &["proxy", "api", "admin"];

/// The `result` labels of `gatehouse_origin_requests_total` and
/// `gatehouse_origin_duration_seconds` (`body_error`: the head came, the body broke
/// off; counted, not timed).
pub const ORIGIN_RESULTS: &[&str] = &[
    "ok",
    "timeout",
    "unreachable",
    "body_error",
    "body_too_large",
    "client_body_error",
    "grpc_error",
];

/// How a proxied request was answered, as `gatehouse_request_duration_seconds`
/// labels it (`cache`): read off the `Cache-Status` the answer carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Fresh from the cache (L1 or L2), negative entries included.
    Hit,
    /// A stale entry served: stale-while-revalidate, max-stale, stale-if-error.
    Stale,
    /// Forwarded to the origin for a cacheable request: a miss, a revalidation, a
    /// waiter answered by another request's fetch.
    Miss,
    /// Forwarded without consulting the cache (method, route `cache = false`, request
    /// body or range, no subject to key by).
    Pass,
    /// Answered by gatehouse with an error of its own (a refusal or a failure).
    Error,
}

impl CacheResult {
    pub const ALL: [CacheResult; 5] = [
        CacheResult::Hit,
        CacheResult::Stale,
        CacheResult::Miss,
        CacheResult::Pass,
        CacheResult::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Miss => "miss",
            CacheResult::Pass => "pass",
            CacheResult::Error => "error",
        }
    }

    /// Classifies an answer by its `Cache-Status` (gatehouse's own member), without
    /// allocating: a scan of a few dozen bytes.
    pub fn of(status: StatusCode, cache_status: Option<&HeaderValue>) -> CacheResult {
        let Some(v) = cache_status.map(HeaderValue::as_bytes) else {
            return if status.is_client_error() || status.is_server_error() {
                CacheResult::Error
            } else {
                CacheResult::Pass
            };
        };
        let has = |needle: &[u8]| v.windows(needle.len()).any(|w| w == needle);
        if has(b"detail=error") {
            CacheResult::Error
        } else if has(b"stale-if-error")
            || has(b"detail=max-stale")
            || has(b"detail=stale-while-revalidate")
        {
            CacheResult::Stale
        } else if v.starts_with(b"gatehouse; hit") {
            CacheResult::Hit
        } else if has(b"fwd=bypass") || has(b"fwd=method") || has(b"fwd=request") {
            CacheResult::Pass
        } else {
            CacheResult::Miss
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_rejections_total: IntCounterVec,
    pub request_duration_seconds: HistogramVec,
    pub cache_lookups_total: IntCounterVec,
    pub cache_stores_total: IntCounterVec,
    pub origin_requests_total: IntCounterVec,
    pub origin_interim_responses_total: IntCounterVec,
    pub interim_responses_forwarded_total: IntCounterVec,
    pub grpc_responses_total: IntCounterVec,
    pub origin_duration_seconds: HistogramVec,
    pub coalesced_requests_total: IntCounter,
    pub coalesce_handovers_total: IntCounter,
    pub store_up: IntGauge,
    pub store_command_duration_seconds: HistogramVec,
    pub store_errors_total: IntCounterVec,
    pub store_reconnects_total: IntCounter,
    pub store_memory_bytes: IntGauge,
    pub store_memory_budget_bytes: IntGauge,
    pub store_evictions_total: IntCounter,
    pub capacity_admissions_total: IntCounterVec,
    pub capacity_sync_batches_total: IntCounterVec,
    pub lock_operations_total: IntCounterVec,
    pub auth_rejections_total: IntCounterVec,
    pub revocations_total: IntCounterVec,
    pub jwks_fetches_total: IntCounterVec,
    pub transfer_claims_total: IntCounterVec,
    pub l1_entries: IntGauge,
    pub l1_bytes: IntGauge,
    pub l1_flushes_total: IntCounter,
    pub invalidations_sent_total: IntCounter,
    pub invalidations_received_total: IntCounter,
    pub purges_total: IntCounterVec,
    pub config_reloads_total: IntCounterVec,
    pub subscription_up: IntGauge,
    pub connections_open: IntGaugeVec,
    pub connections_rejected_total: IntCounterVec,
    pub connections_closed_total: IntCounterVec,
    pub upgrades_open: IntGauge,
    pub upgrades_total: IntCounterVec,
    pub build_info: IntGaugeVec,
    /// Every family's name, HELP and label names, as registered.
    descs: Vec<Desc>,
}

/// The registry being filled, with the description of everything registered.
struct Reg {
    registry: Registry,
    descs: Vec<Desc>,
}

impl Reg {
    fn add<C: Collector + Clone + 'static>(&mut self, c: C) -> C {
        self.descs.extend(c.desc().into_iter().cloned());
        self.registry
            .register(Box::new(c.clone()))
            .expect("unique metric");
        c
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid metric"))
    }

    /// The standard `process_*` family, read from /proc at each scrape.
    fn process(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            self.descs.extend(pc.desc().into_iter().cloned());
            self.registry.register(Box::new(pc)).expect("unique metric");
        }
    }
}

/// Request and origin latency: from a 100 µs L1 hit to a 30 s origin timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Store command latency, kept to 8 buckets: one series per command and bucket, and
/// a store answers in well under a millisecond or is in trouble (the default
/// `store.command_timeout` is 500ms).
const STORE_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Reg {
            registry: Registry::new(),
            descs: Vec::new(),
        };
        r.process();
        let m = Metrics {
            requests_total: r.counter_vec(
                "gatehouse_requests_total",
                "Proxied requests by route and status",
                &["route", "status"],
            ),
            request_rejections_total: r.counter_vec(
                "gatehouse_request_rejections_total",
                "Requests refused before routing because their target, host or headers had no single meaning, by reason",
                &["reason"],
            ),
            request_duration_seconds: r.histogram_vec(
                "gatehouse_request_duration_seconds",
                "Time from request head to response head on the proxy listener, by route and cache (hit, stale, miss, pass, error: how the Cache-Status reads)",
                &["route", "cache"],
                LATENCY_BUCKETS,
            ),
            cache_lookups_total: r.counter_vec(
                "gatehouse_cache_lookups_total",
                "Cache lookups by tier (l1, l2) and result (hit, negative_hit, miss, vary_miss, error)",
                &["tier", "result"],
            ),
            cache_stores_total: r.counter_vec(
                "gatehouse_cache_stores_total",
                "Origin answers offered to the cache, by result (stored, negative, revalidated, or why not: no-store, private, set-cookie, too-large, ...)",
                &["result"],
            ),
            origin_requests_total: r.counter_vec(
                "gatehouse_origin_requests_total",
                "Requests sent to an origin by origin (default: [origin], else the [origins.NAME] name) and result (ok, timeout, unreachable, tls_error, body_error, body_too_large, client_body_error, grpc_error: a gRPC answer whose grpc-status is not 0)",
                &["origin", "result"],
            ),
            origin_interim_responses_total: r.counter_vec(
                "gatehouse_origin_interim_responses_total",
                "1xx interim responses (103 Early Hints, 102 Processing, ...) received from an origin (never stored nor merged into the final response), by origin and status",
                &["origin", "status"],
            ),
            interim_responses_forwarded_total: r.counter_vec(
                "gatehouse_interim_responses_forwarded_total",
                "1xx interim responses from the origin sent on to the client before its final response (not to HTTP/1.0 clients, cache hits or coalesced waiters), by protocol",
                &["protocol"],
            ),
            grpc_responses_total: r.counter_vec(
                "gatehouse_grpc_responses_total",
                "gRPC responses from the origin (content-type application/grpc*; grpc-status 0 is OK, anything else an error, missing when absent), by status",
                &["status"],
            ),
            origin_duration_seconds: r.histogram_vec(
                "gatehouse_origin_duration_seconds",
                "Time from sending a request to an origin to its response head or failure, by origin, route and result (ok, timeout, unreachable, tls_error, body_too_large, client_body_error, grpc_error)",
                &["origin", "route", "result"],
                LATENCY_BUCKETS,
            ),
            coalesced_requests_total: r.counter(
                "gatehouse_coalesced_requests_total",
                "Requests answered by another request's origin fetch",
            ),
            coalesce_handovers_total: r.counter(
                "gatehouse_coalesce_handovers_total",
                "Fetches taken over by a waiter after the leader failed or aged out",
            ),
            store_up: r.gauge(
                "gatehouse_store_up",
                "1 when the store answers, 0 when it cannot be reached",
            ),
            store_command_duration_seconds: r.histogram_vec(
                "gatehouse_store_command_duration_seconds",
                "Store operation latency by command",
                &["command"],
                STORE_BUCKETS,
            ),
            store_errors_total: r.counter_vec(
                "gatehouse_store_errors_total",
                "Store operations that failed, by command",
                &["command"],
            ),
            store_reconnects_total: r.counter(
                "gatehouse_store_reconnects_total",
                "Times the store connection was re-established",
            ),
            store_memory_bytes: r.gauge(
                "gatehouse_store_memory_bytes",
                "Estimated bytes of cache records, tombstones, leases and purge indexes held by the memory store (0 with redis)",
            ),
            store_memory_budget_bytes: r.gauge(
                "gatehouse_store_memory_budget_bytes",
                "The memory store's bound on those bytes, store.memory_max_bytes (0 with redis)",
            ),
            store_evictions_total: r.counter(
                "gatehouse_store_evictions_total",
                "Cache records, tombstones, leases, index sets and paths members the memory store evicted to stay within its budget",
            ),
            capacity_admissions_total: r.counter_vec(
                "gatehouse_capacity_admissions_total",
                "Admission attempts by result (admitted, already_admitted, full, not_found, error)",
                &["result"],
            ),
            capacity_sync_batches_total: r.counter_vec(
                "gatehouse_capacity_sync_batches_total",
                "Capacity sync batches posted to the origin by result",
                &["result"],
            ),
            lock_operations_total: r.counter_vec(
                "gatehouse_lock_operations_total",
                "Lock operations by op and result",
                &["op", "result"],
            ),
            auth_rejections_total: r.counter_vec(
                "gatehouse_auth_rejections_total",
                "Requests rejected at the edge by reason",
                &["reason"],
            ),
            revocations_total: r.counter_vec(
                "gatehouse_revocations_total",
                "Revocations accepted by kind (jti, token, subject)",
                &["kind"],
            ),
            jwks_fetches_total: r.counter_vec(
                "gatehouse_jwks_fetches_total",
                "JWKS fetches by result",
                &["result"],
            ),
            transfer_claims_total: r.counter_vec(
                "gatehouse_transfer_claims_total",
                "Transfer claims by result (claimed, gone, audience_mismatch, error)",
                &["result"],
            ),
            l1_entries: r.gauge("gatehouse_l1_entries", "Entries in the L1 cache"),
            l1_bytes: r.gauge("gatehouse_l1_bytes", "Weighted bytes in the L1 cache"),
            l1_flushes_total: r.counter(
                "gatehouse_l1_flushes_total",
                "Times the whole L1 was dropped (lost invalidation feed)",
            ),
            invalidations_sent_total: r.counter(
                "gatehouse_invalidations_sent_total",
                "Invalidation messages published to other instances",
            ),
            invalidations_received_total: r.counter(
                "gatehouse_invalidations_received_total",
                "Invalidation messages received from other instances",
            ),
            purges_total: r.counter_vec(
                "gatehouse_purges_total",
                "Purge requests by kind (urls, tags, prefix, method)",
                &["kind"],
            ),
            config_reloads_total: r.counter_vec(
                "gatehouse_config_reloads_total",
                "Config reloads by result (ok, invalid)",
                &["result"],
            ),
            subscription_up: r.gauge(
                "gatehouse_store_subscription_up",
                "1 while the store invalidation subscription is live",
            ),
            connections_open: r.gauge_vec(
                "gatehouse_connections_open",
                "Open client connections by listener (proxy, api, admin)",
                &["listener"],
            ),
            connections_rejected_total: r.counter_vec(
                "gatehouse_connections_rejected_total",
                "Client connections closed as soon as accepted, by listener (proxy, api, admin) and reason (max_connections)",
                &["listener", "reason"],
            ),
            connections_closed_total: r.counter_vec(
                "gatehouse_connections_closed_total",
                "Client connections closed by gatehouse, by listener (proxy, api, admin) and reason (header_read_timeout, idle_timeout)",
                &["listener", "reason"],
            ),
            upgrades_open: r.gauge(
                "gatehouse_upgrades_open",
                "Upgraded (101 Switching Protocols, WebSocket) client connections being relayed now",
            ),
            upgrades_total: r.counter_vec(
                "gatehouse_upgrades_total",
                "Upgrade requests forwarded to the origin, by result (ok: 101 and relayed, refused: the origin answered another status, error: no answer or the upgrade failed)",
                &["result"],
            ),
            build_info: r.gauge_vec(
                "gatehouse_build_info",
                "Always 1; the running build, labelled by version",
                &["version"],
            ),
            registry: r.registry,
            descs: r.descs,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.init_series();
        m
    }

    /// Creates the series an operator alerts on at zero, so a first increase is
    /// seen by `rate()` / `increase()` rather than appearing out of nowhere.
    fn init_series(&self) {
        for tier in ["l1", "l2"] {
            for result in LOOKUP_RESULTS {
                self.cache_lookups_total.with_label_values(&[tier, result]);
            }
        }
        for result in ["ok", "invalid"] {
            self.config_reloads_total.with_label_values(&[result]);
        }
        for result in ["stored", "negative", "revalidated"] {
            self.cache_stores_total.with_label_values(&[result]);
        }
        for kind in ["urls", "tags", "prefix"] {
            self.purges_total.with_label_values(&[kind]);
        }
        for result in ["ok", "refused", "error"] {
            self.upgrades_total.with_label_values(&[result]);
        }
        for protocol in ["h1", "h2"] {
            self.interim_responses_forwarded_total
                .with_label_values(&[protocol]);
        }
        for listener in LISTENERS {
            self.connections_open.with_label_values(&[listener]);
            self.connections_rejected_total
                .with_label_values(&[listener, "max_connections"]);
            for reason in ["header_read_timeout", "idle_timeout"] {
                self.connections_closed_total
                    .with_label_values(&[listener, reason]);
            }
        }
    }

    /// Creates origin `name`'s `gatehouse_origin_requests_total` series at zero (when
    /// its client is built: at start, and on a reload that adds it).
    pub fn init_origin_series(&self, name: &str) {
        for result in ORIGIN_RESULTS {
            self.origin_requests_total
                .with_label_values(&[name, result]);
        }
    }

    /// Records one answered proxy request: counted by route and status, timed by
    /// route and how the cache answered.
    pub fn observe_request(
        &self,
        route: &str,
        status: StatusCode,
        cache_status: Option<&HeaderValue>,
        elapsed: std::time::Duration,
    ) {
        self.requests_total
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.request_duration_seconds
            .with_label_values(&[route, CacheResult::of(status, cache_status).label()])
            .observe(elapsed.as_secs_f64());
    }

    /// Every registered family's name, HELP and label names.
    pub fn described(&self) -> &[Desc] {
        &self.descs
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The label names a HELP text names: the list after its last " by " outside
    /// parentheses, when that list is made of label-like words; none otherwise
    /// ("Requests answered by another request's origin fetch" names none).
    fn labels_named_in(help: &str) -> Vec<String> {
        let mut top = String::new();
        let mut depth = 0u32;
        for c in help.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => top.push(c),
                _ => {}
            }
        }
        let Some((_, tail)) = top.rsplit_once(" by ") else {
            return Vec::new();
        };
        let items: Vec<String> = tail
            .replace(" and ", ",")
            .split(',')
            .map(|w| w.trim().to_string())
            .collect();
        let label_like =
            |w: &String| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if items.iter().all(label_like) {
            items
        } else {
            Vec::new()
        }
    }

    #[test]
    fn help_names_exactly_the_labels_of_each_family() {
        let m = Metrics::new();
        assert!(m.described().len() > 30, "every family is described");
        let mut wrong = Vec::new();
        for d in m.described() {
            let mut named = labels_named_in(&d.help);
            let mut registered = d.variable_labels.clone();
            named.sort();
            registered.sort();
            if named != registered {
                wrong.push(format!(
                    "{}: HELP {:?} names {named:?}, registered {registered:?}",
                    d.fq_name, d.help
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_help_reader_finds_labels_only_in_the_by_clause() {
        assert_eq!(
            labels_named_in("Proxied requests by route and status"),
            ["route", "status"]
        );
        assert_eq!(
            labels_named_in("Closed, by listener (proxy, api) and reason (idle_timeout)"),
            ["listener", "reason"]
        );
        assert_eq!(labels_named_in("a, by x, y and z"), ["x", "y", "z"]);
        assert!(labels_named_in("Requests answered by another request's fetch").is_empty());
        assert!(labels_named_in("Entries in the L1 cache").is_empty());
    }

    #[test]
    fn every_family_is_exposed_with_process_and_build_info() {
        let m = Metrics::new();
        m.observe_request(
            "/r",
            StatusCode::OK,
            None,
            std::time::Duration::from_millis(1),
        );
        let text = m.render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "gatehouse_request_duration_seconds_bucket{cache=\"pass\",route=\"/r\",",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("gatehouse_build_info{{version=\"{version}\"}} 1")),
            "{text}"
        );
    }

    #[test]
    fn store_latency_keeps_to_eight_buckets() {
        let m = Metrics::new();
        m.store_command_duration_seconds
            .with_label_values(&["cache_get"])
            .observe(0.0002);
        let families = m.registry.gather();
        let f = families
            .iter()
            .find(|f| f.name() == "gatehouse_store_command_duration_seconds")
            .expect("family present");
        let buckets = f.get_metric()[0].get_histogram().get_bucket().len();
        assert!(buckets <= 8, "{buckets} buckets");
    }

    #[test]
    fn cache_status_reads_as_one_of_five_results() {
        use CacheResult::*;
        let ok = StatusCode::OK;
        let cases = [
            ("gatehouse; hit; ttl=29", Hit),
            ("gatehouse; hit; ttl=14; detail=negative", Hit),
            ("gatehouse; hit", Hit),
            ("gatehouse; hit; detail=max-stale", Stale),
            ("gatehouse; hit; detail=stale-while-revalidate", Stale),
            ("gatehouse; fwd=stale; detail=stale-if-error", Stale),
            (
                "gatehouse; fwd=stale; collapsed; detail=stale-if-error",
                Stale,
            ),
            (
                "gatehouse; fwd=stale; fwd-status=502; detail=stale-if-error",
                Stale,
            ),
            ("gatehouse; fwd=miss; stored", Miss),
            ("gatehouse; fwd=miss; collapsed", Miss),
            ("gatehouse; fwd=miss; collapsed; detail=fleet", Miss),
            ("gatehouse; fwd=miss; detail=no-store", Miss),
            ("gatehouse; fwd=stale; fwd-status=304; stored", Miss),
            ("gatehouse; fwd=miss", Miss),
            ("gatehouse; fwd=method", Pass),
            ("gatehouse; fwd=bypass", Pass),
            ("gatehouse; fwd=bypass; detail=no-subject", Pass),
            ("gatehouse; fwd=request; detail=request-body", Pass),
            ("gatehouse; fwd=request; detail=range", Pass),
            ("gatehouse; fwd=miss; detail=error", Error),
        ];
        for (value, want) in cases {
            let v = HeaderValue::from_static(value);
            assert_eq!(CacheResult::of(ok, Some(&v)), want, "{value}");
        }
        assert_eq!(CacheResult::of(StatusCode::BAD_REQUEST, None), Error);
        assert_eq!(CacheResult::of(ok, None), Pass);
        let labels: Vec<&str> = CacheResult::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels, ["hit", "stale", "miss", "pass", "error"]);
    }
}
