//! Route matching: `[[routes]]` compiled into path patterns, first match wins.
//!
//! A path without braces is a prefix matched at segment boundaries (`/api/items`
//! matches `/api/items` and `/api/items/7`, not `/api/itemsx`); a path with `{name}`
//! segments matches whole paths, each `{name}` exactly one segment, and `{*rest}` at
//! the end matches the remainder.

use std::sync::Arc;

use crate::config::{RouteConfig, RouteMatching};

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

/// Whether `later` can never be chosen because `earlier`, listed before it, matches
/// every request it would (first match wins): every method of `later`, every host
/// and every path. The one place that decides it, so a new matching condition is
/// added here. Conservative: true only when certain.
pub fn shadowed_by(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    // `earlier` answers for every host `later` does (any host, or the same names).
    let hosts_covered = earlier.hosts.is_empty()
        || (!later.hosts.is_empty() && later.hosts.iter().all(|h| earlier.hosts.contains(h)));
    let (Ok(e), Ok(l)) = (
        PathPattern::parse(&earlier.path),
        PathPattern::parse(&later.path),
    ) else {
        return false;
    };
    hosts_covered
        && !later.methods.is_empty()
        && later.methods.iter().all(|m| earlier.methods.contains(m))
        && e.covers(&l)
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

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub index: usize,
    pub config: RouteConfig,
    pub pattern: PathPattern,
    pub invalidate_on: Vec<(http::Method, PathPattern)>,
}

impl Route {
    /// A label for metrics: the configured path.
    pub fn label(&self) -> &str {
        self.pattern.as_str()
    }

    /// Whether a step of this route reads the path's parameters: its purge tags and
    /// its capacity and lock gates are templates.
    fn uses_params(&self) -> bool {
        !self.config.tags.is_empty() || self.config.capacity.is_some() || self.config.lock.is_some()
    }
}

/// The route a request matched, with the path parameters its steps use: captured in
/// the walk that matched, and only when the route reads them (`uses_params`), so a
/// request is matched once and a route without templates costs no allocation.
#[derive(Clone, Debug)]
pub struct Matched {
    pub route: Arc<Route>,
    pub params: Params,
}

/// The compiled route table; swapped whole on reload.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// Compiles validated route configs (validation has already named bad keys).
    pub fn new(configs: &[RouteConfig], matching: RouteMatching) -> Result<Router, String> {
        let mut routes = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let pattern = PathPattern::parse(&config.path)
                .map_err(|e| format!("routes[{index}].path: {e}"))?
                .with_matching(matching);
            let invalidate_on = config
                .invalidate_on
                .iter()
                .map(|s| parse_invalidate_on(s).map(|(m, p)| (m, p.with_matching(matching))))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("routes[{index}].invalidate_on: {e}"))?;
            routes.push(Arc::new(Route {
                index,
                config: config.clone(),
                pattern,
                invalidate_on,
            }));
        }
        Ok(Router { routes })
    }

    /// The first route whose methods, hosts and path match a canonical request
    /// (`crate::target`), with the parameters its steps use (`Matched`).
    pub fn find(&self, method: &http::Method, host: &str, path: &str) -> Option<Matched> {
        self.routes
            .iter()
            .filter(|r| {
                r.config.methods.contains(method)
                    && crate::target::host_allowed(host, &r.config.hosts)
            })
            .find_map(|r| {
                let params = if r.uses_params() {
                    r.pattern.matches(path)?
                } else if r.pattern.is_match(path) {
                    Params::new()
                } else {
                    return None;
                };
                Some(Matched {
                    route: r.clone(),
                    params,
                })
            })
    }

    /// Read routes whose `invalidate_on` names this write; with the paths to purge.
    pub fn invalidations_for(
        &self,
        method: &http::Method,
        path: &str,
    ) -> Vec<(Arc<Route>, String)> {
        let mut out = Vec::new();
        for r in &self.routes {
            for (m, pat) in &r.invalidate_on {
                if m != method {
                    continue;
                }
                if let Some(params) = pat.matches(path) {
                    if let Some(target) = r.pattern.expand(&params) {
                        out.push((r.clone(), target));
                    }
                }
            }
        }
        out
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
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
    fn a_route_is_shadowed_only_by_an_earlier_one_with_all_its_methods() {
        let route = |path: &str, methods: &[&str]| RouteConfig {
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            ..RouteConfig::new(path)
        };
        let get = route("/api", &["GET", "HEAD"]);
        assert!(shadowed_by(&get, &route("/api/items/{id}", &["GET"])));
        assert!(
            shadowed_by(&get, &route("/api", &["GET", "HEAD"])),
            "a duplicate"
        );
        assert!(!shadowed_by(
            &get,
            &route("/api/items/{id}", &["GET", "POST"])
        ));
        assert!(!shadowed_by(&get, &route("/other", &["GET"])));
        let on = |r: &RouteConfig, hosts: &[&str]| RouteConfig {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..r.clone()
        };
        let later = route("/api/items/{id}", &["GET"]);
        assert!(
            !shadowed_by(&on(&get, &["a.example"]), &later),
            "other hosts reach later"
        );
        assert!(shadowed_by(
            &on(&get, &["a.example"]),
            &on(&later, &["a.example"])
        ));
        assert!(!shadowed_by(
            &on(&get, &["a.example"]),
            &on(&later, &["b.example"])
        ));
        assert!(shadowed_by(&get, &on(&later, &["b.example"])));
        assert!(!shadowed_by(&route("/api/items/{id}", &["GET"]), &get));
        assert!(
            !shadowed_by(&get, &route("/api/x", &[])),
            "matches nothing anyway"
        );
        assert!(!shadowed_by(&get, &route("/api/{", &["GET"])), "unparsable");
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
    fn invalidate_on_substitutes_params() {
        let cfg = RouteConfig {
            invalidate_on: vec!["POST /api/participants/{id}/check-in".into()],
            ..RouteConfig::new("/api/participants/{id}")
        };
        let router = Router::new(&[cfg], RouteMatching::default()).unwrap();
        let inv = router.invalidations_for(&http::Method::POST, "/api/participants/9/check-in");
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].1, "/api/participants/9");
        assert!(router
            .invalidations_for(&http::Method::PUT, "/api/participants/9/check-in")
            .is_empty());
        assert_eq!(
            expand_template("participant:{id}", &vec![("id".into(), "4".into())]).unwrap(),
            "participant:4"
        );
    }

    #[test]
    fn one_lookup_finds_the_route_and_the_params_its_steps_read() {
        let tagged = RouteConfig {
            tags: vec!["participant:{id}".into()],
            ..RouteConfig::new("/api/participants/{id}")
        };
        let plain = RouteConfig::new("/api/events/{id}");
        let router = Router::new(&[tagged, plain], RouteMatching::default()).unwrap();
        let get = http::Method::GET;
        let m = router.find(&get, "", "/api/participants/7").unwrap();
        assert_eq!(m.route.index, 0);
        assert_eq!(m.params, vec![("id".to_string(), "7".to_string())]);
        // A route no step of which reads parameters is matched without capturing.
        let m = router.find(&get, "", "/api/events/3").unwrap();
        assert_eq!(m.route.index, 1);
        assert!(m.params.is_empty());
        assert!(router.find(&get, "", "/api/participants/7/x").is_none());
        assert!(router
            .find(&http::Method::DELETE, "", "/api/events/3")
            .is_none());
    }
}
