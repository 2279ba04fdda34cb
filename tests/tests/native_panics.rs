//! A panic in the native module never reaches Envoy: the hook that panics refuses its request
//! (or the answer) and Envoy, with every other request, carries on. Runs the module built with
//! its test-only probe (`make native-probe`: a request header makes a chosen hook panic), in
//! both runs of the suite.

use e2e::http::post;
use e2e::native_probe_path;
use mcp_policy_sample::deployment::{
    free_port, http_get, start_envoy, start_sample_server, EnvoyOptions, FilterBuild,
};
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[
    {"counter":"sends","window":"hour","max":1000,"scope":"global"}]}}}"#;

fn call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "wechat_mass_send", "arguments": {"content": "hi", "to": "all"}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hook_fails_its_request_closed_and_envoy_serves_on() {
    let upstream = start_sample_server(&e2e::sample_server_bin(), "wechat", true).unwrap();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let filter = FilterBuild::Native.filter_entry("wechat", &native_probe_path(), POLICY);
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
"#,
        upstream = upstream.port,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut envoy = start_envoy(&EnvoyOptions {
        envoy_bin: e2e::envoy_bin(),
        config,
        work_dir: dir.path().to_path_buf(),
        concurrency: 2,
        admin_port: admin,
        log_to_stderr: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://127.0.0.1:{port}/mcp");
    let sent = || {
        let (_, stats) = http_get(upstream.port, "/stats").expect("upstream /stats");
        serde_json::from_str::<Value>(&stats).expect("stats JSON")["tool_calls"]["wechat_mass_send"]
            .as_u64()
            .unwrap_or(0)
    };

    // A panic while deciding: the request is refused, with a reason, before the upstream.
    let refused = post(&url, call(1), &[("x-mcp-policy-panic", "request")]).await;
    assert_eq!(refused.status, 500, "{refused:?}");
    assert_eq!(refused.json()["error"]["code"], -32603, "{refused:?}");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("policy filter failed")),
        "{refused:?}"
    );
    assert_eq!(sent(), 0);

    // The next request, on the same worker or the other, is decided as ever.
    for id in 2..6 {
        let allowed = post(&url, call(id), &[]).await;
        assert_eq!(allowed.status, 200, "{allowed:?}");
        assert!(allowed.json().get("result").is_some(), "{allowed:?}");
    }
    assert_eq!(sent(), 4);

    // A panic while reading the answer: the call ran (the upstream has it), but the agent gets
    // no unchecked answer.
    let cut = post(&url, call(6), &[("x-mcp-policy-panic", "response")]).await;
    assert_eq!(sent(), 5);
    assert!(
        cut.status != 200 || !cut.body.contains("\"result\""),
        "an answer passed a panicking hook: {cut:?}"
    );

    let allowed = post(&url, call(7), &[]).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(sent(), 6);
    assert!(
        envoy.guard.try_exit_status().is_none(),
        "Envoy exited:\n{}",
        envoy.log()
    );
    let log = envoy.log();
    assert_eq!(
        log.matches("mcp-policy-filter: internal error; request refused")
            .count(),
        2,
        "{log}"
    );
    // Each panic is in Envoy's log with where it happened, and was caught there: no crash.
    assert_eq!(log.matches("panicked at").count(), 2, "{log}");
    assert!(log.contains("panic probe"), "{log}");
    assert!(!log.contains("Caught Segmentation fault"), "{log}");
}
