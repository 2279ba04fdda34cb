//! MCP 2026-07-28 clients send a tool name that is not plain ASCII in the `Mcp-Name` header
//! Base64-encoded (`=?base64?…?=`), and servers decode it before comparing it with the body.
//! Through the real Envoy with the built filter: the official Rust SDK's client calling the
//! sample server's Chinese-named tool is forwarded and the tool runs (the upstream counts it, and
//! received the encoded header); a header that decodes to another name than the body's, or does
//! not decode, is refused with 400 / -32020 and never reaches the upstream.

use std::collections::HashMap;

use e2e::http::post;
use e2e::{Deployment, DeploymentOptions};
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientLifecycleMode, ClientServiceExt};
use serde_json::{json, Value};

/// The sample wechat server's tool whose name is not ASCII ("get the follower count").
const TOOL: &str = "获取粉丝总数";
/// `TOOL` and `wechat_get_followers` in the encoded form (standard Base64 of their UTF-8).
const TOOL_ENCODED: &str = "=?base64?6I635Y+W57KJ5Lid5oC75pWw?=";
const FOLLOWERS_ENCODED: &str = "=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnM=?=";

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"获取粉丝总数":{},
    "wechat_get_followers":{},"wechat_mass_delete":{"action":"deny","reason":"never"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_calls_a_tool_named_in_chinese_with_an_encoded_mcp_name() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static("agent-modern"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    );
    let client = ()
        .serve_with_lifecycle(
            transport,
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

    // The filtered listing keeps the allowed tool under its own name.
    let mut listed: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["wechat_get_followers", TOOL]);

    let result = client
        .call_tool(CallToolRequestParams::new(TOOL))
        .await
        .expect("the call is forwarded and answered");
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 3);

    // The upstream ran it once, and received the header as the client encoded it.
    let stats = d.upstream_stats("wechat");
    assert_eq!(stats["tool_calls"][TOOL], 1, "{stats}");
    let sent = stats["recent_posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["headers"]["mcp-method"] == "tools/call")
        .cloned()
        .unwrap_or_else(|| panic!("no tools/call among {stats}"));
    assert_eq!(sent["headers"]["mcp-name"], TOOL_ENCODED, "{sent}");
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_that_decodes_to_another_name_or_not_at_all_is_refused() {
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let body = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": tool, "arguments": {},
                          "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                    "io.modelcontextprotocol/clientCapabilities": {}}}})
        .to_string()
    };
    for (tool, mcp_name) in [
        // Decodes to an allowed tool while the body calls a denied one, or another allowed one.
        ("wechat_mass_delete", FOLLOWERS_ENCODED),
        ("wechat_mass_delete", TOOL_ENCODED),
        ("wechat_get_followers", TOOL_ENCODED),
        // Does not decode: cut short; stray low bits (lenient decoders read
        // "wechat_get_followers"); bytes that are not UTF-8.
        (TOOL, "=?base64?6I635Y+W57KJ5Lid5oC75pW?="),
        (
            "wechat_get_followers",
            "=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnN=?=",
        ),
        (TOOL, "=?base64?//79?="),
        // The markers are lower case: this is a plain value, and not the tool's name.
        (TOOL, "=?BASE64?6I635Y+W57KJ5Lid5oC75pWw?="),
    ] {
        let response = post(
            &url,
            body(tool),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", mcp_name),
            ],
        )
        .await;
        let answer = response.json();
        assert_eq!(
            (
                response.status,
                answer["error"]["code"].clone(),
                answer["id"].clone()
            ),
            (400, json!(-32020), json!(7)),
            "{tool} with Mcp-Name {mcp_name}: {response:?}"
        );
    }
    assert_eq!(
        d.upstream_posts("wechat"),
        0,
        "{}",
        d.upstream_stats("wechat")
    );
}
