//! The shipped example `envoy/examples/two-agents/` (run it with
//! `POLICY_DIR=envoy/examples/two-agents make run`): two agents holding different grants on both
//! sample servers.

use e2e::http::{post, tools_call};
use e2e::{repo_root, wait_for_window_room, Deployment, DeploymentOptions};
use serde_json::json;

fn example(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("envoy/examples/two-agents").join(file))
        .expect("example policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_hold_different_grants() {
    wait_for_window_room(60, 20);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: example("wechat.json"),
        notify_policy: example("notify.json"),
        stateless: true,
        ..Default::default()
    });
    let (wechat, notify) = (d.url("wechat"), d.url("notify"));
    let as_agent = |agent: &'static str| [("x-agent-id", agent)];
    let call = |url: String, agent: &'static str, tool: &'static str| async move {
        post(&url, tools_call(1, tool), &as_agent(agent))
            .await
            .json()
    };

    // wechat: campaigns send, support reads.
    assert!(call(wechat.clone(), "campaign-agent", "wechat_mass_send")
        .await
        .get("result")
        .is_some());
    assert!(
        call(wechat.clone(), "support-agent", "wechat_get_followers")
            .await
            .get("result")
            .is_some()
    );
    let refused = call(wechat.clone(), "support-agent", "wechat_mass_send").await;
    assert_eq!(
        refused["error"]["data"]["reason"],
        "grant \"support\" (held by identity \"support-agent\") does not include this tool"
    );
    let refused = call(wechat.clone(), "campaign-agent", "wechat_get_followers").await;
    assert_eq!(refused["error"]["code"], -32003);
    assert_eq!(
        call(wechat.clone(), "campaign-agent", "wechat_mass_delete").await["error"]["data"]
            ["reason"],
        "deleting a sent mass message needs a human"
    );
    assert_eq!(
        call(wechat.clone(), "intern-agent", "wechat_get_followers").await["error"]["data"]
            ["reason"],
        "identity \"intern-agent\" holds no grant on this server (grants: campaigns, support)"
    );
    let anonymous = post(&wechat, tools_call(1, "wechat_get_followers"), &[])
        .await
        .json();
    assert_eq!(
        anonymous["error"]["data"]["reason"],
        "the caller has no identity (expected header x-agent-id)"
    );

    // notify: one counter name, but scope "grant" gives each grant its own 30 per minute.
    for _ in 0..30 {
        assert!(call(notify.clone(), "campaign-agent", "ding_send_markdown")
            .await
            .get("result")
            .is_some());
    }
    let limited = call(notify.clone(), "campaign-agent", "ding_send_markdown").await;
    assert_eq!(
        (
            limited["error"]["code"].clone(),
            limited["error"]["data"]["counter"].clone()
        ),
        (json!(-32029), json!("ding_send_rate"))
    );
    assert!(call(notify.clone(), "support-agent", "ding_send_text")
        .await
        .get("result")
        .is_some());

    let wechat_calls = d.upstream_stats("wechat")["tool_calls"].clone();
    assert_eq!(
        wechat_calls,
        json!({"wechat_mass_send": 1, "wechat_get_followers": 1})
    );
    let notify_calls = d.upstream_stats("notify")["tool_calls"].clone();
    assert_eq!(
        notify_calls,
        json!({"ding_send_markdown": 30, "ding_send_text": 1})
    );
}
