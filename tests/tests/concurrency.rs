//! Exactness under concurrency: Envoy with 2 worker threads, 100 simultaneous calls against
//! `max: 30`, and exactly 30 reach the upstream.

use e2e::http::{post, tools_call};
use e2e::{wait_for_window_room, Deployment, DeploymentOptions};

async fn burst(d: &Deployment, calls: u64, agent: &'static str) -> (u64, u64) {
    let url = d.url("wechat");
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..calls {
        let url = url.clone();
        tasks.spawn(async move { post(&url, tools_call(id, "wechat_mass_send"), &[("x-agent-id", agent)]).await });
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
            limited += 1;
        }
    }
    (admitted, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_max_calls_reach_the_upstream_with_two_workers() {
    // The seed policy: 30 per minute per grant. Start well inside a minute so one window holds
    // the whole burst.
    wait_for_window_room(60, 40);
    let d = Deployment::start(DeploymentOptions { concurrency: 2, stateless: true, ..Default::default() });
    let (admitted, limited) = burst(&d, 100, "agent-1").await;
    assert_eq!((admitted, limited), (30, 70));
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 30);

    // A second identity has its own 30 (scope: grant), also exact.
    let (admitted, _) = burst(&d, 100, "agent-2").await;
    assert_eq!(admitted, 30);
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_send"), 60);
    assert!(!d.envoy_log().contains("compare-and-swap gave up"), "{}", d.envoy_log());
}
