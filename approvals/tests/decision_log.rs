//! The decision log's hash chain end to end: decisions made through the real service's API,
//! then `approval-service verify` on its SQLite file, intact and after editing, deleting and
//! reordering rows behind the service's back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy_sample::deployment::{start_approval_service, ServerProcess};
use rusqlite::Connection;
use serde_json::{json, Value};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_approval-service");

/// The service and where it listens; killed by PID when dropped (also when a test fails).
struct Service {
    _process: ServerProcess,
    base: String,
}

/// The service with the test approvers (`support`); decisions are carol's (her API token).
fn start(db: &Path) -> Service {
    let dir = db.parent().unwrap();
    let approvers = dir.join("approvers.json");
    if !approvers.exists() {
        support::approvers_file(dir);
    }
    let options = ["--approvers".into(), approvers.display().to_string()];
    let process = start_approval_service(BIN.as_ref(), 0, db, &options).unwrap();
    let base = format!("http://127.0.0.1:{}", process.port);
    Service {
        _process: process,
        base,
    }
}

async fn post(url: String, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", support::bearer(support::CAROL_TOKEN))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Tells calls apart, so a call is never one already decided in the same file.
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// A held call, then a person's decision on it; the request's id.
async fn decide(base: &str, n: usize) -> String {
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let question = json!({"digest": format!("digest-{call}"), "server": "wechat",
        "tool": "wechat_mass_send", "identity": "agent-a", "arguments": {"to": n},
        "hold_ms": 0, "valid_for_s": 600});
    let pending = post(format!("{base}/v1/check"), question).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    let verb = if n.is_multiple_of(2) {
        "approve"
    } else {
        "deny"
    };
    let decision = json!({"approver": "carol", "reason": format!("reason {n}")});
    post(format!("{base}/v1/requests/{id}/{verb}"), decision).await;
    id
}

/// `n` decisions made one after another through a service that is then stopped; their
/// requests' ids in `seq` order.
async fn decisions(db: &Path, n: usize) -> Vec<String> {
    let s = start(db);
    let mut ids = Vec::new();
    for i in 1..=n {
        ids.push(decide(&s.base, i).await);
    }
    ids
}

/// `approval-service verify`'s exit code and what it printed.
fn verify(db: &Path, extra: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("verify")
        .arg("--db")
        .arg(db)
        .args(extra)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text.trim().to_owned())
}

fn head(verdict: &str) -> String {
    let head = verdict.rsplit(' ').next().unwrap();
    assert_eq!(head.len(), 64, "{verdict}");
    head.to_owned()
}

fn tamper(db: &Path, sql: &str) {
    Connection::open(db).unwrap().execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untouched_log_verifies_and_keeps_growing_from_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    decisions(&db, 5).await;
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("decision log ok: 5 decisions, head "),
        "{out}"
    );
    let first_head = head(&out);
    {
        // Concurrent decisions, after a restart: still one chain.
        let s = start(&db);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 6..=15 {
            let base = s.base.clone();
            tasks.spawn(async move { decide(&base, n).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    let (code, out) = verify(&db, &["--known-head", &first_head]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("decision log ok: 15 decisions, head "),
        "{out}"
    );
    assert_ne!(head(&out), first_head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_reason_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ids = decisions(&db, 5).await;
    tamper(
        &db,
        "UPDATE decisions SET reason = 'all fine' WHERE seq = 3",
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 3 (id {}): hash does not match its content",
            ids[2]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_moved_to_another_call_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ids = decisions(&db, 3).await;
    tamper(
        &db,
        &format!(
            "UPDATE requests SET digest = 'another-call' WHERE id = '{}'",
            ids[1]
        ),
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 2 (id {}): hash does not match its content",
            ids[1]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_middle_row_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ids = decisions(&db, 5).await;
    tamper(&db, "DELETE FROM decisions WHERE seq = 3");
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 4 (id {}): prev_hash does not match decision 2",
            ids[3]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_first_and_last_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ids = decisions(&db, 4).await;
    tamper(&db, "DELETE FROM decisions WHERE seq = 4");
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        "decision log broken: decisions after decision 3 were deleted (numbering reached 4)"
    );
    tamper(&db, "DELETE FROM decisions WHERE seq = 1");
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 2 (id {}): prev_hash is not the chain's start (64 zeros)",
            ids[1]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapped_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let ids = decisions(&db, 5).await;
    // Two rows' contents swapped, their hashes left where they were.
    let swap = "CREATE TEMP TABLE t AS SELECT * FROM decisions WHERE seq IN (2, 3);
        UPDATE decisions SET (request_id, decision, approver, reason, at) =
            (SELECT request_id, decision, approver, reason, at FROM t
             WHERE t.seq = 5 - decisions.seq)
        WHERE seq IN (2, 3);";
    tamper(&db, swap);
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 2 (id {}): hash does not match its content",
            ids[2]
        )
    );
    // Two whole rows, hashes and all, swapped in the order.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let ids = decisions(&db, 5).await;
    tamper(
        &db,
        "UPDATE decisions SET seq = -1 WHERE seq = 2;
         UPDATE decisions SET seq = 2 WHERE seq = 3;
         UPDATE decisions SET seq = 3 WHERE seq = -1;",
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "decision log broken: decision 2 (id {}): prev_hash does not match decision 1",
            ids[2]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_rewritten_from_a_row_on_fails_against_a_head_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    decisions(&db, 3).await;
    let (_, out) = verify(&db, &[]);
    let kept = head(&out);
    // Someone deletes the last decision and lets the service chain a new one in its place
    // (resetting the numbering too): the links are whole again, the kept head is gone.
    tamper(
        &db,
        "DELETE FROM decisions WHERE seq = 3;
         UPDATE sqlite_sequence SET seq = 2 WHERE name = 'decisions';",
    );
    decisions(&db, 1).await;
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&db, &["--known-head", &kept]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!("decision log broken: the known head {kept} is not in the chain")
    );
}

/// The tables as approval-service wrote them before the chain.
const OLD_SCHEMA: &str = "
CREATE TABLE requests (id TEXT PRIMARY KEY, digest TEXT NOT NULL, server TEXT NOT NULL,
    tool TEXT NOT NULL, identity TEXT, arguments TEXT NOT NULL, created_at INTEGER NOT NULL,
    status TEXT NOT NULL, decided_by TEXT, decided_at INTEGER, reason TEXT,
    valid_for_s INTEGER NOT NULL, valid_until INTEGER, used_at INTEGER,
    reported INTEGER NOT NULL DEFAULT 0);
CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL,
    decision TEXT NOT NULL, approver TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
INSERT INTO requests VALUES ('old1', 'd-old1', 'wechat', 'wechat_mass_send', NULL, '{}',
    1700000000, 'used', 'carol', 1700000010, 'fine', 600, 1700000610, 1700000020, 0);
INSERT INTO requests VALUES ('old2', 'd-old2', 'wechat', 'wechat_mass_send', 'agent-a', '{}',
    1700000100, 'denied', 'dan', 1700000110, 'no', 600, NULL, NULL, 1);
INSERT INTO decisions (request_id, decision, approver, reason, at)
    VALUES ('old1', 'approved', 'carol', 'fine', 1700000010),
           ('old2', 'denied', 'dan', 'no', 1700000110);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_database_is_chained_when_the_service_first_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    tamper(&db, OLD_SCHEMA);
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no decision chain yet"), "{out}");
    decisions(&db, 2).await;
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("decision log ok: 4 decisions, head "),
        "{out}"
    );
    tamper(
        &db,
        "UPDATE decisions SET approver = 'mallory' WHERE seq = 1",
    );
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        "decision log broken: decision 1 (id old1): hash does not match its content"
    );
}

#[test]
fn verify_says_what_it_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let (code, out) = verify(&missing, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(!missing.exists(), "verify must not create the file");
    let out = Command::new(BIN).args(["verify", "--db"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db needs a value"));
}
