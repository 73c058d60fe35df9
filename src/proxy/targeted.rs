//! Targeted cache control (RFC 9213): `CDN-Cache-Control` and gatehouse's own field
//! (`cache.targeted_fields`, first valid one wins) carry the directives gatehouse
//! follows instead of `Cache-Control` and `Expires`, so an app can tell the sidecar
//! "cache 10 minutes" while telling browsers `no-cache`.
//!
//! A targeted field is an RFC 8941 Dictionary (RFC 9213 §2.1): a field that does not
//! parse, or is empty, is ignored as a whole (the next field on the list, then
//! `Cache-Control`, applies); a member of an unexpected type (`max-age="60"`,
//! `max-age=-1`, `no-store=1`) is ignored on its own; unknown members and parameters
//! are ignored. Unlike `Cache-Control`, keys are lower-case by the syntax (`Max-Age`
//! fails the parse) and a key given twice keeps its last value (RFC 8941 §4.2.2).

use http::HeaderMap;

use super::directives::{Delta, Directives};

/// A parsed bare item (RFC 8941 §3.3) or inner list, as far as directives need it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Integer(i64),
    Decimal,
    String(String),
    Token(String),
    Bytes,
    Boolean(bool),
    InnerList(Vec<Value>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return None,
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'.' | b'*')
            {
                self.i += 1;
            } else {
                break;
            }
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// Parameters are parsed (so their syntax is checked) and then ignored.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<Value> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    self.parameters()?;
                    return Some(Value::InnerList(items));
                }
                items.push(self.bare_item()?);
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
        }
        let v = self.bare_item()?;
        self.parameters()?;
        Some(v)
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.bytes(),
            b'?' => {
                self.i += 1;
                match self.peek()? {
                    b'0' => {
                        self.i += 1;
                        Some(Value::Boolean(false))
                    }
                    b'1' => {
                        self.i += 1;
                        Some(Value::Boolean(true))
                    }
                    _ => None,
                }
            }
            c if c.is_ascii_alphabetic() || c == b'*' => self.token(),
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4: at most 15 digits for an Integer; a Decimal has at most 12
    /// before the point and 1–3 after it.
    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let start = self.i;
        let mut point = None;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' => self.i += 1,
                b'.' if point.is_none() => {
                    point = Some(self.i);
                    self.i += 1;
                }
                _ => break,
            }
        }
        let digits = &self.s[start..self.i];
        match point {
            None => {
                if digits.is_empty() || digits.len() > 15 {
                    return None;
                }
                let n: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                Some(Value::Integer(if negative { -n } else { n }))
            }
            Some(p) => {
                let int = p - start;
                let frac = self.i - p - 1;
                if int == 0 || int > 12 || frac == 0 || frac > 3 {
                    return None;
                }
                Some(Value::Decimal)
            }
        }
    }

    fn string(&mut self) -> Option<Value> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'\\' => {
                    let e = self.peek()?;
                    if e != b'"' && e != b'\\' {
                        return None;
                    }
                    self.i += 1;
                    out.push(e as char);
                }
                b'"' => return Some(Value::String(out)),
                0x20..=0x7e => out.push(c as char),
                _ => return None,
            }
        }
    }

    fn token(&mut self) -> Option<Value> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        Some(Value::Token(
            String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
        ))
    }

    fn bytes(&mut self) -> Option<Value> {
        self.i += 1;
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b':' => return Some(Value::Bytes),
                c if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') => {}
                _ => return None,
            }
        }
    }
}

/// Parses an RFC 8941 Dictionary (§4.2.2); `None` when the text is not one. Members
/// keep their first position and their last value.
pub fn parse_dictionary(text: &str) -> Option<Vec<(String, Value)>> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    if !text.is_ascii() {
        return None;
    }
    let mut members: Vec<(String, Value)> = Vec::new();
    p.skip_sp();
    while p.peek().is_some() {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            p.parameters()?;
            Value::Boolean(true)
        };
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => members.push((key, value)),
        }
        p.skip_ows();
        if p.peek().is_none() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        // A trailing comma fails the parse.
        p.peek()?;
    }
    Some(members)
}

/// The cache directives of a parsed targeted field. Delta-seconds directives take a
/// non-negative Integer (capped at 2^31, RFC 9111 §1.2.2); the others are Booleans
/// (`?0` is the directive absent); `no-cache` and `private` may also list field
/// names (a String or an Inner List), treated like their unqualified forms, as in
/// `Cache-Control`. Anything else is an invalid member, ignored.
pub fn directives(members: &[(String, Value)]) -> Directives {
    let mut d = Directives {
        targeted: true,
        ..Directives::default()
    };
    for (key, value) in members {
        let delta = match value {
            Value::Integer(n) if *n >= 0 => Some(Delta::Seconds((*n as u64).min(1 << 31))),
            _ => None,
        };
        let flag = match value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        };
        let qualified = match value {
            Value::String(_) | Value::InnerList(_) => Some(true),
            _ => flag,
        };
        match key.as_str() {
            "max-age" => d.max_age = delta.or(d.max_age),
            "s-maxage" => d.s_maxage = delta.or(d.s_maxage),
            "stale-while-revalidate" => {
                d.stale_while_revalidate = delta.or(d.stale_while_revalidate)
            }
            "stale-if-error" => d.stale_if_error = delta.or(d.stale_if_error),
            "no-store" => d.no_store = flag.unwrap_or(d.no_store),
            "public" => d.public = flag.unwrap_or(d.public),
            "must-revalidate" => d.must_revalidate = flag.unwrap_or(d.must_revalidate),
            "proxy-revalidate" => d.proxy_revalidate = flag.unwrap_or(d.proxy_revalidate),
            "no-cache" => d.no_cache = qualified.unwrap_or(d.no_cache),
            "private" => d.private = qualified.unwrap_or(d.private),
            _ => {}
        }
    }
    d
}

/// The directives of the first targeted field (in `fields` order, names lower-case)
/// present with a valid, non-empty value (RFC 9213 §2.1); `None` when there is none,
/// and `Cache-Control` applies. Several field lines are one list (RFC 8941 §4.2).
pub fn select(headers: &HeaderMap, fields: &[String]) -> Option<Directives> {
    for name in fields {
        let mut lines = headers.get_all(name.as_str()).iter().peekable();
        if lines.peek().is_none() {
            continue;
        }
        let Ok(lines) = lines.map(|v| v.to_str()).collect::<Result<Vec<_>, _>>() else {
            continue;
        };
        match parse_dictionary(&lines.join(", ")) {
            Some(members) if !members.is_empty() => return Some(directives(&members)),
            _ => continue,
        }
    }
    None
}

/// The targeted field that names gatehouse itself and is removed from every answer
/// before it leaves: the first of `cache.targeted_fields`, unless that is
/// `CDN-Cache-Control`, which is forwarded for a CDN in front to use.
pub fn own_field(fields: &[String]) -> Option<&str> {
    fields
        .first()
        .map(String::as_str)
        .filter(|f| !f.eq_ignore_ascii_case("cdn-cache-control"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_parse_as_rfc_8941_says() {
        let d = parse_dictionary(
            "max-age=600, no-store, a=?0, b=\"x\\\"y\";p=1, c=(1 2);q, d=:YWI=:, e=tok/x, f=1.5",
        )
        .unwrap();
        assert_eq!(d[0], ("max-age".into(), Value::Integer(600)));
        assert_eq!(d[1], ("no-store".into(), Value::Boolean(true)));
        assert_eq!(d[2], ("a".into(), Value::Boolean(false)));
        assert_eq!(d[3], ("b".into(), Value::String("x\"y".into())));
        assert_eq!(
            d[4],
            (
                "c".into(),
                Value::InnerList(vec![Value::Integer(1), Value::Integer(2)])
            )
        );
        assert_eq!(d[5], ("d".into(), Value::Bytes));
        assert_eq!(d[6], ("e".into(), Value::Token("tok/x".into())));
        assert_eq!(d[7], ("f".into(), Value::Decimal));
        // The last value of a repeated key wins.
        assert_eq!(
            parse_dictionary("max-age=1, max-age=2").unwrap(),
            vec![("max-age".into(), Value::Integer(2))]
        );
        assert_eq!(parse_dictionary("").unwrap(), vec![]);
        for bad in [
            "Max-Age=60",
            "max-age=60,",
            "max-age=60;",
            "max-age=",
            "max-age=60 s-maxage=1",
            "max-age=1234567890123456",
            "a=\"unterminated",
            "a=(1 2",
            "a=?2",
            "a=1.2345",
            "max-age=60, ,",
            "é=1",
        ] {
            assert_eq!(parse_dictionary(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn members_of_an_unexpected_type_are_ignored() {
        let d = directives(
            &parse_dictionary(
                "max-age=\"60\", s-maxage=-1, stale-if-error=30, no-store=1, private=?0, no-cache=(\"set-cookie\")",
            )
            .unwrap(),
        );
        assert_eq!(d.max_age, None);
        assert_eq!(d.s_maxage, None);
        assert_eq!(d.stale_if_error, Some(Delta::Seconds(30)));
        assert!(!d.no_store);
        assert!(!d.private);
        assert!(d.no_cache);
        assert!(d.targeted);
    }

    #[test]
    fn the_first_valid_field_on_the_list_wins() {
        let fields = vec!["gatehouse-cache-control".into(), "cdn-cache-control".into()];
        let mut h = HeaderMap::new();
        h.insert("cdn-cache-control", "max-age=60".parse().unwrap());
        assert_eq!(
            select(&h, &fields).unwrap().max_age,
            Some(Delta::Seconds(60))
        );
        h.insert("gatehouse-cache-control", "max-age=600".parse().unwrap());
        assert_eq!(
            select(&h, &fields).unwrap().max_age,
            Some(Delta::Seconds(600))
        );
        // An invalid or empty gatehouse field falls back to the next one.
        h.insert("gatehouse-cache-control", "Max-Age=600".parse().unwrap());
        assert_eq!(
            select(&h, &fields).unwrap().max_age,
            Some(Delta::Seconds(60))
        );
        h.insert("gatehouse-cache-control", "".parse().unwrap());
        assert_eq!(
            select(&h, &fields).unwrap().max_age,
            Some(Delta::Seconds(60))
        );
        // Several lines are one dictionary.
        h.insert("gatehouse-cache-control", "max-age=5".parse().unwrap());
        h.append("gatehouse-cache-control", "no-cache".parse().unwrap());
        let d = select(&h, &fields).unwrap();
        assert!(d.no_cache && d.max_age == Some(Delta::Seconds(5)));
        assert!(select(&HeaderMap::new(), &fields).is_none());
        assert_eq!(own_field(&fields), Some("gatehouse-cache-control"));
        assert_eq!(own_field(&fields[1..]), None);
    }
}
