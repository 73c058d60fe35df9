//! gatehouse: a caching, authorizing, coordinating sidecar for HTTP app servers.
//!
//! # Crate map
//!
//! | module | owns |
//! |---|---|
//! | [`app`] | the one shared `AppState`; binds the proxy, api and admin listeners; drain; reload (the `Runtime`, with its origin clients, swapped on SIGHUP / file change); [`app::load`] (`load_checked`, and `preflight`: every file `run` loads, loaded for `check` too) |
//! | [`config`] | the typed config and its named `DEFAULT_*`s; [`config::read`] (the file into the types, every problem at once), [`config::env`] (the `GATEHOUSE_*` overrides), [`config::validate`] (cross-key checks naming the key; the JWT algorithm list, route shadowing, the log filter), [`config::parse`] (durations, sizes, the key-path-aware reader) |
//! | [`path_pattern`] | route path patterns (`{name}`, `{*rest}`, prefixes), `invalidate_on` writes, templates: the one matcher config, routes and the api use |
//! | [`authority`] | the canonical authority (`Host`, `:authority`, host patterns) and host-list matching |
//! | [`target`] | the canonical request target (path, query, authority): one spelling per request, used by every rule and sent to the origin |
//! | [`routes`] | `[[routes]]` compiled to path patterns (and host lists); first match wins (a route that never can is refused by `config::validate::shadowed_by`) |
//! | [`error`] | the one error type per HTTP boundary and its single mapping to a JSON answer; `ErrorCode` (each code's spelling, status and source); a `From` per domain error (`CoordError`, `StoreError`, `OriginError`, `Rejection`, `RevokeError`, the gates' `Refusal`) |
//! | [`body`] | the boxed streaming body every listener answers with; the request body both servers produce |
//! | [`server`] | transport only: accept loop, HTTP/1.1 (hyper) + HTTP/2 (the h2 crate: h2c, ALPN), TLS, 1xx interim responses, extended CONNECT, connection limits, graceful drain |
//! | [`proxy`] | THE request path, one file per step, in call order; the miss path as its steps: [`proxy::miss`] (what a miss carries, its answer), [`proxy::coalesce`] (joining or leading a fill, per instance and per fleet), [`proxy::fill`] (the entry built from the origin's answer, one `apply` for a new answer and a 304), [`proxy::pass`] (pass-through, revoke-on-success); [`proxy::cache_status`] (`Cache-Status` as a type); [`proxy::directives`] (`Cache-Control` parsed, what `targeted` and `cache_policy` share); [`proxy::grpc`] (which messages are gRPC, deadlines, gatehouse's own answers in gRPC form) |
//! | [`auth`] | JWT verification (pinned algorithms, PEM / JWKS keys, leeway, aud any-match), token extraction, verified-token cache; `Claims` in `auth/claims.rs` |
//! | [`cache`] | L1 (moka) over L2 (store) behind one face, `Cache`; `Entry` with an explicit `Negative` variant ([`cache::entry`]); one module a job: [`cache::key`] (request → `CacheKey` and entry id, Vary variant selection), [`cache::purge`] (by URL, prefix, tag; tombstones), [`cache::coherence`] (cross-instance invalidation, the lost feed), [`cache::coalesce`] (single flight per instance, the fleet lease), [`cache::inspect`] (the api's look inside) |
//! | [`store`] | the ONE place that talks to Redis or the embedded memory store (its L2 under a byte budget); [`store::id`]: typed cache ids (`EntryId`, with its path-marker kind) and the keys they name; every Lua script of `lua/` in [`store::scripts`]; [`store::wake`], the one wait for a wake-up |
//! | [`coordination`] | capacity admission (+ origin sync), fenced locks, one-time transfers, token revocations (and the in-process view the proxy checks) over the store; no HTTP: domain errors (`CoordError`) |
//! | [`api`] | thin handlers for `/v1/...` on the api listener; the route table |
//! | [`admin`] | `/livez`, `/readyz`, `/metrics` |
//! | [`metrics`] | every collector, on a registry the app owns |
//! | [`clock`] | the one wall clock (`Clock`: system, or manual in tests) and the one RFC 3339 formatter |
//! | [`backoff`] | the one retry spacing: doubling up to a ceiling, reset on success |
//! | [`crypto`] | the process's rustls provider (ring), installed before any TLS config is built |
//! | [`logging`] | logs on stderr: text (ANSI only on a terminal) or JSON lines; the `log.level` filter check |
//! | [`demo`] | `gatehouse demo`: a demo check-in origin and gatehouse in front of it |
//!
//! # The request path (proxy listener)
//!
//! `docs/architecture.md` draws the same path as a table of steps, with each
//! module's one job.
//!
//! ```text
//! client ─► server ─► proxy::handle
//!             inbound: canonical target + authority, hop-by-hop and spoofable
//!                      headers removed ── 400/421 (one meaning per request)
//!             route = router.find(method, host, canonical path): once, params carried
//!             authorize: JWT (verified-token cache) + revocation view ── 401/403/503
//!             gates: route capacity admission, route lock ── 409/503 (freed after)
//!             request cacheable? ── no ─► pass::pass ─► origin (streamed both ways)
//!                                         successful write ─► invalidate::Write (purge)
//!             key = cache_key::for_request
//!             cache.lookup(key, headers): L1 ─► L2 ─► Vary index ─► variant
//!             cache_policy::reuse: fresh ─► answer (304 on matching validators,
//!                                          206/416 for one byte range: proxy::range)
//!                                  stale-while-revalidate ─► answer + background refresh
//!             coalesce: coalescer.join(key): leader ─► fleet lease ─► detached fill
//!                                  waiters ◄─ Stored / Uncacheable / Failed (handover)
//!             fill: origin ─► cache_policy::storable? ─► apply ─► cache.store (L1 + L2,
//!                   indexes, announce) : pass through; stale-if-error on failure
//! ```
//!
//! The api listener: `api::ROUTES` ─► `coordination` ─► `store` (one Lua script per
//! operation). The store's one subscription feeds `cache::coherence` (invalidations,
//! wake-ups, a lost feed) and `coordination::revocation` (the revocation view).
//!
//! Dependencies point one way: `app` → `server`, `proxy`, `api`, `admin`;
//! `proxy` → `cache`, `auth`, `coordination`; `api` → `coordination`; `cache`,
//! `coordination` → `store`. Nothing but `store` names a Redis command.
//! `coordination`, `store` and `auth` do not import `error`: `error` imports the
//! domain errors it maps, and holds the proxy's two (`OriginError`, the gates'
//! `Refusal`) itself, so `error` imports nothing of `proxy`. `auth` does not import `server`,
//! and inside `auth` `jwt` → `jwks` only (claims live in `auth::claims`, time in
//! `clock`). `config` is low: every module may import it, and it imports only the
//! leaves `path_pattern` and `authority` (never `app`, `routes`, `store`, `logging`,
//! `target` or `server`). `clock`, `backoff`, `crypto`, `metrics`, `body`,
//! `path_pattern` and `authority` import nothing of the crate. Check with
//! `grep -rn "crate::" src/<module>`.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod authority;
pub mod backoff;
pub mod body;
pub mod cache;
pub mod clock;
pub mod config;
pub mod coordination;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod path_pattern;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod store;
pub mod target;

pub use app::App;
pub use config::Config;
