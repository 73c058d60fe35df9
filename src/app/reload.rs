//! The reloadable part of the configuration behind an `ArcSwap`: routes, TTLs, JWT
//! keys, gates. SIGHUP (and a change of the file when `reload.watch = true`) builds a
//! new `Runtime`; a reload that fails validation keeps the running one, says why in
//! the log and counts `gatehouse_config_reloads_total{result="invalid"}`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::AppState;
use crate::auth::Verifier;
use crate::config::reload::{report, verifier};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routes::Router;

/// Everything a request reads from configuration, swapped whole on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    /// The JWT verifier, when `[auth]` has keys (reloading replaces keys and empties
    /// the verified-token cache).
    pub verifier: Option<Arc<Verifier>>,
    /// The verifier's JWKS refresh task, stopped when this runtime is replaced.
    jwks_task: Option<tokio::task::JoinHandle<()>>,
}

impl Runtime {
    pub fn new(config: Config, metrics: &Arc<Metrics>) -> Result<Runtime, String> {
        let router = Router::new(&config.routes, config.server.route_matching)?;
        let verifier = verifier(&config, Some(metrics))
            .map_err(|errors| report(&errors))?
            .map(Arc::new);
        let jwks_task = verifier.as_ref().and_then(|v| v.spawn_jwks_refresh());
        Ok(Runtime {
            config: Arc::new(config),
            router,
            verifier,
            jwks_task,
        })
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
                origin: current.config.origin.clone(),
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
