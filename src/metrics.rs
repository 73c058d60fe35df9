//! Every collector, on a registry this process owns (no global registry), rendered
//! in the Prometheus text format by the admin listener. Names are the contract's
//! (`docs/api.md`); every name starts with `gatehouse_`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The `result` labels of `gatehouse_cache_lookups_total`.
pub const LOOKUP_RESULTS: &[&str] = &["hit", "negative_hit", "miss", "vary_miss", "error"];

/// The `listener` labels of the `gatehouse_connections_*` metrics.
pub const LISTENERS: &[&str] = &["proxy", "api", "admin"];

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_rejections_total: IntCounterVec,
    pub request_duration_seconds: Histogram,
    pub cache_lookups_total: IntCounterVec,
    pub cache_stores_total: IntCounterVec,
    pub origin_requests_total: IntCounterVec,
    pub origin_interim_responses_total: IntCounterVec,
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
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let request_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gatehouse_request_duration_seconds",
                "Time from request head to response head on the proxy listener",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        r.register(Box::new(request_duration_seconds.clone()))
            .expect("unique metric");
        let store_command_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_store_command_duration_seconds",
                "Store operation latency by command",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["command"],
        )
        .expect("valid metric");
        r.register(Box::new(store_command_duration_seconds.clone()))
            .expect("unique metric");
        let m = Metrics {
            requests_total: counter_vec(
                &r,
                "gatehouse_requests_total",
                "Proxied requests by route and status",
                &["route", "status"],
            ),
            request_rejections_total: counter_vec(
                &r,
                "gatehouse_request_rejections_total",
                "Requests refused before routing because their target, host or headers had no single meaning, by reason",
                &["reason"],
            ),
            request_duration_seconds,
            cache_lookups_total: counter_vec(
                &r,
                "gatehouse_cache_lookups_total",
                "Cache lookups by tier (l1, l2) and result (hit, negative_hit, stale, miss, error)",
                &["tier", "result"],
            ),
            cache_stores_total: counter_vec(
                &r,
                "gatehouse_cache_stores_total",
                "Origin answers by what the cache did with them (stored, negative, uncacheable reason)",
                &["result"],
            ),
            origin_requests_total: counter_vec(
                &r,
                "gatehouse_origin_requests_total",
                "Requests sent to the origin by result (ok, timeout, unreachable, body_error, client_body_error)",
                &["result"],
            ),
            origin_interim_responses_total: counter_vec(
                &r,
                "gatehouse_origin_interim_responses_total",
                "1xx interim responses (103 Early Hints, 102 Processing, ...) received from the origin by status; never stored, and not forwarded (hyper's server cannot send them)",
                &["status"],
            ),
            coalesced_requests_total: counter(
                &r,
                "gatehouse_coalesced_requests_total",
                "Requests answered by another request's origin fetch",
            ),
            coalesce_handovers_total: counter(
                &r,
                "gatehouse_coalesce_handovers_total",
                "Fetches taken over by a waiter after the leader failed or aged out",
            ),
            store_up: gauge(
                &r,
                "gatehouse_store_up",
                "1 when the store answers, 0 when it cannot be reached",
            ),
            store_command_duration_seconds,
            store_errors_total: counter_vec(
                &r,
                "gatehouse_store_errors_total",
                "Store operations that failed, by command",
                &["command"],
            ),
            store_reconnects_total: counter(
                &r,
                "gatehouse_store_reconnects_total",
                "Times the store connection was re-established",
            ),
            store_memory_bytes: gauge(
                &r,
                "gatehouse_store_memory_bytes",
                "Estimated bytes of cache records, tombstones, leases and purge indexes held by the memory store (0 with redis)",
            ),
            store_memory_budget_bytes: gauge(
                &r,
                "gatehouse_store_memory_budget_bytes",
                "The memory store's bound on those bytes, store.memory_max_bytes (0 with redis)",
            ),
            store_evictions_total: counter(
                &r,
                "gatehouse_store_evictions_total",
                "Cache records, tombstones, leases, index sets and paths members the memory store evicted to stay within its budget",
            ),
            capacity_admissions_total: counter_vec(
                &r,
                "gatehouse_capacity_admissions_total",
                "Admission attempts by result (admitted, already_admitted, full, not_found, error)",
                &["result"],
            ),
            capacity_sync_batches_total: counter_vec(
                &r,
                "gatehouse_capacity_sync_batches_total",
                "Capacity sync batches posted to the origin by result",
                &["result"],
            ),
            lock_operations_total: counter_vec(
                &r,
                "gatehouse_lock_operations_total",
                "Lock operations by op and result",
                &["op", "result"],
            ),
            auth_rejections_total: counter_vec(
                &r,
                "gatehouse_auth_rejections_total",
                "Requests rejected at the edge by reason",
                &["reason"],
            ),
            revocations_total: counter_vec(
                &r,
                "gatehouse_revocations_total",
                "Revocations accepted by kind (jti, token, subject)",
                &["kind"],
            ),
            jwks_fetches_total: counter_vec(
                &r,
                "gatehouse_jwks_fetches_total",
                "JWKS fetches by result",
                &["result"],
            ),
            transfer_claims_total: counter_vec(
                &r,
                "gatehouse_transfer_claims_total",
                "Transfer claims by result (claimed, gone, audience_mismatch, error)",
                &["result"],
            ),
            l1_entries: gauge(&r, "gatehouse_l1_entries", "Entries in the L1 cache"),
            l1_bytes: gauge(&r, "gatehouse_l1_bytes", "Weighted bytes in the L1 cache"),
            l1_flushes_total: counter(
                &r,
                "gatehouse_l1_flushes_total",
                "Times the whole L1 was dropped (lost invalidation feed)",
            ),
            invalidations_sent_total: counter(
                &r,
                "gatehouse_invalidations_sent_total",
                "Invalidation messages published to other instances",
            ),
            invalidations_received_total: counter(
                &r,
                "gatehouse_invalidations_received_total",
                "Invalidation messages received from other instances",
            ),
            purges_total: counter_vec(
                &r,
                "gatehouse_purges_total",
                "Purge requests by kind (urls, tags, prefix, method)",
                &["kind"],
            ),
            config_reloads_total: counter_vec(
                &r,
                "gatehouse_config_reloads_total",
                "Config reloads by result (ok, invalid)",
                &["result"],
            ),
            subscription_up: gauge(
                &r,
                "gatehouse_store_subscription_up",
                "1 while the store invalidation subscription is live",
            ),
            connections_open: gauge_vec(
                &r,
                "gatehouse_connections_open",
                "Open client connections by listener (proxy, api, admin)",
                &["listener"],
            ),
            connections_rejected_total: counter_vec(
                &r,
                "gatehouse_connections_rejected_total",
                "Client connections closed as soon as accepted, by listener (proxy, api, admin) and reason (max_connections)",
                &["listener", "reason"],
            ),
            connections_closed_total: counter_vec(
                &r,
                "gatehouse_connections_closed_total",
                "Client connections closed by gatehouse, by listener (proxy, api, admin) and reason (header_read_timeout, idle_timeout)",
                &["listener", "reason"],
            ),
            registry: r,
        };
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
        for result in [
            "ok",
            "timeout",
            "unreachable",
            "body_error",
            "client_body_error",
        ] {
            self.origin_requests_total.with_label_values(&[result]);
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
