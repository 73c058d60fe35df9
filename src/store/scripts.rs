//! Every Lua script the store runs on Redis, one file each in `lua/`, compiled in
//! (a missing file is a compile error) and hashed once on first use. `RedisStore::script`
//! runs them by EVALSHA and loads a script again on NOSCRIPT (a Redis restart or
//! `SCRIPT FLUSH`). The memory store has a twin of each in Rust.

use std::sync::LazyLock;

use redis::Script;

macro_rules! scripts {
    ($($name:ident = $file:literal;)+) => {
        $(
            #[doc = concat!("`lua/", $file, "`")]
            pub static $name: LazyLock<Script> =
                LazyLock::new(|| Script::new(include_str!(concat!("../../lua/", $file))));
        )+

        /// Every script, by file name (for tests that check `lua/` is complete).
        #[cfg(test)]
        pub(crate) fn all() -> Vec<(&'static str, &'static Script)> {
            vec![$(($file, &*$name)),+]
        }
    };
}

scripts! {
    CACHE_PUT = "cache_put.lua";
    CACHE_PURGE = "cache_purge.lua";
    INDEX_ADD = "index_add.lua";
    PATHS_ADD = "paths_add.lua";
    PATHS_TRIM = "paths_trim.lua";
    LEASE_RELEASE = "lease_release.lua";
    REVOCATION_PUT = "revocation_put.lua";
    CAPACITY_ADMIT = "capacity_admit.lua";
    CAPACITY_SET = "capacity_set.lua";
    CAPACITY_RELEASE = "capacity_release.lua";
    CAPACITY_READ = "capacity_read.lua";
    CAPACITY_SYNC_TAKE = "capacity_sync_take.lua";
    CAPACITY_SYNC_SETTLE = "capacity_sync_settle.lua";
    LOCK_ACQUIRE = "lock_acquire.lua";
    LOCK_RENEW = "lock_renew.lua";
    LOCK_RELEASE = "lock_release.lua";
    LOCK_STATUS = "lock_status.lua";
    TRANSFER_CREATE = "transfer_create.lua";
    TRANSFER_CLAIM = "transfer_claim.lua";
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_file_in_lua_is_loaded_and_nothing_else() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
            .expect("lua/ readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lua"))
            .collect();
        let loaded: BTreeSet<String> = super::all().iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(loaded, on_disk);
        let hashes: BTreeSet<String> = super::all()
            .iter()
            .map(|(_, s)| s.get_hash().to_string())
            .collect();
        assert_eq!(
            hashes.len(),
            on_disk.len(),
            "two scripts with the same text"
        );
    }
}
