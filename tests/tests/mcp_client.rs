//! The official Rust MCP SDK (rmcp) as the agent, through the real Envoy with the built filter,
//! in front of the real sample servers: what an agent experiences, and the upstream's own
//! counters proving that nothing refused ever arrived.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{wait_for_window_room, Deployment, DeploymentOptions};
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorData, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt, ServiceExt};
use serde_json::{json, Map, Value};

type Client = RunningService<RoleClient, ()>;

fn transport(url: &str, agent: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_str(agent).expect("header value"),
    );
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers),
    )
}

/// Classic lifecycle: initialize, session id, SSE answers (the sample servers' default mode).
async fn connect(url: &str, agent: &str) -> Client {
    ().serve(transport(url, agent))
        .await
        .expect("initialize through Envoy")
}

/// MCP 2026-07-28: no initialize, no session, `Mcp-Method`/`Mcp-Name` headers on every POST.
async fn connect_2026(url: &str, agent: &str) -> Client {
    let client = ()
        .serve_with_lifecycle(
            transport(url, agent),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover through Envoy");
    assert_eq!(
        client.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    client
}

fn arguments(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("arguments object")
}

async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, ErrorData> {
    match client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments(args)))
        .await
    {
        Ok(result) => Ok(result),
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => {
            panic!("{tool}: transport-level failure instead of a JSON-RPC answer: {other}")
        }
    }
}

fn mass_send_args() -> Value {
    json!({"openids": ["oUser_0001", "oUser_0002"], "msg_type": "text", "content": "hello"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_session_allowed_denied_and_rate_limited() {
    // The seed policy with a 10-second window so the test can watch it reset.
    let policy = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[
        {"counter":"wechat_mass_send_rate","window":10,"max":3,"scope":"grant"}]}}}"#;
    wait_for_window_room(10, 7);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        ..Default::default()
    });
    let client = connect(&d.url("wechat"), "agent-007").await;

    // tools/list shows only what this agent may call: under the seed's default deny, one tool.
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, vec!["wechat_mass_send"]);

    // Allowed, and the answer streams back (the stateful server answers with SSE).
    for _ in 0..3 {
        let result = call(&client, "wechat_mass_send", mass_send_args())
            .await
            .expect("allowed call");
        assert_eq!(result.is_error, Some(false));
    }

    // Denied by default: the agent reads why.
    let denied = call(&client, "wechat_mass_delete", json!({"msg_id": "1"}))
        .await
        .expect_err("denied");
    assert_eq!(denied.code.0, -32003);
    assert_eq!(
        denied.message,
        "Tool \"wechat_mass_delete\" is not allowed by policy: the policy denies every tool it does not list (default: deny)"
    );
    assert_eq!(
        denied.data.as_ref().map(|d| d["decision"].clone()),
        Some(json!("denied"))
    );

    // Over the limit: its own code, the counter, the limit and when to retry.
    let limited = call(&client, "wechat_mass_send", mass_send_args())
        .await
        .expect_err("rate limited");
    assert_eq!(limited.code.0, -32029);
    let data = limited.data.clone().expect("error data");
    assert_eq!(
        (
            data["counter"].clone(),
            data["limit"].clone(),
            data["scope"].clone()
        ),
        (json!("wechat_mass_send_rate"), json!(3), json!("grant"))
    );
    let retry_after = data["retry_after_seconds"]
        .as_u64()
        .expect("retry_after_seconds");
    assert!((1..=10).contains(&retry_after), "{data}");
    assert!(
        limited
            .message
            .contains(&format!("retry in {retry_after} s")),
        "{}",
        limited.message
    );

    // The upstream's own count: three sends, no delete, no fourth send.
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 3);
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_delete"), 0);

    // The window resets by itself after the advertised wait.
    tokio::time::sleep(Duration::from_millis(retry_after * 1000 + 200)).await;
    call(&client, "wechat_mass_send", mass_send_args())
        .await
        .expect("allowed again after reset");
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 4);

    // A different agent never shared agent-007's budget.
    let other = connect(&d.url("wechat"), "agent-008").await;
    call(&other, "wechat_mass_send", mass_send_args())
        .await
        .expect("other agent's own budget");
    other.cancel().await.expect("close");
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_is_decided_from_the_body_with_agreeing_headers() {
    let d = Deployment::start(DeploymentOptions::default());
    let client = connect_2026(&d.url("wechat"), "agent-modern").await;
    call(&client, "wechat_mass_send", mass_send_args())
        .await
        .expect("allowed");
    let denied = call(&client, "wechat_get_followers", json!({}))
        .await
        .expect_err("denied");
    assert_eq!(denied.code.0, -32003);
    let stats = d.upstream_stats("wechat");
    assert_eq!(stats["tool_calls"]["wechat_mass_send"], 1);
    assert!(
        stats["tool_calls"].get("wechat_get_followers").is_none(),
        "{stats}"
    );
    // The allowed call really carried the 2026-07-28 headers through the filter.
    let sent = stats["recent_posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["body"]
                .as_str()
                .unwrap_or("")
                .contains("wechat_mass_send")
        })
        .cloned()
        .unwrap();
    assert_eq!(
        (
            sent["headers"]["mcp-method"].clone(),
            sent["headers"]["mcp-name"].clone()
        ),
        (json!("tools/call"), json!("wechat_mass_send"))
    );
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_scope_counts_each_mcp_session_separately() {
    let policy = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[
        {"counter":"per_session","window":"hour","max":2,"scope":"session"}]}}}"#;
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        ..Default::default()
    });
    // Same agent, two sessions: each session gets its own two calls.
    let first = connect(&d.url("wechat"), "same-agent").await;
    let second = connect(&d.url("wechat"), "same-agent").await;
    for client in [&first, &second] {
        for _ in 0..2 {
            call(client, "wechat_mass_send", mass_send_args())
                .await
                .expect("within the session's budget");
        }
        let limited = call(client, "wechat_mass_send", mass_send_args())
            .await
            .expect_err("session budget used up");
        assert_eq!(limited.data.expect("data")["scope"], "session");
    }
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 4);
    first.cancel().await.expect("close");
    second.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_has_its_own_policy_and_counters() {
    // The same counter name on both servers, max 1: still one call each, never shared.
    let limit = r#"{"counter":"sends","window":"hour","max":1,"scope":"global"}"#;
    let wechat = format!(
        r#"{{"version":"1","default":"deny","tools":{{"wechat_mass_send":{{"limits":[{limit}]}}}}}}"#
    );
    let notify = format!(
        r#"{{"version":"1","default":"deny","tools":{{"ding_send_text":{{"limits":[{limit}]}}}}}}"#
    );
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: wechat,
        notify_policy: notify,
        ..Default::default()
    });
    let w = connect(&d.url("wechat"), "a").await;
    let n = connect(&d.url("notify"), "a").await;
    call(&w, "wechat_mass_send", mass_send_args())
        .await
        .expect("wechat's one call");
    call(&n, "ding_send_text", json!({"text": "hi"}))
        .await
        .expect("notify's one call");
    // notify's policy knows nothing of wechat tools and vice versa.
    assert_eq!(
        call(&n, "wework_send_text", json!({"text": "hi"}))
            .await
            .expect_err("denied")
            .code
            .0,
        -32003
    );
    assert_eq!(
        call(&n, "ding_send_text", json!({"text": "again"}))
            .await
            .expect_err("limited")
            .code
            .0,
        -32029
    );
    assert_eq!(d.upstream_tool_calls("notify", "ding_send_text"), 1);
    assert_eq!(d.upstream_tool_calls("notify", "wework_send_text"), 0);
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 1);
    w.cancel().await.expect("close");
    n.cancel().await.expect("close");
}
