//! The cache on the api listener: `POST /v1/cache/purge` by URLs, tags or path
//! prefix, optionally soft; `GET /v1/cache/entries` (paged listing by path prefix),
//! `GET /v1/cache/entries/{id}` (one entry with its stored headers) and
//! `GET /v1/cache/stats` (L1 and L2 figures) to look inside.
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
            Error::from(e)
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

/// Paths per listing page unless `limit` says otherwise, and at most.
const PAGE_PATHS: usize = 100;
const MAX_PAGE_PATHS: usize = 1000;

/// The value of query parameter `name`, percent-decoded.
fn query_param(req: &ApiRequest, name: &str) -> Result<Option<String>, Error> {
    let Some(q) = req.query.as_deref() else {
        return Ok(None);
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map(|v| Some(v.into_owned()))
                .map_err(|_| Error::bad_request(name, format!("{name} is not valid UTF-8")));
        }
    }
    Ok(None)
}

fn tier_labels(tiers: &[crate::cache::Tier]) -> Vec<&'static str> {
    tiers.iter().map(|t| t.label()).collect()
}

/// One entry as JSON; `headers` adds the stored header fields.
fn entry_json(v: &crate::cache::inspect::EntryView, headers: bool) -> serde_json::Value {
    use crate::cache::entry::Freshness;
    use crate::clock::now_ms;
    let r = v.entry.response();
    let now = now_ms();
    let (fresh, stale) = match r.freshness_at(now) {
        Freshness::Fresh { remaining } => (remaining, 0),
        Freshness::Stale { stale_for } => (0, stale_for),
    };
    let variant: serde_json::Map<String, serde_json::Value> = r
        .variant
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone().map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect();
    let mut out = json!({
        "id": v.id.to_string(),
        "path": v.path,
        "tiers": tier_labels(&v.tiers),
        "status": r.status.as_u16(),
        "negative": v.entry.is_negative(),
        "ageSeconds": r.age_at(now) / 1000,
        "freshSeconds": fresh / 1000,
        "staleSeconds": stale / 1000,
        "expiresInSeconds": r.hard_ttl_at(now) / 1000,
        "bytes": v.entry.weight(),
        "bodyBytes": r.body.len(),
        "tags": r.tags,
        "variant": variant,
    });
    if headers {
        out["headers"] = r
            .headers
            .iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect();
    }
    out
}

/// `GET /v1/cache/entries?prefix=/api/&limit=100&after=<path>`: the entries of the
/// cached paths under `prefix` (canonical, as purges take it), `limit` paths a page;
/// `next` is the `after` of the next page.
pub fn entries(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let policy = state.runtime.load().config.server.path;
        let prefix = match query_param(&req, "prefix")? {
            Some(p) => purge_path("prefix", &p, &policy)?,
            None => "/".to_string(),
        };
        let limit = match query_param(&req, "limit")? {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_PATHS).contains(n))
                .ok_or_else(|| {
                    Error::bad_request("limit", format!("limit must be 1 to {MAX_PAGE_PATHS}"))
                })?,
            None => PAGE_PATHS,
        };
        let after = query_param(&req, "after")?;
        let page = state
            .cache
            .list(&prefix, after.as_deref(), limit)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cache listing could not reach the store");
                Error::from(e)
            })?;
        let entries: Vec<_> = page.entries.iter().map(|v| entry_json(v, false)).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "entries": entries, "next": page.next }),
        ))
    })
}

/// `GET /v1/cache/entries/{id}`: one entry with its stored header fields.
pub fn entry(state: Arc<AppState>, req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        let id = req.segment("id")?;
        let found = state.cache.inspect(&id).await.map_err(|e| {
            tracing::warn!(error = %e, "cache entry could not be read from the store");
            Error::from(e)
        })?;
        match found {
            Some(v) => Ok(json_response(StatusCode::OK, &entry_json(&v, true))),
            None => Err(Error::no_cached_entry(&id)),
        }
    })
}

/// `GET /v1/cache/stats`: L1 entries and bytes, lookups per tier with hit ratios, and
/// what the store holds where it says.
pub fn stats(state: Arc<AppState>, _req: ApiRequest) -> HandlerFuture {
    Box::pin(async move {
        use crate::cache::Tier;
        let cache = &state.cache;
        let (entries, bytes) = cache.l1_size();
        let tier = |t: Tier| {
            let c = cache.counts(t);
            json!({ "hits": c.hits, "misses": c.misses, "hitRatio": c.hit_ratio() })
        };
        let mut l1 = tier(Tier::L1);
        l1["entries"] = entries.into();
        l1["bytes"] = bytes.into();
        let mut l2 = tier(Tier::L2);
        l2["backend"] = if state.store.is_memory() {
            "memory"
        } else {
            "redis"
        }
        .into();
        l2["bytes"] = state.store.memory_bytes().into();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "l1": l1, "l2": l2 }),
        ))
    })
}
