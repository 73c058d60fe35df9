//! The canonical authority (`Host`, `:authority`, a host pattern of `server.hosts` or
//! `routes[].hosts`): lower-cased, a default port dropped, one trailing dot dropped;
//! userinfo or any character outside a host name / IP literal is refused. A leaf:
//! config validation and the request target (`crate::target`) both use it.

use std::borrow::Cow;

/// Why an authority (`Host`, `:authority`, an absolute-form target) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    Invalid,
}

/// The canonical authority: host lower-cased (one trailing dot dropped), the port
/// dropped when it is `default_port`. Userinfo, an empty host, or characters outside
/// a DNS name / IP literal are refused.
pub fn canonical_authority(raw: &str, default_port: u16) -> Result<Cow<'_, str>, HostError> {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let close = rest.find(']').ok_or(HostError::Invalid)?;
        let inner = &rest[..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(HostError::Invalid);
        }
        let after = &rest[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError::Invalid)?),
        };
        (&raw[..close + 2], port)
    } else {
        let (host, port) = match raw.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            || host.contains("..")
        {
            return Err(HostError::Invalid);
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u32 = p.parse().map_err(|_| HostError::Invalid)?;
            if n > u16::MAX as u32 {
                return Err(HostError::Invalid);
            }
            (n != default_port as u32).then_some(n)
        }
        Some(_) => return Err(HostError::Invalid),
    };
    let canonical_len = host.len() + port.map_or(0, |n| 1 + decimal_len(n));
    if canonical_len == raw.len() && !raw.bytes().any(|b| b.is_ascii_uppercase()) {
        // Same length and already lower-case: nothing was dropped, so it is canonical.
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = host.to_ascii_lowercase();
    if let Some(n) = port {
        out.push(':');
        out.push_str(&n.to_string());
    }
    Ok(Cow::Owned(out))
}

fn decimal_len(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// The host part of a canonical authority (without the port).
pub fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a canonical authority is one of `patterns` (`server.hosts`,
/// `routes[].hosts`): `app.example` matches that host on any port, `*.example`
/// any name below `example` (not `example` itself), `app.example:8443` that host
/// and port only. An empty list allows every host.
pub fn host_allowed(authority: &str, patterns: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let host = host_name(authority);
    patterns.iter().any(|p| {
        if let Some(suffix) = p.strip_prefix("*.") {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        } else if p.contains(':') && !p.starts_with('[') || p.contains("]:") {
            p == authority
        } else {
            p == host
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_canonical() {
        let a = |s| canonical_authority(s, 80).map(Cow::into_owned);
        assert_eq!(a("App.Example:80").unwrap(), "app.example");
        assert_eq!(a("app.example.").unwrap(), "app.example");
        assert_eq!(a("app.example:8080").unwrap(), "app.example:8080");
        assert_eq!(a("app.example:08080").unwrap(), "app.example:8080");
        assert_eq!(a("app.example:").unwrap(), "app.example");
        assert_eq!(a("[::1]:80").unwrap(), "[::1]");
        assert_eq!(a("[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(a("127.0.0.1:3000").unwrap(), "127.0.0.1:3000");
        assert!(matches!(
            canonical_authority("localhost:8080", 80),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(
            canonical_authority("app.example:443", 443).unwrap(),
            "app.example"
        );
        for bad in [
            "",
            "user@host",
            "a b",
            "host:port",
            "host:99999",
            "a/b",
            "[::1",
            "[zz]",
            "h\\x",
            "a..b",
            ":80",
            "a:1:2",
        ] {
            assert_eq!(a(bad), Err(HostError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn host_patterns() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(host_allowed("anything", &[]));
        let l = list(&["app.example", "*.tenant.example", "admin.example:8443"]);
        assert!(host_allowed("app.example", &l));
        assert!(host_allowed("app.example:8080", &l));
        assert!(host_allowed("a.tenant.example", &l));
        assert!(host_allowed("x.y.tenant.example", &l));
        assert!(!host_allowed("tenant.example", &l));
        assert!(!host_allowed("eviltenant.example", &l));
        assert!(!host_allowed("evil.example", &l));
        assert!(host_allowed("admin.example:8443", &l));
        assert!(!host_allowed("admin.example", &l));
    }
}
