//! The filter's side of `/v1/check` is the engine driven through its front door (a `Stream` on a
//! fake host, as the proxy-wasm filter drives it); the other side is the real service. The
//! question goes to the service exactly as the engine wrote it, and each answer the service
//! writes (pending, approved, denied) goes back to the engine exactly as the service wrote it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_policy_engine::wire::approval::CHECK_PATH;
use mcp_policy_engine::wire::header_map;
use mcp_policy_engine::{
    load_policy, Action, CasStore, Host, Level, Metric, Reply, SetOutcome, StoreError, Stream,
};
use serde_json::{json, Value};

mod support;
use support::{bearer, send, CAROL_TOKEN, DAN_TOKEN};

const POLICY: &str = r#"{"version":"1","default":"deny",
    "approval":{"cluster":"approvals","hold_seconds":1,"valid_seconds":600},
    "tools":{"wechat_mass_send":{"action":"require_approval"}}}"#;

/// What the engine asked of its host.
#[derive(Default)]
struct FakeHost {
    store: Counters,
    request_body: Vec<u8>,
    /// Cluster, path and body of each call to the approval service.
    approval_calls: Vec<(String, String, Vec<u8>)>,
    replies: Vec<Reply>,
    resumed: usize,
    audit: Vec<Value>,
}

/// Counters in memory (the approval policy keeps none, but the host must have a store).
#[derive(Default)]
struct Counters(HashMap<String, (Vec<u8>, u32)>);

impl CasStore for Counters {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.0.get(key).cloned())
    }
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        match self.0.get(key) {
            Some((_, stored)) if cas != 0 && cas != *stored => Ok(SetOutcome::CasMismatch),
            stored => {
                let next = stored.map_or(1, |(_, c)| c.wrapping_add(1).max(1));
                self.0.insert(key.to_owned(), (value.to_vec(), next));
                Ok(SetOutcome::Stored)
            }
        }
    }
}

impl Host for FakeHost {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
    fn store(&mut self) -> &mut dyn CasStore {
        &mut self.store
    }
    fn request_body(&mut self, size: usize) -> Vec<u8> {
        self.request_body.get(..size).unwrap_or_default().to_vec()
    }
    fn remove_request_header(&mut self, _name: &str) {}
    fn reply(&mut self, reply: &Reply) {
        self.replies.push(reply.clone());
    }
    fn resume_request(&mut self) {
        self.resumed += 1;
    }
    fn response_body(&mut self, _size: usize) -> Vec<u8> {
        Vec::new()
    }
    fn replace_response_body(&mut self, _size: usize, _body: &[u8]) {}
    fn remove_response_header(&mut self, _name: &str) {}
    fn response_code_details(&mut self) -> Option<String> {
        None
    }
    fn call_rate_limit_service(
        &mut self,
        _cluster: &str,
        _request: &[u8],
        _timeout_ms: u64,
    ) -> Result<u32, String> {
        Err("no rate-limit service here".to_owned())
    }
    fn call_approval_service(
        &mut self,
        cluster: &str,
        path: &str,
        body: &[u8],
        _timeout_seconds: u64,
    ) -> Result<u32, String> {
        self.approval_calls
            .push((cluster.to_owned(), path.to_owned(), body.to_vec()));
        Ok(7)
    }
    fn store_audit_record(&mut self, record: &str) -> Result<(), String> {
        self.audit.push(serde_json::from_str(record).unwrap());
        Ok(())
    }
    fn count(&mut self, _metric: Metric<'_>) {}
    fn log(&mut self, _level: Level, _message: &str) {}
    fn jwt_claim(&self, _metadata_key: &str, _path: &[String]) -> Option<String> {
        None
    }
    fn peer_uri_san(&self) -> Option<String> {
        None
    }
}

/// One call of `wechat_mass_send` with `arguments` through a fresh stream, as `agent` (or
/// anonymous), up to the engine's question to the approval service.
struct Call {
    stream: Stream,
    host: FakeHost,
    /// The body the engine POSTs to the service.
    question: Vec<u8>,
}

fn call(arguments: &str, agent: Option<&str>) -> Call {
    let policy = load_policy(POLICY.as_bytes()).unwrap().bind("wechat", 7);
    let mut stream = Stream::new(Arc::new(policy), Arc::from("wechat"));
    let mut host = FakeHost::default();
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":path", b"/mcp"),
        (b"content-type", b"application/json"),
    ];
    if let Some(agent) = agent {
        headers.push((b"x-agent-id", agent.as_bytes()));
    }
    let raw = header_map::encode(&headers);
    assert_eq!(
        stream.on_request_headers(&mut host, Some(&raw), false),
        Action::Pause
    );
    host.request_body = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"wechat_mass_send","arguments":{arguments}}}}}"#
    )
    .into_bytes();
    let size = host.request_body.len();
    assert_eq!(stream.on_request_body(&mut host, size, true), Action::Pause);
    assert!(host.replies.is_empty(), "{:?}", host.replies);
    assert_eq!(host.approval_calls.len(), 1);
    let (cluster, path, question) = host.approval_calls[0].clone();
    assert_eq!((cluster.as_str(), path.as_str()), ("approvals", CHECK_PATH));
    Call {
        stream,
        host,
        question,
    }
}

impl Call {
    /// Ask the service the engine's question, byte for byte, and hand its answer, byte for
    /// byte, back to the engine. The answer as JSON, for the test to compare with.
    async fn ask(&mut self, base: &str) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{base}{CHECK_PATH}"))
            .header("content-type", "application/json")
            .body(self.question.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap().to_vec();
        let answer = serde_json::from_slice(&body).unwrap();
        self.stream
            .on_approval_answer(&mut self.host, 7, Ok((status, body)));
        answer
    }

    /// The JSON-RPC error the engine answered the call with.
    fn error(&self) -> Value {
        assert_eq!(self.host.resumed, 0, "the call was released");
        let reply = self.host.replies.last().expect("a reply");
        serde_json::from_str::<Value>(&reply.body).unwrap()["error"].clone()
    }
}

async fn get(url: String) -> Value {
    let reply = send(
        "GET",
        &url,
        &[("authorization", &bearer(CAROL_TOKEN))],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

/// A decision, made with the approver's API `token`.
async fn post(url: String, token: &str, body: Value) -> Value {
    let headers = [
        ("content-type", "application/json"),
        ("authorization", &bearer(token)),
    ];
    let reply = send("POST", &url, &headers, Some(body.to_string())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_and_the_engine_read_each_others_check() {
    let dir = tempfile::tempdir().unwrap();
    let service = support::start_with_approvers(dir.path());
    let base = service.base.clone();

    // Pending: held for the policy's hold time (hold_ms), then refused with where to approve.
    let arguments = r#"{ "to" : "all", "text" : "hi", "n" : 2.5e3 }"#;
    let mut first = call(arguments, Some("agent-a"));
    let asked = Instant::now();
    let pending = first.ask(&base).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "answered after {:?}: the hold time was not read",
        asked.elapsed()
    );
    assert_eq!(pending["status"], "pending", "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();
    let error = first.error();
    assert_eq!(error["data"]["decision"], "approval_pending", "{error}");
    assert_eq!(error["data"]["approval_id"], id.as_str());
    assert_eq!(error["data"]["approve_url"], format!("{base}/#{id}"));

    // The service read server, tool, caller and arguments (canonical).
    let request = get(format!("{base}/v1/requests/{id}")).await;
    assert_eq!(
        (
            &request["server"],
            &request["tool"],
            &request["identity"],
            &request["arguments"],
            &request["status"]
        ),
        (
            &json!("wechat"),
            &json!("wechat_mass_send"),
            &json!("agent-a"),
            &json!({"n": 2500.0, "text": "hi", "to": "all"}),
            &json!("pending")
        ),
        "{request}"
    );
    // ...and how long an approval stays usable (valid_for_s).
    let decided = post(
        format!("{base}/v1/requests/{id}/approve"),
        CAROL_TOKEN,
        json!({"reason": "ok"}),
    )
    .await;
    assert_eq!(
        decided["valid_until"].as_i64().unwrap() - decided["decided_at"].as_i64().unwrap(),
        600,
        "{decided}"
    );

    // Approved: the same call again (same digest, whatever its spacing) is released, once.
    let mut again = call(r#"{"text":"hi","n":2.5e3,"to":"all"}"#, Some("agent-a"));
    assert_eq!(again.question, first.question);
    let approved = again.ask(&base).await;
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(approved["id"], id.as_str());
    assert!(again.host.replies.is_empty(), "{:?}", again.host.replies);
    assert_eq!(again.host.resumed, 1);
    assert_eq!(again.host.audit[0]["calls"][0]["decision"], "allowed");
    assert_eq!(
        again.host.audit[0]["calls"][0]["reason"],
        format!("approved by carol (approval {id})")
    );

    // Denied, for an anonymous caller (no identity) this time.
    let mut anonymous = call(r#"{"to":"all"}"#, None);
    let pending = anonymous.ask(&base).await;
    assert_eq!(pending["status"], "pending", "{pending}");
    let other = pending["id"].as_str().unwrap().to_owned();
    assert_ne!(other, id, "a different call is a different question");
    let request = get(format!("{base}/v1/requests/{other}")).await;
    assert_eq!(request["identity"], Value::Null, "{request}");
    post(
        format!("{base}/v1/requests/{other}/deny"),
        DAN_TOKEN,
        json!({"reason": "not today"}),
    )
    .await;
    let mut denied_call = call(r#"{"to":"all"}"#, None);
    let denied = denied_call.ask(&base).await;
    assert_eq!(denied["status"], "denied", "{denied}");
    let error = denied_call.error();
    assert_eq!(
        (
            &error["data"]["decision"],
            &error["data"]["approval_id"],
            &error["data"]["approver"],
            &error["data"]["reason"]
        ),
        (
            &json!("approval_denied"),
            &json!(other),
            &json!("dan"),
            &json!("not today")
        ),
        "{error}"
    );
}
