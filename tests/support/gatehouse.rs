//! gatehouse itself, started in-process on real listeners.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gatehouse::{App, Config};

use super::TestOrigin;

/// gatehouse on real listeners (127.0.0.1:0 unless the config says otherwise).
pub struct Gatehouse {
    pub app: Option<App>,
    pub proxy: SocketAddr,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
}

/// A POST route at `path` (whose `{id}` names the capacity), never cached, that
/// admits the member in `x-participant-id` to capacity `ns`/`{id}`.
pub fn capacity_route(path: &str, ns: &str) -> String {
    format!(
        "\n[[routes]]\npath = \"{path}\"\nmethods = [\"POST\"]\ncache = false\n[routes.capacity]\nns = \"{ns}\"\nid = \"{{id}}\"\nmember = \"header:x-participant-id\"\n"
    )
}

/// A POST route at `path` (whose `{id}` names the lock), never cached, that holds
/// lock `ns`/`{id}` (10s at most) while the origin answers.
pub fn lock_route(path: &str, ns: &str) -> String {
    format!(
        "\n[[routes]]\npath = \"{path}\"\nmethods = [\"POST\"]\ncache = false\n[routes.lock]\nns = \"{ns}\"\nid = \"{{id}}\"\nttl = \"10s\"\n"
    )
}

/// Builds a config from TOML text, filling listener addresses with 127.0.0.1:0 and
/// the origin URL when the text does not set them.
pub fn config(text: &str, origin: Option<&str>) -> Config {
    let mut table: toml::Table = text.parse().expect("test config is TOML");
    let server = table
        .entry("server")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    for key in ["listen", "api_listen", "admin_listen"] {
        server
            .entry(key)
            .or_insert_with(|| toml::Value::String("127.0.0.1:0".into()));
    }
    server
        .entry("shutdown_grace")
        .or_insert_with(|| toml::Value::String("5s".into()));
    if let Some(o) = origin {
        let origin = table
            .entry("origin")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
        origin
            .entry("url")
            .or_insert_with(|| toml::Value::String(o.into()));
    }
    let text = toml::to_string(&table).unwrap();
    match Config::from_toml_str(&text, &HashMap::new()) {
        Ok(c) => c,
        Err(errs) => panic!("test config invalid: {errs:?}\n{text}"),
    }
}

impl Gatehouse {
    pub async fn start(text: &str, origin: &TestOrigin) -> Gatehouse {
        Gatehouse::start_config(config(text, Some(&origin.url()))).await
    }

    pub async fn start_config(cfg: Config) -> Gatehouse {
        Gatehouse::start_with_path(cfg, None).await
    }

    /// Starts with a config file path (enables reloads).
    pub async fn start_with_path(cfg: Config, path: Option<std::path::PathBuf>) -> Gatehouse {
        let app = App::start(cfg, path).await.expect("gatehouse starts");
        Gatehouse {
            proxy: app.proxy_addr,
            api: app.api_addr,
            admin: app.admin_addr,
            app: Some(app),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GET on the proxy listener with `token` as the bearer credential.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        let req = self.client.get(self.url(path)).bearer_auth(token);
        req.send().await.unwrap()
    }

    /// POST of `body` as JSON on the api listener.
    pub async fn api_post(&self, path: &str, body: &impl serde::Serialize) -> reqwest::Response {
        let req = self.client.post(self.api_url(path)).json(body);
        req.send().await.unwrap()
    }

    /// GET on the api listener.
    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.api_url(path)).send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line (exact name with labels, e.g.
    /// `gatehouse_cache_lookups_total{result="hit",tier="l1"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Asserts that the metric line `series` (as for `metric`) reads `want`.
    pub async fn assert_metric(&self, series: &str, want: f64) {
        self.assert_metrics(&[(series, want)]).await;
    }

    /// Asserts each metric line (as for `metric`) reads its value, all from one scrape;
    /// a failure names every series that differs.
    pub async fn assert_metrics(&self, want: &[(&str, f64)]) {
        let text = self.metrics().await;
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|(series, want)| {
                let got = metric_value(&text, series);
                (got != *want).then(|| format!("{series} = {got}, not {want}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// `assert_metrics` for series of one metric `family`, each given by its labels
    /// (e.g. `r#"op="acquire",result="held""#`).
    pub async fn assert_family(&self, family: &str, want: &[(&str, f64)]) {
        let series: Vec<(String, f64)> = want
            .iter()
            .map(|(labels, n)| (format!("{family}{{{labels}}}"), *n))
            .collect();
        let series: Vec<(&str, f64)> = series.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        self.assert_metrics(&series).await;
    }

    /// A new HTTP/2 connection (h2c, prior knowledge) to the proxy listener, driven
    /// in its own task.
    pub async fn h2c<B>(&self) -> hyper::client::conn::http2::SendRequest<B>
    where
        B: http_body::Body + Unpin + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = tokio::net::TcpStream::connect(self.proxy).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        send
    }

    /// Whether `series` reaches `value` within 5s (for counts made as a body ends,
    /// after the client has its answer).
    pub async fn metric_reaches(&self, series: &str, value: f64) -> bool {
        super::eventually(std::time::Duration::from_secs(5), || async {
            self.metric(series).await == value
        })
        .await
    }

    pub fn state(&self) -> &Arc<gatehouse::app::AppState> {
        &self.app.as_ref().unwrap().state
    }

    /// Requests on this instance waiting for another request's origin fetch.
    pub fn waiting(&self) -> usize {
        self.state().cache.coalescer.waiting()
    }

    /// Times this instance asked the shared store for a fetch lease: a fleet leader
    /// that found the lease taken has asked once and waits for the holder.
    pub async fn lease_requests(&self) -> f64 {
        self.metric("gatehouse_store_command_duration_seconds_count{command=\"lease_acquire\"}")
            .await
    }

    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// The value of the metric line `series` in a scrape, 0 when absent.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Calls the api listener with a JSON body; returns the status and the JSON answer
/// (`Null` when the answer has no JSON body, e.g. a 204).
pub async fn api_json(
    gh: &Gatehouse,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = gh
        .client
        .request(method, gh.api_url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// POSTs `body` to the api listener, asserts the answer's status and returns its
/// JSON (`Null` when it has none).
pub async fn api_post(
    gh: &Gatehouse,
    path: &str,
    body: serde_json::Value,
    status: u16,
) -> serde_json::Value {
    let (got, answer) = api_json(gh, reqwest::Method::POST, path, body).await;
    assert_eq!(got, status, "POST {path}: {answer}");
    answer
}

/// GETs `url` and reads the answer as JSON (panics when it is not).
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}
