//! The capacity sync task: every `capacity.sync_interval`, POST the counters changed
//! since the last sync to `capacity.sync_url` as a JSON array of
//! `{"ns","id","count","capacity","version"}`, at most `capacity.sync_batch` per
//! request, until nothing is left.
//!
//! Changed counters are found through the store's dirty sets (marked by the same
//! atomic step as the change), never by scanning the keyspace. Delivery is at least
//! once: a batch is leased, not popped — it is settled after a 2xx, put back after a
//! failure (then retried with exponential backoff), and put back by the store when
//! the lease runs out because the instance posting it died. Each item carries the
//! counter's current version, so the origin applies batches idempotently with
//! "update ... where version < incoming" (docs/capacity.md). Every instance runs the
//! task; leases keep them from posting the same change twice in the normal case.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::backoff::Backoff;
use crate::config::{CapacityConfig, OriginConfig};
use crate::metrics::Metrics;
use crate::store::coord::{SyncItem, CAPACITY_SHARDS};
use crate::store::Store;

/// The longest wait between attempts while the origin keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the task when `capacity.sync_url` is set.
pub fn spawn(
    store: Store,
    metrics: Arc<Metrics>,
    cfg: &CapacityConfig,
    origin: &OriginConfig,
) -> Option<tokio::task::JoinHandle<()>> {
    let url: http::Uri = cfg.sync_url.as_deref()?.parse().ok()?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(origin.connect_timeout));
    connector.enforce_http(true);
    let sync = Sync {
        store,
        metrics,
        client: Client::builder(TokioExecutor::new()).build(connector),
        url,
        batch: cfg.sync_batch.max(1) as usize,
        interval: cfg.sync_interval,
        timeout: origin.timeout,
    };
    Some(tokio::spawn(sync.run()))
}

struct Sync {
    store: Store,
    metrics: Arc<Metrics>,
    client: Client<HttpConnector, Full<Bytes>>,
    url: http::Uri,
    batch: usize,
    interval: Duration,
    timeout: Duration,
}

/// How one round ended.
enum Round {
    /// Everything changed so far was delivered (or nothing had changed).
    Drained,
    /// The origin refused or was unreachable; the batch was put back.
    OriginFailed,
    /// The store gave no answer; nothing was taken.
    StoreFailed,
}

impl Sync {
    async fn run(self) {
        let mut cursor = 0usize;
        let mut backoff = Backoff::new(self.interval, MAX_BACKOFF);
        loop {
            tokio::time::sleep(backoff.delay()).await;
            match self.round(&mut cursor).await {
                Round::Drained | Round::StoreFailed => backoff.reset(),
                Round::OriginFailed => backoff.failed(),
            }
        }
    }

    /// Posts batches until the dirty sets are empty or a post fails.
    async fn round(&self, cursor: &mut usize) -> Round {
        loop {
            let taken = match self.take(cursor).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "capacity sync: store unavailable; retrying next interval");
                    return Round::StoreFailed;
                }
            };
            if taken.is_empty() {
                return Round::Drained;
            }
            let count: usize = taken.iter().map(|(_, items)| items.len()).sum();
            let delivered = self.post(&taken).await;
            let result = if delivered { "ok" } else { "error" };
            self.metrics
                .capacity_sync_batches_total
                .with_label_values(&[result])
                .inc();
            for (shard, items) in &taken {
                let names: Vec<String> = items.iter().map(|i| i.name.clone()).collect();
                if let Err(e) = self
                    .store
                    .capacity_sync_settle(*shard, &names, delivered)
                    .await
                {
                    // The lease runs out and the store puts them back itself.
                    tracing::debug!(error = %e, "capacity sync: settle failed; the lease will expire");
                }
            }
            if !delivered {
                return Round::OriginFailed;
            }
            if count < self.batch {
                return Round::Drained;
            }
        }
    }

    /// Leases up to `batch` changed counters, visiting shards round-robin.
    async fn take(
        &self,
        cursor: &mut usize,
    ) -> Result<Vec<(usize, Vec<SyncItem>)>, crate::store::StoreError> {
        // A lease outlives one post with its timeout, so only a dead instance's expires.
        let lease = self.timeout * 2 + self.interval;
        let mut taken = Vec::new();
        let mut left = self.batch;
        for i in 0..CAPACITY_SHARDS {
            if left == 0 {
                break;
            }
            let shard = (*cursor + i) % CAPACITY_SHARDS;
            let items = self.store.capacity_sync_take(shard, left, lease).await?;
            if !items.is_empty() {
                left -= items.len().min(left);
                taken.push((shard, items));
            }
        }
        *cursor = (*cursor + 1) % CAPACITY_SHARDS;
        Ok(taken)
    }

    /// POSTs one batch; true on a 2xx answer.
    async fn post(&self, taken: &[(usize, Vec<SyncItem>)]) -> bool {
        let body: Vec<serde_json::Value> = taken
            .iter()
            .flat_map(|(_, items)| items)
            .filter_map(|item| {
                let counter = item.counter?;
                let (ns, id) = item.name.split_once('/')?;
                Some(json!({
                    "ns": ns,
                    "id": id,
                    "count": counter.count,
                    "capacity": counter.capacity,
                    "version": counter.version,
                }))
            })
            .collect();
        if body.is_empty() {
            return true;
        }
        let req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                serde_json::Value::Array(body).to_string(),
            )))
            .expect("a POST with a valid URI builds");
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            // Reading the body to its end lets the connection be reused.
            let _ = resp.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) if status.is_success() => true,
            Ok(Ok(status)) => {
                tracing::warn!(%status, url = %self.url, "capacity sync: the origin refused a batch; retrying with backoff");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, url = %self.url, "capacity sync: the origin is unreachable; retrying with backoff");
                false
            }
            Err(_) => {
                tracing::warn!(url = %self.url, "capacity sync: the origin did not answer in time; retrying with backoff");
                false
            }
        }
    }
}
