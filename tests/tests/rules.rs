//! Rules on arguments and weighted counters through the real Envoy, driven by the official Rust
//! MCP SDK: what the agent reads, and what the upstream really received.

use std::collections::HashMap;

use e2e::{wait_for_window_room, Deployment, DeploymentOptions};
use rmcp::model::{CallToolRequestParams, ErrorData};
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// A mass send may go to at most 5 recipients per hour in total (charged by the length of
/// `openids`), only as text or news, without digits (no discount codes); previews need an openid
/// that looks like one; deleting is hidden from agents.
const POLICY: &str = r#"{"version":"1","default":"allow",
  "hide":["wechat_mass_delete"],
  "tools":{
    "wechat_mass_send":{"rules":[
      {"name":"message types","conditions":[{"path":"args.msg_type","op":"in","value":["text","news"]}],
       "on_deny":"Only text and news mass messages are allowed"},
      {"name":"no discount codes","conditions":[{"path":"args.content","op":"regex","value":"^[^0-9]*$"}]},
      {"name":"recipients per hour","conditions":[{"path":"state.wechat_mass_send.recipients","op":"lte","value":5}],
       "on_deny":"At most 5 mass-message recipients per hour",
       "state":{"counter":"recipients","window":"hour","increment_from":"args.openids"}}]},
    "wechat_mass_preview":{"rules":[
      {"name":"openid shape","conditions":[{"path":"args.openid","op":"regex","value":"^o[A-Za-z0-9_]{6,}$"}],
       "on_deny":"Preview needs a valid openid"}]}}}"#;

async fn call(
    client: &rmcp::service::RunningService<rmcp::service::RoleClient, ()>,
    tool: &str,
    args: Value,
) -> Result<(), ErrorData> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    match client.call_tool(params).await {
        Ok(_) => Ok(()),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(other) => panic!("{tool}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_arguments_and_weighted_counters() {
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static("campaigns"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize");

    let send = |openids: Value, msg_type: &str, content: &str| json!({"openids": openids, "msg_type": msg_type, "content": content});
    call(
        &client,
        "wechat_mass_send",
        send(json!(["o1", "o2", "o3"]), "text", "hello"),
    )
    .await
    .expect("3 recipients");
    let wrong_type = call(
        &client,
        "wechat_mass_send",
        send(json!(["o4"]), "image", "x"),
    )
    .await
    .unwrap_err();
    assert_eq!(wrong_type.message, "Tool \"wechat_mass_send\" is not allowed by policy: Only text and news mass messages are allowed");
    let code = call(
        &client,
        "wechat_mass_send",
        send(json!(["o4"]), "text", "use CODE 42"),
    )
    .await
    .unwrap_err();
    assert!(
        code.message
            .ends_with("Denied by rule \"no discount codes\""),
        "{}",
        code.message
    );
    // 3 used; 3 more recipients would make 6 > 5: refused whole, with the rule's message.
    let over = call(
        &client,
        "wechat_mass_send",
        send(json!(["o4", "o5", "o6"]), "news", "hi"),
    )
    .await
    .unwrap_err();
    assert_eq!(over.code.0, -32029);
    assert!(
        over.message
            .contains("At most 5 mass-message recipients per hour"),
        "{}",
        over.message
    );
    let data = over.data.expect("data");
    assert_eq!(
        (
            data["used"].clone(),
            data["needed"].clone(),
            data["limit"].clone()
        ),
        (json!(3), json!(3), json!(5))
    );
    call(
        &client,
        "wechat_mass_send",
        send(json!(["o4", "o5"]), "news", "hi"),
    )
    .await
    .expect("2 more fit");

    let preview = call(
        &client,
        "wechat_mass_preview",
        json!({"openid": "x", "msg_type": "text", "content": "c"}),
    )
    .await
    .unwrap_err();
    assert!(preview.message.ends_with("Preview needs a valid openid"));
    call(
        &client,
        "wechat_mass_preview",
        json!({"openid": "oUser_0001", "msg_type": "text", "content": "c"}),
    )
    .await
    .expect("valid openid");
    let hidden = call(&client, "wechat_mass_delete", json!({"msg_id": "1"}))
        .await
        .unwrap_err();
    assert!(hidden.message.ends_with("this tool is hidden by policy"));

    let calls = d.upstream_stats("wechat")["tool_calls"].clone();
    assert_eq!(
        calls,
        json!({"wechat_mass_send": 2, "wechat_mass_preview": 1})
    );
    client.cancel().await.expect("close");
}
