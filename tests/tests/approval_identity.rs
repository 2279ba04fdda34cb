//! An approval binds the caller: through the real Envoy with the built filter, the real
//! approval service and the real sample server, a human's approval of one identity's call does
//! not let the same call (same tool, same arguments) through for another identity, nor for a
//! caller without one; the approved identity's call still goes through afterwards. The
//! upstream's own counter says what ran.

use e2e::http::post;
use e2e::{Deployment, DeploymentOptions};
use serde_json::{json, Value};

mod approval_support;
use approval_support::CAROL_TOKEN;

const TOOL: &str = "lark_send_text";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_does_not_cover_the_same_call_from_another_identity() {
    let service = approval_support::start();
    let policy = json!({"version": "1", "default": "deny",
        "identity": {"sources": [{"header": "x-agent-id"}]},
        "approval": {"cluster": "approvals", "hold_seconds": 1, "valid_seconds": 600},
        "tools": {TOOL: {"action": "require_approval"}}});
    let d = Deployment::start(DeploymentOptions {
        notify_policy: policy.to_string(),
        stateless: true,
        approval_port: Some(service.port()),
        ..Default::default()
    });
    let ran = || d.upstream_tool_calls("notify", TOOL);
    // The very same body every time: only the caller differs.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": TOOL, "arguments": {"text": "ship it"}}})
    .to_string();
    let send = |agent: Option<&'static str>| {
        let url = d.url("notify");
        let body = body.clone();
        async move {
            let headers: Vec<(&str, &str)> = agent.map(|a| ("x-agent-id", a)).into_iter().collect();
            let response = post(&url, body, &headers).await;
            assert_eq!(response.status, 200, "{response:?}");
            response.json()
        }
    };
    let approval_id = |answer: &Value| -> String {
        assert_eq!(
            answer["error"]["code"], -32031,
            "not held for approval: {answer}"
        );
        assert_eq!(answer["error"]["data"]["decision"], "approval_pending");
        answer["error"]["data"]["approval_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no approval id: {answer}"))
            .to_owned()
    };

    // agent-a asks; nobody decides within the hold; a human then approves it.
    let first = approval_id(&send(Some("agent-a")).await);
    let approve = approval_support::decide(
        service.port(),
        CAROL_TOKEN,
        &first,
        "approve",
        "for agent-a",
    )
    .await;
    assert_eq!(approve.status, 200, "{approve:?}");
    assert_eq!(ran(), 0);

    // agent-b sends the same call: not covered, a new approval is asked for in its own name.
    let for_b = approval_id(&send(Some("agent-b")).await);
    assert_ne!(for_b, first, "agent-b got agent-a's approval");
    assert_eq!(ran(), 0, "agent-b's call ran on agent-a's approval");
    // A caller without identity neither.
    let anonymous = approval_id(&send(None).await);
    assert!(anonymous != first && anonymous != for_b);
    assert_eq!(ran(), 0, "an anonymous call ran on agent-a's approval");

    // The service was asked in each caller's name.
    let pending = service.get("/v1/requests?status=pending").await.json();
    let pending_for = |id: &str| -> Value {
        pending["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} is not pending: {pending}"))
    };
    let b = pending_for(&for_b);
    assert_eq!(
        (
            b["identity"].clone(),
            b["tool"].clone(),
            b["arguments"].clone()
        ),
        (json!("agent-b"), json!(TOOL), json!({"text": "ship it"}))
    );
    assert_eq!(
        pending_for(&anonymous)["arguments"],
        json!({"text": "ship it"})
    );
    assert!(
        pending["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["id"] != first.as_str()),
        "agent-a's request is no longer pending: {pending}"
    );

    // agent-a's approval was not used up by the others: its call goes through, once.
    let approved = send(Some("agent-a")).await;
    assert!(approved.get("result").is_some(), "{approved}");
    assert_eq!(ran(), 1);

    let decisions: Vec<(String, String)> = d
        .audit_records(4)
        .iter()
        .map(|l| {
            let record = &l["mcp_policy"];
            (
                record["identity"].as_str().unwrap_or("(none)").to_owned(),
                record["calls"][0]["decision"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let expect = |who: &str, what: &str| (who.to_owned(), what.to_owned());
    assert_eq!(
        decisions,
        vec![
            expect("agent-a", "approval_pending"),
            expect("agent-b", "approval_pending"),
            expect("(none)", "approval_pending"),
            expect("agent-a", "allowed"),
        ]
    );
}
