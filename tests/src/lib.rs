//! Harness for the end-to-end tests: the sample deployment (real Envoy with the built filter in
//! front of the real sample MCP servers) started per test on free ports, torn down by `Drop`.
//!
//! Artifacts come from the environment (`make e2e-test` sets them) or default to the paths the
//! Makefile builds: ENVOY_BIN, MCP_POLICY_WASM, MCP_POLICY_NATIVE, SAMPLE_SERVER_BIN,
//! MCP_POLICY_BIN. `FILTER_BUILD=wasm|native` picks the build of the filter every test runs.

pub mod gateway;
pub mod http;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, start_sample_server_with, write_filter_config, EnvoyOptions,
    EnvoyProcess, EnvoyTemplate, FilterBuild, ServerProcess,
};
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn artifact(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default));
    assert!(
        path.exists(),
        "{var}: {} does not exist; run `make e2e-test` (it builds everything first)",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    artifact("ENVOY_BIN", ".venv/bin/envoy")
}
/// The build of the filter under test (`FILTER_BUILD`, the .wasm when unset).
pub fn filter_build() -> FilterBuild {
    FilterBuild::from_env().unwrap_or_else(|e| panic!("{e}"))
}
/// The artefact of the build under test.
pub fn filter_path() -> PathBuf {
    match filter_build() {
        FilterBuild::Wasm => wasm_path(),
        FilterBuild::Native => {
            artifact("MCP_POLICY_NATIVE", FilterBuild::Native.default_artifact())
        }
    }
}
/// The native module built with its panic probe (`make native-probe`).
pub fn native_probe_path() -> PathBuf {
    artifact(
        "MCP_POLICY_NATIVE_PROBE",
        "target/native-probe/libmcp_policy_native.so",
    )
}
pub fn wasm_path() -> PathBuf {
    artifact("MCP_POLICY_WASM", FilterBuild::Wasm.default_artifact())
}
pub fn sample_server_bin() -> PathBuf {
    artifact("SAMPLE_SERVER_BIN", "target/debug/sample-mcp-server")
}
pub fn approval_service_bin() -> PathBuf {
    artifact("APPROVAL_SERVICE_BIN", "target/debug/approval-service")
}
pub fn policy_cli_bin() -> PathBuf {
    artifact("MCP_POLICY_BIN", "target/debug/mcp-policy")
}

fn filter_template() -> String {
    let file = filter_build().filter_template();
    std::fs::read_to_string(repo_root().join("envoy").join(file))
        .unwrap_or_else(|e| panic!("envoy/{file}: {e}"))
}

pub fn sample_policy(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("envoy/policies").join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON-RPC `tools/call` of `tool` with `arguments`.
pub fn tool_call_body(id: u64, tool: &str, arguments: &Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sleep until at least `needed` seconds remain in the current `window`-second window, so a
/// test that counts within one window cannot straddle a reset.
pub fn wait_for_window_room(window: u64, needed: u64) {
    let left = window - now_unix() % window;
    if left < needed {
        std::thread::sleep(Duration::from_millis(left * 1000 + 100));
    }
}

/// One of Envoy's counters from its admin endpoint (`/stats`, plain text), by exact name.
/// Panics if Envoy has no such stat: a misspelt name must not read as 0.
pub fn envoy_stat(admin_port: u16, name: &str) -> u64 {
    let (_, body) = http_get(admin_port, &format!("/stats?filter=^{name}$")).expect("admin /stats");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("Envoy has no stat {name:?}:\n{body}"))
}

/// An `http_filters` entry for the filter under test with `policy` (flow style, so it fits at
/// any indentation), configured as in envoy/envoy.yaml.
pub fn filter_entry(name: &str, policy: &str) -> String {
    filter_build().filter_entry(name, &filter_path(), policy)
}

/// What Envoy itself says when the filter refuses its configuration.
pub fn envoy_refusal() -> &'static str {
    match filter_build() {
        FilterBuild::Wasm => "Unable to create Wasm plugin",
        FilterBuild::Native => "Failed to initialize dynamic module",
    }
}

/// The filter state key of the audit record, for an access log's `%FILTER_STATE(…:PLAIN)%`.
pub fn audit_key() -> &'static str {
    filter_build().audit_key()
}

#[derive(Debug, Clone)]
pub struct DeploymentOptions {
    pub wechat_policy: String,
    pub notify_policy: String,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// Run the sample servers without sessions, answering plain JSON.
    pub stateless: bool,
    /// Where the `approvals` cluster points (default: a free port nobody listens on).
    pub approval_port: Option<u16>,
    /// The WeChat sample server lists this many items per page (`--page-size`); `None`: one
    /// page.
    pub page_size: Option<u32>,
}

impl Default for DeploymentOptions {
    fn default() -> Self {
        DeploymentOptions {
            wechat_policy: sample_policy("wechat.json"),
            notify_policy: sample_policy("notify.json"),
            concurrency: 2,
            stateless: false,
            approval_port: None,
            page_size: None,
        }
    }
}

pub struct Deployment {
    // Field order is drop order: Envoy stops before the servers behind it.
    pub envoy: EnvoyProcess,
    pub wechat: ServerProcess,
    pub notify: ServerProcess,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Deployment {
    pub fn start(options: DeploymentOptions) -> Deployment {
        Self::try_start(options).unwrap_or_else(|e| panic!("deployment did not start: {e}"))
    }

    pub fn try_start(options: DeploymentOptions) -> Result<Deployment, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let paging: Vec<String> = options
            .page_size
            .map(|size| vec!["--page-size".to_owned(), size.to_string()])
            .unwrap_or_default();
        // Only the WeChat server pages.
        let wechat =
            start_sample_server_with(&sample_server_bin(), "wechat", options.stateless, &paging)?;
        let notify =
            start_sample_server_with(&sample_server_bin(), "notify", options.stateless, &[])?;
        let port = free_port().map_err(|e| e.to_string())?;
        let admin_port = free_port().map_err(|e| e.to_string())?;
        let template = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml"))
            .map_err(|e| e.to_string())?;
        let filter_dir = dir.path().join("filters");
        write_filter_config(
            &filter_template(),
            &filter_dir,
            "wechat",
            &filter_path(),
            &options.wechat_policy,
        )?;
        write_filter_config(
            &filter_template(),
            &filter_dir,
            "notify",
            &filter_path(),
            &options.notify_policy,
        )?;
        let config = EnvoyTemplate::default()
            .set("LISTENER_PORT", port)
            .set("ADMIN_PORT", admin_port)
            .set("WECHAT_PORT", wechat.port)
            .set("NOTIFY_PORT", notify.port)
            .set(
                "APPROVAL_PORT",
                match options.approval_port {
                    Some(port) => port,
                    None => free_port().map_err(|e| e.to_string())?,
                },
            )
            .set("FILTER_CONFIG_DIR", filter_dir.display())
            .set("AUDIT_KEY", audit_key())
            .set("ACCESS_LOG", dir.path().join("access.log").display())
            .render(&template)?;
        let envoy = start_envoy(&EnvoyOptions {
            envoy_bin: envoy_bin(),
            config,
            work_dir: dir.path().to_path_buf(),
            concurrency: options.concurrency,
            admin_port,
            log_to_stderr: false,
        })?;
        Ok(Deployment {
            envoy,
            wechat,
            notify,
            port,
            _dir: dir,
        })
    }

    /// Deliver a new policy to the running Envoy for `server`, as `make run` does when a policy
    /// file changes (but without checking it first: Envoy and the filter decide).
    pub fn replace_policy(&self, server: &str, policy: &str) {
        write_filter_config(
            &filter_template(),
            &self._dir.path().join("filters"),
            server,
            &filter_path(),
            policy,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The MCP endpoint Envoy serves for `server` ("wechat" or "notify").
    pub fn url(&self, server: &str) -> String {
        format!("http://127.0.0.1:{}/{server}/mcp", self.port)
    }

    fn server(&self, server: &str) -> &ServerProcess {
        match server {
            "wechat" => &self.wechat,
            "notify" => &self.notify,
            other => panic!("no sample server {other}"),
        }
    }

    /// What the upstream server itself says it received (its /stats, not through Envoy).
    pub fn upstream_stats(&self, server: &str) -> Value {
        let (status, body) = http_get(self.server(server).port, "/stats").expect("upstream /stats");
        assert_eq!(status, 200, "/stats: {body}");
        serde_json::from_str(&body).expect("/stats JSON")
    }

    pub fn upstream_tool_calls(&self, server: &str, tool: &str) -> u64 {
        self.upstream_stats(server)["tool_calls"][tool]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn upstream_posts(&self, server: &str) -> u64 {
        self.upstream_stats(server)["posts"]
            .as_u64()
            .expect("/stats has posts")
    }

    /// Every request that reached the upstream's `/mcp`, whatever its method.
    pub fn upstream_requests(&self, server: &str) -> u64 {
        self.upstream_stats(server)["requests"]
            .as_u64()
            .expect("/stats has requests")
    }

    /// Envoy's own counters from its admin endpoint, by exact name.
    pub fn envoy_stat(&self, name: &str) -> u64 {
        envoy_stat(self.envoy.admin_port, name)
    }

    /// The sample value of `mcp_policy_tool_calls_total` for these labels on Envoy's Prometheus
    /// endpoint; `None` while the filter never counted that combination (so that a misspelt
    /// label cannot read as 0).
    pub fn decisions_counted(&self, server: &str, tool: &str, decision: &str) -> Option<u64> {
        let (_, text) =
            http_get(self.envoy.admin_port, "/stats/prometheus").expect("admin /stats/prometheus");
        let prefix = format!(
            r#"mcp_policy_tool_calls_total{{mcp_server="{server}",mcp_tool="{tool}",mcp_decision="{decision}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().parse().expect("a counter value"))
    }

    /// The access log's JSON lines, parsed, with each `mcp_policy` audit record parsed too.
    /// Waits up to 5 s for at least `at_least` lines (Envoy flushes every 200 ms here).
    pub fn audit_records(&self, at_least: usize) -> Vec<Value> {
        let path = self._dir.path().join("access.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|mut line| {
                    let record = line["mcp_policy"]
                        .as_str()
                        .and_then(|r| serde_json::from_str::<Value>(r).ok());
                    line["mcp_policy"] = record.unwrap_or(Value::Null);
                    line
                })
                .collect();
            if lines.len() >= at_least || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn envoy_log(&self) -> String {
        self.envoy.log()
    }

    /// Envoy flushes its log file about once a second: poll until `needle` shows up.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.envoy.log();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Run `command` to the end under a guard that kills it, and every process it started (its own
/// process group, by id), when the test fails or when it is still running after `patience`; stdin is closed, stdout and stderr go to files in a
/// temporary directory (no pipe to fill). Panics, with what it printed, if it overran.
pub fn run_guarded(
    name: &str,
    mut command: std::process::Command,
    patience: Duration,
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut guard = mcp_policy_sample::deployment::ChildGuard::new_group(name, child);
    let read = |path: &std::path::Path| std::fs::read(path).unwrap_or_default();
    let deadline = std::time::Instant::now() + patience;
    let status = loop {
        if let Some(status) = guard.try_exit_status() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} still running after {patience:?}:\n{}\n{}",
            String::from_utf8_lossy(&read(&out)),
            String::from_utf8_lossy(&read(&err))
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}
