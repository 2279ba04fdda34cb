//! Policy for resources, prompts and other methods through the real Envoy, seen by the official
//! Rust MCP SDK: reads and subscriptions allowed, denied and limited by URI (exact, prefix,
//! glob), prompts by name, other methods by name; listings filtered; refused requests never
//! reach the server (its own counts), and are audited and counted like tool calls.

use std::collections::HashMap;

use e2e::http::post;
use e2e::{Deployment, DeploymentOptions};
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, SubscribeRequestParams};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

type Client = RunningService<RoleClient, ()>;

const POLICY: &str = r#"{"version":"1","default":"deny",
  "resources":[
    {"uri":"wechat://account/profile"},
    {"prefix":"wechat://followers/","limits":[{"counter":"follower_reads","window":"hour","max":2,"scope":"global"}]},
    {"glob":"wechat://internal/**","action":"deny","reason":"internal data is not for agents"}],
  "prompts":{"draft_campaign":{},"apology_notice":{"action":"deny","reason":"legal writes these"}},
  "methods":{"completion/complete":{"action":"deny","reason":"no completions here"}}}"#;

async fn client(d: &Deployment) -> Client {
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static("agent-a"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    );
    ().serve(transport).await.expect("initialize through Envoy")
}

/// The JSON-RPC error of a refused request (panics on a transport failure or a success).
fn refusal<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> rmcp::model::ErrorData {
    match result {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn read(client: &Client, uri: &str) -> Result<rmcp::model::ReadResourceResult, ServiceError> {
    client
        .read_resource(ReadResourceRequestParams::new(uri.to_owned()))
        .await
}

fn count(d: &Deployment, field: &str, key: &str) -> u64 {
    d.upstream_stats("wechat")[field][key].as_u64().unwrap_or(0)
}

// `resources/subscribe` belongs to the `initialize` lifecycle these clients use; 2026-07-28
// replaced it with `subscriptions/listen`, which rmcp marks it deprecated for.
#[allow(deprecated)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_decided_by_uri_and_listed_as_the_caller_may_read_them() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    let agent = client(&d).await;
    let mut listed: Vec<String> = agent
        .list_all_resources()
        .await
        .expect("resources/list")
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    listed.sort();
    // The internal one is denied, the draft unmatched under default deny.
    assert_eq!(listed, ["wechat://account/profile"]);
    let templates: Vec<String> = agent
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list")
        .into_iter()
        .map(|t| t.uri_template.clone())
        .collect();
    assert_eq!(templates, ["wechat://followers/{openid}"]);

    assert!(read(&agent, "wechat://account/profile").await.is_ok());
    let denied = refusal(read(&agent, "wechat://internal/api-keys").await);
    assert!(
        denied.message.contains("internal data is not for agents"),
        "{denied:?}"
    );
    let unmatched = refusal(read(&agent, "wechat://drafts/welcome").await);
    assert!(
        unmatched.message.contains("default: deny") || unmatched.message.contains("not allowed"),
        "{unmatched:?}"
    );
    assert_eq!(count(&d, "resource_reads", "wechat://internal/api-keys"), 0);
    assert_eq!(count(&d, "resource_reads", "wechat://drafts/welcome"), 0);

    for openid in ["o1", "o2"] {
        assert!(read(&agent, &format!("wechat://followers/{openid}"))
            .await
            .is_ok());
    }
    let limited = refusal(read(&agent, "wechat://followers/o3").await);
    assert_eq!(limited.code.0, -32029, "{limited:?}");
    assert_eq!(count(&d, "resource_reads", "wechat://followers/o3"), 0);

    let subscribe = |uri: &str| SubscribeRequestParams::new(uri.to_owned());
    assert!(agent
        .subscribe(subscribe("wechat://account/profile"))
        .await
        .is_ok());
    let refused = refusal(
        agent
            .subscribe(subscribe("wechat://internal/api-keys"))
            .await,
    );
    assert!(
        refused.message.contains("internal data is not for agents"),
        "{refused:?}"
    );
    assert_eq!(
        count(&d, "resource_subscribes", "wechat://internal/api-keys"),
        0
    );

    let records: Vec<Value> = d
        .audit_records(3)
        .into_iter()
        .flat_map(|line| {
            line["mcp_policy"]["calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let internal = records
        .iter()
        .find(|c| c["resource"] == "wechat://internal/api-keys" && c["method"] == "resources/read")
        .unwrap_or_else(|| panic!("an audit record of the denied read in {records:?}"));
    assert_eq!(internal["decision"], "denied");
    assert_eq!(internal["rule"], "resources[2].action");
    agent.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_by_name_and_other_methods_by_name() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    let agent = client(&d).await;
    let prompts: Vec<String> = agent
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(prompts, ["draft_campaign"]);
    let arguments = json!({"topic": "spring sale"}).as_object().cloned();
    let mut params = GetPromptRequestParams::new("draft_campaign".to_owned());
    params.arguments = arguments;
    assert!(agent.get_prompt(params).await.is_ok());
    let refused = refusal(
        agent
            .get_prompt(GetPromptRequestParams::new("apology_notice".to_owned()))
            .await,
    );
    assert!(
        refused.message.contains("legal writes these"),
        "{refused:?}"
    );
    assert_eq!(count(&d, "prompt_gets", "apology_notice"), 0);
    assert_eq!(count(&d, "prompt_gets", "draft_campaign"), 1);
    agent.cancel().await.expect("close");

    // Other methods: named and denied, or unnamed under default deny; plain JSON-RPC.
    let ask = |id: u64, method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    let headers = [
        ("x-agent-id", "agent-a"),
        ("accept", "application/json, text/event-stream"),
    ];
    let completion = ask(
        1,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "draft_campaign"}, "argument": {"name": "topic", "value": "s"}}),
    );
    let before = d.upstream_posts("wechat");
    let response = post(&d.url("wechat"), completion, &headers).await;
    let error = &response.json()["error"];
    assert_eq!(
        error["message"],
        "Method \"completion/complete\" is not allowed by policy: no completions here",
        "{response:?}"
    );
    let response = post(
        &d.url("wechat"),
        ask(2, "logging/setLevel", json!({"level": "debug"})),
        &headers,
    )
    .await;
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("logging/setLevel"),
        "{response:?}"
    );
    assert_eq!(
        d.upstream_posts("wechat"),
        before,
        "refused before the server"
    );
    let (_, text) =
        mcp_policy_sample::deployment::http_get(d.envoy.admin_port, "/stats/prometheus")
            .expect("admin /stats/prometheus");
    assert!(
        text.lines()
            .any(|l| l.starts_with("mcp_policy_requests_total{")
                && l.contains(r#"mcp_method="prompts_get""#)
                && l.contains(r#"mcp_decision="denied""#)),
        "{text}"
    );
}
