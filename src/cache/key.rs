//! How a request becomes a cache id: the `CacheKey` of a request (its primary key and
//! the path purges find it by), the id of each of its URL's variants, and the
//! normalization of the request headers a variant is selected by (RFC 9111 §4.1),
//! content codings included.

use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::entry::Entry;
use crate::store::{EntryId, PathHash};

/// The identity of a cached resource: authority, normalized path and query, and the
/// request headers the route varies on (plus the user for per-user routes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub primary: Arc<str>,
    /// The path's hash and 128 bits of SHA-256 of `primary`: the L1 key and the L2
    /// id.
    pub id: EntryId,
    /// The normalized path and query, for purges by URL and prefix.
    pub path: String,
}

impl CacheKey {
    /// `primary` is copied once into the shared key.
    pub fn new(primary: &str, path: String) -> CacheKey {
        let id = entry_id(path_hash(&path), primary.as_bytes());
        CacheKey {
            primary: Arc::from(primary),
            id,
            path,
        }
    }

    /// The hash of this key's path (the part of its id shared by every host and
    /// variant of the path).
    pub fn path_hash(&self) -> PathHash {
        self.id.path()
    }
}

/// 64 bits of SHA-256 of a normalized path and query.
pub fn path_hash(path: &str) -> PathHash {
    let digest = Sha256::digest(path.as_bytes());
    PathHash::from_bytes(digest[..8].try_into().expect("8 of 32 bytes"))
}

/// A cache id: the path's hash and 128 bits of SHA-256 of what identifies the entry.
fn entry_id(path: PathHash, bytes: &[u8]) -> EntryId {
    let digest = Sha256::digest(bytes);
    EntryId::entry(path, digest[..16].try_into().expect("16 of 32 bytes"))
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

/// The id of the variant of `key`'s URL that these request header values select.
pub(super) fn variant_id(key: &CacheKey, values: &[(String, Option<String>)]) -> EntryId {
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
    fn ids_keep_their_text() {
        // The ids every store and every instance already holds: a change here orphans
        // every cached entry and confuses a mixed-version fleet.
        let key = CacheKey::new(
            "example.com/api/participants/1",
            "/api/participants/1".into(),
        );
        assert_eq!(
            key.id.to_string(),
            "c845cd88af494ae3:8b35e58f2cb7f04c97d5e4fe9842315e"
        );
        assert_eq!(key.path_hash(), path_hash("/api/participants/1"));
        assert_eq!(key.path_hash().to_string(), "c845cd88af494ae3");
        let values = vec![
            ("accept-language".to_string(), Some("en".to_string())),
            ("x-a".to_string(), None),
        ];
        let variant = variant_id(&key, &values);
        assert_eq!(variant.path(), key.path_hash());
        assert_eq!(
            variant.to_string(),
            "c845cd88af494ae3:a0fd482f8cb3227a90cd88a707711486"
        );
        assert_ne!(variant, key.id);
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
        let mut e = super::super::entry::tests::sample(false);
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
