//! Invalidation after writes (RFC 9111 §4.4): a successful POST/PUT/PATCH/DELETE
//! purges the target URI and the same-origin `Location` / `Content-Location`, plus
//! every route whose `invalidate_on` names the write (with `{param}`s substituted) —
//! on every instance, through the store.

use http::{header, HeaderMap, Method, Uri};

use super::cache_key::{host, path_and_query};
use crate::app::AppState;
use crate::app::Runtime;

/// What a write request was, kept while its response is awaited.
pub struct Write {
    method: Method,
    uri: Uri,
    host: String,
}

impl Write {
    pub fn of<B>(req: &http::Request<B>) -> Write {
        Write {
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: host(req.headers()).to_string(),
        }
    }

    /// The canonical paths (with query) this write makes stale: its own target
    /// (already canonical), and the others in their canonical form (one the policy
    /// refuses names nothing gatehouse could have cached).
    pub fn targets(&self, runtime: &Runtime, response: &HeaderMap) -> Vec<String> {
        let policy = &runtime.config.server.path;
        let mut paths = vec![path_and_query(&self.uri)];
        for h in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(v) = response.get(&h).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(u) = v.trim().parse::<Uri>() else {
                continue;
            };
            // Only the same origin: a Location elsewhere is not ours to purge.
            let same_origin = match u.authority() {
                None => true,
                Some(a) => crate::target::canonical_authority(a.as_str(), 80)
                    .or_else(|_| crate::target::canonical_authority(a.as_str(), 443))
                    .is_ok_and(|a| a == self.host),
            };
            if same_origin && u.path().starts_with('/') {
                if let Ok(p) = crate::target::canonical_path_and_query(v, policy) {
                    paths.push(p);
                }
            }
        }
        for (_, target) in runtime
            .router
            .invalidations_for(&self.method, self.uri.path())
        {
            if let Ok(p) = crate::target::canonical_path_and_query(&target, policy) {
                paths.push(p);
            }
        }
        paths.sort();
        paths.dedup();
        paths
    }

    /// Purges the targets; a store failure is logged (this instance's L1 is
    /// cleared regardless).
    pub async fn invalidate(&self, state: &AppState, runtime: &Runtime, response: &HeaderMap) {
        for path in self.targets(runtime, response) {
            if let Err(e) = state.cache.purge_path(&path, false).await {
                tracing::warn!(path = %path, error = %e, "invalidation after a write did not reach the store");
            }
        }
    }
}
