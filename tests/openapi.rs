//! `docs/openapi.yaml` describes exactly the api listener's routes: every entry of
//! `gatehouse::api::ROUTES` has an operation under `paths:`, and every operation
//! there is a route. The spec is read line by line (paths at two spaces, methods at
//! four), which is the layout the spec's header asks for.

use std::collections::BTreeSet;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// `(METHOD, path)` of every operation under `paths:`.
fn spec_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        let key = line.trim().trim_end_matches(':');
        if indent == 2 && line.trim_end().ends_with(':') {
            path = Some(key.trim_matches(['"', '\'']).to_string());
        } else if indent == 4 && METHODS.contains(&key) {
            let p = path.clone().expect("a method under a path");
            ops.insert((key.to_ascii_uppercase(), p));
        }
    }
    ops
}

#[test]
fn every_api_route_is_in_the_openapi_spec_and_nothing_else() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("docs/openapi.yaml exists");
    assert!(yaml.starts_with("openapi: 3.1"), "OpenAPI 3.1");
    let spec = spec_operations(&yaml);
    let routes: BTreeSet<(String, String)> = gatehouse::api::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = routes.difference(&spec).collect();
    assert!(
        missing.is_empty(),
        "routes without an operation in docs/openapi.yaml: {missing:?}"
    );
    let extra: Vec<_> = spec.difference(&routes).collect();
    assert!(
        extra.is_empty(),
        "operations in docs/openapi.yaml that no route serves: {extra:?}"
    );
}

#[test]
fn the_reader_sees_paths_and_methods() {
    let yaml = "openapi: 3.1.0\npaths:\n  /v1/a/{id}:\n    parameters: []\n    get:\n      responses: {}\n  \"/v1/b\":\n    post:\n      x: 1\ncomponents:\n  get:\n";
    let ops = spec_operations(yaml);
    assert_eq!(
        ops,
        BTreeSet::from([
            ("GET".to_string(), "/v1/a/{id}".to_string()),
            ("POST".to_string(), "/v1/b".to_string()),
        ])
    );
}
