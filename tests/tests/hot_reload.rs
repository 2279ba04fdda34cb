//! Hot reload through Envoy's extension config discovery (the sample deployment's delivery): an
//! edited policy takes effect without a restart and without dropping connections, counters
//! survive it, and a broken edit is refused while the previous policy keeps serving.

use std::time::{Duration, Instant};

use e2e::http::tools_call;
use e2e::{wait_for_window_room, Deployment, DeploymentOptions};
use serde_json::Value;

const BEFORE: &str = r#"{"version":"1","default":"deny","tools":{
    "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":2,"scope":"global"}]}}}"#;
const AFTER: &str = r#"{"version":"1","default":"deny","tools":{
    "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":2,"scope":"global"}]},
    "wechat_get_followers":{}}}"#;
const BROKEN: &str = r#"{"version":"1","default":"allow","tools":{"wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":0,"scope":"global"}]}}}"#;

async fn call(client: &reqwest::Client, url: &str, id: u64, tool: &str) -> Value {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", e2e::http::MCP_ACCEPT)
        .body(tools_call(id, tool))
        .send()
        .await
        .expect("POST");
    serde_json::from_str(&response.text().await.expect("body")).expect("JSON")
}

fn allowed(answer: &Value) -> bool {
    answer.get("result").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_apply_live_counters_survive_and_broken_edits_are_refused() {
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: BEFORE.into(),
        concurrency: 1,
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    // One client, one kept-alive connection for the whole test.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    assert!(allowed(&call(&client, &url, 1, "wechat_mass_send").await));
    assert!(allowed(&call(&client, &url, 2, "wechat_mass_send").await));
    assert!(!allowed(
        &call(&client, &url, 3, "wechat_get_followers").await
    ));

    d.replace_policy("wechat", AFTER);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 10;
    while !allowed(&call(&client, &url, id, "wechat_get_followers").await) {
        assert!(
            Instant::now() < deadline,
            "the edited policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        id += 1;
    }
    // Counters survived the reload: the two sends before it still count.
    assert_eq!(
        call(&client, &url, 50, "wechat_mass_send").await["error"]["code"],
        -32029
    );

    d.replace_policy("wechat", BROKEN);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.envoy_stat("extension_config_discovery.http_filter.mcp-policy.wechat.config_fail") < 1 {
        assert!(Instant::now() < deadline, "the broken edit was never seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The previous policy keeps serving: followers still allowed, sends still limited.
    assert!(allowed(
        &call(&client, &url, 60, "wechat_get_followers").await
    ));
    assert_eq!(
        call(&client, &url, 61, "wechat_mass_send").await["error"]["code"],
        -32029
    );

    // Envoy closed no connection (a client may still open a second one when it sends before
    // hyper's pool has the first back: that is not Envoy's doing).
    for closed_by_envoy in [
        "http.mcp.downstream_cx_destroy_local",
        "http.mcp.downstream_cx_drain_close",
        "http.mcp.downstream_cx_destroy_local_active_rq",
    ] {
        assert_eq!(d.envoy_stat(closed_by_envoy), 0, "{closed_by_envoy}");
    }
    assert_eq!(d.envoy_stat("server.envoy_bug_failures"), 0);
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 2);
}
