//! A rate-limit service or approval service whose cluster has no host: Envoy fails the call at
//! once (a host may even answer before the call that started it returns). The filter decides at
//! once by the policy's failure mode (closed: refused, before the upstream), and never holds the
//! request waiting for an answer that already came.

use std::time::{Duration, Instant};

use e2e::http::post;
use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, start_sample_server, EnvoyOptions,
};
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny",
  "rate_limit_services":{"shared":{"cluster":"ratelimit","timeout_ms":2000}},
  "rate_limit_service":"shared",
  "approval":{"cluster":"approvals","hold_seconds":2},
  "tools":{"wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":30,"scope":"grant"}]},
           "wechat_mass_delete":{"action":"require_approval"}}}"#;

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"msg_id": "m1"}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_a_host_refuse_at_once() {
    let upstream = start_sample_server(&e2e::sample_server_bin(), "wechat", true).unwrap();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let config = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp
          route_config: {{ virtual_hosts: [{{ name: mcp, domains: ["*"], routes: [{{ match: {{ prefix: / }}, route: {{ cluster: wechat, timeout: 0s }} }}] }}] }}
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
  - name: ratelimit
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment: {{ cluster_name: ratelimit }}
  - name: approvals
    type: STATIC
    load_assignment: {{ cluster_name: approvals }}
"#,
        filter = e2e::filter_entry("wechat", POLICY),
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
    let url = format!("http://127.0.0.1:{port}/mcp");

    for (id, tool, service) in [
        (1, "wechat_mass_send", "rate-limit service"),
        (2, "wechat_mass_delete", "approval service"),
        (3, "wechat_mass_send", "rate-limit service"),
    ] {
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), post(&url, call(id, tool), &[]))
            .await
            .unwrap_or_else(|_| panic!("{tool}: held instead of refused"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{tool}: {answer:?}"
        );
        let answer: Value = answer.json();
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
        assert_eq!(answer["error"]["data"]["decision"], "error", "{answer}");
        assert!(answer.to_string().contains(service), "{answer}");
    }
    let (_, stats) = http_get(upstream.port, "/stats").expect("upstream /stats");
    let stats: Value = serde_json::from_str(&stats).expect("stats JSON");
    assert_eq!(stats["tool_calls_total"], 0, "{stats}");
    let mut envoy = envoy;
    assert!(envoy.guard.try_exit_status().is_none(), "{}", envoy.log());
}
