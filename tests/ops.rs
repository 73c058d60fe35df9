//! What operators run gatehouse with: the chart's Grafana dashboard and alert rules
//! name only metrics gatehouse exposes, and the log suits a terminal and a collector
//! alike (no ANSI codes in a pipe, JSON lines with a flat message, refusals below warn).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    api_post, eventually, write_file, Claims, Gatehouse, GatehouseProcess, Listeners, RedisServer,
    Reply, TestOrigin,
};

const OPS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-ops";

// ------------------------------------------------------------------------- logs

/// Starts the binary with `log` as the `[log]` section, makes one request that is
/// refused (401) and one proxied, stops it, and returns its stderr.
fn run_binary_and_read_its_log(log: &str) -> String {
    run_binary(log, async |proxy| {
        let client = reqwest::Client::new();
        let r = client
            .get(format!("http://127.0.0.1:{proxy}/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = client
            .get(format!("http://127.0.0.1:{proxy}/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    })
}

/// Starts the binary (routes `/me` auth-required, `/quiet` with no access lines,
/// `/x` anything else), runs `requests` against its proxy port, stops it, and returns
/// its stderr.
fn run_binary(log: &str, requests: impl AsyncFnOnce(u16)) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(TestOrigin::start(|_| Reply::ok("o")));
    let dir = tempfile::tempdir().unwrap();
    let listeners = Listeners::free();
    let path = write_file(
        dir.path(),
        "gatehouse.toml",
        &format!(
            "{}[origin]\nurl = \"{}\"\n[auth]\nhs_secret = \"{OPS_SECRET}\"\n[[routes]]\npath = \"/me\"\nauth = \"required\"\n\
             [[routes]]\npath = \"/quiet\"\naccess_sample = 0\n{log}\n",
            listeners.toml(),
            origin.url()
        ),
    );
    let gh = GatehouseProcess::start(&path, listeners, None);
    rt.block_on(async {
        gh.ready().await;
        requests(listeners.proxy).await;
    });
    let (status, log) = gh.terminate();
    assert!(status.success(), "{status:?}");
    log
}

#[test]
fn every_request_has_an_id_and_one_access_line() {
    let token = Claims::new()
        .sub("alice")
        .exp(4_000_000_000)
        .hs256(OPS_SECRET);
    let t = token.clone();
    let log = run_binary("[log]\nformat = \"json\"", async move |proxy| {
        let client = reqwest::Client::new();
        let url = |p: &str| format!("http://127.0.0.1:{proxy}{p}");
        let r = client
            .get(url("/me"))
            .bearer_auth(&t)
            .header("x-request-id", "req-42")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-request-id"],
            "req-42",
            "the client's id is echoed"
        );
        let r = client
            .get(url("/x/./%61"))
            .header("x-request-id", "not a valid id")
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "an implausible id is replaced: {id}");
        assert_eq!(
            client.get(url("/quiet")).send().await.unwrap().status(),
            200
        );
        assert_eq!(client.get(url("/me")).send().await.unwrap().status(), 401);
    });
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect();
    assert_eq!(
        access.len(),
        3,
        "one line per request, none for /quiet: {log}"
    );
    let me = &access[0];
    assert_eq!(me["request_id"], "req-42");
    assert_eq!(me["method"], "GET");
    assert_eq!(me["path"], "/me");
    assert_eq!(me["route"], "/me");
    assert_eq!(me["status"], 200);
    assert_eq!(me["user"], "alice", "the verified sub");
    assert!(me["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(me["origin_ms"].as_f64().unwrap() > 0.0, "{me}");
    assert_eq!(
        me["origin"], "default",
        "[origin]: the route names no other"
    );
    assert!(me["cache"].as_str().unwrap().starts_with("gatehouse;"));
    assert_eq!(me["client"], "127.0.0.1");
    let other = &access[1];
    assert_eq!(other["path"], "/x/a", "the canonical target");
    assert_eq!(other["route"], "none");
    assert_eq!(other["bytes"], "1");
    let refused = &access[2];
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["user"], "-");
    assert!(refused["origin_ms"].is_null());
    assert!(!log.contains(&token), "the token is never logged");
}

#[test]
fn text_logs_in_a_pipe_carry_no_ansi_codes() {
    let log = run_binary_and_read_its_log("[log]\nformat = \"text\"\nlevel = \"debug\"");
    assert!(log.contains("gatehouse listening"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI codes in a pipe: {log:?}");
    // The refusal is there at debug, not at warn.
    let refusal = log
        .lines()
        .find(|l| l.contains("TOKEN_MISSING"))
        .unwrap_or_else(|| panic!("no line for the 401 in {log}"));
    assert!(refusal.contains("DEBUG"), "{refusal}");
}

#[test]
fn json_logs_are_one_object_per_line_with_a_flat_message() {
    let log = run_binary_and_read_its_log("[log]\nformat = \"json\"\nlevel = \"debug\"");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for l in &lines {
        assert!(l["message"].is_string(), "no flat message: {l}");
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
        assert!(l.get("fields").is_none(), "nested fields: {l}");
    }
    let listening = lines
        .iter()
        .find(|l| l["message"] == "gatehouse listening")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["proxy_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let refusal = lines
        .iter()
        .find(|l| l["code"] == "TOKEN_MISSING")
        .unwrap_or_else(|| panic!("no line for the 401 in {log}"));
    assert_eq!(refusal["level"], "DEBUG");
    assert_eq!(refusal["status"], 401);
}

#[tokio::test]
async fn client_refusals_are_logged_below_warn() {
    let captured = gatehouse::logging::Captured::default();
    // Current-thread runtime: gatehouse's tasks run on this thread, under this logger.
    let _guard = tracing::subscriber::set_default(gatehouse::logging::subscriber(
        "debug",
        true,
        false,
        captured.clone(),
    ));
    let origin = TestOrigin::start(|_| Reply::ok("o")).await;
    let gh = Gatehouse::start(
        &format!(
            "[auth]\nhs_secret = \"{OPS_SECRET}\"\n[[routes]]\npath = \"/me\"\nauth = \"required\"\n"
        ),
        &origin,
    )
    .await;
    assert_eq!(gh.get("/me").await.status(), 401);
    let created = api_post(
        &gh,
        "/v1/transfers",
        json!({"payload": {"a": 1}, "ttlMs": 60000, "audience": "admin"}),
        201,
    )
    .await;
    let claim = |token: Value, audience: &str| json!({"token": token, "audience": audience});
    for (path, body, status) in [
        (
            "/v1/transfers/claim",
            claim(created["token"].clone(), "other"),
            403,
        ),
        (
            "/v1/transfers/claim",
            claim(json!("no-such-token"), "admin"),
            410,
        ),
        (
            "/v1/capacity/ops/full/admissions",
            json!({"memberId": "a", "capacity": 1}),
            201,
        ),
        (
            "/v1/capacity/ops/full/admissions",
            json!({"memberId": "b"}),
            409,
        ),
        ("/v1/locks/ops/l", json!({"ttlMs": "soon"}), 400),
    ] {
        api_post(&gh, path, body, status).await;
    }
    let r = gh.client.get(gh.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The admin listener's 405 names what it takes (RFC 9110 §15.5.6).
    let r = gh
        .client
        .post(gh.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    gh.shutdown().await;

    let lines = captured.json_lines();
    let loud: Vec<&Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .collect();
    assert!(
        loud.is_empty(),
        "refusals logged at warn or error: {loud:?}"
    );
    let gone = lines
        .iter()
        .find(|l| l["message"] == "transfer claim refused: used, expired or unknown")
        .unwrap_or_else(|| panic!("the gone claim is logged: {lines:?}"));
    assert_eq!(gone["level"], "INFO");
    assert!(
        lines
            .iter()
            .any(|l| l["code"] == "TOKEN_MISSING" && l["level"] == "DEBUG"),
        "{lines:?}"
    );
}

// ------------------------------------------------------------------ PromQL names

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/gatehouse");

/// PromQL words that are not metric names where they stand alone.
const KEYWORDS: &[&str] = &[
    "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
];
/// Aggregation operators: they may be followed by `by (...)` before their `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Words followed by a list of label names in parentheses.
const GROUPINGS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names an expression selects: every identifier that is not a function
/// or aggregation (followed by `(`), a keyword, a label name (in `{...}` matchers or
/// a `by (...)` list), a string, a duration or a number.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |mut i: usize, quote: u8| {
        i += 1;
        while i < b.len() && b[i] != quote {
            if b[i] == b'\\' && quote != b'`' {
                i += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(i, c),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // Label matchers and range or subquery durations hold no metric names.
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                i += 1;
                while i < b.len() && b[i] != close {
                    if matches!(b[i], b'"' | b'\'' | b'`') {
                        i = skip_string(i, b[i]);
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if GROUPINGS.contains(&lower.as_str()) {
                    if b.get(next) == Some(&b'(') {
                        i = next + expr[next..].find(')').expect("closed label list") + 1;
                    }
                } else if b.get(next) == Some(&b'(')
                    || KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                {
                    // A function call, an operator or a keyword.
                } else {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_skip_functions_labels_strings_and_durations() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (route, le) (rate(a_bucket{job=~"$job",x="}"}[5m])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("sum without (result) (rate(b_total[1h] offset 1h)) / on(pod) group_left(x) c > 0.5 * d"),
        ["b_total", "c", "d"]
    );
    assert_eq!(
        names("(e == 0) unless (f == 0) and sum(g) by (tier) or count(h)"),
        ["e", "f", "g", "h"]
    );
    assert_eq!(names(r#"rate(i[$__rate_interval]) # comment j"#), ["i"]);
}

/// Every PromQL expression of the dashboard: panel targets (rows and nested panels
/// included) and `label_values(...)` variable queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        if let Some(inner) = q.strip_prefix("label_values(") {
            // label_values(selector, label): the selector is PromQL.
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
            out.push(selector.to_string());
        }
    }
    out
}

/// The `expr` of every rule in a Prometheus rules file: plain `expr: ...` lines or
/// block scalars (`expr: |`), the shapes rules/gatehouse.rules.yaml uses.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        i += 1;
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - t.len();
        let rest = rest.trim();
        if matches!(rest, "|" | "|-" | ">" | ">-") {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            out.push(block.join("\n"));
        } else {
            out.push(rest.trim_matches(['"', '\'']).to_string());
        }
    }
    out
}

/// Family name -> type, from the `# TYPE` lines of a scrape.
fn families(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Whether `name` is a series of the scrape: a family, or a histogram's (or
/// summary's) `_bucket`, `_sum` or `_count`.
fn exposed(families: &BTreeMap<String, String>, name: &str) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            families
                .get(base)
                .is_some_and(|t| t == "histogram" || (t == "summary" && *suffix != "_bucket"))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exposed() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/dashboards/gatehouse.json")).unwrap(),
    )
    .unwrap();
    let rules = std::fs::read_to_string(format!("{CHART}/rules/gatehouse.rules.yaml")).unwrap();
    let from_dashboard = dashboard_exprs(&dashboard);
    let from_rules = rule_exprs(&rules);
    assert!(from_dashboard.len() >= 25, "{from_dashboard:?}");
    assert_eq!(
        from_rules.len(),
        rules.matches("- alert:").count() + rules.matches("- record:").count(),
        "one expr per rule: {from_rules:?}"
    );
    let used: BTreeSet<String> = from_dashboard
        .iter()
        .chain(&from_rules)
        .flat_map(|e| metric_names(e))
        .collect();
    for name in [
        "gatehouse_request_duration_seconds_bucket",
        "gatehouse_origin_duration_seconds_bucket",
        "gatehouse_store_up",
        "gatehouse_store_subscription_up",
        "gatehouse_l1_flushes_total",
        "gatehouse_config_reloads_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(name), "{name} is not used: {used:?}");
    }

    // Redis, so the store's own families (and its errors) are live.
    let mut redis = RedisServer::start();
    let origin = TestOrigin::start(|s| Reply::ok(format!("origin saw {}", s.path))).await;
    let text = format!(
        r#"
[store]
backend = "redis"
url = "{}"
key_prefix = "{}"
[auth]
algorithms = ["HS256"]
hs_secret = "{OPS_SECRET}"
[[routes]]
path = "/cached/{{id}}"
ttl = "30s"
[[routes]]
path = "/me"
auth = "required"
"#,
        redis.url(),
        support::prefix("ops")
    );
    let gh = Gatehouse::start(&text, &origin).await;
    assert_eq!(gh.get("/cached/1").await.status(), 200);
    let hit = gh.get("/cached/1").await;
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(gh.get("/me").await.status(), 401);
    for (path, body, status) in [
        (
            "/v1/capacity/ops/c1/admissions",
            json!({"memberId": "m1", "capacity": 1}),
            201,
        ),
        (
            "/v1/locks/ops/l1",
            json!({"ttlMs": 10000, "owner": {"userId": "u"}}),
            201,
        ),
        (
            "/v1/revocations",
            json!({"jti": "j-1", "expiresAt": "2099-01-01T00:00:00Z"}),
            204,
        ),
        ("/v1/cache/purge", json!({"urls": ["/cached/1"]}), 200),
    ] {
        api_post(&gh, path, body, status).await;
    }
    // The store goes away: its commands fail and are counted by command.
    redis.stop();
    gh.get("/cached/2").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            gh.metrics().await.contains("gatehouse_store_errors_total{")
        })
        .await,
        "a store error is counted"
    );

    let scrape = gh.metrics().await;
    let families = families(&scrape);
    let missing: Vec<&String> = used.iter().filter(|n| !exposed(&families, n)).collect();
    assert!(
        missing.is_empty(),
        "the chart uses metrics gatehouse does not expose: {missing:?}\nexposed: {:?}",
        families.keys().collect::<Vec<_>>()
    );
    gh.shutdown().await;
}

#[tokio::test]
async fn the_request_id_reaches_the_origin_and_comes_back() {
    let origin = TestOrigin::start(|_| Reply::ok("o")).await;
    let gh = Gatehouse::start("", &origin).await;
    let r = gh
        .client
        .get(gh.url("/a"))
        .header("x-request-id", "trace-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-7");
    assert_eq!(origin.last().unwrap().headers["x-request-id"], "trace-7");
    let r = gh.get("/b").await;
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        origin.last().unwrap().headers["x-request-id"],
        made.as_str()
    );
    gh.shutdown().await;
}
