//! Exactness under concurrency: Envoy with 2 worker threads, 100 simultaneous calls against
//! `max: 30`, and exactly 30 reach the upstream, for every identity.

use e2e::http::{post, tools_call};
use e2e::{wait_for_window_room, Deployment, DeploymentOptions};

async fn burst(d: &Deployment, calls: u64, agent: &'static str) -> (u64, u64) {
    let url = d.url("wechat");
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..calls {
        let url = url.clone();
        tasks.spawn(async move {
            post(
                &url,
                tools_call(id, "wechat_mass_send"),
                &[("x-agent-id", agent)],
            )
            .await
        });
    }
    let (mut admitted, mut limited) = (0, 0);
    while let Some(response) = tasks.join_next().await {
        let response = response.expect("task");
        assert_eq!(response.status, 200, "{response:?}");
        let body = response.json();
        if body.get("result").is_some() {
            admitted += 1;
        } else {
            assert_eq!(body["error"]["code"], -32029, "{body}");
            let retry_after: u64 = response
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .expect("retry-after header");
            assert_eq!(body["error"]["data"]["retry_after_seconds"], retry_after);
            limited += 1;
        }
    }
    (admitted, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_max_calls_reach_the_upstream_with_two_workers() {
    // The seed's limit (30, scope grant) over an hour, so one window surely holds every burst.
    let policy = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[
        {"counter":"wechat_mass_send_rate","window":"hour","max":30,"scope":"grant"}]}}}"#;
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        concurrency: 2,
        stateless: true,
        ..Default::default()
    });
    // Each identity is a fresh key, so both workers also race to create it.
    for (n, agent) in ["agent-1", "agent-2", "agent-3"].into_iter().enumerate() {
        let (admitted, limited) = burst(&d, 100, agent).await;
        assert_eq!((admitted, limited), (30, 70), "{agent}");
        assert_eq!(
            d.upstream_tool_calls("wechat", "wechat_mass_send"),
            30 * (n as u64 + 1),
            "{agent}"
        );
    }
    // Both workers really took part (connections are spread across them).
    for worker in ["worker_0", "worker_1"] {
        let connections = d.envoy_stat(&format!(
            "listener.127.0.0.1_{}.{worker}.downstream_cx_total",
            d.port
        ));
        assert!(
            connections > 10,
            "{worker} handled only {connections} connections"
        );
    }
    assert!(
        !d.envoy_log().contains("compare-and-swap gave up"),
        "{}",
        d.envoy_log()
    );
}
