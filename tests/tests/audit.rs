//! The audit record, delivered through Envoy's own access log (filter state read by the JSON
//! log format): one line per request, with every decision, the deciding rule, counters, a hash
//! of the arguments (never the arguments themselves; the policy asks for the hash) and the
//! caller's identity, hashed when it is a key.

use e2e::http::{post, tools_call};
use e2e::{wait_for_window_room, Deployment, DeploymentOptions};
use serde_json::{json, Value};

const POLICY: &str = r#"{"version":"1","default":"deny","audit":{"hash_arguments":true},
  "identity":{"sources":[{"header":"x-api-key","secret":true}]},
  "tools":{
    "wechat_mass_send":{"limits":[{"counter":"sends","window":"hour","max":1,"scope":"identity"}]},
    "wechat_get_followers":{"rules":[{"name":"paging trial","shadow":true,
        "conditions":[{"path":"args.next_openid","op":"exists","value":false}],"on_deny":"no paging yet"}]},
    "wechat_mass_delete":{"action":"deny","reason":"needs a human"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_audited_through_the_access_log() {
    wait_for_window_room(3600, 60);
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: POLICY.into(),
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let key = [("x-api-key", "sk-live-abc123")];
    let send = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wechat_mass_send","arguments":{"openids":["o1"],"msg_type":"text","content":"launch plan"}}}"#;
    post(&url, send, &key).await;
    post(&url, send.replace("\"id\":1", "\"id\":2"), &key).await;
    post(&url, tools_call(3, "wechat_mass_delete"), &key).await;
    let paging = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"wechat_get_followers","arguments":{"next_openid":"o9"}}}"#;
    let shadowed = post(&url, paging, &key).await;
    assert!(
        shadowed.body.contains("\"result\""),
        "shadow rules never block: {shadowed:?}"
    );
    post(&url, "{oops", &key).await;
    post(
        &url,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#,
        &key,
    )
    .await;
    // Refused before the body is read (not declared as JSON): audited all the same.
    let plain = reqwest::Client::new()
        .post(&url)
        .header("content-type", "text/plain")
        .header("x-api-key", "sk-live-abc123")
        .body(tools_call(7, "wechat_get_followers"))
        .send()
        .await
        .expect("POST");
    assert_eq!(plain.status().as_u16(), 415);

    let lines = d.audit_records(7);
    assert_eq!(
        lines.len(),
        7,
        "one access-log line per request: {lines:#?}"
    );
    let records: Vec<&Value> = lines.iter().map(|l| &l["mcp_policy"]).collect();
    let call = |i: usize| &records[i]["calls"][0];

    // Who: the key is never written in clear.
    let text = serde_json::to_string(&lines).unwrap();
    assert!(
        !text.contains("sk-live-abc123"),
        "the API key leaked into the audit log"
    );
    assert!(records[0]["identity"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(records[0]["identity_source"], "header:x-api-key");
    assert_eq!(records[0]["server"], "wechat");
    assert_eq!(
        records[0]["request_id"], lines[0]["request_id"],
        "Envoy's x-request-id"
    );

    // What was decided, by which rule, with which counter values.
    assert_eq!(
        (call(0)["decision"].clone(), call(0)["rule"].clone()),
        (json!("allowed"), json!("tools.wechat_mass_send"))
    );
    let window_start = records[0]["counters"][0]["window_start"].clone();
    assert!(
        window_start.as_u64().is_some_and(|t| t % 60 == 0),
        "{window_start}"
    );
    assert_eq!(
        records[0]["counters"],
        json!([{"counter":"sends","value":1,"limit":1,"window_start":window_start}])
    );
    assert_eq!(call(1)["decision"], "rate_limited");
    assert_eq!(
        records[1]["counters"],
        json!([{"counter":"sends","value":1,"limit":1,"window_start":window_start}])
    );
    assert_eq!(
        (
            call(2)["decision"].clone(),
            call(2)["reason"].clone(),
            call(2)["rule"].clone()
        ),
        (
            json!("denied"),
            json!("needs a human"),
            json!("tools.wechat_mass_delete.action")
        )
    );
    assert_eq!(
        (call(3)["decision"].clone(), records[3]["outcome"].clone()),
        (json!("would_deny"), json!("forwarded"))
    );
    assert!(call(3)["reason"]
        .as_str()
        .unwrap()
        .contains("no paging yet (tools.wechat_get_followers.rules[0])"));
    assert_eq!(
        (records[4]["status"].clone(), records[4]["outcome"].clone()),
        (json!(400), json!("refused"))
    );
    assert!(records[5].is_null(), "a tools/list is not a decision");
    assert_eq!(
        (
            records[6]["status"].clone(),
            records[6]["outcome"].clone(),
            records[6]["calls"].clone()
        ),
        (json!(415), json!("refused"), json!([]))
    );

    // Arguments: a hash only.
    assert!(call(0)["arguments_sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        !text.contains("launch plan"),
        "raw arguments stay out of the audit log"
    );
    assert_eq!(
        call(0)["arguments_sha256"],
        call(1)["arguments_sha256"],
        "same arguments, same hash"
    );
}
