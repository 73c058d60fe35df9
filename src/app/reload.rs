//! The reloadable part of the configuration behind an `ArcSwap`: routes, TTLs, JWT
//! keys, gates, origins (a changed or added origin gets a new client and pool; one
//! left unchanged keeps its pool). SIGHUP (and a change of the file when `reload.watch = true`) builds a
//! new `Runtime`; a reload that fails validation keeps the running one, says why in
//! the log and counts `gatehouse_config_reloads_total{result="invalid"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::load::verifier;
use super::AppState;
use crate::auth::Verifier;
use crate::config::{report, Config};
use crate::metrics::Metrics;
use crate::proxy::origin::Origin;
use crate::routes::{Route, Router};

/// Everything a request reads from configuration, swapped whole on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    /// The JWT verifier, when `[auth]` has keys (reloading replaces keys and empties
    /// the verified-token cache).
    pub verifier: Option<Arc<Verifier>>,
    /// The verifier's JWKS refresh task, stopped when this runtime is replaced.
    jwks_task: Option<tokio::task::JoinHandle<()>>,
    /// `[origin]` (as `default`) and every `[origins.NAME]`, each with its pool. A
    /// request holds the runtime it began with, so it finishes on these clients even
    /// when a reload has swapped in others.
    pub origins: HashMap<String, Arc<Origin>>,
}

impl Runtime {
    /// Builds the runtime `config` describes. Origins whose table is the same as in
    /// `previous` keep their client (and its pooled connections); the others get new
    /// ones.
    pub fn new(
        config: Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, String> {
        let router = Router::new(&config.routes, config.server.route_matching)?;
        let verifier = verifier(&config, Some(metrics))
            .map_err(|errors| report(&errors))?
            .map(Arc::new);
        let mut origins = HashMap::new();
        let tables = std::iter::once((crate::config::DEFAULT_ORIGIN_NAME, &config.origin))
            .chain(config.origins.iter().map(|(n, o)| (n.as_str(), o)));
        for (name, table) in tables {
            let kept = previous
                .and_then(|p| p.origins.get(name))
                .filter(|o| o.config() == table)
                .cloned();
            let origin = match kept {
                Some(o) => o,
                None => {
                    Arc::new(Origin::new(name, table, metrics.clone()).map_err(|e| report(&e))?)
                }
            };
            origins.insert(name.to_string(), origin);
        }
        let jwks_task = verifier.as_ref().and_then(|v| v.spawn_jwks_refresh());
        Ok(Runtime {
            config: Arc::new(config),
            router,
            verifier,
            jwks_task,
            origins,
        })
    }

    /// The origin a request on `route` goes to: the route's `origin`, else `[origin]`.
    pub fn origin_for(&self, route: Option<&Route>) -> &Arc<Origin> {
        let name = route
            .and_then(|r| r.config.origin.as_deref())
            .unwrap_or(crate::config::DEFAULT_ORIGIN_NAME);
        // Validation refuses a route naming an unknown origin.
        self.origins
            .get(name)
            .or_else(|| self.origins.get(crate::config::DEFAULT_ORIGIN_NAME))
            .expect("the runtime always has [origin]")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(t) = self.jwks_task.take() {
            t.abort();
        }
    }
}

/// Why a reload did not take.
#[derive(Debug)]
pub enum ReloadError {
    NoFile,
    Invalid(Vec<String>),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::NoFile => write!(f, "started without a config file; nothing to reload"),
            ReloadError::Invalid(problems) => write!(f, "{}", problems.join("; ")),
        }
    }
}

/// Re-reads the config file and swaps in the new runtime if it is valid.
pub fn reload(state: &AppState) -> Result<(), ReloadError> {
    let Some(path) = &state.config_path else {
        return Err(ReloadError::NoFile);
    };
    let result = Config::load(path)
        .map_err(|errs| ReloadError::Invalid(errs.iter().map(|e| e.to_string()).collect()))
        .and_then(|cfg| {
            let current = state.runtime.load();
            let needs_restart = current.config.restart_needed_for(&cfg);
            if !needs_restart.is_empty() {
                tracing::warn!(
                    keys = ?needs_restart,
                    "these settings changed but need a restart; the running values stay"
                );
            }
            let merged = Config {
                server: current.config.server.clone(),
                store: current.config.store.clone(),
                api: current.config.api.clone(),
                cache: crate::config::CacheConfig {
                    max_bytes: current.config.cache.max_bytes,
                    hit_for_pass_ttl: current.config.cache.hit_for_pass_ttl,
                    ..cfg.cache.clone()
                },
                ..cfg
            };
            state
                .build_runtime(merged)
                .map_err(|e| ReloadError::Invalid(vec![e]))
        });
    match result {
        Ok(runtime) => {
            state.cache.reconfigure(&runtime.config.cache);
            state.runtime.store(Arc::new(runtime));
            state
                .metrics
                .config_reloads_total
                .with_label_values(&["ok"])
                .inc();
            tracing::info!(path = %path.display(), "config reloaded");
            Ok(())
        }
        Err(e) => {
            state
                .metrics
                .config_reloads_total
                .with_label_values(&["invalid"])
                .inc();
            match &e {
                ReloadError::Invalid(problems) => tracing::error!(
                    path = %path.display(),
                    problems = ?problems,
                    "config reload rejected; the running config stays: {e}"
                ),
                ReloadError::NoFile => tracing::error!(
                    path = %path.display(),
                    "config reload rejected; the running config stays: {e}"
                ),
            }
            Err(e)
        }
    }
}

/// Reloads on SIGHUP and, when `reload.watch` is set, when the file's modification
/// time or size changes (checked every `reload.interval`).
pub fn spawn_reloaders(state: Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered here, not in the task: once `App::start` returns (and /readyz
        // says ready) a SIGHUP must reload, never fall on the default action, which
        // ends the process.
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                let st = state.clone();
                tasks.push(tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = reload(&st);
                    }
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be handled; reload with reload.watch")
            }
        }
    }
    let cfg = state.runtime.load().config.clone();
    if cfg.reload.watch {
        if let Some(path) = state.config_path.clone() {
            let interval = cfg.reload.interval;
            tasks.push(tokio::spawn(async move {
                let mut last = stamp(&path);
                loop {
                    tokio::time::sleep(interval).await;
                    let now = stamp(&path);
                    if now != last {
                        last = now;
                        let _ = reload(&state);
                    }
                }
            }));
        }
    }
    tasks
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, &HashMap::new()).unwrap()
    }

    #[test]
    fn a_rebuilt_runtime_keeps_unchanged_origins_and_builds_changed_and_added_ones() {
        let metrics = Arc::new(Metrics::new());
        let base = "[origin]\nurl = \"http://127.0.0.1:3000\"\n[origins.auth]\nurl = \"http://127.0.0.1:4000\"\n";
        let first = Runtime::new(config(base), &metrics, None).unwrap();
        let changed =
            format!("{base}timeout = \"5s\"\n[origins.billing]\nurl = \"http://127.0.0.1:5000\"\n");
        let second = Runtime::new(config(&changed), &metrics, Some(&first)).unwrap();
        assert!(
            Arc::ptr_eq(&first.origins["default"], &second.origins["default"]),
            "unchanged: same client and pool"
        );
        assert!(
            !Arc::ptr_eq(&first.origins["auth"], &second.origins["auth"]),
            "changed: a new client"
        );
        assert_eq!(
            second.origins["auth"].config().timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(second.origins["billing"].name(), "billing");
        // Removed from the file: gone from the new runtime, still in the old one.
        let third = Runtime::new(
            config("[origin]\nurl = \"http://127.0.0.1:3000\"\n"),
            &metrics,
            Some(&second),
        )
        .unwrap();
        assert_eq!(third.origins.len(), 1);
        assert!(second.origins.contains_key("billing"));
        assert!(Arc::ptr_eq(
            &second.origins["default"],
            &third.origins["default"]
        ));
    }
}
