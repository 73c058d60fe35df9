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

    /// Fills `{name}` segments from params; None when a parameter is missing.
    pub fn expand(&self, params: &Params) -> Option<String> {
        expand_template(&self.text, params)
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
    /// (`crate::target`); no parameters captured: the steps that need them ask
    /// `route.pattern.matches`.
    pub fn find(&self, method: &http::Method, host: &str, path: &str) -> Option<Arc<Route>> {
        self.routes
            .iter()
            .find(|r| {
                r.config.methods.contains(method)
                    && crate::target::host_allowed(host, &r.config.hosts)
                    && r.pattern.is_match(path)
            })
            .cloned()
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
}
