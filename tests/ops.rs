//! The log suits a terminal and a collector alike: no ANSI codes in a pipe, JSON
//! lines with a flat message, refusals below warn.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, free_port, Gatehouse, Reply, TestOrigin};

const HS_SECRET: &str = "an-hs256-secret-of-more-than-32-bytes-for-ops";

async fn api(gh: &Gatehouse, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = gh
        .client
        .request(method, gh.api_url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
// ------------------------------------------------------------------------- logs

/// Starts the binary with `log` as the `[log]` section, makes one request that is
/// refused (401) and one proxied, stops it, and returns its stderr.
fn run_binary_and_read_its_log(log: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(TestOrigin::start(|_| Reply::ok("o")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let (proxy, api, admin) = (free_port(), free_port(), free_port());
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{proxy}\"\napi_listen = \"127.0.0.1:{api}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [origin]\nurl = \"{}\"\n[auth]\nhs_secret = \"{HS_SECRET}\"\n[[routes]]\npath = \"/me\"\nauth = \"required\"\n{log}\n",
            origin.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("GATEHOUSE_LOG")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    rt.block_on(async {
        let client = reqwest::Client::new();
        assert!(
            eventually(Duration::from_secs(10), || async {
                client
                    .get(format!("http://127.0.0.1:{admin}/readyz"))
                    .send()
                    .await
                    .is_ok()
            })
            .await,
            "gatehouse did not start"
        );
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
    });
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap()
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
            "[auth]\nhs_secret = \"{HS_SECRET}\"\n[[routes]]\npath = \"/me\"\nauth = \"required\"\n"
        ),
        &origin,
    )
    .await;
    use reqwest::Method;
    assert_eq!(gh.get("/me").await.status(), 401);
    let (s, created) = api(
        &gh,
        Method::POST,
        "/v1/transfers",
        json!({"payload": {"a": 1}, "ttlMs": 60000, "audience": "admin"}),
    )
    .await;
    assert_eq!(s, 201);
    let claim = |token: Value, audience: &str| json!({"token": token, "audience": audience});
    let (s, _) = api(
        &gh,
        Method::POST,
        "/v1/transfers/claim",
        claim(created["token"].clone(), "other"),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = api(
        &gh,
        Method::POST,
        "/v1/transfers/claim",
        claim(json!("no-such-token"), "admin"),
    )
    .await;
    assert_eq!(s, 410);
    let (s, _) = api(
        &gh,
        Method::POST,
        "/v1/capacity/ops/full/admissions",
        json!({"memberId": "a", "capacity": 1}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = api(
        &gh,
        Method::POST,
        "/v1/capacity/ops/full/admissions",
        json!({"memberId": "b"}),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = api(
        &gh,
        Method::POST,
        "/v1/locks/ops/l",
        json!({"ttlMs": "soon"}),
    )
    .await;
    assert_eq!(s, 400);
    let r = gh.client.get(gh.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
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
