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
}
