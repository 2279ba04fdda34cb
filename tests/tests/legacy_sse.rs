//! The legacy MCP HTTP+SSE transport (protocol 2024-11-05) through the real Envoy: a client GETs
//! `/sse`, the server's first event (`endpoint`) names `/messages/?session_id=…`, the client POSTs
//! JSON-RPC there (answered 202) and reads the answers on the stream. The upstream is a real
//! legacy server written with the official Python SDK (tests/servers/legacy_sse_server.py),
//! whose own counts prove what reached it. Sessions are driven in raw HTTP here (so every status
//! and event is asserted exactly), and once with the Python SDK's own `sse_client`
//! (tests/clients/legacy_sse_agent.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::http::{post, tools_call, Response};
use e2e::{envoy_bin, repo_root, wait_for_window_room};
use futures_util::StreamExt;
use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, ChildGuard, EnvoyOptions, EnvoyProcess,
};
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "wechat_get_followers":{},
  "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":2,"scope":"session"}]},
  "wechat_mass_delete":{"action":"deny","reason":"deleting needs a human"}}}"#;

/// How long any single expected event (an answer on the stream, a process getting ready) may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn python() -> PathBuf {
    std::env::var_os("PYTHON_MCP")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// The legacy SSE server, started with the venv's Python; killed (by PID) when dropped.
struct LegacyServer {
    guard: ChildGuard,
    port: u16,
    log: PathBuf,
}

impl LegacyServer {
    fn start(dir: &Path) -> LegacyServer {
        let port = free_port().unwrap();
        let log = dir.join("legacy_sse_server.log");
        let child = Command::new(python())
            .arg(repo_root().join("tests/servers/legacy_sse_server.py"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start legacy_sse_server.py");
        let mut server = LegacyServer {
            guard: ChildGuard::new("legacy_sse_server.py", child),
            port,
            log,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = server.guard.try_exit_status() {
                panic!("legacy server exited ({status}):\n{}", server.log());
            }
            if matches!(http_get(port, "/stats"), Ok((200, _))) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "legacy server not ready:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// tools/call executions per tool, as the server itself counted them.
    fn tool_calls(&self) -> Value {
        let (status, body) = http_get(self.port, "/stats").expect("upstream /stats");
        assert_eq!(status, 200, "/stats: {body}");
        serde_json::from_str::<Value>(&body).expect("/stats JSON")["tool_calls"].clone()
    }

    fn executed(&self, tool: &str) -> u64 {
        self.tool_calls()[tool].as_u64().unwrap_or(0)
    }
}

struct Setup {
    // Field order is drop order: Envoy stops before the server behind it.
    _envoy: EnvoyProcess,
    server: LegacyServer,
    port: u16,
    dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = LegacyServer::start(dir.path());
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    // `timeout: 0s`: the SSE stream stays open as long as the session lives.
    let config = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: legacy
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: legacy
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: {{ path: /sse }}
                route: {{ cluster: legacy_sse, timeout: 0s }}
              - match: {{ prefix: /messages/ }}
                route: {{ cluster: legacy_sse, timeout: 0s }}
          http_filters:
          {filter}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: legacy_sse
    type: STATIC
    load_assignment:
      cluster_name: legacy_sse
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"#,
        filter = e2e::filter_entry("legacy", POLICY),
        upstream = server.port,
    );
    let envoy = start_envoy(&EnvoyOptions {
        envoy_bin: envoy_bin(),
        config,
        work_dir: dir.path().join("envoy"),
        concurrency: 2,
        admin_port: admin,
        log_to_stderr: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _envoy: envoy,
        server,
        port,
        dir,
    }
}

/// Server-sent events read off a streaming response body.
struct EventStream {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event as (event type, data); comments (keep-alive pings) are skipped.
    async fn next(&mut self) -> (String, String) {
        let (mut event, mut data) = (String::new(), Vec::<String>::new());
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8(raw).expect("UTF-8 event stream");
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() || !event.is_empty() {
                        let event = if event.is_empty() {
                            "message".into()
                        } else {
                            event
                        };
                        return (event, data.join("\n"));
                    }
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    _ => {} // comments (": ping"), id, retry
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("no event on the SSE stream in time")
                .expect("the SSE stream ended")
                .expect("reading the SSE stream");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

/// One legacy session: the open SSE stream and the message endpoint it named.
struct LegacySession {
    events: EventStream,
    /// Absolute URL of the message endpoint (`…/messages/?session_id=…`).
    endpoint: String,
    session_id: String,
    /// Every JSON-RPC message that arrived on the stream, in order.
    received: Vec<Value>,
}

impl LegacySession {
    async fn open(port: u16) -> LegacySession {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/sse"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET /sse");
        assert_eq!(response.status(), 200, "GET /sse");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let mut events = EventStream {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
        };
        let (event, path) = events.next().await;
        assert_eq!(event, "endpoint", "the first event names the endpoint");
        let session_id = path
            .strip_prefix("/messages/?session_id=")
            .unwrap_or_else(|| panic!("unexpected endpoint {path:?}"))
            .to_owned();
        assert_eq!(session_id.len(), 32, "{path}");
        LegacySession {
            events,
            endpoint: format!("http://127.0.0.1:{port}{path}"),
            session_id,
            received: Vec::new(),
        }
    }

    async fn post(&self, body: &str) -> Response {
        post(&self.endpoint, body.to_owned(), &[]).await
    }

    /// The answer with this id, read off the stream.
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let (event, data) = self.events.next().await;
            assert_eq!(event, "message", "{data}");
            let message: Value = serde_json::from_str(&data).expect("JSON-RPC on the stream");
            self.received.push(message.clone());
            if message["id"] == id {
                return message;
            }
        }
    }

    /// The 2024-11-05 handshake: initialize (answered on the stream), then initialized.
    async fn initialize(&mut self) {
        let accepted = self
            .post(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"legacy-e2e","version":"1"}}}"#)
            .await;
        assert_eq!(accepted.status, 202, "initialize: {accepted:?}");
        let answer = self.answer(1).await;
        assert_eq!(
            answer["result"]["protocolVersion"], "2024-11-05",
            "{answer}"
        );
        assert_eq!(
            answer["result"]["serverInfo"]["name"], "legacy-wechat",
            "{answer}"
        );
        let initialized = self
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(initialized.status, 202, "initialized: {initialized:?}");
    }

    /// A tools/call the filter lets through: 202 on the POST, the result on the stream.
    async fn call_allowed(&mut self, id: u64, tool: &str) -> String {
        let accepted = self.post(&tools_call(id, tool)).await;
        assert_eq!(
            (accepted.status, accepted.body.as_str()),
            (202, "Accepted"),
            "{tool}: {accepted:?}"
        );
        let answer = self.answer(id).await;
        assert!(
            answer.get("error").is_none() && answer["result"]["isError"] != true,
            "{answer}"
        );
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text in {answer}"))
            .to_owned()
    }

    fn saw_answer_to(&self, id: u64) -> bool {
        self.received.iter().any(|m| m["id"] == id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_sse_transport_is_enforced_through_envoy() {
    // The send limit counts per hour: do not straddle the top of the hour.
    wait_for_window_room(3600, 30);
    let s = setup();
    let mut a = LegacySession::open(s.port).await;
    a.initialize().await;

    // Listing passes through; the result comes back on the stream.
    let listed = a
        .post(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#)
        .await;
    assert_eq!(listed.status, 202, "{listed:?}");
    let tools = a.answer(9).await;
    assert!(tools["result"]["tools"].as_array().is_some(), "{tools}");

    // Allowed: forwarded unchanged, executed once, answered on the stream.
    let text = a.call_allowed(2, "wechat_get_followers").await;
    assert!(text.starts_with("followers:"), "{text}");
    assert_eq!(s.server.executed("wechat_get_followers"), 1);

    // Denied: answered by the filter itself with 403 and a JSON-RPC error; never upstream.
    let denied = a.post(&tools_call(3, "wechat_mass_delete")).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.header("content-type"), Some("application/json"));
    let body = denied.json();
    assert_eq!(
        body,
        json!({"jsonrpc":"2.0","id":3,"error":{
            "code":-32003,
            "message":"Tool \"wechat_mass_delete\" is not allowed by policy: deleting needs a human",
            "data":{"tool":"wechat_mass_delete","decision":"denied","reason":"deleting needs a human"}}}),
    );
    assert_eq!(s.server.executed("wechat_mass_delete"), 0);

    // Session-scoped limit keyed on the legacy session id: two sends, then 429.
    for id in [4, 5] {
        let text = a.call_allowed(id, "wechat_mass_send").await;
        assert!(text.starts_with("sent to"), "{text}");
    }
    let limited = a.post(&tools_call(6, "wechat_mass_send")).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric retry-after: {limited:?}"));
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.header("x-envoy-ratelimited"), Some("true"));
    let error = &limited.json()["error"];
    assert_eq!(error["code"], -32029, "{error}");
    assert_eq!(limited.json()["id"], 6);
    assert_eq!(
        (
            error["data"]["counter"].clone(),
            error["data"]["scope"].clone(),
            error["data"]["used"].clone()
        ),
        (json!("sends"), json!("session"), json!(2)),
        "{error}"
    );
    assert_eq!(s.server.executed("wechat_mass_send"), 2);

    // A second session (its own GET /sse, its own session id) has its own two sends.
    let mut b = LegacySession::open(s.port).await;
    assert_ne!(a.session_id, b.session_id);
    b.initialize().await;
    for id in [2, 3] {
        b.call_allowed(id, "wechat_mass_send").await;
    }
    let limited_b = b.post(&tools_call(4, "wechat_mass_send")).await;
    assert_eq!(limited_b.status, 429, "{limited_b:?}");
    assert_eq!(s.server.executed("wechat_mass_send"), 4);

    // The session id twice in the query (both spellings): 400, not forwarded. The server reads
    // `session_id` and would have run the call on session A.
    let ambiguous = post(
        &format!("{}&sessionId={}", a.endpoint, a.session_id),
        tools_call(7, "wechat_get_followers"),
        &[],
    )
    .await;
    assert_eq!(ambiguous.status, 400, "{ambiguous:?}");
    let error = &ambiguous.json()["error"];
    assert_eq!(error["code"], -32600, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the session id is given more than once in the query"),
        "{error}"
    );

    // Session A still works after its refusals; its stream carried only forwarded answers.
    assert!(a
        .call_allowed(8, "wechat_get_followers")
        .await
        .starts_with("followers:"));
    for refused in [3, 6, 7] {
        assert!(
            !a.saw_answer_to(refused),
            "answer to refused id {refused} on the stream"
        );
    }
    assert!(!b.saw_answer_to(4));
    assert_eq!(
        s.server.tool_calls(),
        json!({"wechat_get_followers": 2, "wechat_mass_send": 4})
    );

    // The official Python SDK's legacy client, through the filter: the allowed call works.
    let sse_url = format!("http://127.0.0.1:{}/sse", s.port);
    let steps = run_sdk_agent(&s, &sse_url, json!([["wechat_get_followers", {}]]), 5.0);
    // (tools/list answers travel on the SSE stream, which the filter passes through untouched.)
    let listed = steps[1]["tools"].as_array().cloned().unwrap_or_default();
    assert!(listed.contains(&json!("wechat_get_followers")), "{steps:?}");
    assert_eq!(steps[2]["ok"], true, "{steps:?}");
    assert!(
        steps[2]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("followers:"),
        "{steps:?}"
    );
    assert_eq!(s.server.executed("wechat_get_followers"), 3);

    // When its POST is refused (403), the SDK's transport raises inside its POST writer (which
    // ends it) instead of handing the JSON-RPC error to the caller: the call waits for an answer
    // that never comes, until the session's read timeout. What it reports is printed for the
    // record; only that the call did not succeed and never reached the server is asserted.
    let steps = run_sdk_agent(
        &s,
        &sse_url,
        json!([["wechat_mass_delete", {}], ["wechat_get_followers", {}]]),
        1.0,
    );
    eprintln!("Python SDK sse_client, a call refused with 403, then an allowed call:");
    for step in &steps {
        eprintln!("  {step}");
    }
    assert_eq!(steps[2]["tool"], "wechat_mass_delete", "{steps:?}");
    assert_eq!(steps[2]["ok"], false, "{steps:?}");
    assert_eq!(s.server.executed("wechat_mass_delete"), 0);
}

/// Run tests/clients/legacy_sse_agent.py (killed by PID if it outlives its deadline) and parse
/// its JSON lines.
fn run_sdk_agent(s: &Setup, url: &str, calls: Value, call_timeout: f64) -> Vec<Value> {
    let out = s.dir.path().join("agent.out");
    let err = s.dir.path().join("agent.err");
    let child = Command::new(python())
        .arg(repo_root().join("tests/clients/legacy_sse_agent.py"))
        .arg(url)
        .arg(calls.to_string())
        .args(["--call-timeout", &call_timeout.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start legacy_sse_agent.py");
    let mut agent = ChildGuard::new("legacy_sse_agent.py", child);
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = agent.try_exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the SDK agent did not finish:\n{}\n{}",
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success(),
        "SDK agent failed ({status}):\n{stdout}\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}
