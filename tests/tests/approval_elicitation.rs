//! URL elicitation through the real Envoy: an official SDK client (rmcp) that declares URL-mode
//! elicitation in `initialize` (MCP 2025-11-25) gets the specification's
//! URL-elicitation-required error (-32042) for a call that needs a person's approval, carrying
//! the approval page's URL for that call and an elicitation id; once a person approves on the
//! page, the retried call passes and the upstream counts one call. A 2026-07-28 client (which
//! has no -32042) that declares it in its request's capabilities gets an `input_required`
//! result asking for the URL elicitation; the SDK opens the page through its handler and
//! retries by itself. A client that declared nothing gets the plain pending answer.

use std::collections::HashMap;

use e2e::{Deployment, DeploymentOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, ElicitationCapability, ErrorData, Implementation, ProtocolVersion,
    UrlElicitationCapability,
};
use rmcp::service::{RequestContext, RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode};
use rmcp::{ClientServiceExt, ServiceExt};
use serde_json::{json, Map, Value};

mod approval_support;
use approval_support::{BROWSER_APPROVER, BROWSER_PASSWORD};

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

fn url_mode_config() -> ClientConfig {
    let mut capabilities = ClientCapabilities::default();
    capabilities.elicitation =
        Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new()));
    ClientConfig::new(capabilities, Implementation::new("url-agent", "1.0"))
}

/// A client that declares URL-mode elicitation, as the specification's `initialize` carries it.
async fn url_mode_client(d: &Deployment) -> RunningService<RoleClient, ClientConfig> {
    url_mode_config()
        .serve(transport(d))
        .await
        .expect("initialize through Envoy")
}

/// A 2026-07-28 client whose user, asked to open a URL, approves the call there.
#[derive(Clone)]
struct UserWhoApproves {
    approval_port: u16,
    opened: Arc<AtomicUsize>,
}

impl ClientHandler for UserWhoApproves {
    fn get_info(&self) -> ClientConfig {
        url_mode_config()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::UrlElicitationParams { url, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        self.opened.fetch_add(1, Ordering::SeqCst);
        // The page's URL names the held call: `…/#<id>`.
        let id = url.rsplit('#').next().unwrap_or_default().to_owned();
        approve_on(self.approval_port, &id).await;
        Ok(ElicitResult::new(ElicitationAction::Accept))
    }
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
    // Field order is drop order: Envoy stops before the service it holds calls for.
    deployment: Deployment,
    service: approval_support::ApprovalService,
}

fn setup() -> Setup {
    let service = approval_support::start();
    let deployment = Deployment::start(DeploymentOptions {
        wechat_policy: policy(),
        approval_port: Some(service.port()),
        ..Default::default()
    });
    Setup {
        deployment,
        service,
    }
}

/// A person opens `page` in headless Chromium, signs in and approves the call of `TOOL` there
/// (`tests/browser/approve.js`).
async fn approve_in_browser(page: &str) {
    let mut browser = std::process::Command::new("node");
    browser
        .current_dir(e2e::repo_root().join("tests/browser"))
        .arg("approve.js")
        .args([page, TOOL, BROWSER_APPROVER, BROWSER_PASSWORD]);
    // Its own time limits are 15 s (the page) and 10 s (Chromium): 60 s is a hang.
    let output = tokio::task::spawn_blocking(move || {
        e2e::run_guarded("approve.js", browser, std::time::Duration::from_secs(60))
    })
    .await
    .expect("browser task");
    assert!(
        output.status.success(),
        "browser: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn approve_on(port: u16, id: &str) {
    let url = format!("http://127.0.0.1:{port}/v1/requests/{id}/approve");
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
        page.starts_with(&format!("http://127.0.0.1:{}", s.service.port())) && page.contains(&id),
        "the page of this call: {page}"
    );
    assert_eq!(s.deployment.upstream_tool_calls("wechat", TOOL), 0);

    // A person opens that page in a browser, signs in and approves the call there.
    approve_in_browser(page).await;
    let decisions = s.service.get("/v1/decisions").await.json();
    assert_eq!(
        decisions["decisions"][0]["request_id"],
        id.as_str(),
        "{decisions}"
    );
    assert_eq!(
        decisions["decisions"][0]["approver"], BROWSER_APPROVER,
        "{decisions}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_gets_input_required_opens_the_page_and_its_retry_passes() {
    let s = setup();
    let user = UserWhoApproves {
        approval_port: s.service.port(),
        opened: Arc::new(AtomicUsize::new(0)),
    };
    let agent = user
        .clone()
        .serve_with_lifecycle(
            transport(&s.deployment),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover through Envoy");
    // One call from the agent's side: the SDK answers the input request (the user opens the
    // page and approves) and retries with the request state.
    delete(&agent)
        .await
        .expect("approved through the page, the retried call passes");
    assert_eq!(user.opened.load(Ordering::SeqCst), 1);
    assert_eq!(s.deployment.upstream_tool_calls("wechat", TOOL), 1);
    agent.cancel().await.expect("close");
}
