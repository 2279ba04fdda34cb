//! The approval service on its own (real binary, real SQLite file): single use under
//! concurrency, decisions surviving a restart, and the API's refusals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use mcp_policy_sample::deployment::{start_approval_service, ServerProcess};
use serde_json::{json, Value};

/// The service and where it listens; killed by PID when dropped (also when a test fails).
struct Service {
    _process: ServerProcess,
    base: String,
}

fn start(db: &Path) -> Service {
    let process =
        start_approval_service(env!("CARGO_BIN_EXE_approval-service").as_ref(), 0, db).unwrap();
    let base = format!("http://127.0.0.1:{}", process.port);
    Service {
        _process: process,
        base,
    }
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn question(digest: &str, hold_ms: u64) -> Value {
    json!({"digest": digest, "server": "wechat", "tool": "wechat_mass_send", "identity": "agent-a",
           "arguments": {"to": "all"}, "hold_ms": hold_ms, "valid_for_s": 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_approval_admits_exactly_one_of_many_concurrent_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("a.db"));
    let (_, pending) = post(format!("{}/v1/check", s.base), question("d1", 0)).await;
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(pending["approve_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/#{id}")));
    let (status, _) = post(
        format!("{}/v1/requests/{id}/approve", s.base),
        json!({"approver": "carol"}),
    )
    .await;
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
    let db = dir.path().join("a.db");
    let id = {
        let s = start(&db);
        let (_, pending) = post(format!("{}/v1/check", s.base), question("d2", 0)).await;
        let id = pending["id"].as_str().unwrap().to_owned();
        post(
            format!("{}/v1/requests/{id}/approve", s.base),
            json!({"approver": "carol", "reason": "ok"}),
        )
        .await;
        id
    };
    let s = start(&db);
    let (_, answer) = post(format!("{}/v1/check", s.base), question("d2", 0)).await;
    assert_eq!(answer["status"], "approved");
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(answer["approver"], "carol");
    let decisions: Value = serde_json::from_str(
        &reqwest::get(format!("{}/v1/decisions", s.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decisions["decisions"][0]["approver"], "carol");
    assert!(decisions["decisions"][0]["at"].as_i64().unwrap() > 1_700_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("a.db"));
    let (_, pending) = post(format!("{}/v1/check", s.base), question("d3", 0)).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        format!("{}/v1/requests/{id}/approve", s.base),
        json!({"approver": " "}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(
        format!("{}/v1/requests/{id}/deny", s.base),
        json!({"approver": "dan"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        format!("{}/v1/requests/{id}/approve", s.base),
        json!({"approver": "dan"}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = post(
        format!("{}/v1/requests/nope/approve", s.base),
        json!({"approver": "dan"}),
    )
    .await;
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
