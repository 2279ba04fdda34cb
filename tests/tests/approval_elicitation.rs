//! URL elicitation through the real Envoy: an official SDK client (rmcp) that declares URL-mode
//! elicitation in `initialize` (MCP 2025-11-25) gets the specification's
//! URL-elicitation-required error (-32042) for a call that needs a person's approval, carrying
//! the approval page's URL for that call and an elicitation id; once a person approves on the
//! page, the retried call passes and the upstream counts one call. A client that did not declare
//! it gets the plain pending answer.

use std::collections::HashMap;

use e2e::{Deployment, DeploymentOptions};
use mcp_policy_sample::deployment::ServerProcess;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitationCapability, ErrorData,
    Implementation, UrlElicitationCapability,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Map, Value};

mod approval_support;

const TOOL: &str = "wechat_mass_delete";

fn policy() -> String {
    json!({"version": "1", "default": "allow",
           "approval": {"cluster": "approvals", "hold_seconds": 1, "valid_seconds": 600},
           "tools": {TOOL: {"action": "require_approval"}}})
    .to_string()
}

fn transport(d: &Deployment) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static("agent-a"),
    );
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    )
}

/// A client that declares URL-mode elicitation, as the specification's `initialize` carries it.
async fn url_mode_client(d: &Deployment) -> RunningService<RoleClient, ClientConfig> {
    let mut capabilities = ClientCapabilities::default();
    capabilities.elicitation =
        Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new()));
    let info = ClientConfig::new(capabilities, Implementation::new("url-agent", "1.0"));
    info.serve(transport(d))
        .await
        .expect("initialize through Envoy")
}

async fn delete<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
) -> Result<(), ErrorData> {
    let arguments: Map<String, Value> = json!({"msg_id": 7})
        .as_object()
        .cloned()
        .unwrap_or_default();
    match client
        .call_tool(CallToolRequestParams::new(TOOL.to_owned()).with_arguments(arguments))
        .await
    {
        Ok(_) => Ok(()),
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("transport failure instead of a JSON-RPC answer: {other}"),
    }
}

struct Setup {
    service: ServerProcess,
    deployment: Deployment,
    _db: tempfile::TempDir,
}

fn setup() -> Setup {
    let approval_support::ApprovalService {
        process: service,
        dir: db,
    } = approval_support::start();
    let deployment = Deployment::start(DeploymentOptions {
        wechat_policy: policy(),
        approval_port: Some(service.port),
        ..Default::default()
    });
    Setup {
        service,
        deployment,
        _db: db,
    }
}

/// A person approves the pending call `id` (the approval service's API, as its page does).
async fn approve(setup: &Setup, id: &str) {
    let url = format!(
        "http://127.0.0.1:{}/v1/requests/{id}/approve",
        setup.service.port
    );
    let body = json!({"reason": "checked"}).to_string();
    let carol = approval_support::bearer(approval_support::CAROL_TOKEN);
    let response = e2e::http::post(&url, body, &[("authorization", &carol)]).await;
    assert_eq!(response.status, 200, "approve {id}: {response:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_mode_client_is_sent_to_the_approval_page_and_its_retry_passes() {
    let s = setup();
    let agent = url_mode_client(&s.deployment).await;
    let elicited = delete(&agent).await.unwrap_err();
    assert_eq!(elicited.code.0, -32042, "{elicited:?}");
    let data = elicited.data.clone().expect("error data");
    let elicitation = &data["elicitations"][0];
    assert_eq!(elicitation["mode"], "url", "{data}");
    let id = elicitation["elicitationId"]
        .as_str()
        .expect("elicitationId")
        .to_owned();
    let page = elicitation["url"].as_str().expect("url");
    assert!(
        page.starts_with(&format!("http://127.0.0.1:{}", s.service.port)) && page.contains(&id),
        "the page of this call: {page}"
    );
    assert_eq!(s.deployment.upstream_tool_calls("wechat", TOOL), 0);

    approve(&s, &id).await;
    delete(&agent).await.expect("the approved call passes");
    assert_eq!(s.deployment.upstream_tool_calls("wechat", TOOL), 1);
    agent.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_url_mode_gets_the_plain_pending_answer() {
    let s = setup();
    let agent = ().serve(transport(&s.deployment)).await.expect("initialize");
    let pending = delete(&agent).await.unwrap_err();
    assert_eq!(pending.code.0, -32031, "{pending:?}");
    assert!(pending.message.contains("approve"), "{pending:?}");
    assert_eq!(s.deployment.upstream_tool_calls("wechat", TOOL), 0);
    agent.cancel().await.expect("close");
}
