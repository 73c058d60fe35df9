//! The Redis backend: standalone (`redis://`, `rediss://` over rustls), Sentinel and
//! Cluster. Connection is made in the background — gatehouse starts while Redis is
//! down, reports `gatehouse_store_up 0`, and connects when Redis returns. A monitor
//! pings every 500ms; the subscription task keeps one pub/sub connection and turns
//! its loss and return into `StoreEvent`s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::{broadcast, watch};

use super::{scripts, Channel, StoreError, StoreEvent, StoreResult};
use crate::backoff::Backoff;
use crate::config::{redact_url, StoreConfig};
use crate::metrics::Metrics;

/// One connection, standalone (or Sentinel's current master) or cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Maps a Redis error: reachability problems are `Unavailable`, the rest `Protocol`.
pub fn map_err(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

struct Shared {
    conn: ArcSwapOption<Conn>,
    /// Clients a pub/sub connection can be opened from, in order of preference.
    pubsub_clients: ArcSwapOption<Vec<redis::Client>>,
    up: AtomicBool,
    sub_live: AtomicBool,
    up_watch: watch::Sender<bool>,
}

pub struct RedisStore {
    shared: Arc<Shared>,
    prefix: String,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RedisStore {
    pub fn new(
        cfg: &StoreConfig,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<StoreEvent>,
    ) -> RedisStore {
        metrics.store_up.set(0);
        metrics.subscription_up.set(0);
        let (up_watch, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            conn: ArcSwapOption::empty(),
            pubsub_clients: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            sub_live: AtomicBool::new(false),
            up_watch,
        });
        let monitor = tokio::spawn(monitor(cfg.clone(), shared.clone(), metrics.clone()));
        let subscriber = tokio::spawn(subscribe_loop(
            cfg.key_prefix.clone(),
            shared.clone(),
            metrics,
            events,
        ));
        RedisStore {
            shared,
            prefix: cfg.key_prefix.clone(),
            tasks: Mutex::new(vec![monitor, subscriber]),
        }
    }

    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    pub async fn wait_until_up(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.up_watch.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if self.shared.up.load(Ordering::Relaxed) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.is_ok() && self.is_up()
    }

    pub fn subscription_live(&self) -> bool {
        self.shared.sub_live.load(Ordering::Relaxed)
    }

    /// The current connection, or `Unavailable` at once while none is established.
    pub fn conn(&self) -> StoreResult<Conn> {
        match self.shared.conn.load_full() {
            Some(c) => Ok((*c).clone()),
            None => Err(StoreError::Unavailable("not connected".into())),
        }
    }

    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        let mut conn = self.conn()?;
        cmd.query_async(&mut conn).await.map_err(map_err)
    }

    /// Runs a script (EVALSHA, falling back to loading it on NOSCRIPT).
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> StoreResult<T> {
        let mut conn = self.conn()?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut conn).await.map_err(map_err)
    }

    pub async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let v: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(key)).await?;
        Ok(v.map(Bytes::from))
    }

    pub async fn set_px(&self, key: &str, value: Bytes, ttl: Duration) -> StoreResult<()> {
        let _: () = self
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        Ok(())
    }

    pub async fn set_nx_px(&self, key: &str, value: &str, ttl: Duration) -> StoreResult<bool> {
        let v: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64),
            )
            .await?;
        Ok(v.is_some())
    }

    pub async fn cache_put_guarded(
        &self,
        key: &str,
        tomb: &str,
        value: Bytes,
        ttl: Duration,
        started_ms: u64,
    ) -> StoreResult<bool> {
        let ttl = (ttl.as_millis().max(1) as u64).to_string();
        let started = started_ms.to_string();
        let n: i64 = self
            .script(
                &scripts::CACHE_PUT,
                &[key, tomb],
                &[value.as_ref(), ttl.as_bytes(), started.as_bytes()],
            )
            .await?;
        Ok(n == 1)
    }

    /// One script per id (each id is its own cluster slot), run concurrently.
    pub async fn cache_purge(
        &self,
        pairs: &[(String, String)],
        now_ms: u64,
        tomb_ttl: Duration,
    ) -> StoreResult<u64> {
        let now = now_ms.to_string();
        let ttl = (tomb_ttl.as_millis().max(1) as u64).to_string();
        let futs = pairs.iter().map(|(key, tomb)| {
            let (now, ttl) = (&now, &ttl);
            async move {
                self.script::<i64>(
                    &scripts::CACHE_PURGE,
                    &[key, tomb],
                    &[now.as_bytes(), ttl.as_bytes()],
                )
                .await
            }
        });
        let mut existed = 0;
        for r in futures_util::future::join_all(futs).await {
            existed += r? as u64;
        }
        Ok(existed)
    }

    pub async fn index_add(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<u64> {
        let ttl = (ttl.as_millis().max(1) as u64).to_string();
        let mut args: Vec<&[u8]> = vec![ttl.as_bytes()];
        args.extend(members.iter().map(|m| m.as_bytes()));
        let n: i64 = self.script(&scripts::INDEX_ADD, &[key], &args).await?;
        Ok(n as u64)
    }

    pub async fn smembers(&self, key: &str) -> StoreResult<Vec<String>> {
        self.query(redis::cmd("SMEMBERS").arg(key)).await
    }

    pub async fn srem(&self, key: &str, members: &[String]) -> StoreResult<()> {
        let _: i64 = self.query(redis::cmd("SREM").arg(key).arg(members)).await?;
        Ok(())
    }

    /// ZADD GT: a path's score only grows (its latest entry's expiry).
    /// `zrange_prefix` starting after `after` (exclusive) when it is within the prefix.
    pub async fn zrange_prefix_after(
        &self,
        key: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let mut start = Vec::new();
        match after {
            Some(a) if a >= prefix => {
                start.push(b'(');
                start.extend_from_slice(a.as_bytes());
            }
            _ => {
                start.push(b'[');
                start.extend_from_slice(prefix.as_bytes());
            }
        }
        let mut end = b"[".to_vec();
        end.extend_from_slice(prefix.as_bytes());
        end.push(0xff);
        self.query(
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(start)
                .arg(end)
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(limit),
        )
        .await
    }

    pub async fn zrange_prefix(
        &self,
        key: &str,
        prefix: &str,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        self.zrange_prefix_after(key, prefix, None, limit).await
    }

    pub async fn del_if_eq(&self, key: &str, expected: &str) -> StoreResult<bool> {
        let n: i64 = self
            .script(&scripts::LEASE_RELEASE, &[key], &[expected.as_bytes()])
            .await?;
        Ok(n == 1)
    }

    pub async fn publish(&self, channel: Channel, payload: Bytes) -> StoreResult<()> {
        let name = format!("{}:{}", self.prefix, channel.name());
        let _: i64 = self
            .query(redis::cmd("PUBLISH").arg(name).arg(payload.as_ref()))
            .await?;
        Ok(())
    }

    pub fn shutdown(&self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens the connection the configuration describes, and the clients pub/sub uses.
async fn connect(cfg: &StoreConfig) -> Result<(Conn, Vec<redis::Client>), RedisError> {
    let ca = match &cfg.tls_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            RedisError::from((
                redis::ErrorKind::Io,
                "store.tls_ca_file unreadable",
                e.to_string(),
            ))
        })?),
        None => None,
    };
    let open = |url: &str| -> Result<redis::Client, RedisError> {
        match &ca {
            Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            _ => redis::Client::open(url),
        }
    };
    if !cfg.cluster.is_empty() {
        let mut builder = redis::cluster::ClusterClientBuilder::new(cfg.cluster.clone())
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.command_timeout)
            .retries(2);
        if let Some(pem) = &ca {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        let client = builder.build()?;
        let conn = client.get_async_connection().await?;
        let clients = cfg.cluster.iter().filter_map(|u| open(u).ok()).collect();
        return Ok((Conn::Cluster(conn), clients));
    }
    let client = if let Some(sen) = &cfg.sentinel {
        let mut sc = redis::sentinel::SentinelClient::build(
            sen.nodes.clone(),
            sen.master.clone(),
            None,
            redis::sentinel::SentinelServerType::Master,
        )?;
        sc.async_get_client().await?
    } else {
        open(&cfg.url)?
    };
    let mgr_cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(Some(cfg.command_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let mgr = ConnectionManager::new_with_config(client.clone(), mgr_cfg).await?;
    Ok((Conn::Single(mgr), vec![client]))
}

/// Connects, then pings every 500ms; marks the store up or down and reconnects.
async fn monitor(cfg: StoreConfig, shared: Arc<Shared>, metrics: Arc<Metrics>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut ever_up = false;
    let mut failures = 0u32;
    let target = if cfg.cluster.is_empty() {
        redact_url(&cfg.url)
    } else {
        format!(
            "cluster {:?}",
            cfg.cluster
                .iter()
                .map(|u| redact_url(u))
                .collect::<Vec<_>>()
        )
    };
    loop {
        if shared.conn.load().is_none() {
            match tokio::time::timeout(cfg.connect_timeout * 2, connect(&cfg)).await {
                Ok(Ok((conn, clients))) => {
                    shared.conn.store(Some(Arc::new(conn)));
                    shared.pubsub_clients.store(Some(Arc::new(clients)));
                    set_up(&shared, &metrics, true, &mut ever_up, &target);
                    backoff.reset();
                    failures = 0;
                }
                Ok(Err(e)) => {
                    set_up(&shared, &metrics, false, &mut ever_up, &target);
                    tracing::debug!(error = %e, "store connect failed");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
                Err(_) => {
                    set_up(&shared, &metrics, false, &mut ever_up, &target);
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(conn) = shared.conn.load_full() else {
            continue;
        };
        let mut conn = (*conn).clone();
        let ping = tokio::time::timeout(
            cfg.command_timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {
                failures = 0;
                set_up(&shared, &metrics, true, &mut ever_up, &target);
            }
            Ok(Err(e)) => {
                failures += 1;
                set_up(&shared, &metrics, false, &mut ever_up, &target);
                // A Sentinel failover leaves us on a replica (READONLY) or a dead
                // master: resolve the master again.
                let readonly = e.to_string().contains("READONLY");
                if cfg.sentinel.is_some() && (readonly || failures >= 3) {
                    shared.conn.store(None);
                }
            }
            Err(_) => {
                failures += 1;
                set_up(&shared, &metrics, false, &mut ever_up, &target);
                if cfg.sentinel.is_some() && failures >= 3 {
                    shared.conn.store(None);
                }
            }
        }
    }
}

fn set_up(shared: &Shared, metrics: &Metrics, up: bool, ever_up: &mut bool, target: &str) {
    let was = shared.up.swap(up, Ordering::Relaxed);
    if was != up {
        metrics.store_up.set(up as i64);
        let _ = shared.up_watch.send(up);
        if up {
            if *ever_up {
                metrics.store_reconnects_total.inc();
                tracing::info!(store = %target, "store reachable again");
            } else {
                tracing::info!(store = %target, "store connected");
            }
            *ever_up = true;
        } else {
            tracing::warn!(store = %target, "store unreachable; coordination answers 503, cache serves from L1 and origin");
        }
    }
}

/// Keeps one pub/sub connection subscribed to every gatehouse channel.
async fn subscribe_loop(
    prefix: String,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<StoreEvent>,
) {
    let names: Vec<(String, Channel)> = Channel::ALL
        .iter()
        .map(|c| (format!("{prefix}:{}", c.name()), *c))
        .collect();
    let mut up_rx = shared.up_watch.subscribe();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let clients = shared.pubsub_clients.load_full();
        let mut pubsub = None;
        if shared.up.load(Ordering::Relaxed) {
            for client in clients.iter().flat_map(|c| c.iter()) {
                let attempt = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut ps = client.get_async_pubsub().await?;
                    for (name, _) in &names {
                        ps.subscribe(name).await?;
                    }
                    Ok::<_, RedisError>(ps)
                })
                .await;
                if let Ok(Ok(ps)) = attempt {
                    pubsub = Some(ps);
                    break;
                }
            }
        }
        let Some(mut ps) = pubsub else {
            // Wait for the monitor to see the store, or back off.
            let _ = tokio::time::timeout(backoff.next_delay(), up_rx.changed()).await;
            continue;
        };
        backoff.reset();
        shared.sub_live.store(true, Ordering::Relaxed);
        metrics.subscription_up.set(1);
        let _ = events.send(StoreEvent::SubscriptionRestored);
        {
            let mut stream = ps.on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        let name = msg.get_channel_name();
                        if let Some((_, channel)) = names.iter().find(|(n, _)| n == name) {
                            let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                            let _ = events.send(StoreEvent::Message { channel: *channel, payload });
                        }
                    }
                    changed = up_rx.changed() => {
                        if changed.is_err() || !*up_rx.borrow() {
                            break;
                        }
                    }
                }
            }
        }
        shared.sub_live.store(false, Ordering::Relaxed);
        metrics.subscription_up.set(0);
        let _ = events.send(StoreEvent::SubscriptionLost);
        tracing::warn!("store subscription lost; L1 entries stop counting as fresh after cache.coherence_grace");
    }
}
