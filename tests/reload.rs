//! Hot reload: a changed file (reload.watch) or SIGHUP swaps routes and TTLs without
//! rebinding; an invalid file keeps the running config and counts the failure.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn write(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
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

    // Bump the mtime past the watcher's resolution before rewriting.
    tokio::time::sleep(Duration::from_millis(20)).await;
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
    let (proxy, api, admin) = (free_port(), free_port(), free_port());
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:{proxy}\"\napi_listen = \"127.0.0.1:{api}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n[origin]\nurl = \"{}\"\n",
        origin.url()
    );
    write(&path, &base);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "--config"])
        .arg(&path)
        .env("GATEHOUSE_LOG", "info")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log is on stderr.
    let log = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(log).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{proxy}{p}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            client
                .get(format!("http://127.0.0.1:{admin}/readyz"))
                .send()
                .await
                .is_ok()
        })
        .await
    );
    client.get(url("/y")).send().await.unwrap();
    write(
        &path,
        &format!("{base}[[routes]]\npath = \"/y\"\nttl = \"1m\"\n"),
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let reloaded = (0..200).any(|_| {
        rx.recv_timeout(Duration::from_millis(50))
            .is_ok_and(|l| l.contains("config reloaded"))
    });
    assert!(reloaded, "the log says the config was reloaded");
    client.get(url("/y")).send().await.unwrap();
    let r = client.get(url("/y")).send().await.unwrap();
    assert!(r.headers()["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("gatehouse; hit"));
    assert_eq!(origin.hits("/y"), 2);
    // SIGTERM drains and exits 0.
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
}
