//! tools/list answers lose the tools the caller may not call, through the real Envoy: as SSE
//! (the stateful sample server) seen by the official Rust MCP SDK, and as plain JSON.

use std::collections::HashMap;

use e2e::http::post;
use e2e::{Deployment, DeploymentOptions};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;

const POLICY: &str = r#"{"version":"1","default":"deny",
  "hide":["wechat_mass_delete"],
  "tools":{"wechat_mass_send":{},"wechat_mass_delete":{},"wechat_get_user_info":{"action":"deny"}},
  "grants":{"readers":{"identities":["reader"],"tools":{"wechat_get_followers":{},"wechat_get_user_info":{}}},
            "senders":{"identities":["sender"]}}}"#;

async fn listed_by_sdk(d: &Deployment, agent: &'static str) -> Vec<String> {
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static(agent),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize");
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.expect("close");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_only_the_tools_they_may_call_over_sse() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    // readers: their grant's list, minus the server-wide deny.
    assert_eq!(
        listed_by_sdk(&d, "reader").await,
        vec!["wechat_get_followers"]
    );
    // senders: no tool list of their own, so the server-wide rules: listed and not hidden/denied.
    assert_eq!(listed_by_sdk(&d, "sender").await, vec!["wechat_mass_send"]);
    // no grant at all under default deny: nothing.
    assert!(listed_by_sdk(&d, "stranger").await.is_empty());
    // The server itself offered all five every time.
    assert_eq!(
        d.upstream_stats("wechat")["methods"]["tools/list"],
        3,
        "{}",
        d.upstream_stats("wechat")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_answers_are_filtered_with_a_consistent_length() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let body = r#"{"jsonrpc":"2.0","id":"list-1","method":"tools/list","params":{}}"#;
    let response = post(&d.url("wechat"), body, &[("x-agent-id", "reader")]).await;
    assert_eq!(response.status, 200);
    assert!(response
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    let listed: Vec<String> = response.json()["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec!["wechat_get_followers"]);
    if let Some(length) = response.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), response.body.len());
    }
    assert_eq!(response.json()["id"], json!("list-1"));
}
