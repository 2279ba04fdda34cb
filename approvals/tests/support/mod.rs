//! The approval service as the tests start it: the real binary as a guarded child (killed by
//! PID when dropped), with an approvers file whose secrets the tests know, and plain HTTP that
//! shows every answer as it is (redirects not followed, cookies by hand).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mcp_policy_sample::deployment::launch::{write_approvers_file, Approver};
use mcp_policy_sample::deployment::{start_approval_service, ServerProcess};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_approval-service");

/// May decide everything; signs in on the page and has an API token.
pub const CAROL_PASSWORD: &str = "carol's long passphrase";
pub const CAROL_TOKEN: &str = "carol-token-0123456789";
/// May decide calls on the server `wechat` only.
pub const DAN_TOKEN: &str = "dan-token-0123456789";
/// An approver named like the agent whose calls the tests hold (identity `agent-a`).
pub const AGENT_A_TOKEN: &str = "agent-a-token-0123456789";
/// May read, decide nothing.
pub const READER_TOKEN: &str = "reader-token-0123456789";

/// The test approvers: carol (everything, password and token), dan (`wechat:*`), agent-a
/// (everything) and reader (nothing).
pub fn approvers_file(dir: &Path) -> PathBuf {
    let path = dir.join("approvers.json");
    let everything = [("*", "*")];
    let approvers = [
        Approver {
            name: "carol",
            password: Some(CAROL_PASSWORD),
            token: Some(CAROL_TOKEN),
            may_decide: &everything,
        },
        Approver {
            name: "dan",
            password: None,
            token: Some(DAN_TOKEN),
            may_decide: &[("wechat", "*")],
        },
        Approver {
            name: "agent-a",
            password: None,
            token: Some(AGENT_A_TOKEN),
            may_decide: &everything,
        },
        Approver {
            name: "reader",
            password: None,
            token: Some(READER_TOKEN),
            may_decide: &[],
        },
    ];
    write_approvers_file(BIN.as_ref(), &path, &approvers).unwrap();
    path
}

/// The service and where it listens.
pub struct Service {
    _process: ServerProcess,
    pub base: String,
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The service with its database in `dir` and `options` (who approves, and more).
pub fn start(dir: &Path, options: &[String]) -> Service {
    let process = start_approval_service(BIN.as_ref(), 0, &dir.join("a.db"), options).unwrap();
    let base = format!("http://127.0.0.1:{}", process.port);
    Service {
        _process: process,
        base,
    }
}

/// The service with the test approvers (their file written to `dir` once).
pub fn start_with_approvers(dir: &Path) -> Service {
    let file = dir.join("approvers.json");
    let file = if file.exists() {
        file
    } else {
        approvers_file(dir)
    };
    start(dir, &["--approvers".into(), file.display().to_string()])
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::String(self.text.clone()))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// One request from 127.0.0.1 (or `from`), redirects not followed.
pub async fn send_from(
    from: Option<IpAddr>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from)
        .build()
        .unwrap();
    let mut request = client.request(method.parse().unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    send_from(None, method, url, headers, body).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The filter's question about a call of `tool` on `server` made as `identity`.
pub fn question(digest: &str, server: &str, tool: &str, identity: Option<&str>) -> Value {
    json!({"digest": digest, "server": server, "tool": tool, "identity": identity,
           "arguments": {"to": "all"}, "hold_ms": 0, "valid_for_s": 600})
}

/// Ask `/v1/check` (as the filter does: no credentials); the answer.
pub async fn check(service: &Service, question: &Value) -> Value {
    let reply = send(
        "POST",
        &service.url("/v1/check"),
        &[("content-type", "application/json")],
        Some(question.to_string()),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

/// A new pending request for a call of `tool` on `server` made as `identity`: its id.
pub async fn pending(
    service: &Service,
    server: &str,
    tool: &str,
    identity: Option<&str>,
) -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest = format!("{server}/{tool}/{identity:?}/{n}");
    let answer = check(service, &question(&digest, server, tool, identity)).await;
    assert_eq!(answer["status"], "pending", "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// Approve or deny request `id` with an API token: the reply.
pub async fn decide_with_token(
    service: &Service,
    token: &str,
    id: &str,
    action: &str,
    body: Value,
) -> Reply {
    send(
        "POST",
        &service.url(&format!("/v1/requests/{id}/{action}")),
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer(token)),
        ],
        Some(body.to_string()),
    )
    .await
}
