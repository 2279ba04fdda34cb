//! The approval service as the end-to-end tests start it: the real binary with an approvers file
//! whose secrets the tests know. People decide with their API tokens
//! (`Authorization: Bearer`), or, on the page, sign in with a name and password.

#![allow(dead_code)]

use e2e::approval_service_bin;
use e2e::http::{post, request, Response};
use mcp_policy_sample::deployment::launch::{write_approvers_file, Approver};
use mcp_policy_sample::deployment::{start_approval_service, ServerProcess};
use serde_json::json;

/// Approvers who may decide every call, by API token.
pub const CAROL_TOKEN: &str = "e2e-carol-token-4b1d";
pub const DAN_TOKEN: &str = "e2e-dan-token-9c2e";
/// Signs in on the page (`tests/browser/approve.js`).
pub const BROWSER_APPROVER: &str = "browser-test";
pub const BROWSER_PASSWORD: &str = "e2e browser passphrase";

/// The service (killed by PID when dropped) and the directory of its database and approvers.
pub struct ApprovalService {
    pub process: ServerProcess,
    pub dir: tempfile::TempDir,
}

impl ApprovalService {
    pub fn port(&self) -> u16 {
        self.process.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.process.port)
    }

    /// GET with carol's token.
    pub async fn get(&self, path: &str) -> Response {
        request(
            "GET",
            &self.url(path),
            &[("authorization", &bearer(CAROL_TOKEN))],
        )
        .await
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The service on a free port, with carol, dan (tokens) and browser-test (password).
pub fn start() -> ApprovalService {
    let dir = tempfile::tempdir().expect("temp dir");
    let approvers = dir.path().join("approvers.json");
    let everything = [("*", "*")];
    let people = [
        Approver {
            name: "carol",
            password: None,
            token: Some(CAROL_TOKEN),
            may_decide: &everything,
        },
        Approver {
            name: "dan",
            password: None,
            token: Some(DAN_TOKEN),
            may_decide: &everything,
        },
        Approver {
            name: BROWSER_APPROVER,
            password: Some(BROWSER_PASSWORD),
            token: None,
            may_decide: &everything,
        },
    ];
    write_approvers_file(&approval_service_bin(), &approvers, &people)
        .unwrap_or_else(|e| panic!("{e}"));
    let process = start_approval_service(
        &approval_service_bin(),
        0,
        &dir.path().join("approvals.sqlite3"),
        &["--approvers".into(), approvers.display().to_string()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    ApprovalService { process, dir }
}

/// `action` (approve or deny) request `id` with an approver's API token, as a chat-ops bot does.
pub async fn decide(port: u16, token: &str, id: &str, action: &str, reason: &str) -> Response {
    let url = format!("http://127.0.0.1:{port}/v1/requests/{id}/{action}");
    let body = json!({ "reason": reason }).to_string();
    post(&url, body, &[("authorization", &bearer(token))]).await
}
