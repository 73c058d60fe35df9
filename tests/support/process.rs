//! gatehouse the binary, run as a child process: `check` and `run` that must refuse a
//! config, and a running instance on free ports whose log (stderr) the test reads.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{eventually, free_port};

/// The built `gatehouse` binary, with no `REDIS_URL` from the caller's environment
/// (set one with `.env` where a test means to).
pub fn gatehouse_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    c.env_remove("REDIS_URL");
    c
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `gatehouse check --config <path>` with `env`; returns its exit code and
/// stderr.
pub fn check_config(path: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = gatehouse_bin()
        .args(["check", "--config"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Runs `gatehouse run --config <path>` with `env` and asserts it refuses to start:
/// exit code 2, and `port` (one of the config's listeners) never bound. Returns its
/// stderr, where the problems are named.
pub fn run_refused(path: &Path, env: &[(&str, &str)], port: u16) -> String {
    let out = gatehouse_bin()
        .args(["run", "--config"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    TcpListener::bind(("127.0.0.1", port)).expect("the port was never bound");
    err
}

/// Free ports for the three listeners of a gatehouse child process.
#[derive(Clone, Copy, Debug)]
pub struct Listeners {
    pub proxy: u16,
    pub api: u16,
    pub admin: u16,
}

impl Listeners {
    pub fn free() -> Listeners {
        Listeners {
            proxy: free_port(),
            api: free_port(),
            admin: free_port(),
        }
    }

    /// The `[server]` section binding them.
    pub fn toml(&self) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\napi_listen = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n",
            self.proxy, self.api, self.admin
        )
    }

    /// A URL on the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy)
    }
}

/// `gatehouse run --config <path>` as a child process; its stderr (the log) is read
/// line by line on a thread. Killed on drop if still running.
pub struct GatehouseProcess {
    child: Child,
    pub listeners: Listeners,
    lines: mpsc::Receiver<String>,
    /// Log lines already taken off `lines` by `wait_for_log`.
    read: Vec<String>,
}

impl GatehouseProcess {
    /// Starts it; `log` is its `GATEHOUSE_LOG` (None: unset, the config decides).
    pub fn start(path: &Path, listeners: Listeners, log: Option<&str>) -> GatehouseProcess {
        let mut cmd = gatehouse_bin();
        cmd.args(["run", "--config"]).arg(path);
        match log {
            Some(l) => cmd.env("GATEHOUSE_LOG", l),
            None => cmd.env_remove("GATEHOUSE_LOG"),
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        GatehouseProcess {
            child,
            listeners,
            lines,
            read: Vec::new(),
        }
    }

    /// Waits until the admin listener says it is ready.
    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/readyz", self.listeners.admin);
        assert!(
            eventually(Duration::from_secs(10), || async {
                client.get(&url).send().await.is_ok()
            })
            .await,
            "gatehouse did not start"
        );
    }

    /// Waits up to `within` for a log line containing `needle`; whether one came.
    pub fn wait_for_log(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                return false;
            };
            let found = line.contains(needle);
            self.read.push(line);
            if found {
                return true;
            }
        }
        false
    }

    /// Sends a signal (`HUP`, `TERM`, ...) with `kill`.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name}");
    }

    /// SIGTERM, then waits for the exit; returns how it exited and its whole log.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        // The log thread ends with stderr, so this reads to the last line.
        self.read.extend(self.lines.iter());
        (status, self.read.join("\n"))
    }
}

impl Drop for GatehouseProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
