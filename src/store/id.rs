//! Cache ids, typed: which cache record (or which whole path) a key, an index member,
//! an invalidation or a wake-up names, and the one place their text and their store
//! keys are written and read back.
//!
//! An id is `<path hash>:<entry hash>` — 16 and 32 lower-case hex digits: 64 bits of
//! SHA-256 of the normalized path and query, and 128 bits of SHA-256 of what
//! identifies the entry (`cache::key` computes both). The path marker
//! `<path hash>:-` names every entry of a path at once (every host and variant): it
//! is never a record, but purges, tombstones and invalidations take it. The text
//! forms are what Redis keys, purge indexes, invalidation messages and
//! `/v1/cache/entries` carry; they never change with the type.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// 64 bits of SHA-256 of a normalized path and query: the part of an id shared by
/// every host and variant of the path, and its Redis Cluster hash tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathHash([u8; 8]);

impl PathHash {
    pub fn from_bytes(bytes: [u8; 8]) -> PathHash {
        PathHash(bytes)
    }

    /// `cache:{<path hash>}:tomb`: when the path was last purged.
    pub fn tomb_key(self) -> String {
        format!("cache:{{{self}}}:tomb")
    }

    /// `path:{<path hash>}`: the purge index of the path's ids.
    pub fn index_key(self) -> String {
        format!("path:{{{self}}}")
    }
}

impl fmt::Display for PathHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl FromStr for PathHash {
    type Err = BadId;

    fn from_str(s: &str) -> Result<PathHash, BadId> {
        lower_hex(s).map(PathHash).ok_or(BadId)
    }
}

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// One record: an entry, or a URL's Vary index.
    Entry,
    /// Every entry of a path (`<path hash>:-`).
    PathMarker,
}

/// A cache id: a record of a path, or the path's marker. Built from hashes
/// (`entry`, `path_marker`) or from its text (`parse`), never by string splitting
/// anywhere else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    path: PathHash,
    /// None for the path marker.
    entry: Option<[u8; 16]>,
}

/// Text that is not a cache id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a cache id")]
pub struct BadId;

impl EntryId {
    /// The id of one record of `path`: `entry` is 128 bits of what identifies it.
    pub fn entry(path: PathHash, entry: [u8; 16]) -> EntryId {
        EntryId {
            path,
            entry: Some(entry),
        }
    }

    /// The marker naming every entry of `path`.
    pub fn path_marker(path: PathHash) -> EntryId {
        EntryId { path, entry: None }
    }

    pub fn path(&self) -> PathHash {
        self.path
    }

    pub fn kind(&self) -> IdKind {
        match self.entry {
            Some(_) => IdKind::Entry,
            None => IdKind::PathMarker,
        }
    }

    pub fn is_path_marker(&self) -> bool {
        self.entry.is_none()
    }

    /// The marker of this id's path (itself when it is one).
    pub fn marker(&self) -> EntryId {
        EntryId::path_marker(self.path)
    }

    /// The length of the text form (what an L1 key weighs).
    pub fn text_len(&self) -> usize {
        match self.entry {
            Some(_) => 16 + 1 + 32,
            None => 16 + 2,
        }
    }

    /// `cache:{<path hash>}:<entry hash>`: the logical key of the record. The path
    /// hash is the Redis Cluster hash tag, so every host's and variant's entry of one
    /// path, their leases and the path's tombstone share a slot.
    pub fn record_key(&self) -> String {
        format!("cache:{{{}}}:{}", self.path, Tail(self))
    }

    /// `<record key>:lease`: the fleet's fetch lease on the id.
    pub fn lease_key(&self) -> String {
        format!("{}:lease", self.record_key())
    }

    /// `<record key>:variants`: the variant ids of a URL.
    pub fn variants_key(&self) -> String {
        format!("{}:variants", self.record_key())
    }

    /// `record_key`'s inverse; None for keys that are not records (tombstones,
    /// leases, variant indexes, anything else).
    pub fn from_record_key(logical: &str) -> Option<EntryId> {
        let (path, tail) = logical.strip_prefix("cache:{")?.split_once("}:")?;
        EntryId::from_parts(path, tail).ok()
    }

    fn from_parts(path: &str, tail: &str) -> Result<EntryId, BadId> {
        let path = path.parse()?;
        if tail == "-" {
            return Ok(EntryId::path_marker(path));
        }
        Ok(EntryId::entry(path, lower_hex(tail).ok_or(BadId)?))
    }
}

impl FromStr for EntryId {
    type Err = BadId;

    /// Exactly the text `Display` writes: 16 lower-case hex digits, `:`, then 32
    /// lower-case hex digits or `-`.
    fn from_str(s: &str) -> Result<EntryId, BadId> {
        let (path, tail) = s.split_once(':').ok_or(BadId)?;
        EntryId::from_parts(path, tail)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, Tail(self))
    }
}

/// Ids order as their text does (the marker, `-`, before the path's entries).
impl Ord for EntryId {
    fn cmp(&self, other: &EntryId) -> Ordering {
        (self.path, self.entry).cmp(&(other.path, other.entry))
    }
}

impl PartialOrd for EntryId {
    fn partial_cmp(&self, other: &EntryId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The part after the `:`.
struct Tail<'a>(&'a EntryId);

impl fmt::Display for Tail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.entry {
            Some(e) => write_hex(f, e),
            None => f.write_str("-"),
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    hex::encode_to_slice(bytes, out).map_err(|_| fmt::Error)?;
    f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)
}

/// N bytes from exactly 2N lower-case hex digits (`hex` alone would take upper case
/// too, and two spellings must not name one record).
fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const ENTRY: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    #[test]
    fn the_text_and_store_keys_are_pinned() {
        let path = PathHash::from_bytes(PATH);
        let id = EntryId::entry(path, ENTRY);
        let marker = EntryId::path_marker(path);
        assert_eq!(
            id.to_string(),
            "0123456789abcdef:00112233445566778899aabbccddeeff"
        );
        assert_eq!(marker.to_string(), "0123456789abcdef:-");
        assert_eq!(
            id.record_key(),
            "cache:{0123456789abcdef}:00112233445566778899aabbccddeeff"
        );
        assert_eq!(marker.record_key(), "cache:{0123456789abcdef}:-");
        assert_eq!(
            id.lease_key(),
            "cache:{0123456789abcdef}:00112233445566778899aabbccddeeff:lease"
        );
        assert_eq!(
            id.variants_key(),
            "cache:{0123456789abcdef}:00112233445566778899aabbccddeeff:variants"
        );
        assert_eq!(path.tomb_key(), "cache:{0123456789abcdef}:tomb");
        assert_eq!(path.index_key(), "path:{0123456789abcdef}");
        assert_eq!(id.text_len(), id.to_string().len());
        assert_eq!(marker.text_len(), marker.to_string().len());
        assert_eq!(id.kind(), IdKind::Entry);
        assert_eq!(marker.kind(), IdKind::PathMarker);
        assert_eq!(id.marker(), marker);
    }

    #[test]
    fn only_the_written_spelling_parses() {
        let ok = "0123456789abcdef:00112233445566778899aabbccddeeff";
        assert!(ok.parse::<EntryId>().is_ok());
        assert!("0123456789abcdef:-"
            .parse::<EntryId>()
            .unwrap()
            .is_path_marker());
        for bad in [
            "",
            ":",
            "abc:def",
            "0123456789abcdef",
            "0123456789ABCDEF:00112233445566778899aabbccddeeff",
            "0123456789abcdef:00112233445566778899AABBCCDDEEFF",
            "0123456789abcdef:00",
            "0000000000000000:00",
            "0123456789abcdef:tomb",
            "0123456789abcdef:00112233445566778899aabbccddeeff:lease",
            "0123456789abcdef:00112233445566778899aabbccddeeff:variants",
            "0123456789abcde:-",
            "+123456789abcdef:-",
            "0123456789abcdef:--",
        ] {
            assert_eq!(bad.parse::<EntryId>(), Err(BadId), "{bad:?}");
        }
    }

    #[test]
    fn only_record_keys_map_back_to_ids() {
        let path = PathHash::from_bytes(PATH);
        let id = EntryId::entry(path, ENTRY);
        assert_eq!(EntryId::from_record_key(&id.record_key()), Some(id.clone()));
        let marker = id.marker();
        assert_eq!(EntryId::from_record_key(&marker.record_key()), Some(marker));
        for other in [
            path.tomb_key(),
            id.lease_key(),
            id.variants_key(),
            path.index_key(),
            "tag:{x}".to_string(),
            "{paths}".to_string(),
        ] {
            assert_eq!(EntryId::from_record_key(&other), None, "{other}");
        }
    }

    fn any_id() -> impl Strategy<Value = EntryId> {
        (any::<[u8; 8]>(), proptest::option::of(any::<[u8; 16]>())).prop_map(|(p, e)| {
            let path = PathHash::from_bytes(p);
            match e {
                Some(e) => EntryId::entry(path, e),
                None => EntryId::path_marker(path),
            }
        })
    }

    proptest! {
        #[test]
        fn text_and_record_keys_round_trip(id in any_id()) {
            let text = id.to_string();
            prop_assert_eq!(text.parse::<EntryId>(), Ok(id.clone()));
            prop_assert_eq!(text.len(), id.text_len());
            prop_assert_eq!(EntryId::from_record_key(&id.record_key()), Some(id.clone()));
            prop_assert_eq!(id.path().to_string().parse::<PathHash>(), Ok(id.path()));
        }

        #[test]
        fn ids_order_as_their_text(a in any_id(), b in any_id()) {
            prop_assert_eq!(a.cmp(&b), a.to_string().cmp(&b.to_string()));
            let m = a.marker();
            prop_assert_eq!(a.cmp(&m), a.to_string().cmp(&m.to_string()));
        }

        #[test]
        fn text_parses_only_as_written(s in "[0-9a-fA-F:-]{0,52}") {
            if let Ok(id) = s.parse::<EntryId>() {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
