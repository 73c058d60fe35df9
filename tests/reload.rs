//! Hot reload: a changed file (reload.watch) or SIGHUP swaps routes and TTLs without
//! rebinding; an invalid file keeps the running config and counts the failure.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

/// Replaces the file atomically. Its mtime is set one second past the old one's, so
/// the watcher (which compares mtime and length) sees every rewrite whatever the
/// file system's timestamp resolution, with no waiting for the clock to move.
fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    if let Ok(old) = std::fs::metadata(path).and_then(|m| m.modified()) {
        let now = std::time::SystemTime::now();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(now.max(old + Duration::from_secs(1)))
            .unwrap();
    }
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_reloads_routes_and_an_invalid_one_is_refused() {
    let origin = TestOrigin::start(|_| Reply::ok("r")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[origin]\nurl = \"{}\"\n[reload]\nwatch = true\ninterval = \"50ms\"\n",
        origin.url()
    );
    write(&path, &base);
    let cfg =
        gatehouse::Config::from_toml_str(&std::fs::read_to_string(&path).unwrap(), &HashMap::new())
            .unwrap();
    let gh = Gatehouse::start_with_path(cfg, Some(path.clone())).await;
    gh.get("/x").await;
    gh.get("/x").await;
    assert_eq!(origin.hits("/x"), 2, "no route: not cached");

    write(
        &path,
        &format!("{base}[[routes]]\npath = \"/x\"\nttl = \"1m\"\n"),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric(r#"gatehouse_config_reloads_total{result="ok"}"#)
                .await
                >= 1.0
        })
        .await
    );
    gh.get("/x").await;
    let r = gh.get("/x").await;
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.hits("/x"), 3);

    write(
        &path,
        &format!("{base}[[routes]]\npath = \"/x\"\nttl = \"soon\"\n"),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            gh.metric(r#"gatehouse_config_reloads_total{result="invalid"}"#)
                .await
                >= 1.0
        })
        .await
    );
    // The running config stays: still cached.
    let r = gh.get("/x").await;
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    gh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let origin = TestOrigin::start(|_| Reply::ok("h")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let listeners = Listeners::free();
    let base = format!("{}[origin]\nurl = \"{}\"\n", listeners.toml(), origin.url());
    write(&path, &base);
    let mut gh = GatehouseProcess::start(&path, listeners, Some("info"));
    gh.ready().await;
    let client = reqwest::Client::new();
    let url = |p: &str| listeners.url(p);
    client.get(url("/y")).send().await.unwrap();
    write(
        &path,
        &format!("{base}[[routes]]\npath = \"/y\"\nttl = \"1m\"\n"),
    );
    gh.signal("HUP");
    assert!(
        gh.wait_for_log("config reloaded", Duration::from_secs(10)),
        "the log says the config was reloaded"
    );
    client.get(url("/y")).send().await.unwrap();
    let r = client.get(url("/y")).send().await.unwrap();
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.hits("/y"), 2);
    // SIGTERM drains and exits 0.
    let (status, log) = gh.terminate();
    assert!(status.success(), "{status:?}\n{log}");
}
