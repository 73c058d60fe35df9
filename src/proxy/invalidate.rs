//! Invalidation after writes (RFC 9111 §4.4): a successful POST/PUT/PATCH/DELETE
//! purges the target URI and the same-origin `Location` / `Content-Location`, plus
//! every route whose `invalidate_on` names the write (with `{param}`s substituted) —
//! on every instance, through the store.

use http::{header, HeaderMap, Method, Uri};

use super::cache_key::{authority, normalize_path, path_and_query};
use crate::app::AppState;
use crate::config::reload::Runtime;

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
            host: authority(req.uri(), req.headers()),
        }
    }

    /// The paths (with query) this write makes stale.
    pub fn targets(&self, runtime: &Runtime, response: &HeaderMap) -> Vec<String> {
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
                Some(a) => {
                    let a = a.as_str().to_ascii_lowercase();
                    a == self.host || a.strip_suffix(":80") == Some(self.host.as_str())
                }
            };
            if same_origin && u.path().starts_with('/') {
                paths.push(path_and_query(&u));
            }
        }
        for (_, target) in runtime
            .router
            .invalidations_for(&self.method, self.uri.path())
        {
            paths.push(normalize_path(&target));
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
