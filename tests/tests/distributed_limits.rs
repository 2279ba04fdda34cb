//! Limits shared across replicas: two Envoys (2 workers each) with the built filter ask one
//! rate-limit service (`ratelimit-redis`, Envoy's rate-limit gRPC protocol) that counts in a real
//! Redis. The upstream's own counter proves what got through.

use e2e::gateway::{Gateway, RateLimitService, Redis};
use e2e::http::{post, tools_call};
use e2e::{sample_server_bin, wait_for_window_room};
use mcp_policy_sample::deployment::{free_port, http_get, start_sample_server, ServerProcess};
use serde_json::Value;

fn policy(failure_mode: &str) -> String {
    format!(
        r#"{{"version":"1","default":"deny",
        "rate_limit_services":{{"shared":{{"cluster":"ratelimit","timeout_ms":500,"failure_mode":"{failure_mode}"}}}},
        "rate_limit_service":"shared",
        "tools":{{"wechat_mass_send":{{"limits":[
            {{"counter":"wechat_mass_send_rate","window":"hour","max":30,"scope":"grant"}}]}}}}}}"#
    )
}

fn upstream() -> ServerProcess {
    start_sample_server(&sample_server_bin(), "wechat", true).expect("sample server")
}

fn upstream_calls(server: &ServerProcess) -> u64 {
    let (_, body) = http_get(server.port, "/stats").expect("upstream /stats");
    let stats: Value = serde_json::from_str(&body).expect("stats JSON");
    stats["tool_calls"]["wechat_mass_send"]
        .as_u64()
        .unwrap_or(0)
}

/// `calls` simultaneous tools/calls spread over `gateways`; the answers' bodies, per gateway.
async fn burst(gateways: &[&Gateway], calls: u64, agent: &'static str) -> Vec<Vec<Value>> {
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..calls {
        let index = (id as usize) % gateways.len();
        let url = gateways[index].url();
        tasks.spawn(async move {
            let response = post(
                &url,
                tools_call(id, "wechat_mass_send"),
                &[("x-agent-id", agent)],
            )
            .await;
            assert_eq!(response.status, 200, "{response:?}");
            (index, response.json())
        });
    }
    let mut answers = vec![Vec::new(); gateways.len()];
    while let Some(joined) = tasks.join_next().await {
        let (index, body) = joined.expect("task");
        answers[index].push(body);
    }
    answers
}

fn admitted(answers: &[Value]) -> usize {
    answers.iter().filter(|a| a.get("result").is_some()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_envoys_share_one_budget_through_the_rate_limit_service() {
    wait_for_window_room(3600, 60);
    let redis = Redis::start();
    let service = RateLimitService::start(&redis.url());
    let server = upstream();
    let policy = policy("closed");
    let a = Gateway::start(&policy, server.port, service.port);
    let b = Gateway::start(&policy, server.port, service.port);

    let answers = burst(&[&a, &b], 100, "agent-1").await;
    let (from_a, from_b) = (admitted(&answers[0]), admitted(&answers[1]));
    assert_eq!(
        from_a + from_b,
        30,
        "admitted by a: {from_a}, by b: {from_b}"
    );
    assert_eq!((answers[0].len(), answers[1].len()), (50, 50));
    assert_eq!(upstream_calls(&server), 30);
    for refused in answers
        .iter()
        .flatten()
        .filter(|a| a.get("error").is_some())
    {
        assert_eq!(refused["error"]["code"], -32029, "{refused}");
        assert_eq!(refused["error"]["data"]["counter"], "wechat_mass_send_rate");
        let retry = refused["error"]["data"]["retry_after_seconds"]
            .as_u64()
            .expect("retry_after_seconds");
        assert!((1..=3600).contains(&retry), "{refused}");
    }
    // Another grant has its own 30, on either replica.
    let other = burst(&[&b, &a], 40, "agent-2").await;
    assert_eq!(admitted(&other[0]) + admitted(&other[1]), 30);
    assert_eq!(upstream_calls(&server), 60);
    // Which replica admits what in a burst is up to timing; in turn, it is not: what one replica
    // admitted, the other sees as used.
    let first = burst(&[&a], 20, "agent-3").await;
    assert_eq!(admitted(&first[0]), 20);
    let second = burst(&[&b], 20, "agent-3").await;
    assert_eq!(admitted(&second[0]), 10, "b sees the 20 that a admitted");
    assert_eq!(upstream_calls(&server), 90);
    // Every decision was the service's: 180 answers, 90 "ok" and 90 "over_limit", no errors.
    let stat = |gateway: &Gateway, result: &str| -> u64 {
        let (_, text) = http_get(gateway.envoy.admin_port, "/stats/prometheus").expect("stats");
        let prefix = format!(
            r#"mcp_policy_rate_limit_service_total{{mcp_server="wechat",mcp_service="shared",mcp_result="{result}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let ok = stat(&a, "ok") + stat(&b, "ok");
    let over = stat(&a, "over_limit") + stat(&b, "over_limit");
    assert_eq!((ok, over), (90, 90));
    assert_eq!(stat(&a, "error") + stat(&b, "error"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_service_follows_the_failure_mode() {
    wait_for_window_room(3600, 60);
    let server = upstream();
    // Nothing listens on this port: Envoy's gRPC call fails at once (UNAVAILABLE).
    let nowhere = free_port().expect("free port");

    let closed = Gateway::start(&policy("closed"), server.port, nowhere);
    let answers = burst(&[&closed], 5, "agent-closed").await;
    for answer in &answers[0] {
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
        assert_eq!(answer["error"]["data"]["decision"], "error");
        let problem = answer["error"]["data"]["problem"]
            .as_str()
            .unwrap_or_default();
        assert!(
            problem.contains("rate-limit service \"shared\""),
            "{answer}"
        );
    }
    assert_eq!(upstream_calls(&server), 0);

    let open = Gateway::start(&policy("open"), server.port, nowhere);
    let answers = burst(&[&open], 5, "agent-open").await;
    assert_eq!(admitted(&answers[0]), 5);
    assert_eq!(upstream_calls(&server), 5);

    // local: each Envoy counts on its own against the same max.
    let local = Gateway::start(&policy("local"), server.port, nowhere);
    let answers = burst(&[&local], 40, "agent-local").await;
    assert_eq!(admitted(&answers[0]), 30);
    assert_eq!(upstream_calls(&server), 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_going_away_fails_closed_and_coming_back_restores_the_shared_count() {
    wait_for_window_room(3600, 60);
    let mut redis = Redis::start();
    let redis_port = redis.port;
    let service = RateLimitService::start(&redis.url());
    let server = upstream();
    let gateway = Gateway::start(&policy("closed"), server.port, service.port);

    assert_eq!(admitted(&burst(&[&gateway], 10, "agent-r").await[0]), 10);
    redis.guard.stop();
    let answers = burst(&[&gateway], 3, "agent-r").await;
    for answer in &answers[0] {
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
    }
    assert_eq!(upstream_calls(&server), 10);
    // A fresh Redis has no counts: the budget starts again (counting lives in Redis alone).
    let _redis = Redis::start_on(redis_port);
    let mut admitted_after = 0;
    for _ in 0..50 {
        admitted_after = admitted(&burst(&[&gateway], 1, "agent-r").await[0]);
        if admitted_after == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(admitted_after, 1, "the service did not reconnect to Redis");
}
