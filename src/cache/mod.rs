//! The tiered cache: L1 (moka, in-process) over L2 (the store). Knows `Entry`,
//! `CacheKey` and request headers, never hyper requests or auth.
//!
//! - `lookup` reads L1, then L2 (an L2 hit fills L1 with the remaining lifetime), and
//!   follows a URL's `Vary` index to the variant the request selects.
//! - `store` writes the entry (and its Vary index) to both tiers, and indexes it for
//!   purges by tag and by path. An L2 write is refused when the entry was purged after
//!   its fetch began (a tombstone), so a fill racing a purge never re-installs the old
//!   answer; the same rule guards L1 against invalidations received meanwhile.
//! - `purge_*` remove entries everywhere: L2 (with tombstones), this L1, and every
//!   other instance's L1 through the store subscription (`coherence`).
//!
//! Store errors never fail a lookup: they count as `{tier="l2",result="error"}` and
//! the request goes on to the origin.

pub mod coalesce;
pub mod coherence;
pub mod entry;
pub mod inspect;
pub mod l1;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::config::CacheConfig;
use crate::metrics::{Metrics, LOOKUP_RESULTS};
use crate::store::{Channel, Index, Store, StoreError};
use coalesce::Coalescer;
use entry::{Entry, Record, VaryIndex};
use l1::L1;

/// The identity of a cached resource: authority, normalized path and query, and the
/// request headers the route varies on (plus the user for per-user routes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub primary: Arc<str>,
    /// SHA-256 of `primary` (hex, 128 bits): the L1 key and the L2 id.
    pub id: Arc<str>,
    /// The normalized path and query, for purges by URL and prefix.
    pub path: String,
}

impl CacheKey {
    pub fn new(primary: String, path: String) -> CacheKey {
        let id = entry_id(&path_hash(&path), primary.as_bytes());
        CacheKey {
            primary: Arc::from(primary),
            id,
            path,
        }
    }

    /// The hash of this key's path (the part of its id shared by every host and
    /// variant of the path).
    pub fn path_hash(&self) -> &str {
        self.id.split_once(':').map_or(&self.id, |(p, _)| p)
    }
}

/// 64 bits of SHA-256 of a normalized path and query, in hex.
pub fn path_hash(path: &str) -> String {
    hex::encode(&Sha256::digest(path.as_bytes())[..8])
}

/// A cache id: `<path hash>:<128 bits of SHA-256 of what identifies the entry>`.
fn entry_id(path_hash: &str, bytes: &[u8]) -> Arc<str> {
    let digest = Sha256::digest(bytes);
    Arc::from(format!("{path_hash}:{}", hex::encode(&digest[..16])))
}

/// Normalizes a request header for variant selection: field lines joined, spaces
/// collapsed; content-negotiation headers (`accept*`) compared case-insensitively;
/// `Accept-Language` and `Accept-Encoding` read as the weighted lists they are, so
/// that equivalent requests share a variant (`weighted_list`).
pub fn normalize_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let parts: Vec<String> = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    if matches!(name, "accept-language" | "accept-encoding") {
        return Some(weighted_list(&parts));
    }
    let joined = parts.join(", ");
    Some(if name.starts_with("accept") {
        joined.to_ascii_lowercase()
    } else {
        joined
    })
}

/// A `qvalue` (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `0.123`, `1`, `1.000`.
fn qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The members of a weighted list (`Accept-Language`, `Accept-Encoding`) with their
/// weights in thousandths (1000 when none is given). Tokens are lower-cased (codings
/// and language tags compare case-insensitively, RFC 9110 §8.4.1, RFC 4647 §2); a
/// member whose weight does not parse is kept whole, as a token of its own; a token
/// given twice keeps its highest weight.
pub fn weighted_members(parts: &[String]) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    for part in parts {
        let mut pieces = part.split(';');
        let token = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut weight = Some(1000);
        for param in pieces {
            let param = param.trim();
            weight = match param.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => qvalue(v.trim()),
                _ => None,
            };
        }
        let (token, weight) = match weight {
            Some(w) => (token, w),
            None => (part.to_ascii_lowercase().replace(' ', ""), 1000),
        };
        if token.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(t, _)| *t == token) {
            Some(slot) => slot.1 = slot.1.max(weight),
            None => out.push((token, weight)),
        }
    }
    out
}

/// The canonical form of a weighted list for variant selection: members of weight 0
/// dropped (not acceptable), the rest sorted by weight, highest first, then by token,
/// weights written as `;q=0.5` (none for 1). `en-US,en;q=0.9` and `en;q=0.90, EN-us`
/// select one variant; `en, fr;q=0.9` and `fr, en;q=0.9` do not (the preference
/// differs). A header whose members all have weight 0 is `""`, not absent.
pub fn weighted_list(parts: &[String]) -> String {
    let mut members: Vec<(String, u16)> = weighted_members(parts)
        .into_iter()
        .filter(|(_, w)| *w > 0)
        .collect();
    members.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    members
        .iter()
        .map(|(t, w)| {
            if *w == 1000 {
                t.clone()
            } else {
                let q = format!("{:03}", w);
                format!("{t};q=0.{}", q.trim_end_matches('0'))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The content codings of a stored response, outermost last (`Content-Encoding`),
/// `identity` left out.
fn content_codings(entry: &Entry) -> Vec<String> {
    entry
        .response()
        .headers
        .iter()
        .filter(|(k, _)| k == http::header::CONTENT_ENCODING)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect()
}

/// Whether a stored response may answer a request by its content codings: each
/// coding must be listed in the request's `Accept-Encoding` (`x-gzip` is `gzip`,
/// RFC 9110 §8.4.1.3), or covered by `*`, with a weight above 0 (§12.5.3). A stored
/// gzip body is never an answer to a client that did not ask for gzip, whatever the
/// origin's `Vary` said. A request without `Accept-Encoding` gets only identity from
/// the cache: §12.5.3 lets a server send it any coding, but clients that send none
/// (scripts, health checks) rarely decode one, and Varnish and Cloudflare never
/// serve them a compressed object either.
pub fn accepts_encoding(entry: &Entry, req: &HeaderMap) -> bool {
    let codings = content_codings(entry);
    if codings.is_empty() {
        return true;
    }
    let parts: Vec<String> = req
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let members = weighted_members(&parts);
    let alias = |c: &str| {
        if c == "x-gzip" {
            "gzip".to_string()
        } else {
            c.to_string()
        }
    };
    codings.iter().all(|coding| {
        let coding = alias(coding);
        let listed = members.iter().find(|(t, _)| alias(t) == coding);
        let star = members.iter().find(|(t, _)| t == "*");
        listed.or(star).is_some_and(|(_, w)| *w > 0)
    })
}

/// The request header values a variant is selected by.
pub fn variant_values(headers: &[String], req: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .iter()
        .map(|h| (h.clone(), normalize_header(req, h)))
        .collect()
}

fn variant_id(key: &CacheKey, values: &[(String, Option<String>)]) -> Arc<str> {
    let primary = &*key.primary;
    let mut s = String::with_capacity(primary.len() + 64);
    s.push_str(primary);
    for (name, value) in values {
        s.push('\u{2}');
        s.push_str(name);
        s.push('=');
        if let Some(v) = value {
            s.push_str(v);
        } else {
            s.push('\u{3}');
        }
    }
    entry_id(key.path_hash(), s.as_bytes())
}

/// The response's `Vary` field names, lower-cased; `*` is kept so callers can refuse.
pub fn vary_headers(entry: &Entry) -> Vec<String> {
    let mut names: Vec<String> = entry
        .response()
        .headers
        .iter()
        .filter(|(k, _)| k == http::header::VARY)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Records in the entry the request header values that select it among its URL's
/// variants (nothing when the response does not vary).
pub fn select_variant(entry: &mut Entry, req: &HeaderMap) {
    let vary = vary_headers(entry);
    entry.response_mut().variant = if vary.is_empty() {
        Vec::new()
    } else {
        variant_values(&vary, req)
    };
}

/// Whether `entry` is the variant this request selects (RFC 9111 §4.1), in a coding
/// it accepts: a waiter handed another request's answer may use it only then.
pub fn selects(entry: &Entry, req: &HeaderMap) -> bool {
    if !accepts_encoding(entry, req) {
        return false;
    }
    let vary = vary_headers(entry);
    if vary.is_empty() {
        return true;
    }
    let variant = &entry.response().variant;
    !variant.is_empty() && *variant == variant_values(&vary, req)
}

/// Which tier answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    L1,
    L2,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
        }
    }
}

/// The result of a lookup.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// An entry for the request (fresh or not — the caller judges). `trusted` is
    /// false for an L1 entry while the invalidation feed has been lost longer than
    /// `cache.coherence_grace`: it may then be served only under stale rules.
    Hit {
        entry: Arc<Entry>,
        tier: Tier,
        trusted: bool,
    },
    /// Nothing stored for this request (a URL cached only for other variants
    /// counts as `vary_miss` in the lookup metric).
    Miss,
}

/// When a fetch began, for the purge-race guards of both tiers.
#[derive(Clone, Copy, Debug)]
pub struct Began {
    pub ms: u64,
    pub at: Instant,
}

impl Began {
    pub fn now() -> Began {
        Began {
            ms: now_ms(),
            at: Instant::now(),
        }
    }
}

pub struct Cache {
    l1: L1,
    store: Store,
    metrics: Arc<Metrics>,
    pub coalescer: Arc<Coalescer>,
    /// Recently invalidated ids and when (guards L1 against racing fills).
    recent: moka::sync::Cache<Arc<str>, Instant>,
    /// L1 inserts of fetches begun before this instant are refused.
    flushed_at: Mutex<Instant>,
    /// Since when the invalidation feed is down, as ms after `epoch` (0: live).
    /// An atomic, not a lock: every lookup reads it.
    lost_at: AtomicU64,
    epoch: Instant,
    /// `cache_lookups_total` series resolved once (the hot path counts every lookup).
    lookups: HashMap<(Tier, &'static str), prometheus::IntCounter>,
    /// URLs whose last answer was uncacheable: they skip coalescing for a while.
    hit_for_pass: moka::sync::Cache<Arc<str>, ()>,
    /// Waiters for another instance's fetch, woken by `Channel::Wake`.
    wakes: Mutex<HashMap<Arc<str>, Arc<Notify>>>,
    /// Names this instance in its invalidation messages.
    instance: String,
    /// `[cache]` as last (re)loaded; `max_bytes` and `hit_for_pass_ttl` are fixed at
    /// start (they size structures built once).
    cfg: arc_swap::ArcSwap<CacheConfig>,
}

/// Tombstones outlive any fetch that could race the purge.
fn tomb_ttl(cfg: &CacheConfig) -> Duration {
    (cfg.lock_age * 2).max(Duration::from_secs(60))
}

impl Cache {
    pub fn new(cfg: &CacheConfig, store: Store, metrics: Arc<Metrics>) -> Cache {
        let lookups = [Tier::L1, Tier::L2]
            .into_iter()
            .flat_map(|t| LOOKUP_RESULTS.iter().map(move |r| (t, *r)))
            .map(|(t, r)| {
                let c = metrics
                    .cache_lookups_total
                    .with_label_values(&[t.label(), r]);
                ((t, r), c)
            })
            .collect();
        let l1 = L1::new(cfg.max_bytes);
        {
            // A record the memory store evicts leaves L1 at once: the indexes a purge
            // would find it by may be evicted next, and L1 must not outlive them.
            let l1 = l1.clone();
            store.on_cache_evict(move |ids| {
                for id in ids {
                    l1.remove(id);
                }
            });
        }
        Cache {
            l1,
            store,
            metrics,
            coalescer: Arc::new(Coalescer::default()),
            recent: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(tomb_ttl(cfg))
                .build(),
            flushed_at: Mutex::new(
                Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now),
            ),
            lost_at: AtomicU64::new(0),
            epoch: Instant::now(),
            lookups,
            hit_for_pass: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.hit_for_pass_ttl.max(Duration::from_millis(1)))
                .build(),
            wakes: Mutex::new(HashMap::new()),
            instance: hex::encode(rand::random::<[u8; 8]>()),
            cfg: arc_swap::ArcSwap::from_pointee(cfg.clone()),
        }
    }

    fn count(&self, tier: Tier, result: &'static str) {
        match self.lookups.get(&(tier, result)) {
            Some(c) => c.inc(),
            None => self
                .metrics
                .cache_lookups_total
                .with_label_values(&[tier.label(), result])
                .inc(),
        }
    }

    fn trusted(&self) -> bool {
        match self.lost_at.load(Ordering::Acquire) {
            0 => true,
            since => {
                let lost = self.epoch + Duration::from_millis(since - 1);
                lost.elapsed() <= self.cfg.load().coherence_grace
            }
        }
    }

    /// One record by id: L1, then L2 (filling L1). `None` on a miss in both.
    async fn get_record(
        &self,
        id: &Arc<str>,
        trusted: bool,
        counted: bool,
    ) -> Result<Option<(Arc<Record>, Tier)>, StoreError> {
        let count = |tier, result| {
            if counted {
                self.count(tier, result)
            }
        };
        if trusted {
            if let Some(slot) = self.l1.get(id) {
                return Ok(Some((slot.record, Tier::L1)));
            }
            count(Tier::L1, "miss");
        }
        let began = Instant::now();
        match self.store.cache_get(id).await? {
            None => {
                count(Tier::L2, "miss");
                Ok(None)
            }
            Some(bytes) => match entry::decode_record(bytes) {
                Ok(r) if r.hard_ttl_at(now_ms()) > 0 => {
                    let r = Arc::new(r);
                    self.l1_insert(id, r.clone(), began);
                    Ok(Some((r, Tier::L2)))
                }
                Ok(_) => {
                    count(Tier::L2, "miss");
                    Ok(None)
                }
                Err(err) => {
                    tracing::debug!(?err, "L2 record unreadable; treated as a miss");
                    count(Tier::L2, "miss");
                    Ok(None)
                }
            },
        }
    }

    /// L1, then L2, following the URL's Vary index to the request's variant; counted
    /// in `gatehouse_cache_lookups_total`.
    pub async fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> Lookup {
        self.lookup_as(key, req, true).await
    }

    /// `lookup` again for a request already counted (a leader's or a waiter's
    /// re-check): the lookup metric counts each request's lookup once.
    pub async fn recheck(&self, key: &CacheKey, req: &HeaderMap) -> Lookup {
        self.lookup_as(key, req, false).await
    }

    async fn lookup_as(&self, key: &CacheKey, req: &HeaderMap, counted: bool) -> Lookup {
        let count = |tier, result| {
            if counted {
                self.count(tier, result)
            }
        };
        let trusted = self.trusted();
        let first = match self.get_record(&key.id, trusted, counted).await {
            Ok(r) => r,
            Err(err) => {
                tracing::debug!(error = %err, "L2 lookup failed");
                count(Tier::L2, "error");
                // The store is the truth but cannot be asked: an L1 entry may still
                // serve under stale rules (stale-if-error).
                return match self.l1.get(&key.id).map(|s| s.record) {
                    Some(r) => match &*r {
                        Record::Entry(e) if accepts_encoding(e, req) => Lookup::Hit {
                            entry: e.clone(),
                            tier: Tier::L1,
                            trusted: false,
                        },
                        _ => Lookup::Miss,
                    },
                    None => Lookup::Miss,
                };
            }
        };
        let (record, tier) = match first {
            Some(x) => x,
            None => return Lookup::Miss,
        };
        let (record, tier) = match &*record {
            Record::Entry(_) => (record, tier),
            Record::Vary(index) => {
                let vid = variant_id(key, &variant_values(&index.headers, req));
                match self.get_record(&vid, trusted, counted).await {
                    Ok(Some((r, t))) if matches!(&*r, Record::Entry(_)) => (r, t),
                    _ => {
                        count(tier, "vary_miss");
                        return Lookup::Miss;
                    }
                }
            }
        };
        let Record::Entry(e) = &*record else {
            return Lookup::Miss;
        };
        if !accepts_encoding(e, req) {
            // A coding this client did not ask for (an origin that answered a coding
            // outside the request's Accept-Encoding): not its answer.
            count(tier, "vary_miss");
            return Lookup::Miss;
        }
        count(
            tier,
            if e.is_negative() {
                "negative_hit"
            } else {
                "hit"
            },
        );
        Lookup::Hit {
            entry: e.clone(),
            tier,
            trusted: trusted || tier == Tier::L2,
        }
    }

    /// The id one fetch for this request is coalesced under: the variant's own id
    /// when this instance knows the URL's Vary index, else the URL's. Requests that
    /// select different variants then never wait for each other's fetch.
    pub fn flight_key(&self, key: &CacheKey, req: &HeaderMap) -> Arc<str> {
        match self.l1.get(&key.id).map(|s| s.record) {
            Some(r) => match &*r {
                Record::Vary(index) => variant_id(key, &variant_values(&index.headers, req)),
                Record::Entry(_) => key.id.clone(),
            },
            None => key.id.clone(),
        }
    }

    /// Inserts into L1 unless an invalidation or flush came after `began`.
    fn l1_insert(&self, id: &Arc<str>, record: Arc<Record>, began: Instant) {
        if *self.flushed_at.lock().expect("flushed_at lock") >= began {
            return;
        }
        if self.recent.get(id).is_some_and(|t| t >= began) {
            return;
        }
        if let Some((path, _)) = id.split_once(':') {
            if self.recent.get(path).is_some_and(|t| t >= began) {
                return;
            }
        }
        self.l1.insert(id.clone(), record);
        if self.store.holds_record(id) == Some(false) {
            // Evicted from the memory store since it was read or written (the
            // eviction's own L1 removal came before this insert).
            self.l1.remove(id);
        }
    }

    /// Stores an entry for a request (its variant when the response varies), in L1
    /// and L2, and indexes it for purges. Returns false when a purge that came after
    /// the fetch began refused it.
    pub async fn store(
        &self,
        key: &CacheKey,
        req: &HeaderMap,
        mut entry: Entry,
        began: Began,
    ) -> bool {
        let now = now_ms();
        let ttl = entry.response().hard_ttl_at(now);
        if ttl == 0 {
            return false;
        }
        let vary = vary_headers(&entry);
        select_variant(&mut entry, req);
        let target: Arc<str> = if vary.is_empty() {
            key.id.clone()
        } else {
            variant_id(key, &entry.response().variant)
        };
        let tags = entry.response().tags.clone();
        let bytes = entry::encode(&entry);
        let entry = Arc::new(Record::Entry(Arc::new(entry)));
        let ttl_d = Duration::from_millis(ttl);
        match self
            .store
            .cache_put_guarded(&target, bytes, ttl_d, began.ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Purged after this fetch began: its answer is older than the purge.
                return false;
            }
            Err(err) => {
                tracing::debug!(error = %err, "L2 write failed; the entry lives in L1 only");
            }
        }
        self.l1_insert(&target, entry, began.at);
        if !vary.is_empty() {
            // The index lives as long as its longest-lived variant.
            let index_ttl = match self.l1.get(&key.id) {
                Some(slot) => slot.record.hard_ttl_at(now).max(ttl),
                None => ttl,
            };
            let index = Record::Vary(VaryIndex {
                headers: vary,
                expires_at: now + index_ttl,
            });
            let _ = self
                .store
                .cache_put(
                    &key.id,
                    entry::encode_record(&index),
                    Duration::from_millis(index_ttl),
                )
                .await;
            self.l1_insert(&key.id, Arc::new(index), began.at);
            let variants = Index::Variants(key.id.to_string());
            if let Ok(n) = self
                .store
                .index_add(
                    &variants,
                    &[target.to_string()],
                    Duration::from_millis(index_ttl),
                )
                .await
            {
                if n > self.cfg.load().max_variants {
                    self.trim_variants(&variants, &target).await;
                }
            }
        }
        for tag in &tags {
            let _ = self
                .store
                .index_add(&Index::Tag(tag.clone()), &[target.to_string()], ttl_d)
                .await;
        }
        let path_index = Index::Path(key.path_hash().to_string());
        let _ = self
            .store
            .index_add(&path_index, &[key.id.to_string()], ttl_d)
            .await;
        let _ = self.store.paths_add(&key.path, now + ttl).await;
        if !self.store.is_memory() {
            // A refresh here makes every other instance's L1 copy old: they drop it
            // and read the new one from L2 when next asked (no read storm).
            let mut ids = vec![target.to_string()];
            if target != key.id {
                ids.push(key.id.to_string());
            }
            self.publish_invalidation(&ids).await;
        }
        true
    }

    /// Keeps at most `cache.max_variants` variants of a URL: purges the others
    /// (never the one just stored).
    async fn trim_variants(&self, variants: &Index, keep: &Arc<str>) {
        let Ok(members) = self.store.index_members(variants).await else {
            return;
        };
        let excess = members
            .len()
            .saturating_sub(self.cfg.load().max_variants as usize);
        let victims: Vec<String> = members
            .into_iter()
            .filter(|m| m.as_str() != &**keep)
            .take(excess)
            .collect();
        let _ = self.store.index_remove(variants, &victims).await;
        let _ = self.purge_ids(victims, false).await;
    }

    /// Purges ids (and the variants of any URL among them) everywhere. `soft`
    /// marks entries stale instead of removing them.
    pub async fn purge_ids(&self, ids: Vec<String>, soft: bool) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut all = ids.clone();
        let mut lookup_error = None;
        for id in &ids {
            match self.store.index_members(&Index::Variants(id.clone())).await {
                Ok(v) => all.extend(v),
                Err(e) => lookup_error = Some(e),
            }
        }
        all.sort();
        all.dedup();
        // Locally first: even with the store down, this instance stops serving them.
        self.invalidate_local(&all);
        if let Some(e) = lookup_error {
            return Err(e);
        }
        let purged = if soft {
            self.soften(&all).await?
        } else {
            self.store
                .cache_purge(&all, now_ms(), tomb_ttl(&self.cfg.load()))
                .await?
        };
        self.publish_invalidation(&all).await;
        Ok(purged)
    }

    /// Marks entries stale in L2 (kept as long as before, so they can be
    /// revalidated or served under stale rules).
    async fn soften(&self, ids: &[String]) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut n = 0;
        for id in ids {
            let Some(bytes) = self.store.cache_get(id).await? else {
                continue;
            };
            let Ok(Record::Entry(e)) = entry::decode_record(bytes) else {
                continue;
            };
            let mut e = Arc::unwrap_or_clone(e);
            let ttl = e.response().hard_ttl_at(now);
            if ttl == 0 {
                continue;
            }
            let r = e.response_mut();
            r.freshness = r.freshness.min(r.age_at(now));
            r.keep = r.keep.max(ttl);
            self.store
                .cache_put(id, entry::encode(&e), Duration::from_millis(ttl))
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Purges every cached entry of a path (with query) for every host and variant;
    /// a hard purge also tombstones the path, so fetches of it already on their way
    /// are not stored.
    pub async fn purge_path(&self, path: &str, soft: bool) -> Result<u64, StoreError> {
        let ph = path_hash(path);
        // The path marker drops the path's L1 entries (every host and variant) here
        // at once, store or no store, and on every instance the purge reaches.
        let marker = format!("{ph}:-");
        let index = Index::Path(ph.clone());
        let ids = match self.store.index_members(&index).await {
            Ok(ids) => ids,
            Err(e) => {
                self.invalidate_local(&[marker]);
                return Err(e);
            }
        };
        let mut all = ids.clone();
        all.push(marker);
        let n = self.purge_ids(all, soft).await?;
        if !soft {
            let _ = self.store.index_remove(&index, &ids).await;
        }
        Ok(n)
    }

    /// Purges every entry whose path starts with `prefix`.
    pub async fn purge_prefix(&self, prefix: &str, soft: bool) -> Result<u64, StoreError> {
        const BATCH: usize = 1000;
        let mut total = 0;
        let mut seen = std::collections::HashSet::new();
        loop {
            let paths = self
                .store
                .paths_with_prefix(prefix, BATCH + seen.len())
                .await?;
            let fresh: Vec<String> = paths
                .into_iter()
                .filter(|p| seen.insert(p.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for p in &fresh {
                total += self.purge_path(p, soft).await?;
            }
            if fresh.len() < BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// Purges every entry carrying a tag.
    pub async fn purge_tag(&self, tag: &str, soft: bool) -> Result<u64, StoreError> {
        let index = Index::Tag(tag.to_string());
        let ids = self.store.index_members(&index).await?;
        let n = self.purge_ids(ids.clone(), soft).await?;
        if !soft {
            let _ = self.store.index_remove(&index, &ids).await;
        }
        Ok(n)
    }

    /// Drops ids from this L1 and remembers when, so racing fills do not re-insert.
    /// A path marker (`<path hash>:-`) drops every entry of the path.
    pub fn invalidate_local(&self, ids: &[String]) {
        let now = Instant::now();
        for id in ids {
            if let Some((path, entry)) = id.split_once(':') {
                self.recent.insert(Arc::from(path), now);
                if entry == "-" {
                    self.l1.invalidate_path(path);
                }
            }
            let id: Arc<str> = Arc::from(id.as_str());
            self.recent.insert(id.clone(), now);
            self.l1.remove(&id);
        }
    }

    /// Tells every other instance to drop `ids` from its L1. The first line names
    /// this instance, which ignores its own messages.
    async fn publish_invalidation(&self, ids: &[String]) {
        let payload = Bytes::from(format!("@{}\n{}", self.instance, ids.join("\n")));
        match self.store.publish(Channel::Invalidate, payload).await {
            Ok(()) => self.metrics.invalidations_sent_total.inc(),
            Err(e) => {
                tracing::warn!(error = %e, "invalidation not published; other instances keep their L1 until it expires or their feed is restored")
            }
        }
    }

    /// Applies an invalidation message from another instance.
    pub fn apply_invalidation(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let mut lines = text.lines().peekable();
        if let Some(from) = lines.peek().and_then(|l| l.strip_prefix('@')) {
            if from == self.instance {
                return;
            }
            lines.next();
        }
        self.metrics.invalidations_received_total.inc();
        let ids: Vec<String> = lines.map(str::to_string).collect();
        self.invalidate_local(&ids);
    }

    /// The invalidation feed is down: L1 entries stop counting as fresh after the
    /// coherence grace.
    pub fn feed_lost(&self) {
        // +1 so that a loss in the first millisecond is not read as "live".
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = self
            .lost_at
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The feed is back: drop every L1 entry (invalidations may have been missed)
    /// and refuse inserts from fetches begun before now.
    pub fn feed_restored(&self) {
        let was_lost = self.lost_at.swap(0, Ordering::AcqRel) != 0;
        if was_lost {
            self.clear_l1();
        }
    }

    /// Drops every L1 entry.
    pub fn clear_l1(&self) {
        *self.flushed_at.lock().expect("flushed_at lock") = Instant::now();
        self.l1.clear();
        self.metrics.l1_flushes_total.inc();
    }

    /// Wakes local waiters for another instance's fetch of `id`.
    pub fn wake(&self, id: &str) {
        if let Some(n) = self.wakes.lock().expect("wakes lock").get(id) {
            n.notify_waiters();
        }
    }

    /// A notifier for `id`'s wake-ups (register before checking, then wait).
    pub fn wake_handle(&self, id: &Arc<str>) -> Arc<Notify> {
        let mut w = self.wakes.lock().expect("wakes lock");
        w.retain(|_, n| Arc::strong_count(n) > 1);
        w.entry(id.clone()).or_default().clone()
    }

    pub fn mark_hit_for_pass(&self, id: &Arc<str>) {
        self.hit_for_pass.insert(id.clone(), ());
    }

    pub fn is_hit_for_pass(&self, id: &Arc<str>) -> bool {
        self.hit_for_pass.contains_key(id)
    }

    pub fn clear_hit_for_pass(&self, id: &Arc<str>) {
        self.hit_for_pass.invalidate(id);
    }

    /// Applies a reloaded `[cache]` (all but `max_bytes` and `hit_for_pass_ttl`).
    pub fn reconfigure(&self, cfg: &CacheConfig) {
        self.cfg.store(Arc::new(cfg.clone()));
    }

    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    pub fn refresh_gauges(&self, m: &Metrics) {
        m.l1_entries.set(self.l1.entry_count() as i64);
        m.l1_bytes.set(self.l1.weighted_size() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn req(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_language_and_encoding_normalise_order_case_space_and_weights() {
        let n = |name: &'static str, v: &[&str]| normalize_header(&req(name, v), name).unwrap();
        let al = "accept-language";
        assert_eq!(n(al, &["en-US,en;q=0.9,fr;q=0"]), "en-us,en;q=0.9");
        assert_eq!(n(al, &["en;q=0.90, EN-us"]), "en-us,en;q=0.9");
        assert_eq!(n(al, &["en;Q=0.900", "en-us ; q=1.000"]), "en-us,en;q=0.9");
        assert_eq!(n(al, &["fr;q=0.5, de;q=0.5, en"]), "en,de;q=0.5,fr;q=0.5");
        // A different preference is a different variant.
        assert_ne!(n(al, &["en, fr;q=0.9"]), n(al, &["fr, en;q=0.9"]));
        // The highest weight of a repeated token; an unparsable weight kept whole.
        assert_eq!(n(al, &["en;q=0.1, en"]), "en");
        assert_eq!(n(al, &["en;q=2"]), "en;q=2");
        let ae = "accept-encoding";
        assert_eq!(
            n(ae, &["gzip, deflate, br"]),
            n(ae, &["BR,Deflate ,  gzip"])
        );
        assert_eq!(n(ae, &["gzip;q=0, br"]), "br");
        assert_eq!(n(ae, &["gzip;q=0"]), "");
        assert_eq!(normalize_header(&HeaderMap::new(), ae), None);
        // Other accept* fields keep their order.
        assert_eq!(
            n("accept", &["Text/HTML, application/json"]),
            "text/html, application/json"
        );
    }

    fn coded(coding: Option<&'static str>, vary: Option<&'static str>) -> Entry {
        let mut e = entry::tests::sample(false);
        let r = e.response_mut();
        if let Some(c) = coding {
            r.headers.push((
                HeaderName::from_static("content-encoding"),
                HeaderValue::from_static(c),
            ));
        }
        if let Some(v) = vary {
            r.headers
                .push((HeaderName::from_static("vary"), HeaderValue::from_static(v)));
        }
        e
    }

    #[test]
    fn a_coded_body_goes_only_to_clients_that_accept_its_coding() {
        let gz = coded(Some("gzip"), None);
        let ae = |v: &[&str]| req("accept-encoding", v);
        assert!(
            !accepts_encoding(&gz, &HeaderMap::new()),
            "no Accept-Encoding: identity"
        );
        assert!(accepts_encoding(&gz, &ae(&["br, GZIP"])));
        assert!(accepts_encoding(&gz, &ae(&["x-gzip"])));
        assert!(accepts_encoding(&gz, &ae(&["br", "*;q=0.1"])));
        assert!(!accepts_encoding(&gz, &ae(&["br"])));
        assert!(!accepts_encoding(&gz, &ae(&["gzip;q=0, br"])));
        assert!(!accepts_encoding(&gz, &ae(&["*;q=0"])));
        assert!(!accepts_encoding(&gz, &ae(&[""])));
        let two = coded(Some("gzip, br"), None);
        assert!(!accepts_encoding(&two, &ae(&["gzip"])));
        assert!(accepts_encoding(
            &coded(Some("identity"), None),
            &ae(&["br"])
        ));
        assert!(accepts_encoding(&coded(None, None), &ae(&["br"])));
        assert!(accepts_encoding(&coded(None, None), &HeaderMap::new()));
    }
}
