//! Real `redis-server` processes on free ports (never 6379): a single server (plain
//! or TLS-only), a Sentinel watching one, and a Redis Cluster of masters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually_blocking, free_port, make_certs};

/// Sends one inline command with a raw TCP connection and returns the reply text.
pub fn redis_raw(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// One real `redis-server` on a free port, with no persistence, in a temp dir.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// CA file when the server speaks TLS only.
    tls_ca: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _ in 0..20 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
                extra: extra.clone(),
                tls_ca: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port (is redis-server installed?)");
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a
    /// CA made for the test (returned path: the CA's PEM file).
    pub fn start_tls() -> (RedisServer, std::path::PathBuf) {
        let certs = tempfile::tempdir().expect("tempdir");
        let d = certs.path();
        make_certs(d);
        let ca = d.join("ca.crt");
        for _ in 0..20 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
                extra: Vec::new(),
                tls_ca: Some(ca.clone()),
            };
            server.extra = vec![
                "--tls-cert-file".into(),
                d.join("server.crt").display().to_string(),
                "--tls-key-file".into(),
                d.join("server.key").display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            if server.spawn() {
                // Keep the certificate directory alive as long as the server.
                let kept = certs.keep();
                return (server, kept.join("ca.crt"));
            }
        }
        panic!("could not start a TLS redis-server");
    }

    fn ping(&self) -> bool {
        match &self.tls_ca {
            None => redis_raw(self.port, "PING").is_some_and(|r| r.starts_with("+PONG")),
            Some(ca) => Command::new("redis-cli")
                .args(["--tls", "--cacert"])
                .arg(ca)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")),
        }
    }

    fn spawn(&mut self) -> bool {
        assert_ne!(self.port, 6379, "tests never use port 6379");
        let mut cmd = Command::new("redis-server");
        let (plain, tls) = if self.tls_ca.is_some() {
            ("0".to_string(), Some(self.port.to_string()))
        } else {
            (self.port.to_string(), None)
        };
        if let Some(tls_port) = tls {
            cmd.arg("--tls-port").arg(tls_port);
        }
        cmd.arg("--port")
            .arg(plain)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        // Up when it answers; given up on when it exits (e.g. the port was taken).
        let mut exited = false;
        let up = eventually_blocking(Duration::from_secs(10), || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || self.ping()
        });
        if up && !exited {
            self.child = Some(child);
            return true;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (simulating an outage); `restart` brings it back on the
    /// same port, empty.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "redis-server restart on port {} failed",
            self.port
        );
    }

    pub fn cmd(&self, command: &str) -> String {
        redis_raw(self.port, command).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Sentinel process monitoring one master as `mymaster`.
pub struct Sentinel {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    pub fn start(master: &RedisServer) -> Sentinel {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\nsentinel down-after-milliseconds mymaster 1000\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .unwrap();
            let Ok(child) = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut s = Sentinel {
                child: Some(child),
                port,
                _dir: dir,
            };
            let watching = eventually_blocking(Duration::from_secs(10), || {
                redis_raw(port, "SENTINEL get-master-addr-by-name mymaster")
                    .is_some_and(|r| r.contains(&master.port.to_string()))
            });
            if watching {
                return s;
            }
            s.stop();
        }
        panic!("could not start redis sentinel");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local Redis Cluster of real processes (masters only).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            eventually_blocking(Duration::from_secs(20), || nodes
                .iter()
                .all(|n| n.cmd("CLUSTER INFO").contains("cluster_state:ok"))),
            "cluster did not become ok"
        );
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}
