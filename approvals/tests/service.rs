//! The approval service on its own (real binary, real SQLite file): single use under
//! concurrency, decisions surviving a restart, and the API's refusals. Decisions are made with
//! an approver's API token (`tests/auth.rs` tests who may decide).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{bearer, send, start_with_approvers, CAROL_TOKEN};

/// POST as the filter does, or, for decisions, with carol's API token.
async fn post(url: String, body: Value) -> (u16, Value) {
    let reply = send(
        "POST",
        &url,
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer(CAROL_TOKEN)),
        ],
        Some(body.to_string()),
    )
    .await;
    (reply.status, reply.json())
}

fn question(digest: &str, hold_ms: u64) -> Value {
    json!({"digest": digest, "server": "wechat", "tool": "wechat_mass_send", "identity": "agent-a",
           "arguments": {"to": "all"}, "hold_ms": hold_ms, "valid_for_s": 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_approval_admits_exactly_one_of_many_concurrent_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    let (_, pending) = post(format!("{}/v1/check", s.base), question("d1", 0)).await;
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(pending["approve_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/#{id}")));
    let (status, _) = post(format!("{}/v1/requests/{id}/approve", s.base), json!({})).await;
    assert_eq!(status, 200);
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let url = format!("{}/v1/check", s.base);
        checks.spawn(async move { post(url, question("d1", 0)).await.1 });
    }
    let mut approved = 0;
    while let Some(answer) = checks.join_next().await {
        if answer.unwrap()["status"] == "approved" {
            approved += 1;
        }
    }
    assert_eq!(approved, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = start_with_approvers(dir.path());
        let (_, pending) = post(format!("{}/v1/check", s.base), question("d2", 0)).await;
        let id = pending["id"].as_str().unwrap().to_owned();
        post(
            format!("{}/v1/requests/{id}/approve", s.base),
            json!({"reason": "ok"}),
        )
        .await;
        id
    };
    let s = start_with_approvers(dir.path());
    let (_, answer) = post(format!("{}/v1/check", s.base), question("d2", 0)).await;
    assert_eq!(answer["status"], "approved");
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(answer["approver"], "carol");
    let decisions = send(
        "GET",
        &s.url("/v1/decisions"),
        &[("authorization", &bearer(CAROL_TOKEN))],
        None,
    )
    .await
    .json();
    assert_eq!(decisions["decisions"][0]["approver"], "carol");
    assert!(decisions["decisions"][0]["at"].as_i64().unwrap() > 1_700_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_approvers(dir.path());
    let (_, pending) = post(format!("{}/v1/check", s.base), question("d3", 0)).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        format!("{}/v1/requests/{id}/approve", s.base),
        json!(["not", "a", "decision"]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(format!("{}/v1/requests/{id}/deny", s.base), json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = post(format!("{}/v1/requests/{id}/approve", s.base), json!({})).await;
    assert_eq!(status, 409);
    let (status, _) = post(format!("{}/v1/requests/nope/approve", s.base), json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = post(format!("{}/v1/check", s.base), json!({"tool": "x"})).await;
    assert_eq!(status, 400);
    // A denial is reported once, then the same call asks again.
    let (_, first) = post(format!("{}/v1/check", s.base), question("d3", 0)).await;
    assert_eq!(first["status"], "denied");
    let (_, second) = post(format!("{}/v1/check", s.base), question("d3", 0)).await;
    assert_eq!(second["status"], "pending");
    assert_ne!(second["id"], id.as_str());
}
