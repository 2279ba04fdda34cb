//! Reserve, then commit or refund, through the real Envoy: a call the upstream answers with a
//! JSON-RPC error (in a JSON or an SSE answer) or an HTTP error gives its counter back.
//! `max: 2` per hour: with refunds, valid-failed-valid leaves room for exactly one more.

use std::collections::HashMap;

use e2e::http::post;
use e2e::{wait_for_window_room, Deployment, DeploymentOptions};
use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, start_sample_server, EnvoyOptions,
};
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// `wechat_mass_send_v0` shares the budget but the server no longer has it: calling it gets a
/// JSON-RPC error from the server. (A call with bad arguments is not one: the server answers
/// with a tool result flagged `isError`, which is the tool's answer and commits, as in Intercept.)
const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
    "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":2,"scope":"global"}]},
    "wechat_mass_send_v0":{"limits":[{"counter":"sends","window":"hour","max":2,"scope":"global"}]}}}"#;

fn send(id: u64, arguments: Value) -> String {
    call_body(id, "wechat_mass_send", arguments)
}

fn call_body(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}}).to_string()
}

fn valid() -> Value {
    json!({"openids": ["o1"], "msg_type": "text", "content": "hi"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_in_json_answers_are_refunded() {
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    assert!(post(&url, send(1, valid()), &[])
        .await
        .json()
        .get("result")
        .is_some());
    let failed = post(&url, call_body(2, "wechat_mass_send_v0", valid()), &[])
        .await
        .json();
    assert!(failed.get("error").is_some(), "{failed}");
    assert_ne!(
        failed["error"]["code"], -32029,
        "the server's error, not the filter's"
    );
    assert!(
        post(&url, send(3, valid()), &[])
            .await
            .json()
            .get("result")
            .is_some(),
        "refunded, so room for this one"
    );
    assert_eq!(
        post(&url, send(4, valid()), &[]).await.json()["error"]["code"],
        -32029
    );
    assert_eq!(d.upstream_posts("wechat"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_in_sse_answers_and_http_errors_are_refunded() {
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        ..Default::default()
    });
    // HTTP error: an unknown session is refused by the server before the tool runs.
    let refused = post(
        &d.url("wechat"),
        send(9, valid()),
        &[("mcp-session-id", "no-such-session")],
    )
    .await;
    assert!(refused.status >= 400, "{refused:?}");

    let mut headers = HashMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_static("x-agent-id"),
        reqwest::header::HeaderValue::from_static("a"),
    );
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.url("wechat")).custom_headers(headers),
    );
    let client = ().serve(transport).await.expect("initialize");
    let call_tool = |tool: &'static str, args: Value| {
        let params = CallToolRequestParams::new(tool)
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        client.call_tool(params)
    };
    let call = |args: Value| call_tool("wechat_mass_send", args);
    call(valid()).await.expect("first send");
    // The stateful server answers over SSE; this answer is a JSON-RPC error.
    match call_tool("wechat_mass_send_v0", valid()).await {
        Err(ServiceError::McpError(e)) => {
            assert_ne!(e.code.0, -32029, "an upstream error, not the filter's")
        }
        other => panic!("expected an upstream JSON-RPC error, got {other:?}"),
    }
    call(valid())
        .await
        .expect("refunded twice over, so room for this one");
    match call(valid()).await {
        Err(ServiceError::McpError(e)) => assert_eq!(e.code.0, -32029),
        other => panic!("expected the limit, got {other:?}"),
    }
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_client_gives_up_on_stays_charged() {
    wait_for_window_room(3600, 60);
    let policy = r#"{"version":"1","default":"deny","tools":{"wechat_mass_status":{"limits":[
        {"counter":"status_checks","window":"hour","max":1,"scope":"global"}]}}}"#;
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        stateless: true,
        ..Default::default()
    });
    let slow = call_body(
        1,
        "wechat_mass_status",
        json!({"msg_id": "m1", "wait_seconds": 5}),
    );
    // The agent gives up after a second: the stream is reset before any answer. The tool still
    // runs (a disconnect is not a cancellation), so the call stays charged: refunds need
    // evidence of failure, or hanging up would make every call free.
    let gave_up = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap()
        .post(d.url("wechat"))
        .header("content-type", "application/json")
        .header("accept", e2e::http::MCP_ACCEPT)
        .body(slow)
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let limited = post(
        &d.url("wechat"),
        call_body(2, "wechat_mass_status", json!({"msg_id": "m1"})),
        &[],
    )
    .await
    .json();
    assert_eq!(
        limited["error"]["code"], -32029,
        "the abandoned call used the budget: {limited}"
    );
}

/// One Envoy (one worker) with the filter in front of one sample server, for tests that need a
/// listener or route setting the sample deployment does not have: `route` is added to the
/// route's action, `manager` to the HTTP connection manager.
struct Front {
    upstream: mcp_policy_sample::deployment::ServerProcess,
    _envoy: mcp_policy_sample::deployment::EnvoyProcess,
    _dir: tempfile::TempDir,
    url: String,
}

impl Front {
    fn start(policy: &str, route: &str, manager: &str) -> Front {
        let upstream = start_sample_server(&e2e::sample_server_bin(), "wechat", true).unwrap();
        let (port, admin) = (free_port().unwrap(), free_port().unwrap());
        let config = format!(
            r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: mcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          {manager}
          route_config:
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - match: {{ path: /wechat/mcp }}
                route: {{ cluster: wechat, prefix_rewrite: /mcp, {route} }}
          http_filters:
          {filter}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: wechat
    type: STATIC
    load_assignment:
      cluster_name: wechat
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"#,
            filter = e2e::filter_entry("wechat", policy),
            upstream = upstream.port,
        );
        let dir = tempfile::tempdir().unwrap();
        let envoy = start_envoy(&EnvoyOptions {
            envoy_bin: e2e::envoy_bin(),
            config,
            work_dir: dir.path().to_path_buf(),
            concurrency: 1,
            admin_port: admin,
            log_to_stderr: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Front {
            upstream,
            _envoy: envoy,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}/wechat/mcp"),
        }
    }

    fn upstream_stats(&self) -> Value {
        let (_, stats) = http_get(self.upstream.port, "/stats").expect("upstream /stats");
        serde_json::from_str(&stats).expect("stats JSON")
    }
}

const STATUS_CHECKS_ONCE_AN_HOUR: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_status":{"limits":[
    {"counter":"status_checks","window":"hour","max":1,"scope":"global"}]}}}"#;

/// Envoy answers 504 when it stops waiting (here, a route timeout of half a second), but the
/// server has the call and runs it: that is no evidence of failure, as a client hanging up is
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_envoy_stops_waiting_for_stays_charged() {
    wait_for_window_room(3600, 60);
    let front = Front::start(STATUS_CHECKS_ONCE_AN_HOUR, "timeout: 0.5s", "");
    let slow = call_body(
        1,
        "wechat_mass_status",
        json!({"msg_id": "m1", "wait_seconds": 2}),
    );
    let timed_out = post(&front.url, slow, &[]).await;
    assert_eq!(timed_out.status, 504, "{timed_out:?}");
    let limited = post(
        &front.url,
        call_body(2, "wechat_mass_status", json!({"msg_id": "m1"})),
        &[],
    )
    .await
    .json();
    assert_eq!(
        limited["error"]["code"], -32029,
        "the call Envoy stopped waiting for used the budget: {limited}"
    );
    let stats = front.upstream_stats();
    assert_eq!(
        stats["tool_calls"],
        json!({"wechat_mass_status": 1}),
        "{stats}"
    );
}

/// One charge, one run: Envoy's retry and timeout request headers are taken off a decided POST,
/// so a caller Envoy trusts as internal cannot make it send the call again, or give up early
/// and retry. Here 127.0.0.1 is internal, as callers inside a mesh often are;
/// without the filter taking the headers off, the server would run this call three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cannot_make_envoy_send_a_call_again() {
    wait_for_window_room(3600, 60);
    let front = Front::start(
        STATUS_CHECKS_ONCE_AN_HOUR,
        "timeout: 0s",
        "use_remote_address: true\n          internal_address_config: { cidr_ranges: [{ address_prefix: 127.0.0.1, prefix_len: 32 }] }",
    );
    let slow = call_body(
        1,
        "wechat_mass_status",
        json!({"msg_id": "m1", "wait_seconds": 1}),
    );
    let answer = post(
        &front.url,
        slow,
        &[
            ("x-envoy-retry-on", "5xx,reset"),
            ("x-envoy-max-retries", "2"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "200"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let stats = front.upstream_stats();
    assert_eq!(
        stats["tool_calls"],
        json!({"wechat_mass_status": 1}),
        "run once: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_the_upstream_resets_or_never_takes_are_refunded_and_policy_still_applies() {
    wait_for_window_room(3600, 60);
    let policy = r#"{"version":"1","default":"deny","tools":{
        "wechat_mass_status":{"limits":[{"counter":"status_checks","window":"hour","max":1,"scope":"global"}]},
        "wechat_mass_delete":{"action":"deny","reason":"never"}}}"#;
    let mut d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    // The server dies while it holds the call: Envoy sees the connection reset.
    let slow = call_body(
        1,
        "wechat_mass_status",
        json!({"msg_id": "m1", "wait_seconds": 5}),
    );
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { post(&url, slow, &[]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    d.wechat.guard.stop();
    let reset = in_flight.await.expect("task");
    assert_eq!(reset.status, 503, "{reset:?}");
    // Now nothing listens: every call fails upstream and gives its unit back, so none is ever
    // refused as rate limited (max is 1).
    for id in 2..5 {
        let refused = post(
            &url,
            call_body(id, "wechat_mass_status", json!({"msg_id": "m1"})),
            &[],
        )
        .await;
        assert_eq!(refused.status, 503, "call {id}: {refused:?}");
    }
    // The filter keeps deciding on its own while the upstream is down.
    let denied = post(&url, call_body(5, "wechat_mass_delete", json!({})), &[]).await;
    assert_eq!(denied.json()["error"]["code"], -32003);
}
