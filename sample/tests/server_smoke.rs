//! Smoke tests of the `sample-mcp-server` binary: started as a child process on a free port,
//! driven with the rmcp client (legacy `initialize` and 2026-07-28 `server/discover`
//! lifecycles) and with raw HTTP, and checked through `/stats`.
//!
//! The child is always killed by PID from a `Drop` guard, also when an assertion fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mcp_policy_sample::deployment::{first_line_within, ChildGuard};
use rmcp::{
    model::{CallToolRequestParams, ProtocolVersion},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ClientLifecycleMode, ClientServiceExt, ServiceExt,
};
use serde_json::{json, Value};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `sample-mcp-server`; killed by PID when dropped (its guard).
struct ServerProcess {
    guard: ChildGuard,
    base: String,
}

impl ServerProcess {
    fn start(args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_sample-mcp-server"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sample-mcp-server");
        // Guard first, so the child dies even if reading the port fails below.
        let mut server = ServerProcess {
            guard: ChildGuard::new("sample-mcp-server", child),
            base: String::new(),
        };
        let stdout = server.guard.take_stdout().expect("child stdout is piped");
        let line = first_line_within(stdout, STARTUP_TIMEOUT)
            .unwrap_or_else(|e| panic!("the server's listening line: {e}"));
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let base = url
            .strip_suffix("/mcp")
            .unwrap_or_else(|| panic!("URL {url:?} does not end in /mcp"));
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "binds loopback: {base}"
        );
        assert!(!base.ends_with(":0"), "reports the real port: {base}");
        server.base = base.to_owned();
        server
    }

    fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    async fn stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.base))
            .await
            .expect("GET /stats")
            .json()
            .await
            .expect("/stats is JSON")
    }

    /// Send SIGTERM by PID and wait (bounded) for the exit status.
    fn terminate(&mut self) -> ExitStatus {
        self.guard
            .terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("server did not exit after SIGTERM: {e}"))
    }
}

fn tool_count(stats: &Value, tool: &str) -> u64 {
    stats["tool_calls"][tool].as_u64().unwrap_or(0)
}

/// Headers of the recorded POSTs whose body is a `tools/call` of `tool`.
fn tool_call_headers(stats: &Value, tool: &str) -> Vec<BTreeMap<String, String>> {
    stats["recent_posts"]
        .as_array()
        .expect("recent_posts is an array")
        .iter()
        .filter(|post| {
            let body: Value = post["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            body["method"] == "tools/call" && body["params"]["name"] == tool
        })
        .map(|post| serde_json::from_value(post["headers"].clone()).expect("headers map"))
        .collect()
}

/// One line per recorded POST: JSON-RPC method plus the MCP-relevant headers.
fn describe_posts(stats: &Value) -> String {
    let mut out = String::new();
    for post in stats["recent_posts"].as_array().into_iter().flatten() {
        let body: Value = post["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let method = body["method"].as_str().unwrap_or("<response or junk>");
        let headers = &post["headers"];
        out.push_str(&format!(
            "  {method:<28} mcp-protocol-version={} mcp-session-id={} mcp-method={} mcp-name={}\n",
            headers["mcp-protocol-version"],
            headers["mcp-session-id"]
                .as_str()
                .map(|_| "yes")
                .unwrap_or("no"),
            headers["mcp-method"],
            headers["mcp-name"],
        ));
    }
    out.push_str(&format!(
        "  gets={} deletes={}",
        stats["gets"], stats["deletes"]
    ));
    out
}

fn text_of(result: &rmcp::model::CallToolResult) -> Value {
    let text = result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map(|text| text.text.clone())
        .expect("a text content block");
    serde_json::from_str(&text).expect("tool text is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_over_stateful_streamable_http() {
    rmcp_client_initialize_lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_over_stateless_streamable_http() {
    rmcp_client_initialize_lifecycle(true).await;
}

/// The default rmcp client (`().serve(transport)`: legacy `initialize` handshake), with a
/// custom header set through the transport config.
async fn rmcp_client_initialize_lifecycle(stateless: bool) {
    let args: &[&str] = if stateless {
        &["--server", "wechat", "--stateless"]
    } else {
        &["--server", "wechat"]
    };
    let server = ServerProcess::start(args);

    // Custom headers through the transport config (sent on every request).
    let mut headers = HashMap::new();
    headers.insert(
        http::HeaderName::from_static("x-agent-id"),
        http::HeaderValue::from_static("agent-smoke"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url()).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize");
    let peer_info = client.peer_info().expect("server info after initialize");
    assert_eq!(peer_info.protocol_version, ProtocolVersion::V_2025_11_25);

    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "wechat_get_followers",
            "wechat_get_user_info",
            "wechat_mass_delete",
            "wechat_mass_preview",
            "wechat_mass_send",
            "wechat_mass_status",
            "获取粉丝总数",
        ]
    );

    let arguments = json!({
        "openids": ["oUser_0001", "oUser_0002"],
        "msg_type": "text",
        "content": "hello followers",
    });
    let result = client
        .call_tool(
            CallToolRequestParams::new("wechat_mass_send")
                .with_arguments(arguments.as_object().cloned().expect("object")),
        )
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(false));
    let reply = text_of(&result);
    assert_eq!(reply["errcode"], 0);
    assert!(reply["msg_id"].as_u64().is_some_and(|id| id > 0), "{reply}");
    assert_eq!(reply["recipients"], 2);

    let stats = server.stats().await;
    eprintln!(
        "POSTs of the rmcp client, initialize lifecycle, stateless server={stateless}:\n{}",
        describe_posts(&stats)
    );
    assert_eq!(stats["server"], "wechat");
    assert_eq!(tool_count(&stats, "wechat_mass_send"), 1, "{stats:#}");
    assert_eq!(stats["tool_calls_total"], 1);
    assert_eq!(stats["methods"]["initialize"], 1);

    // What the rmcp client puts on the wire after a legacy initialize.
    let calls = tool_call_headers(&stats, "wechat_mass_send");
    assert_eq!(calls.len(), 1);
    let sent = &calls[0];
    eprintln!("rmcp client (initialize lifecycle, stateless server={stateless}) tools/call headers: {sent:#?}");
    assert_eq!(
        sent.get("mcp-protocol-version").map(String::as_str),
        Some("2025-11-25")
    );
    // Sessions only in stateful mode; the stateless server issues no Mcp-Session-Id.
    assert_eq!(sent.contains_key("mcp-session-id"), !stateless);
    assert_eq!(
        sent.get("x-agent-id").map(String::as_str),
        Some("agent-smoke")
    );
    assert!(
        !sent.contains_key("mcp-method"),
        "no SEP-2243 headers below 2026-07-28"
    );
    assert!(!sent.contains_key("mcp-name"));
    assert_eq!(
        sent.get("accept").map(String::as_str),
        Some("text/event-stream, application/json")
    );
    // The initialize POST itself: no session yet, no protocol-version header.
    let init_post = stats["recent_posts"][0].clone();
    eprintln!("rmcp client initialize POST: {init_post:#}");
    assert!(init_post["body"]
        .as_str()
        .is_some_and(|b| b.contains("\"initialize\"")));
    assert!(init_post["headers"].get("mcp-session-id").is_none());

    client.cancel().await.expect("close the client");
    // Closing a session sends DELETE /mcp before cancel() returns (no session: no DELETE).
    let stats = server.stats().await;
    assert_eq!(stats["deletes"], u64::from(!stateless), "{stats:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_2026_07_28_against_stateful_server() {
    // rmcp serves 2026-07-28 requests statelessly even in its (legacy) session mode.
    rmcp_client_discover_lifecycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_2026_07_28_against_stateless_server() {
    rmcp_client_discover_lifecycle(true).await;
}

/// The rmcp client in the 2026-07-28 lifecycle (`server/discover`, no `initialize`), with a
/// custom header set through a caller-built `reqwest::Client`'s default headers.
async fn rmcp_client_discover_lifecycle(stateless: bool) {
    let args: &[&str] = if stateless {
        &["--server", "wechat", "--stateless"]
    } else {
        &["--server", "wechat"]
    };
    let server = ServerProcess::start(args);

    // Custom headers through a caller-built reqwest::Client (default headers).
    let mut default_headers = reqwest::header::HeaderMap::new();
    default_headers.insert(
        "x-agent-id",
        reqwest::header::HeaderValue::from_static("agent-modern"),
    );
    let http = reqwest::Client::builder()
        .default_headers(default_headers)
        .build()
        .expect("reqwest client");
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url()),
    );
    let client = ()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover");
    let peer_info = client.peer_info().expect("server info after discover");
    assert_eq!(peer_info.protocol_version, ProtocolVersion::V_2026_07_28);

    let tools = client.list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 7);
    let result = client
        .call_tool(
            CallToolRequestParams::new("wechat_get_user_info").with_arguments(
                json!({"openid": "oUser_0001"})
                    .as_object()
                    .cloned()
                    .expect("object"),
            ),
        )
        .await
        .expect("tools/call");
    assert_eq!(text_of(&result)["openid"], "oUser_0001");

    let stats = server.stats().await;
    eprintln!(
        "POSTs of the rmcp client, 2026-07-28 discover lifecycle, stateless server={stateless}:\n{}",
        describe_posts(&stats)
    );
    assert_eq!(tool_count(&stats, "wechat_get_user_info"), 1, "{stats:#}");
    assert_eq!(stats["methods"]["server/discover"], 1, "{stats:#}");
    assert!(
        stats["methods"].get("initialize").is_none(),
        "no initialize in 2026-07-28"
    );
    let calls = tool_call_headers(&stats, "wechat_get_user_info");
    assert_eq!(calls.len(), 1);
    let sent = &calls[0];
    eprintln!("rmcp client (2026-07-28 discover lifecycle) tools/call headers: {sent:#?}");
    assert_eq!(
        sent.get("mcp-protocol-version").map(String::as_str),
        Some("2026-07-28")
    );
    assert_eq!(
        sent.get("mcp-method").map(String::as_str),
        Some("tools/call")
    );
    assert_eq!(
        sent.get("mcp-name").map(String::as_str),
        Some("wechat_get_user_info")
    );
    assert!(
        !sent.contains_key("mcp-session-id"),
        "no sessions in 2026-07-28"
    );
    assert_eq!(
        sent.get("x-agent-id").map(String::as_str),
        Some("agent-modern")
    );
    let body = stats["recent_posts"]
        .as_array()
        .and_then(|posts| {
            posts.iter().find(|p| {
                p["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("wechat_get_user_info"))
            })
        })
        .and_then(|p| p["body"].as_str())
        .map(str::to_owned)
        .unwrap_or_default();
    eprintln!("rmcp client (2026-07-28) tools/call body: {body}");

    client.cancel().await.expect("close the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_raw_post_is_answered_with_json_and_counted() {
    let server = ServerProcess::start(&["--server", "notify", "--stateless"]);
    let http = reqwest::Client::new();
    let request = json!({
        "jsonrpc": "2.0",
        "id": 42,
        "method": "tools/call",
        "params": {"name": "ding_send_text", "arguments": {"text": "build is green"}},
    });
    let response = http
        .post(server.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-agent-id", "agent-raw")
        .body(request.to_string())
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(response.headers().get("mcp-session-id").is_none());
    let reply: Value = response.json().await.expect("JSON-RPC response");
    assert_eq!(reply["jsonrpc"], "2.0");
    assert_eq!(reply["id"], 42);
    assert_eq!(reply["result"]["isError"], false, "{reply:#}");
    let text = reply["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Value>(text).ok(),
        Some(json!({"errcode": 0, "errmsg": "ok"}))
    );

    // An unparseable body is still a POST; GET/DELETE are counted even though rmcp's stateless
    // mode answers them 405.
    let junk = http
        .post(server.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{not json")
        .send()
        .await
        .expect("POST junk");
    assert!(junk.status().is_client_error());
    let get = http.get(server.mcp_url()).send().await.expect("GET /mcp");
    assert_eq!(get.status(), 405);

    let stats = server.stats().await;
    assert_eq!(stats["server"], "notify");
    assert_eq!(stats["stateless"], true);
    assert_eq!(stats["posts"], 2, "{stats:#}");
    assert_eq!(stats["gets"], 1);
    assert_eq!(tool_count(&stats, "ding_send_text"), 1);
    assert_eq!(stats["tool_calls_total"], 1);
    let calls = tool_call_headers(&stats, "ding_send_text");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].get("x-agent-id").map(String::as_str),
        Some("agent-raw")
    );
    assert_eq!(
        stats["recent_posts"][0]["body"].as_str(),
        Some(request.to_string().as_str()),
        "the recorded body is the raw body"
    );

    let reset: Value = http
        .post(format!("{}/stats/reset", server.base))
        .send()
        .await
        .expect("POST /stats/reset")
        .json()
        .await
        .expect("reset answers JSON");
    assert_eq!(reset["posts"], 0);
    let stats = server.stats().await;
    assert_eq!(
        (stats["posts"].as_u64(), stats["tool_calls_total"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(stats["recent_posts"].as_array().map(Vec::len), Some(0));
}

#[test]
fn sigterm_exits_zero() {
    let mut server = ServerProcess::start(&["--server", "notify"]);
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn bad_arguments_exit_2() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sample-mcp-server"))
        .args(["--server", "mail"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sample-mcp-server");
    let stdout = first_line_within(child.stdout.take().expect("piped"), STARTUP_TIMEOUT);
    let mut guard = ChildGuard::new("sample-mcp-server --server mail", child);
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let status = loop {
        if let Some(status) = guard.try_exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after {STARTUP_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
    assert!(
        matches!(&stdout, Err(e) if e.starts_with("output ended first (said \"\")")),
        "{stdout:?}"
    );
}
