//! Route path patterns, the one matcher every path rule uses (`[[routes]]` paths,
//! `invalidate_on` writes, the api's route table): a leaf that config validation and
//! the route table both build on.
//!
//! A path without braces is a prefix matched at segment boundaries (`/api/items`
//! matches `/api/items` and `/api/items/7`, not `/api/itemsx`); a path with `{name}`
//! segments matches whole paths, each `{name}` exactly one segment, and `{*rest}` at
//! the end matches the remainder.

/// How route paths compare with canonical request paths (`server.route_case`,
/// `server.route_trailing_slash`; its `Default` is `config::DEFAULT_ROUTE_MATCHING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatching {
    pub case_insensitive: bool,
    pub optional_trailing_slash: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// A compiled `path` from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    /// None: a prefix pattern.
    segments: Option<Vec<Segment>>,
    /// Literal text compared ignoring ASCII case (`server.route_case`).
    fold_case: bool,
    /// A `{name}` pattern also matches with one trailing `/` (`server.route_trailing_slash`).
    trailing_slash: bool,
}

/// Values captured by `{name}` segments, in order.
pub type Params = Vec<(String, String)>;

impl PathPattern {
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with '/'"));
        }
        if !text.contains(['{', '}']) {
            return Ok(PathPattern {
                text: text.to_string(),
                segments: None,
                fold_case: false,
                trailing_slash: false,
            });
        }
        let parts: Vec<&str> = text[1..].split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if let Some(rest) = inner.strip_prefix('*') {
                    if i != parts.len() - 1 {
                        return Err(format!("{text:?}: {{*{rest}}} must be the last segment"));
                    }
                    check_name(text, rest)?;
                    segments.push(Segment::Rest(rest.to_string()));
                } else {
                    check_name(text, inner)?;
                    segments.push(Segment::Param(inner.to_string()));
                }
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "{text:?}: a {{name}} must be a whole segment (between slashes)"
                ));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(PathPattern {
            text: text.to_string(),
            segments: Some(segments),
            fold_case: false,
            trailing_slash: false,
        })
    }

    /// The same pattern matching as `[[routes]]` do under `server.route_case` and
    /// `server.route_trailing_slash` (exact and case-sensitive by default).
    pub fn with_matching(mut self, m: RouteMatching) -> PathPattern {
        self.fold_case = m.case_insensitive;
        self.trailing_slash = m.optional_trailing_slash;
        self
    }

    fn same(&self, a: &str, b: &str) -> bool {
        if self.fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names of the `{name}` / `{*name}` parameters.
    pub fn param_names(&self) -> Vec<String> {
        self.segments
            .iter()
            .flatten()
            .filter_map(|s| match s {
                Segment::Param(n) | Segment::Rest(n) => Some(n.clone()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Matches a request path (without query); returns the captured parameters.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let mut params = Vec::new();
        self.walk(path, |name, value| {
            params.push((name.to_string(), value.to_string()))
        })
        .then_some(params)
    }

    /// Whether the path matches, without capturing (the per-request route lookup).
    pub fn is_match(&self, path: &str) -> bool {
        self.walk(path, |_, _| {})
    }

    /// Matches `path`, handing each captured parameter to `capture`.
    fn walk<'p>(&self, path: &'p str, mut capture: impl FnMut(&str, &'p str)) -> bool {
        let Some(segments) = &self.segments else {
            let prefix = self.text.trim_end_matches('/');
            if prefix.is_empty() {
                return true;
            }
            return match (path.get(..prefix.len()), path.get(prefix.len()..)) {
                (Some(head), Some(rest)) if self.same(head, prefix) => {
                    rest.is_empty() || rest.starts_with('/')
                }
                _ => false,
            };
        };
        let Some(path) = path.strip_prefix('/') else {
            return false;
        };
        let mut offset = 0;
        for seg in segments {
            if let Segment::Rest(name) = seg {
                capture(name, path.get(offset..).unwrap_or(""));
                return true;
            }
            if offset > path.len() {
                return false;
            }
            let part = path[offset..].split('/').next().unwrap_or("");
            match seg {
                Segment::Literal(l) if self.same(part, l) => {}
                Segment::Param(name) if !part.is_empty() => capture(name, part),
                _ => return false,
            }
            offset += part.len() + 1;
        }
        // Every segment consumed exactly the path (or all but one trailing '/').
        offset == path.len() + 1
            || (self.trailing_slash && offset == path.len() && path.ends_with('/'))
    }

    /// Whether every path `other` matches is matched by `self` too. Conservative:
    /// true only when that is certain, false when unsure.
    pub fn covers(&self, other: &PathPattern) -> bool {
        match (&self.segments, &other.segments) {
            (None, _) if self.prefix().is_empty() => true,
            (None, None) => {
                let (p, q) = (self.prefix(), other.prefix());
                q == p || q.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
            }
            // Every path of `other` starts with its leading literal segments.
            (None, Some(theirs)) => {
                let mine: Vec<&str> = self.prefix()[1..].split('/').collect();
                mine.len() <= theirs.len()
                    && mine
                        .iter()
                        .zip(theirs)
                        .all(|(m, t)| matches!(t, Segment::Literal(l) if l == m))
            }
            // A prefix matches paths of any depth: only a `{*rest}` can follow it.
            (Some(mine), None) => {
                let prefix = other.prefix();
                let Some(Segment::Rest(_)) = mine.last() else {
                    return false;
                };
                let fixed = &mine[..mine.len() - 1];
                if prefix.is_empty() {
                    // "/" also matches paths without a leading slash ("*").
                    return false;
                }
                let theirs: Vec<Segment> = prefix[1..]
                    .split('/')
                    .map(|l| Segment::Literal(l.to_string()))
                    .collect();
                fixed.len() <= theirs.len()
                    && fixed.iter().zip(&theirs).all(|(m, t)| segment_covers(m, t))
            }
            (Some(mine), Some(theirs)) => {
                let (fixed, rest) = match mine.last() {
                    Some(Segment::Rest(_)) => (&mine[..mine.len() - 1], true),
                    _ => (&mine[..], false),
                };
                let their_rest = matches!(theirs.last(), Some(Segment::Rest(_)));
                if rest {
                    // The first segments must be covered one for one (a `{*rest}` of
                    // theirs among them matches paths too short for mine).
                    fixed.len() <= theirs.len()
                        && fixed.iter().zip(theirs).all(|(m, t)| segment_covers(m, t))
                } else {
                    !their_rest
                        && fixed.len() == theirs.len()
                        && fixed.iter().zip(theirs).all(|(m, t)| segment_covers(m, t))
                }
            }
        }
    }

    /// A prefix pattern's text without its trailing slashes ("" for "/").
    fn prefix(&self) -> &str {
        self.text.trim_end_matches('/')
    }

    /// Fills `{name}` segments from params; None when a parameter is missing.
    pub fn expand(&self, params: &Params) -> Option<String> {
        expand_template(&self.text, params)
    }
}

/// Whether a segment of one template matches every value the other's does.
fn segment_covers(mine: &Segment, theirs: &Segment) -> bool {
    match (mine, theirs) {
        (Segment::Literal(m), Segment::Literal(t)) => m == t,
        (Segment::Param(_), Segment::Literal(t)) => !t.is_empty(),
        (Segment::Param(_), Segment::Param(_)) => true,
        _ => false,
    }
}

fn check_name(text: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{text:?}: parameter name {name:?} must be [A-Za-z0-9_]+"
        ));
    }
    Ok(())
}

/// Replaces each `{name}` (or `{*name}`) in a template with its captured value.
pub fn expand_template(template: &str, params: &Params) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = rest[open + 1..close].trim_start_matches('*');
        let value = params.iter().find(|(n, _)| n == name)?;
        out.push_str(&value.1);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses an `invalidate_on` entry: `"POST /api/participants/{id}/check-in"`.
pub fn parse_invalidate_on(text: &str) -> Result<(http::Method, PathPattern), String> {
    let (method, path) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("{text:?} must be \"METHOD /path\""))?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    if method.is_safe() {
        return Err(format!(
            "{method} is a safe method; writes are POST, PUT, PATCH or DELETE"
        ));
    }
    Ok((method, PathPattern::parse(path.trim())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_at_segment_boundaries() {
        let p = PathPattern::parse("/api/items").unwrap();
        assert!(p.matches("/api/items").is_some());
        assert!(p.matches("/api/items/7").is_some());
        assert!(p.matches("/api/itemsx").is_none());
        assert!(PathPattern::parse("/")
            .unwrap()
            .matches("/anything")
            .is_some());
    }

    #[test]
    fn params_match_single_segments_and_rest_the_remainder() {
        let p = PathPattern::parse("/api/participants/{id}").unwrap();
        assert_eq!(
            p.matches("/api/participants/17").unwrap(),
            vec![("id".to_string(), "17".to_string())]
        );
        assert!(p.matches("/api/participants/17/x").is_none());
        assert!(p.matches("/api/participants/").is_none());
        let r = PathPattern::parse("/files/{*rest}").unwrap();
        assert_eq!(r.matches("/files/a/b/c").unwrap()[0].1, "a/b/c");
        assert!(PathPattern::parse("/files/{*rest}/x").is_err());
        assert!(PathPattern::parse("/a{b}").is_err());
        for path in [
            "/files/a/b",
            "/api/participants/17",
            "/api/participants/17/x",
            "/x",
        ] {
            for pat in [&p, &r] {
                assert_eq!(pat.is_match(path), pat.matches(path).is_some(), "{path}");
            }
        }
        assert!(PathPattern::parse("nope").is_err());
    }

    fn covers(a: &str, b: &str) -> bool {
        let (pa, pb) = (
            PathPattern::parse(a).unwrap(),
            PathPattern::parse(b).unwrap(),
        );
        pa.covers(&pb)
    }

    /// `covers` agrees with matching on a sample of paths: whenever it says yes, no
    /// sample path matched by the covered pattern escapes the covering one.
    fn assert_sound(a: &str, b: &str) {
        let (pa, pb) = (
            PathPattern::parse(a).unwrap(),
            PathPattern::parse(b).unwrap(),
        );
        if !pa.covers(&pb) {
            return;
        }
        for path in SAMPLE {
            assert!(
                !pb.is_match(path) || pa.is_match(path),
                "{a} covers {b}, but {path} matches only {b}"
            );
        }
    }

    const SAMPLE: &[&str] = &[
        "*",
        "/",
        "//",
        "/a",
        "/a/",
        "/a/b",
        "/a/b/",
        "/a/b/c",
        "/a//c",
        "/ab",
        "/a/x",
        "/x/b",
        "/x",
        "/x/y/z",
        "/files",
        "/files/",
        "/files/a",
        "/files/a/b",
        "/filesx",
        "/api/items",
        "/api/items/7",
        "/api/items/7/x",
        "/api/itemsx",
        "/api/items/",
        "//x",
    ];

    const PATTERNS: &[&str] = &[
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/ab",
        "/x",
        "/files",
        "/api/items",
        "/api",
        "/{id}",
        "/a/{id}",
        "/{id}/b",
        "/a/{id}/c",
        "/a/b/{id}",
        "/{x}/{y}",
        "/{*rest}",
        "/a/{*rest}",
        "/files/{*rest}",
        "/a/{id}/{*rest}",
        "/api/items/{id}",
        "/api/{kind}/{id}",
        "/a/{id}/",
        "/{a}/{*rest}",
        "//{y}",
        "/{id}/{y}",
    ];

    #[test]
    fn covers_is_sound_on_every_pair_of_sample_patterns() {
        for a in PATTERNS {
            for b in PATTERNS {
                assert_sound(a, b);
            }
        }
    }

    #[test]
    fn a_prefix_covers_prefixes_at_segment_boundaries() {
        assert!(covers("/api", "/api"), "a duplicate");
        assert!(
            covers("/api", "/api/"),
            "a trailing slash is the same prefix"
        );
        assert!(covers("/api/", "/api"));
        assert!(covers("/api", "/api/items"));
        assert!(!covers("/api", "/apix"));
        assert!(!covers("/api/items", "/api"));
        assert!(covers("/", "/anything"), "the root covers everything");
        assert!(covers("/", "/"));
        assert!(!covers("/api", "/"));
    }

    #[test]
    fn a_prefix_covers_templates_under_its_literal_segments() {
        assert!(covers("/api", "/api/items/{id}"));
        assert!(covers("/api/items", "/api/items/{id}"));
        assert!(covers("/files", "/files/{*rest}"));
        assert!(covers("/", "/{id}"));
        assert!(covers("/", "/{*rest}"));
        assert!(
            !covers("/api/items", "/api/{kind}/{id}"),
            "{{kind}} may be another word"
        );
        assert!(!covers("/api/items/7", "/api/items/{id}"));
        assert!(!covers("/api", "/{x}/items"));
        assert!(!covers("/ap", "/api/{id}"));
    }

    #[test]
    fn a_template_covers_a_prefix_only_with_rest() {
        assert!(covers("/{*rest}", "/api"));
        assert!(covers("/api/{*rest}", "/api"));
        assert!(covers("/api/{*rest}", "/api/items"));
        assert!(covers("/{kind}/{*rest}", "/api/items"));
        assert!(!covers("/api/{*rest}", "/apix"));
        assert!(
            !covers("/api/{id}", "/api"),
            "a prefix matches deeper paths"
        );
        assert!(
            !covers("/api/{x}/{*rest}", "/api"),
            "/api itself has no second segment"
        );
        assert!(!covers("/{*rest}", "/"), "\"/\" also matches \"*\"");
    }

    #[test]
    fn a_template_covers_templates_segment_by_segment() {
        assert!(
            covers("/api/items/{id}", "/api/items/{n}"),
            "a duplicate by shape"
        );
        assert!(covers("/api/{kind}/{id}", "/api/items/{id}"));
        assert!(covers("/{a}/{b}", "/x/{y}"));
        assert!(!covers("/{a}/{b}", "/x/y"), "a prefix matches deeper paths");
        assert!(!covers("/api/items/{id}", "/api/{kind}/{id}"));
        assert!(!covers("/api/{id}", "/api/{id}/x"), "different depths");
        assert!(!covers("/api/{id}", "/api/{*rest}"));
        assert!(!covers("/a/{id}/", "/a/{id}"));
        assert!(
            !covers("/{id}/{y}", "//{y}"),
            "an empty segment is not an {{id}}"
        );
    }

    #[test]
    fn rest_covers_whatever_follows_its_fixed_segments() {
        assert!(covers("/{*rest}", "/a/{id}"));
        assert!(covers("/files/{*rest}", "/files/{*more}"));
        assert!(covers("/files/{*rest}", "/files/{name}/x"));
        assert!(covers("/{x}/{*rest}", "/files/{*rest}"));
        assert!(
            !covers("/files/{x}/{*rest}", "/files/{*rest}"),
            "too short for mine"
        );
        assert!(!covers("/files/{*rest}", "/{x}/{*rest}"));
        assert!(!covers("/files/{*rest}", "/other/{*rest}"));
    }

    #[test]
    fn routes_match_the_way_origin_frameworks_route() {
        let lenient = RouteMatching {
            case_insensitive: true,
            optional_trailing_slash: true,
        };
        let p = PathPattern::parse("/api/participants/{id}")
            .unwrap()
            .with_matching(lenient);
        assert_eq!(p.matches("/API/Participants/7").unwrap()[0].1, "7");
        assert_eq!(p.matches("/api/participants/7/").unwrap()[0].1, "7");
        assert!(p.matches("/api/participants/7//").is_none());
        assert!(p.matches("/api/participants/").is_none());
        let prefix = PathPattern::parse("/api/me")
            .unwrap()
            .with_matching(lenient);
        assert!(prefix.is_match("/API/ME"));
        assert!(prefix.is_match("/api/Me/x"));
        assert!(!prefix.is_match("/api/mex"));
        assert!(!prefix.is_match("/api/m\u{e9}"));
        let strict = PathPattern::parse("/api/participants/{id}").unwrap();
        assert!(strict.matches("/API/participants/7").is_none());
        assert!(strict.matches("/api/participants/7/").is_none());
    }

    #[test]
    fn templates_expand_from_captured_params() {
        assert_eq!(
            expand_template("participant:{id}", &vec![("id".into(), "4".into())]).unwrap(),
            "participant:4"
        );
        assert_eq!(expand_template("participant:{id}", &Vec::new()), None);
    }
}
