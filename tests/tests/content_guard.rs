//! The content guard through the real Envoy, seen by the official Rust MCP SDK: a call whose
//! arguments carry a private key is refused before the upstream sees it (its own count stays
//! unchanged), naming the detector; `report` forwards it and records the detection; a custom
//! detector from the policy; results carrying a cloud key, a card number and an e-mail address
//! (the sample's `wechat_get_user_info` echoes its `openid`) are redacted in SSE and JSON
//! answers, or withheld; the audit log and metrics hold detector names, never the value.

use std::collections::HashMap;

use e2e::{Deployment, DeploymentOptions};
use rmcp::model::{CallToolRequestParams, ErrorData};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Map, Value};

type Client = RunningService<RoleClient, ()>;

/// A fake key in PEM form: the shape the `private_key` detector looks for.
fn private_key() -> String {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun".repeat(2);
    format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----")
}

fn policy(action: &str) -> String {
    json!({"version": "1", "default": "allow",
        "detectors": [{"name": "employee_id", "regex": "EMP-[0-9]{6}"}],
        "tools": {"wechat_mass_send": {"guard": {"arguments": action}},
                  "*": {"guard": {"arguments": {"action": "block", "detectors": ["employee_id"]}}}}})
    .to_string()
}

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

async fn call(client: &Client, tool: &str, args: Value) -> Result<(), ErrorData> {
    let arguments: Map<String, Value> = args.as_object().cloned().unwrap_or_default();
    match client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
    {
        Ok(_) => Ok(()),
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("{tool}: transport failure instead of a JSON-RPC answer: {other}"),
    }
}

/// What the sample's `wechat_get_user_info` echoes back: three secrets of three kinds.
const ECHOED: &str = "ops@example.com AKIAIOSFODNN7EXAMPLE 4111 1111 1111 1111";

async fn user_info(client: &Client) -> Result<String, ErrorData> {
    let arguments: Map<String, Value> = json!({"openid": ECHOED})
        .as_object()
        .cloned()
        .unwrap_or_default();
    match client
        .call_tool(
            CallToolRequestParams::new("wechat_get_user_info".to_owned()).with_arguments(arguments),
        )
        .await
    {
        Ok(result) => Ok(serde_json::to_string(&result).unwrap_or_default()),
        Err(ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("transport failure instead of a JSON-RPC answer: {other}"),
    }
}

fn results_policy(action: &str) -> String {
    json!({"version": "1", "default": "allow",
        "tools": {"wechat_get_user_info": {"guard": {"results": action}}}})
    .to_string()
}

fn send(content: &str) -> Value {
    json!({"openids": ["oUser_0001"], "msg_type": "text", "content": content})
}

/// The audit log's record of the call of `tool`, once Envoy has flushed it.
fn call_record(d: &Deployment, tool: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = d
            .audit_records(1)
            .into_iter()
            .flat_map(|line| {
                line["mcp_policy"]["calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|c| c["tool"] == tool);
        if let Some(found) = found {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit record of {tool}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn everything_envoy_wrote(d: &Deployment) -> String {
    let (_, metrics) =
        mcp_policy_sample::deployment::http_get(d.envoy.admin_port, "/stats/prometheus")
            .expect("admin /stats/prometheus");
    let audit: Vec<String> = d.audit_records(1).iter().map(Value::to_string).collect();
    format!("{}\n{}\n{metrics}", d.envoy_log(), audit.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_key_in_the_arguments_is_blocked_before_the_upstream() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy("block"),
        ..Default::default()
    });
    let agent = client(&d).await;
    let key = private_key();
    let refused = call(
        &agent,
        "wechat_mass_send",
        send(&format!("here it is: {key}")),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code.0, -32003, "{refused:?}");
    assert!(refused.message.contains("private_key (1)"), "{refused:?}");
    assert!(
        !refused.message.contains("MIIE"),
        "the reason never quotes the value"
    );
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 0);
    assert!(call(&agent, "wechat_mass_send", send("hello"))
        .await
        .is_ok());
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 1);

    // The "*" guard looks only for the policy's own detector.
    let refused = call(
        &agent,
        "wechat_get_user_info",
        json!({"openid": "EMP-123456"}),
    )
    .await
    .unwrap_err();
    assert!(refused.message.contains("employee_id (1)"), "{refused:?}");
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_get_user_info"), 0);

    let written = everything_envoy_wrote(&d);
    assert!(
        !written.contains("MIIEowIBAAKCAQEA") && !written.contains("EMP-123456"),
        "a value leaked"
    );
    assert!(
        written
            .lines()
            .any(|l| l.starts_with("mcp_policy_guard_detections_total{")
                && l.contains(r#"mcp_detector="private_key""#)
                && l.contains(r#"mcp_direction="arguments""#)
                && l.contains(r#"mcp_action="block""#)),
        "{written}"
    );
    agent.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_forwards_and_records_the_detection() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy("report"),
        ..Default::default()
    });
    let agent = client(&d).await;
    assert!(call(&agent, "wechat_mass_send", send(&private_key()))
        .await
        .is_ok());
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 1);
    let send = call_record(&d, "wechat_mass_send");
    assert_eq!(send["decision"], "allowed");
    assert_eq!(
        send["detections"],
        json!([{"detector": "private_key", "count": 1, "direction": "arguments", "action": "report"}])
    );
    agent.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_redacted_in_sse_and_json_answers_and_the_sdk_reads_them() {
    for stateless in [false, true] {
        let d = Deployment::start(DeploymentOptions {
            wechat_policy: results_policy("redact"),
            stateless,
            ..Default::default()
        });
        let agent = client(&d).await;
        let result = user_info(&agent).await.expect("a result, redacted");
        for secret in [
            "ops@example.com",
            "AKIAIOSFODNN7EXAMPLE",
            "4111 1111 1111 1111",
        ] {
            assert!(!result.contains(secret), "stateless={stateless}: {result}");
        }
        for marker in [
            "[redacted:email]",
            "[redacted:aws_access_key]",
            "[redacted:payment_card]",
        ] {
            assert!(result.contains(marker), "stateless={stateless}: {result}");
        }
        assert!(
            result.contains("zh_CN"),
            "the rest of the result is kept: {result}"
        );
        let record = call_record(&d, "wechat_get_user_info");
        let detections = record["detections"].as_array().cloned().unwrap_or_default();
        assert_eq!(detections.len(), 3, "{record}");
        assert!(detections
            .iter()
            .all(|d| d["direction"] == "results" && d["action"] == "redact"));
        assert!(!everything_envoy_wrote(&d).contains("AKIAIOSFODNN7EXAMPLE"));
        agent.cancel().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_result_is_withheld_and_report_changes_nothing() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: results_policy("block"),
        ..Default::default()
    });
    let agent = client(&d).await;
    let withheld = user_info(&agent).await.unwrap_err();
    assert_eq!(withheld.code.0, -32003, "{withheld:?}");
    assert!(
        withheld.message.contains("was withheld by policy"),
        "{withheld:?}"
    );
    assert!(!withheld.message.contains("AKIA") && !withheld.message.contains("ops@"));
    assert_eq!(
        d.upstream_tool_calls("wechat", "wechat_get_user_info"),
        1,
        "the tool ran; its result was withheld"
    );
    agent.cancel().await.expect("close");

    let d = Deployment::start(DeploymentOptions {
        wechat_policy: results_policy("report"),
        ..Default::default()
    });
    let agent = client(&d).await;
    let result = user_info(&agent).await.expect("the result as it is");
    assert!(
        result.contains("AKIAIOSFODNN7EXAMPLE"),
        "report changes nothing: {result}"
    );
    assert_eq!(
        call_record(&d, "wechat_get_user_info")["detections"][0]["action"],
        "report"
    );
    agent.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_answer_is_byte_identical_to_the_server_s_but_for_the_matches() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: results_policy("redact"),
        stateless: true,
        ..Default::default()
    });
    let call = e2e::tool_call_body(9, "wechat_get_user_info", &json!({"openid": ECHOED}));
    let direct = format!("http://127.0.0.1:{}/mcp", d.wechat.port);
    let sent = e2e::http::post(&direct, call.clone(), &[]).await;
    let seen = e2e::http::post(&d.url("wechat"), call, &[("x-agent-id", "agent-a")]).await;
    assert_eq!((sent.status, seen.status), (200, 200), "{}", seen.body);
    assert!(sent.body.contains("AKIAIOSFODNN7EXAMPLE"), "{}", sent.body);
    let expected = sent
        .body
        .replace("ops@example.com", "[redacted:email]")
        .replace("AKIAIOSFODNN7EXAMPLE", "[redacted:aws_access_key]")
        .replace("4111 1111 1111 1111", "[redacted:payment_card]");
    assert_eq!(seen.body, expected);
}
