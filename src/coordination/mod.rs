//! Coordination: typed operations over the `Store` (and `lua/` scripts) that several
//! instances share. No HTTP here: `api/` and `proxy/` call these.

pub mod revocation;
