//! `POST /v1/cache/purge`: by URLs, tags or path prefix, optionally soft.
//!
//! A URL given as a path alone (`/api/participants/1`) purges that path (with its
//! query, if given) for every host, with all its variants; a full URL
//! (`http://host/path`) is purged the same way — the path for every host — since
//! instances behind one load balancer share hosts anyway. Paths and prefixes are
//! taken in the canonical form the proxy listener gives request targets
//! (`crate::target`, under `server.*` path policy), so `/api/p/%31` purges what
//! `/api/p/1` cached; a spelling the policy refuses is 400. `soft: true` marks the
//! entries stale (revalidated, or served under stale rules) instead of dropping them.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{ApiRequest, HandlerFuture};
use crate::app::AppState;
use crate::config::PathPolicy;
use crate::error::{json_response, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// The canonical path and query of a purge URL (path alone or absolute URL), as
/// the proxy listener's canonical request target would spell it.
fn purge_path(field: &str, url: &str, policy: &PathPolicy) -> Result<String, Error> {
    crate::target::canonical_path_and_query(url, policy).map_err(|e| {
        Error::bad_request(
            field,
            format!(
                "{url:?} must be a path (/...) or an absolute URL: {}",
                e.message()
            ),
        )
        .with_field("reason", e.reason())
    })
}

pub fn purge(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let body: PurgeBody = req.json()?;
        let given =
            body.urls.is_some() as u8 + body.tags.is_some() as u8 + body.prefix.is_some() as u8;
        if given != 1 {
            return Err(Error::bad_request(
                "urls",
                "give exactly one of \"urls\", \"tags\" or \"prefix\"",
            ));
        }
        let cache = &state.cache;
        let policy = state.runtime.load().config.server.path;
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "purge could not reach the store");
            Error::store_unavailable()
        };
        let mut purged = 0;
        let kind;
        if let Some(urls) = body.urls {
            kind = "urls";
            let paths = urls
                .iter()
                .map(|u| purge_path("urls", u, &policy))
                .collect::<Result<Vec<_>, _>>()?;
            for p in paths {
                purged += cache.purge_path(&p, body.soft).await.map_err(unavailable)?;
            }
        } else if let Some(tags) = body.tags {
            kind = "tags";
            if tags.iter().any(|t| t.is_empty()) {
                return Err(Error::bad_request("tags", "tags must be non-empty strings"));
            }
            for t in tags {
                purged += cache.purge_tag(&t, body.soft).await.map_err(unavailable)?;
            }
        } else {
            kind = "prefix";
            let prefix = body.prefix.unwrap_or_default();
            if !prefix.starts_with('/') {
                return Err(Error::bad_request("prefix", "prefix must start with '/'"));
            }
            let prefix = purge_path("prefix", &prefix, &policy)?;
            purged = cache
                .purge_prefix(&prefix, body.soft)
                .await
                .map_err(unavailable)?;
        }
        state.metrics.purges_total.with_label_values(&[kind]).inc();
        Ok(json_response(StatusCode::OK, &json!({ "purged": purged })))
    })
}
