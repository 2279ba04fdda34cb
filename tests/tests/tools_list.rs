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

/// Ways a client might hope to get an unfiltered list: the id spelled as a
/// float (a JavaScript server echoes `2`), a legacy transport's session query on a Streamable
/// HTTP endpoint (the server ignores it and answers in this response), and a compressed answer
/// (the filter takes `accept-encoding` off the request, so the server answers uncompressed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_spelling_a_session_query_or_an_offered_encoding_gets_no_unfiltered_list() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let listed = |response: &e2e::http::Response| -> Vec<String> {
        response.json()["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools in {response:?}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let float_id = r#"{"jsonrpc":"2.0","id":2.0,"method":"tools/list","params":{}}"#;
    let response = post(&d.url("wechat"), float_id, &[("x-agent-id", "reader")]).await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(listed(&response), vec!["wechat_get_followers"]);

    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}"#;
    let with_query = format!("{}?sessionId=made-up", d.url("wechat"));
    let response = post(
        &with_query,
        body,
        &[("x-agent-id", "reader"), ("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-encoding"), None);
    assert_eq!(listed(&response), vec!["wechat_get_followers"]);
    let stats = d.upstream_stats("wechat");
    let posts = stats["recent_posts"].as_array().expect("recent posts");
    let last = posts.last().expect("the list request reached the server");
    assert!(
        last["body"].as_str().unwrap().contains(r#""id":3"#),
        "{last}"
    );
    assert_eq!(last["headers"].get("accept-encoding"), None, "{last}");
    assert!(last["headers"].get("accept").is_some(), "{last}");
}
