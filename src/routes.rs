//! Route matching: `[[routes]]` compiled into path patterns ([`crate::path_pattern`])
//! with their host lists and `invalidate_on` writes, first match wins.

use std::sync::Arc;

use crate::config::{RouteConfig, RouteMatching};
use crate::path_pattern::parse_invalidate_on;
// The api and the gates name patterns and templates through the route table.
pub use crate::path_pattern::{expand_template, Params, PathPattern};

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
