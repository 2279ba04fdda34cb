//! Require approval, through the real Envoy with the built filter, the real approval service
//! (`approval-service`, SQLite) and the real sample server: a held call completes once a human
//! approves it, exactly once, only with the approved arguments; denials, expiry and an
//! unreachable service refuse it. The upstream's own counter says what ran. People decide with
//! their API tokens; the service records who they are, and the agent is told that name.

use std::time::{Duration, Instant};

use e2e::http::post;
use e2e::{Deployment, DeploymentOptions};
use serde_json::{json, Value};

mod approval_support;
use approval_support::{ApprovalService, CAROL_TOKEN, DAN_TOKEN};

const TOOL: &str = "lark_send_text";

fn policy(hold_seconds: u64, valid_seconds: u64) -> String {
    json!({"version": "1", "default": "deny",
           "approval": {"cluster": "approvals", "hold_seconds": hold_seconds, "valid_seconds": valid_seconds},
           "tools": {TOOL: {"action": "require_approval"}, "ding_send_text": {}}})
    .to_string()
}

fn call(id: u64, text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": TOOL, "arguments": {"text": text}}})
    .to_string()
}

struct Setup {
    service: ApprovalService,
    deployment: Deployment,
}

fn setup(hold_seconds: u64, valid_seconds: u64) -> Setup {
    let service = approval_support::start();
    let deployment = Deployment::start(DeploymentOptions {
        notify_policy: policy(hold_seconds, valid_seconds),
        stateless: true,
        approval_port: Some(service.port()),
        ..Default::default()
    });
    Setup {
        service,
        deployment,
    }
}

impl Setup {
    async fn send(&self, id: u64, text: &str) -> Value {
        let response = post(
            &self.deployment.url("notify"),
            call(id, text),
            &[("x-agent-id", "agent-a")],
        )
        .await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    /// The pending request for `text`, once the held call has reached the service.
    async fn pending(&self, text: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = self.service.get("/v1/requests?status=pending").await.json();
            let found = listed["requests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["arguments"]["text"] == text)
                .cloned();
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no pending request for {text:?}: {listed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `approver` (carol or dan) decides, with their API token.
    async fn decide(&self, id: &str, action: &str, approver: &str, reason: &str) {
        let token = match approver {
            "carol" => CAROL_TOKEN,
            "dan" => DAN_TOKEN,
            other => panic!("no token for {other}"),
        };
        let response =
            approval_support::decide(self.service.port(), token, id, action, reason).await;
        assert_eq!(response.status, 200, "{action} {id}: {response:?}");
    }

    fn ran(&self) -> u64 {
        self.deployment.upstream_tool_calls("notify", TOOL)
    }
}

fn approval_id(error: &Value) -> String {
    error["error"]["data"]["approval_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_call_runs_once_a_human_approves_it_and_only_that_call() {
    let s = setup(4, 600);

    // Approved while held: the agent's one request completes, the server runs it once.
    let held = {
        let url = s.deployment.url("notify");
        tokio::spawn(
            async move { post(&url, call(1, "hello"), &[("x-agent-id", "agent-a")]).await },
        )
    };
    let pending = s.pending("hello").await;
    assert_eq!(pending["tool"], TOOL);
    assert_eq!(pending["server"], "notify");
    assert_eq!(pending["identity"], "agent-a");
    let first_id = pending["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    s.decide(&first_id, "approve", "carol", "fine").await;
    let answer = held.await.expect("task").json();
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the held call waited {:?} after approval",
        started.elapsed()
    );
    assert_eq!(s.ran(), 1);

    // The same call again: the approval was single use. Held for the hold time, then the agent
    // is told where a human approves it.
    let started = Instant::now();
    let replay = s.send(2, "hello").await;
    assert_eq!(replay["error"]["code"], -32031, "{replay}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not held: {:?}",
        started.elapsed()
    );
    let replay_id = approval_id(&replay);
    assert!(!replay_id.is_empty() && replay_id != first_id, "{replay}");
    let message = replay["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("#{replay_id}")) && message.contains("Retry the same call"),
        "{message}"
    );
    assert_eq!(s.ran(), 1);

    // Approved while nobody waits; a call with other arguments is not covered by it...
    s.decide(&replay_id, "approve", "carol", "").await;
    let changed = s.send(3, "hello, world").await;
    assert_eq!(changed["error"]["code"], -32031, "{changed}");
    assert_ne!(approval_id(&changed), replay_id);
    assert_eq!(s.ran(), 1);
    // ...the call with the approved arguments goes through at once.
    let started = Instant::now();
    let retried = s.send(4, "hello").await;
    assert!(retried.get("result").is_some(), "{retried}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(s.ran(), 2);

    // Denied while held: the agent reads who denied it and why.
    let held = {
        let url = s.deployment.url("notify");
        tokio::spawn(async move { post(&url, call(5, "spam"), &[("x-agent-id", "agent-a")]).await })
    };
    let pending = s.pending("spam").await;
    s.decide(
        pending["id"].as_str().expect("id"),
        "deny",
        "dan",
        "not to everyone",
    )
    .await;
    let denied = held.await.expect("task").json();
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    assert_eq!(denied["error"]["data"]["decision"], "approval_denied");
    assert_eq!(denied["error"]["data"]["approver"], "dan");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not to everyone"),
        "{denied}"
    );
    assert_eq!(s.ran(), 2);

    // Every decision is on record, with who and when.
    let decisions = s.service.get("/v1/decisions").await.json();
    let text = decisions.to_string();
    assert!(
        text.contains("carol") && text.contains("dan"),
        "{decisions}"
    );

    // The audit record says what happened to each call.
    let records = s.deployment.audit_records(6);
    let decisions: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r["mcp_policy"]["calls"][0]["decision"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for expected in ["allowed", "approval_pending", "approval_denied"] {
        assert!(
            decisions.iter().any(|d| d == expected),
            "{expected} not in {decisions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unused_approval_expires() {
    let s = setup(1, 1);
    let first = s.send(1, "later").await;
    assert_eq!(first["error"]["code"], -32031, "{first}");
    let id = approval_id(&first);
    s.decide(&id, "approve", "carol", "").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = s.send(2, "later").await;
    assert_eq!(
        after["error"]["code"], -32031,
        "an expired approval let the call through: {after}"
    );
    assert_ne!(approval_id(&after), id);
    assert_eq!(s.ran(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_approval_service_means_no_call() {
    let mut s = setup(2, 600);
    s.service.process.guard.stop();
    let started = Instant::now();
    let answer = s.send(1, "hello").await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(answer["error"]["data"]["decision"], "error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("approval service"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Tools that need no approval are unaffected.
    let other = post(
        &s.deployment.url("notify"),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ding_send_text","arguments":{"text":"hi"}}}).to_string(),
        &[],
    )
    .await
    .json();
    assert!(other.get("result").is_some(), "{other}");
    assert_eq!(s.ran(), 0);
}
