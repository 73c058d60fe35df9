//! Builds the one shared `AppState` and binds the proxy, api and admin listeners.
//! `App::start` binds every port or fails naming the listener; `App::shutdown` turns
//! readiness false first, stops accepting, and lets in-flight requests finish within
//! `server.shutdown_grace`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cache::Cache;
use crate::config::Config;
use crate::coordination::revocation::Revocations;
use crate::metrics::Metrics;
use crate::server::{self, Limits};
use crate::store::Store;

pub mod load;
mod reload;

pub use reload::{reload, ReloadError, Runtime};

/// Everything a request needs, shared by every listener. No global state: tests run
/// many instances in one process.
pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    pub config_path: Option<PathBuf>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<Cache>,
    /// Revocation records and this instance's view of them (kept current by the store
    /// subscription).
    pub revocations: Arc<Revocations>,
    pub listeners_bound: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Upgraded (WebSocket) connections, closed after the listeners have drained.
    pub tunnels: crate::proxy::upgrade::Tunnels,
}

impl AppState {
    /// Builds everything a reload may replace, or says why not; origins whose table
    /// did not change keep their pools.
    pub fn build_runtime(&self, config: Config) -> Result<Runtime, String> {
        Runtime::new(config, &self.metrics, Some(&self.runtime.load()))
    }

    /// Updates gauges read at scrape time.
    pub fn refresh_gauges(&self) {
        self.cache.refresh_gauges(&self.metrics);
        self.metrics.store_up.set(self.store.is_up() as i64);
        self.store.refresh_gauges();
    }
}

/// A running gatehouse: its bound addresses and the handle to stop it.
pub struct App {
    pub proxy_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown_tx: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Starts gatehouse with a validated config. `config_path` enables reloads.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<App> {
        crate::crypto::install_provider();
        // Everything that loads from files is loaded before a port is bound.
        let problems = load::preflight(&config);
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid configuration: {}",
                crate::config::report(&problems)
            );
        }
        let metrics = Arc::new(Metrics::new());
        let tls = match &config.server.tls {
            Some(t) => Some(
                server::tls::acceptor(t).map_err(|e| anyhow::anyhow!(crate::config::report(&e)))?,
            ),
            None => None,
        };
        let runtime = Runtime::new(config.clone(), &metrics, None).map_err(anyhow::Error::msg)?;
        let bind = |addr: SocketAddr, name: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind the {name} listener on {addr}"))
        };
        let proxy_listener = bind(config.server.listen, "proxy (server.listen)").await?;
        let api_listener = bind(config.server.api_listen, "api (server.api_listen)").await?;
        let admin_listener =
            bind(config.server.admin_listen, "admin (server.admin_listen)").await?;

        let store = Store::new(&config.store, metrics.clone());
        if !store.wait_until_up(config.store.connect_timeout).await {
            tracing::warn!(
                "store not reachable at start; serving from L1 and the origin until it is"
            );
        }
        let cache = Arc::new(Cache::new(&config.cache, store.clone(), metrics.clone()));
        let revocations = Arc::new(Revocations::new(store.clone(), metrics.clone()));
        let state = Arc::new(AppState {
            runtime: ArcSwap::from_pointee(runtime),
            config_path,
            store,
            metrics,
            cache,
            revocations,
            listeners_bound: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            tunnels: Default::default(),
        });

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let limits = Limits::from_config(&config.server);
        let grace = config.server.shutdown_grace;
        let proxy_addr = proxy_listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let servers = vec![
            server::serve(
                "proxy",
                proxy_listener,
                tls,
                Arc::new(crate::proxy::Proxy {
                    state: state.clone(),
                    tls: config.server.tls.is_some(),
                }),
                limits,
                Some(&state.metrics),
                shutdown_rx.clone(),
                grace,
            ),
            server::serve(
                "api",
                api_listener,
                None,
                Arc::new(crate::api::Api {
                    state: state.clone(),
                }),
                limits,
                Some(&state.metrics),
                shutdown_rx.clone(),
                grace,
            ),
            server::serve(
                "admin",
                admin_listener,
                None,
                Arc::new(crate::admin::Admin {
                    state: state.clone(),
                }),
                limits,
                Some(&state.metrics),
                shutdown_rx,
                grace,
            ),
        ];
        let mut background = reload::spawn_reloaders(state.clone());
        background.push(crate::cache::coherence::spawn(
            state.cache.clone(),
            &state.store,
        ));
        background.push(crate::cache::coherence::spawn_trim(state.store.clone()));
        background.extend(crate::coordination::capacity_sync::spawn(
            state.store.clone(),
            state.metrics.clone(),
            &config.capacity,
            &config.origin,
        ));
        background.push(state.revocations.spawn_subscriber());
        state.listeners_bound.store(true, Ordering::SeqCst);
        tracing::info!(%proxy_addr, %api_addr, %admin_addr, store = ?config.store.backend, origin = %config.origin.url, origins = ?config.origins.keys().collect::<Vec<_>>(), "gatehouse listening");
        Ok(App {
            proxy_addr,
            api_addr,
            admin_addr,
            state,
            shutdown_tx,
            servers,
            background,
        })
    }

    /// Readiness turns 503, listeners stop accepting, in-flight requests finish
    /// within `server.shutdown_grace`; then background tasks stop.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let delay = self.state.runtime.load().config.server.drain_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let _ = self.shutdown_tx.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        // Last: upgraded connections, which no listener's drain waits for.
        self.state.tunnels.close_all();
        for b in self.background {
            b.abort();
        }
        self.state.store.shutdown();
    }
}
