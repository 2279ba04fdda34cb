//! What Envoy does when a running listener is updated with an invalid policy: the filter refuses
//! it in on_configure, Envoy rejects the whole update (`listener_manager.lds.update_rejected`),
//! and the previous policy keeps serving. A valid update then takes effect. Uses file-based LDS
//! (an Envoy-native way to change configuration without a restart).

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::http::{post, tools_call};
use mcp_policy_sample::deployment::FilterBuild;
use mcp_policy_sample::deployment::{free_port, start_envoy, start_sample_server, EnvoyOptions};

fn listener(port: u16, policy: &str) -> String {
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: mcp
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: mcp
        route_config:
          virtual_hosts:
          - name: mcp
            domains: ["*"]
            routes:
            - match: {{ path: /wechat/mcp }}
              route: {{ cluster: wechat, prefix_rewrite: /mcp, timeout: 0s }}
        http_filters:
        {filter}
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        filter = e2e::filter_entry("wechat", policy)
    )
}

fn bootstrap(admin: u16, upstream: u16, dir: &Path) -> String {
    format!(
        r#"node: {{ id: policy-update-test, cluster: test }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
dynamic_resources:
  lds_config:
    path_config_source:
      path: {dir}/lds.yaml
      watched_directory: {{ path: {dir} }}
static_resources:
  clusters:
  - name: wechat
    type: STATIC
    load_assignment:
      cluster_name: wechat
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"#,
        dir = dir.display()
    )
}

/// Replace the LDS file atomically (Envoy watches the directory for moves).
fn publish(dir: &Path, content: &str) {
    let staging = dir.join("lds.yaml.next");
    std::fs::write(&staging, content).expect("write");
    std::fs::rename(&staging, dir.join("lds.yaml")).expect("rename");
}

fn wait_for_stat(admin: u16, name: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while e2e::envoy_stat(admin, name) < at_least {
        assert!(Instant::now() < deadline, "{name} never reached {at_least}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const GOOD: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{}}}"#;
const BAD: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{},"wechat_mass_delete":{"action":"allow","limits":[{"counter":"c","window":"minute","max":0,"scope":"grant"}]}}}"#;
const WIDER: &str =
    r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{},"wechat_mass_delete":{}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_update_is_rejected_and_the_previous_policy_keeps_serving() {
    let upstream = start_sample_server(&e2e::sample_server_bin(), "wechat", true).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    publish(dir.path(), &listener(port, GOOD));
    let mut envoy = start_envoy(&EnvoyOptions {
        envoy_bin: e2e::envoy_bin(),
        config: bootstrap(admin, upstream.port, dir.path()),
        work_dir: dir.path().join("envoy"),
        concurrency: 2,
        admin_port: admin,
        log_to_stderr: false,
    })
    .expect("envoy");
    wait_for_stat(admin, "listener_manager.lds.update_success", 1);
    wait_for_stat(admin, "listener_manager.total_listeners_active", 1);
    let url = format!("http://127.0.0.1:{port}/wechat/mcp");
    assert_eq!(
        post(&url, tools_call(1, "wechat_mass_delete"), &[])
            .await
            .json()["error"]["code"],
        -32003
    );

    // The bad update: Envoy refuses it as a whole.
    publish(dir.path(), &listener(port, BAD));
    wait_for_stat(admin, "listener_manager.lds.update_rejected", 1);
    // The filter counts it too (`mcp_policy_config_failures_total` in Prometheus).
    let (_, stats) = mcp_policy_sample::deployment::http_get(
        admin,
        "/stats?filter=mcp_policy_config_failures_total",
    )
    .expect("stats");
    // Without the sample bootstrap's tag rules, each build's own stat name.
    let counted = match e2e::filter_build() {
        FilterBuild::Wasm => "server=.=wechat;.;mcp_policy_config_failures_total: 1",
        FilterBuild::Native => "mcp_policy_config_failures_total.mcp_server.wechat: 1",
    };
    assert!(stats.contains(counted), "{stats}");
    let log = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = envoy.log();
            if log.contains("invalid policy") || Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(log.contains("mcp-policy-filter[wechat]: invalid policy: tools.wechat_mass_delete.limits[0].max: expected a positive integer, got number 0"), "{log}");
    // ...and the previous policy is still the one enforced.
    assert_eq!(
        post(&url, tools_call(2, "wechat_mass_delete"), &[])
            .await
            .json()["error"]["code"],
        -32003
    );
    assert!(post(&url, tools_call(3, "wechat_mass_send"), &[])
        .await
        .body
        .contains("\"result\""));

    // A valid update is taken without a restart.
    publish(dir.path(), &listener(port, WIDER));
    wait_for_stat(admin, "listener_manager.lds.update_success", 2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = post(&url, tools_call(4, "wechat_mass_delete"), &[]).await;
        if response.body.contains("\"result\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new policy never took effect: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        envoy.guard.try_exit_status().is_none(),
        "the same Envoy process served throughout"
    );
}
