//! Test support, split by what each part starts: real `redis-server` processes on
//! free ports (never 6379), a Sentinel and a Redis Cluster of real processes
//! (`redis`), the store a test runs against (`store`), a counting origin on
//! 127.0.0.1:0 whose answers a `Gate` can hold (`origin`), gatehouse itself on real
//! listeners (`gatehouse`), the gatehouse binary as a child process (`process`), the
//! keys, certificates and TLS servers the TLS tests need (`tls`) and the JWTs the
//! auth tests send (`jwt`). Everything is started and stopped by the tests
//! themselves. Every public name is re-exported here, so a test file needs only
//! `mod support;` and `use support::*;`.

#![allow(dead_code)]

mod gatehouse;
mod jwt;
mod origin;
mod process;
mod redis;
mod store;
mod tls;

// Each test binary uses some of these, none uses all.
#[allow(unused_imports)]
pub use self::gatehouse::*;
#[allow(unused_imports)]
pub use self::jwt::*;
#[allow(unused_imports)]
pub use self::origin::*;
#[allow(unused_imports)]
pub use self::process::*;
#[allow(unused_imports)]
pub use self::redis::*;
#[allow(unused_imports)]
pub use self::store::*;
#[allow(unused_imports)]
pub use self::tls::*;

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound and released; a race is retried by callers).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `check` until it holds or `within` passes (for effects that happen in
/// the background, e.g. pub/sub delivery); returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `check` holds, at most 10s, and panics naming `what` when it never
/// does: the bounded wait for a moment a test must be sure of before it goes on.
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(Duration::from_secs(10), check).await,
        "never: {what}"
    );
}

/// Awaits `fut`, at most 10s, and panics naming `what` when it does not finish: for
/// answers that must come while an origin answer is still held at a `Gate`.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(v) => v,
        Err(_) => panic!("not within 10s: {what}"),
    }
}

/// `eventually` for code outside a runtime (starting processes): polls `check`
/// until it holds or `within` passes; returns whether it held.
pub fn eventually_blocking(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A unique key prefix for a test.
pub fn prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test:{test}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
