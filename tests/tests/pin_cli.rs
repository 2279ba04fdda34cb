//! `mcp-policy pin URL`, the built binary, against live servers: the sample server directly and
//! through Envoy with the filter (Streamable HTTP), the legacy Python SSE server (HTTP+SSE), a
//! server that pages its tool list, and servers that cannot be pinned. The pins it prints must
//! be exactly what the filter's own `definition_sha256` makes of each tool as the official Rust
//! MCP SDK (rmcp) lists it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{
    policy_cli_bin, repo_root, run_guarded, sample_server_bin, Deployment, DeploymentOptions,
};
use mcp_policy_engine::wire::definition::definition_sha256;
use mcp_policy_sample::deployment::{
    free_port, http_get, start_sample_server, start_sample_server_with, ChildGuard,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Map, Value};

/// How long one run of the binary, or a server getting ready, may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn pin(args: &[&str]) -> Output {
    let mut command = Command::new(policy_cli_bin());
    command.arg("pin").args(args);
    run_guarded("mcp-policy pin", command, PATIENCE)
}

/// What a successful run printed, checked for its form (two-space indent, final newline).
fn pinned(args: &[&str]) -> String {
    let out = pin(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pin {args:?}: {}\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "pin {args:?} warned: {stderr}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(
        text.starts_with("{\n  \"pins\": {\n    \"mode\": ") && text.ends_with("}\n"),
        "{text}"
    );
    text
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Every object's keys in sorted order, in the printed text itself.
fn assert_keys_sorted(text: &str) {
    let mut stack: Vec<Option<String>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let depth = (line.len() - trimmed.len()) / 2;
        stack.truncate(depth + 1);
        stack.resize(depth + 1, None);
        if let Some(key) = trimmed.strip_prefix('"').and_then(|k| k.split_once("\": ")) {
            let key = key.0.to_owned();
            if let Some(Some(previous)) = stack.get(depth) {
                assert!(*previous < key, "{previous:?} before {key:?} in\n{text}");
            }
            stack[depth] = Some(key);
        }
    }
}

/// The tools an rmcp client lists at `url` (every page), each as the JSON object it holds.
fn listed_by_rmcp(url: &str) -> Vec<Map<String, Value>> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
        );
        let client = ().serve(transport).await.expect("initialize");
        let tools = client.list_all_tools().await.expect("tools/list");
        client.cancel().await.expect("close");
        tools
            .iter()
            .map(
                |tool| match serde_json::to_value(tool).expect("a tool as JSON") {
                    Value::Object(tool) => tool,
                    other => panic!("a tool that is not an object: {other}"),
                },
            )
            .collect()
    })
}

/// The pins the filter's own hash makes of these tools, with their annotations where they have
/// them.
fn expected_pins(tools: &[Map<String, Value>]) -> Value {
    let mut pins = Map::new();
    for tool in tools {
        let mut pin = Map::new();
        pin.insert("sha256".into(), json!(definition_sha256(tool)));
        if let Some(annotations) = tool.get("annotations") {
            pin.insert("annotations".into(), annotations.clone());
        }
        let name = tool["name"].as_str().expect("a named tool");
        assert!(pins.insert(name.to_owned(), Value::Object(pin)).is_none());
    }
    Value::Object(pins)
}

fn mcp_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/mcp")
}

/// What a sample server says it received (its /stats, not through Envoy).
fn server_stats(port: u16) -> Value {
    let (status, body) = http_get(port, "/stats").expect("/stats");
    assert_eq!(status, 200, "/stats: {body}");
    serde_json::from_str(&body).expect("/stats JSON")
}

#[test]
fn pins_every_tool_of_the_sample_server_as_the_filter_hashes_it() {
    let server = start_sample_server(&sample_server_bin(), "wechat", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let url = mcp_url(server.port);
    let text = pinned(&[&url]);
    assert_keys_sorted(&text);
    let printed = parsed(&text);
    // One session: initialize, initialized, one page, then the session deleted.
    let stats = server_stats(server.port);
    assert_eq!(
        stats["methods"],
        json!({"initialize": 1, "notifications/initialized": 1, "tools/list": 1}),
        "{stats}"
    );
    assert_eq!(stats["deletes"], 1, "{stats}");

    let listed = listed_by_rmcp(&url);
    assert!(listed.len() >= 5, "{listed:?}");
    assert_eq!(printed["pins"]["mode"], "enforce");
    assert_eq!(printed["pins"]["tools"], expected_pins(&listed));
    let annotated = listed
        .iter()
        .filter(|t| t.contains_key("annotations"))
        .count();
    assert!(
        annotated > 0,
        "the sample server annotates its tools: {listed:?}"
    );
    let pinned_annotations = printed["pins"]["tools"]
        .as_object()
        .expect("tools")
        .values()
        .filter(|pin| pin.get("annotations").is_some())
        .count();
    assert_eq!(pinned_annotations, annotated);

    let report = parsed(&pinned(&[&url, "--mode", "report", "--transport", "http"]));
    assert_eq!(report["pins"]["mode"], "report");
    assert_eq!(report["pins"]["tools"], printed["pins"]["tools"]);

    // A path the server does not serve: its HTTP status, and nothing printed.
    let missing = pin(&[&format!("http://127.0.0.1:{}/nope", server.port)]);
    assert_failed(&missing, "HTTP 404");
}

#[test]
fn pins_through_envoy_with_the_filter_are_those_of_the_server_itself() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: r#"{"version":"1","default":"allow"}"#.into(),
        ..Default::default()
    });
    let header = "x-agent-id: pinner";
    let direct = pinned(&[&mcp_url(d.wechat.port), "--header", header]);
    let through_envoy = pinned(&[&d.url("wechat"), "--header", header]);
    assert_eq!(through_envoy, direct);
    let stats = d.upstream_stats("wechat");
    let posts = stats["recent_posts"].as_array().expect("recent posts");
    assert!(!posts.is_empty(), "{stats}");
    for post in posts {
        assert_eq!(post["headers"]["x-agent-id"], "pinner", "{post}");
    }
    assert_eq!(stats["methods"]["tools/list"], 2, "{stats}");
}

#[test]
fn pins_the_three_tools_of_a_legacy_sse_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = LegacyServer::start(&dir.path().join("legacy_sse_server.log"));
    let url = format!("http://127.0.0.1:{}/sse", server.port);
    let text = pinned(&[&url, "--mode", "first_seen"]);
    assert_keys_sorted(&text);
    let printed = parsed(&text);
    assert_eq!(printed["pins"]["mode"], "first_seen");
    let tools = printed["pins"]["tools"].as_object().expect("tools");
    let names: Vec<&str> = tools.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "wechat_get_followers",
            "wechat_mass_delete",
            "wechat_mass_send"
        ]
    );
    for (name, pin) in tools {
        let hash = pin["sha256"].as_str().unwrap_or_default();
        assert!(
            hash.len() == 71
                && hash.starts_with("sha256:")
                && hash[7..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {pin}"
        );
    }
    // The same server again: the same definitions, the same pins.
    assert_eq!(pinned(&[&url, "--mode", "first_seen"]), text);
    // Forced to Streamable HTTP, the legacy endpoint refuses the POST.
    assert_failed(&pin(&[&url, "--transport", "http"]), "HTTP 405");
    drop(server);
}

#[test]
fn a_paged_tool_list_gives_the_same_pins_as_one_page() {
    let whole = start_sample_server(&sample_server_bin(), "wechat", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let paged = start_sample_server_with(
        &sample_server_bin(),
        "wechat",
        false,
        &["--page-size".to_owned(), "2".to_owned()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let one_page = pinned(&[&mcp_url(whole.port)]);
    let in_pages = pinned(&[&mcp_url(paged.port)]);
    assert_eq!(in_pages, one_page);
    let tools = parsed(&one_page)["pins"]["tools"]
        .as_object()
        .expect("tools")
        .len();
    let stats = server_stats(paged.port);
    assert_eq!(
        stats["methods"]["tools/list"],
        tools.div_ceil(2),
        "two tools a page: {stats}"
    );
}

#[test]
fn an_unreachable_server_exits_1_with_a_message() {
    let port = free_port().expect("free port");
    let url = mcp_url(port);
    let out = pin(&[&url, "--timeout", "5"]);
    assert_failed(&out, &url);
    let legacy = format!("http://127.0.0.1:{port}/sse");
    assert_failed(&pin(&[&legacy]), &legacy);
}

/// Exit code 1, nothing on stdout, and a message on stderr that mentions `needle`.
fn assert_failed(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}\n{stderr}", out.status);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("mcp-policy pin: ") && stderr.contains(needle),
        "{needle:?} not in {stderr}"
    );
}

/// tests/servers/legacy_sse_server.py under the venv's Python, killed (by PID) when dropped.
struct LegacyServer {
    _guard: ChildGuard,
    port: u16,
}

impl LegacyServer {
    fn start(log: &std::path::Path) -> LegacyServer {
        let python = std::env::var_os("PYTHON_MCP")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
        let port = free_port().expect("free port");
        let child = Command::new(python)
            .arg(repo_root().join("tests/servers/legacy_sse_server.py"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("start legacy_sse_server.py");
        let mut guard = ChildGuard::new("legacy_sse_server.py", child);
        let deadline = Instant::now() + PATIENCE;
        while !matches!(http_get(port, "/stats"), Ok((200, _))) {
            let log = || std::fs::read_to_string(log).unwrap_or_default();
            if let Some(status) = guard.try_exit_status() {
                panic!("legacy server exited ({status}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "legacy server not ready:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        LegacyServer {
            _guard: guard,
            port,
        }
    }
}
