//! The canonical request target: one spelling per request, computed once before
//! routing and used by every rule gatehouse enforces (route match, auth mode, gates,
//! `key_by`, the cache key, purge, invalidation) and sent to the origin as is, so
//! what the origin receives is exactly what was matched.
//!
//! Path (RFC 3986 §6.2.2):
//! - percent-encoded unreserved characters are decoded (`%41` → `A`, `%2e` → `.`),
//!   other percent-encodings keep their encoding with upper-case hex (`%2f` → `%2F`);
//! - bytes that are not path characters (non-ASCII, `"`, `{`, `|`, …) are
//!   percent-encoded;
//! - dot-segments are removed (RFC 3986 §5.2.4; `..` never climbs above `/`);
//! - what stays ambiguous gets the answer the config gives (`server.escaped_slash`,
//!   `server.backslash`, `server.duplicate_slashes`, `server.invalid_encoding`), by
//!   default 400; `%00` is always refused.
//!
//! Query: the same percent-encoding rules, nothing else (no dot-segments, `+` stays
//! `+`); an empty query is dropped.
//!
//! Authority: lower-cased, a default port dropped, one trailing dot dropped; userinfo
//! or any character outside a host name / IP literal is refused (the rules live in
//! the leaf [`crate::authority`], which config validation uses too).
//!
//! Every function here is total: any input gives a canonical form or an error, never
//! a panic, and a canonical form is its own canonical form.

use std::borrow::Cow;

pub use crate::authority::{canonical_authority, host_allowed, host_name, HostError};
use crate::config::{Backslash, DuplicateSlashes, EscapedSlash, InvalidEncoding, PathPolicy};

/// Why a path or query has no canonical form under the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not `/...` (nor `*` where allowed).
    NotOriginForm,
    /// `%2F` with `server.escaped_slash = "reject"`.
    EncodedSlash,
    /// `\` or `%5C` with `server.backslash = "reject"`.
    Backslash,
    /// `%00`.
    Nul,
    /// `//` with `server.duplicate_slashes = "reject"`.
    DuplicateSlash,
    /// `%` not followed by two hex digits, with `server.invalid_encoding = "reject"`.
    InvalidEncoding,
    /// Percent-encoded bytes that are not UTF-8, with `server.invalid_encoding = "reject"`.
    InvalidUtf8,
}

impl PathError {
    /// The `reason` label and JSON field.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not-origin-form",
            PathError::EncodedSlash => "encoded-slash",
            PathError::Backslash => "backslash",
            PathError::Nul => "nul",
            PathError::DuplicateSlash => "duplicate-slash",
            PathError::InvalidEncoding => "invalid-encoding",
            PathError::InvalidUtf8 => "invalid-utf8",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "the request target must be a path starting with '/'",
            PathError::EncodedSlash => {
                "the path contains an encoded slash (%2F), refused by server.escaped_slash"
            }
            PathError::Backslash => {
                "the path contains a backslash (\\ or %5C), refused by server.backslash"
            }
            PathError::Nul => "the path contains an encoded NUL (%00)",
            PathError::DuplicateSlash => {
                "the path contains an empty segment (//), refused by server.duplicate_slashes"
            }
            PathError::InvalidEncoding => {
                "the target contains '%' not followed by two hex digits, refused by server.invalid_encoding"
            }
            PathError::InvalidUtf8 => {
                "the path's percent-encoded bytes are not UTF-8, refused by server.invalid_encoding"
            }
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// pchar without `%` (RFC 3986 §3.3): unreserved, sub-delims, `:` and `@`.
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a `%XX` at `bytes[i]` encodes, if it is one.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(i + 1)?)?;
    let lo = hex_value(*bytes.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Whether a path is already canonical and free of anything the policy judges, so
/// the common request costs one scan and no allocation.
fn path_is_plain(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for i in 1..=bytes.len() {
        let end = i == bytes.len();
        if end || bytes[i] == b'/' {
            let seg = &bytes[start..i];
            if seg == b"." || seg == b".." || (seg.is_empty() && !end) {
                return false;
            }
            start = i + 1;
        } else if !is_pchar(bytes[i]) {
            return false;
        }
    }
    true
}

/// The canonical form of a request path (without query).
pub fn canonical_path<'a>(raw: &'a str, policy: &PathPolicy) -> Result<Cow<'a, str>, PathError> {
    let bytes = raw.as_bytes();
    if path_is_plain(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut segments: Vec<String> = Vec::new();
    let mut cur = String::new();
    // Whether any byte >= 0x80 is in the path: then the decoded bytes must be UTF-8.
    let mut high = false;
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'/' => {
                segments.push(std::mem::take(&mut cur));
                i += 1;
            }
            b'%' => match escape_at(bytes, i) {
                Some(v) => {
                    i += 3;
                    match v {
                        0 => return Err(PathError::Nul),
                        b'/' => match policy.escaped_slash {
                            EscapedSlash::Reject => return Err(PathError::EncodedSlash),
                            EscapedSlash::Keep => cur.push_str("%2F"),
                            EscapedSlash::Decode => segments.push(std::mem::take(&mut cur)),
                        },
                        b'\\' => backslash(policy, &mut segments, &mut cur)?,
                        v if is_unreserved(v) => cur.push(v as char),
                        v => {
                            high |= v >= 0x80;
                            push_escaped(&mut cur, v);
                        }
                    }
                }
                None => match policy.invalid_encoding {
                    InvalidEncoding::Reject => return Err(PathError::InvalidEncoding),
                    InvalidEncoding::Escape => {
                        cur.push_str("%25");
                        i += 1;
                    }
                },
            },
            b'\\' => {
                backslash(policy, &mut segments, &mut cur)?;
                i += 1;
            }
            b if is_pchar(b) => {
                cur.push(b as char);
                i += 1;
            }
            b => {
                high |= b >= 0x80;
                push_escaped(&mut cur, b);
                i += 1;
            }
        }
    }
    segments.push(cur);
    if high
        && policy.invalid_encoding == InvalidEncoding::Reject
        && std::str::from_utf8(&percent_decode(&segments.join("/"))).is_err()
    {
        return Err(PathError::InvalidUtf8);
    }
    let last = segments.len() - 1;
    if segments[..last].iter().any(String::is_empty) {
        match policy.duplicate_slashes {
            DuplicateSlashes::Reject => return Err(PathError::DuplicateSlash),
            DuplicateSlashes::Merge => {
                let mut idx = 0;
                segments.retain(|s| {
                    idx += 1;
                    idx == last + 1 || !s.is_empty()
                });
            }
            DuplicateSlashes::Keep => {}
        }
    }
    // RFC 3986 §5.2.4 on whole segments: "." is dropped, ".." drops the one before;
    // either as the last segment leaves the path ending in "/".
    let n = segments.len();
    let mut out: Vec<String> = Vec::with_capacity(n);
    for (idx, s) in segments.into_iter().enumerate() {
        let is_last = idx + 1 == n;
        match s.as_str() {
            "." => {}
            ".." => {
                out.pop();
            }
            _ => {
                out.push(s);
                continue;
            }
        }
        if is_last {
            out.push(String::new());
        }
    }
    let mut path = String::with_capacity(raw.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

fn backslash(
    policy: &PathPolicy,
    segments: &mut Vec<String>,
    cur: &mut String,
) -> Result<(), PathError> {
    match policy.backslash {
        Backslash::Reject => return Err(PathError::Backslash),
        Backslash::Keep => cur.push_str("%5C"),
        Backslash::Slash => segments.push(std::mem::take(cur)),
    }
    Ok(())
}

/// Every `%XX` decoded (for the UTF-8 check; the text is already canonical).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = escape_at(bytes, i) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Query characters kept as they are: pchar, `/` and `?` (RFC 3986 §3.4).
fn is_query_char(b: u8) -> bool {
    is_pchar(b) || b == b'/' || b == b'?'
}

/// The canonical form of a query (without the `?`); `%00`, `%2F` and `%5C` are data
/// here and kept encoded.
pub fn canonical_query<'a>(raw: &'a str, policy: &PathPolicy) -> Result<Cow<'a, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.iter().all(|&b| is_query_char(b)) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            match escape_at(bytes, i) {
                Some(v) if is_unreserved(v) => out.push(v as char),
                Some(v) => push_escaped(&mut out, v),
                None => match policy.invalid_encoding {
                    InvalidEncoding::Reject => return Err(PathError::InvalidEncoding),
                    InvalidEncoding::Escape => {
                        out.push_str("%25");
                        i += 1;
                        continue;
                    }
                },
            }
            i += 3;
        } else {
            if is_query_char(b) {
                out.push(b as char);
            } else {
                push_escaped(&mut out, b);
            }
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

/// The canonical `path?query` of a request target given as text (what purges and
/// invalidations name); an absolute URL's path and query count.
pub fn canonical_path_and_query(raw: &str, policy: &PathPolicy) -> Result<String, PathError> {
    let raw = raw.trim();
    let pq = match raw.find("://") {
        Some(scheme_end) if raw[..scheme_end].bytes().all(|b| b.is_ascii_alphabetic()) => {
            let rest = &raw[scheme_end + 3..];
            rest.find(['/', '?']).map_or("/", |i| &rest[i..])
        }
        _ => raw,
    };
    let pq = pq.split('#').next().unwrap_or("");
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    };
    let path = if path.is_empty() && query.is_some() {
        "/"
    } else {
        path
    };
    let mut out = canonical_path(path, policy)?.into_owned();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(&canonical_query(q, policy)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> PathPolicy {
        PathPolicy::default()
    }

    fn canon(p: &str) -> Result<String, PathError> {
        canonical_path(p, &strict()).map(Cow::into_owned)
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_hex_upper_cased() {
        assert_eq!(canon("/api/m%65").unwrap(), "/api/me");
        assert_eq!(canon("/s/check-%69n").unwrap(), "/s/check-in");
        assert_eq!(canon("/a%7euser/%41").unwrap(), "/a~user/A");
        assert_eq!(canon("/a%3bb%c3%a9").unwrap(), "/a%3Bb%C3%A9");
        assert_eq!(canon("/café").unwrap(), "/caf%C3%A9");
        assert_eq!(canon("/a\"b{c}").unwrap(), "/a%22b%7Bc%7D");
        assert_eq!(canon("/plain/path-1.json").unwrap(), "/plain/path-1.json");
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        for (input, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/./b", "/a/b"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/api/x/%2e%2e/me", "/api/me"),
            ("/api/x/.%2E/me", "/api/me"),
            ("/.", "/"),
            ("/a/..b/c", "/a/..b/c"),
        ] {
            assert_eq!(canon(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn ambiguous_spellings_follow_the_policy() {
        assert_eq!(canon("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(canon("/a\\b"), Err(PathError::Backslash));
        assert_eq!(canon("/a%5cb"), Err(PathError::Backslash));
        assert_eq!(canon("/a%00"), Err(PathError::Nul));
        assert_eq!(canon("/a//b"), Err(PathError::DuplicateSlash));
        assert_eq!(canon("//a"), Err(PathError::DuplicateSlash));
        assert_eq!(canon("/100%"), Err(PathError::InvalidEncoding));
        assert_eq!(canon("/a%zz"), Err(PathError::InvalidEncoding));
        assert_eq!(canon("/é%"), Err(PathError::InvalidEncoding));
        assert_eq!(canon("/%c3"), Err(PathError::InvalidUtf8));
        assert_eq!(canon("/%ff%fe"), Err(PathError::InvalidUtf8));
        assert_eq!(canon("relative"), Err(PathError::NotOriginForm));
        assert_eq!(canon(""), Err(PathError::NotOriginForm));
        // A trailing slash is not an empty segment.
        assert_eq!(canon("/a/").unwrap(), "/a/");

        let lenient = PathPolicy {
            escaped_slash: EscapedSlash::Keep,
            backslash: Backslash::Slash,
            duplicate_slashes: DuplicateSlashes::Merge,
            invalid_encoding: InvalidEncoding::Escape,
        };
        let c = |p| canonical_path(p, &lenient).unwrap().into_owned();
        assert_eq!(c("/a%2fb"), "/a%2Fb");
        assert_eq!(c("/a%2f..%2fb"), "/a%2F..%2Fb");
        assert_eq!(c("/a\\..\\b"), "/b");
        assert_eq!(c("/a//b///c/"), "/a/b/c/");
        assert_eq!(c("/100%"), "/100%25");
        assert_eq!(c("/%c3"), "/%C3");
        let decode = PathPolicy {
            escaped_slash: EscapedSlash::Decode,
            ..strict()
        };
        assert_eq!(
            canonical_path("/a%2f..%2fme", &decode).unwrap(),
            "/me",
            "a decoded slash is a separator, dot-segments included"
        );
    }

    #[test]
    fn multi_byte_characters_next_to_bad_escapes_never_panic() {
        for p in ["/é%", "/%é", "/%%é", "/a%é1", "/%1é", "/日本%2", "/%e6%97"] {
            let _ = canon(p);
            let _ = canonical_query(&p[1..], &strict());
            let _ = canonical_path_and_query(p, &strict());
        }
    }

    #[test]
    fn queries_keep_reserved_escapes_and_decode_unreserved_ones() {
        let q = |s| canonical_query(s, &strict()).map(Cow::into_owned);
        assert_eq!(q("a=%41&b=%2f&c=+").unwrap(), "a=A&b=%2F&c=+");
        assert_eq!(q("x=%00").unwrap(), "x=%00");
        assert_eq!(q("p=/a/../b?").unwrap(), "p=/a/../b?");
        assert_eq!(q("x=é").unwrap(), "x=%C3%A9");
        assert_eq!(q("x=%"), Err(PathError::InvalidEncoding));
    }

    #[test]
    fn path_and_query_text_for_purges() {
        let p = |s| canonical_path_and_query(s, &strict());
        assert_eq!(p("/api/p/%31?x=%41").unwrap(), "/api/p/1?x=A");
        assert_eq!(p("http://Host:8080/a/./b?").unwrap(), "/a/b");
        assert_eq!(p("https://h").unwrap(), "/");
        assert_eq!(p("/a/b#frag").unwrap(), "/a/b");
        assert_eq!(p("/a%2Fb"), Err(PathError::EncodedSlash));
    }
}
