//! Which store a test runs against, and `both_stores!` to run one body on each.

use super::RedisServer;

/// Which store a test runs against.
pub enum TestStore {
    Memory,
    Redis(RedisServer),
}

impl TestStore {
    pub fn memory() -> TestStore {
        TestStore::Memory
    }

    pub fn redis() -> TestStore {
        TestStore::Redis(RedisServer::start())
    }

    /// The `[store]` section for this store, with a key prefix unique to the test.
    pub fn toml(&self, prefix: &str) -> String {
        match self {
            TestStore::Memory => {
                format!("[store]\nbackend = \"memory\"\nkey_prefix = \"{prefix}\"\n")
            }
            TestStore::Redis(r) => format!(
                "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n",
                r.url()
            ),
        }
    }

    pub fn redis_server(&mut self) -> Option<&mut RedisServer> {
        match self {
            TestStore::Redis(r) => Some(r),
            TestStore::Memory => None,
        }
    }
}

/// Runs the same async test body against the memory store and a real Redis.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let f = $body;
                f($crate::support::TestStore::memory()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let f = $body;
                f($crate::support::TestStore::redis()).await;
            }
        }
    };
}
