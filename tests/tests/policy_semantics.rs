//! Policy semantics that the engine's unit tests prove, pinned through the real Envoy with the
//! built filter in front of the real sample servers: `default: allow`, batches refused whole
//! without touching the other elements' budgets, the rule operators on arguments, and raw
//! arguments in the audit record. Every check pairs what the agent got with what the upstream
//! itself says it ran.

use std::collections::BTreeMap;

use e2e::http::post;
use e2e::{tool_call_body, wait_for_window_room, Deployment, DeploymentOptions};
use serde_json::{json, Value};

fn stateless(wechat_policy: &str, notify_policy: &str) -> Deployment {
    Deployment::start(DeploymentOptions {
        wechat_policy: wechat_policy.to_owned(),
        notify_policy: notify_policy.to_owned(),
        stateless: true,
        ..Default::default()
    })
}

/// `default: allow` lets a tool the policy does not list through: the upstream runs it, the
/// audit record names `default` as the deciding rule. An explicit deny still holds, and the
/// other server's `default: deny` refuses the same kind of unlisted call.
#[tokio::test(flavor = "multi_thread")]
async fn default_allow_lets_an_unlisted_tool_through() {
    let d = stateless(
        r#"{"version":"1","default":"allow","tools":{
            "wechat_mass_delete":{"action":"deny","reason":"deleting needs a human"}}}"#,
        r#"{"version":"1","default":"deny","tools":{"lark_send_text":{}}}"#,
    );
    let agent = [("x-agent-id", "agent-1")];

    let unlisted = post(
        &d.url("wechat"),
        tool_call_body(1, "wechat_get_followers", &json!({})),
        &agent,
    )
    .await;
    assert_eq!(unlisted.status, 200, "{unlisted:?}");
    let answer = unlisted.json();
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_get_followers"), 1);

    let denied = post(
        &d.url("wechat"),
        tool_call_body(2, "wechat_mass_delete", &json!({"msg_id": 5})),
        &agent,
    )
    .await
    .json();
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    assert_eq!(denied["error"]["data"]["reason"], "deleting needs a human");
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_delete"), 0);

    // The same kind of call under default: deny on the other server: refused, never run.
    let other = post(
        &d.url("notify"),
        tool_call_body(3, "ding_send_text", &json!({"text": "hi"})),
        &agent,
    )
    .await
    .json();
    assert_eq!(other["error"]["code"], -32003, "{other}");
    assert_eq!(
        other["error"]["data"]["reason"],
        "the policy denies every tool it does not list (default: deny)"
    );
    assert_eq!(d.upstream_stats("notify")["tool_calls_total"], 0);

    let records = d.audit_records(3);
    let first = records
        .iter()
        .map(|l| &l["mcp_policy"])
        .find(|r| r["calls"][0]["tool"] == "wechat_get_followers")
        .unwrap_or_else(|| panic!("no record of the unlisted call: {records:#?}"));
    assert_eq!(
        (
            first["calls"][0]["decision"].clone(),
            first["calls"][0]["rule"].clone(),
            first["outcome"].clone()
        ),
        (json!("allowed"), json!("default"), json!("forwarded"))
    );
    // An unlisted tool is counted under "other", as allowed.
    assert_eq!(d.decisions_counted("wechat", "other", "allowed"), Some(1));
}

/// A batch with one element over its limit is refused whole: nothing in it reaches the
/// upstream, and the counters the other elements would have used are given back, so each still
/// allows its full budget afterwards (and not one call more).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_batch_leaves_the_other_elements_budgets_untouched() {
    wait_for_window_room(3600, 60);
    // The used-up counter ("previews") sits between the other two by tool name and by counter
    // name, so one innocent counter is charged before it and one after, whatever the order.
    const READS: u64 = 2;
    const SENDS: u64 = 2;
    let policy = json!({"version": "1", "default": "deny", "tools": {
        "wechat_get_followers": {"limits": [{"counter": "reads", "window": "hour", "max": READS, "scope": "global"}]},
        "wechat_mass_preview": {"limits": [{"counter": "previews", "window": "hour", "max": 1, "scope": "global"}]},
        "wechat_mass_send": {"limits": [{"counter": "sends", "window": "hour", "max": SENDS, "scope": "global"}]}}})
    .to_string();
    let d = stateless(&policy, &e2e::sample_policy("notify.json"));
    let url = d.url("wechat");
    let agent = [("x-agent-id", "batcher")];
    let preview_args = json!({"openid": "oUser_0001", "msg_type": "text", "content": "c"});
    let send_args = json!({"openids": ["o1"], "msg_type": "text", "content": "hi"});

    // Use up "previews".
    let first = post(
        &url,
        tool_call_body(1, "wechat_mass_preview", &preview_args),
        &agent,
    )
    .await
    .json();
    assert!(first.get("result").is_some(), "{first}");
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_preview"), 1);
    let posts_before = d.upstream_posts("wechat");

    // Two reads, the used-up preview and a send: refused whole.
    let batch = format!(
        "[{},{},{},{}]",
        tool_call_body(10, "wechat_get_followers", &json!({})),
        tool_call_body(11, "wechat_get_followers", &json!({})),
        tool_call_body(12, "wechat_mass_preview", &preview_args),
        tool_call_body(13, "wechat_mass_send", &send_args),
    );
    let refused = post(&url, batch, &agent).await;
    assert_eq!(refused.status, 200, "{refused:?}");
    let items = refused.json();
    let codes: Vec<(Value, Value)> = items
        .as_array()
        .unwrap_or_else(|| panic!("a batch answer: {items}"))
        .iter()
        .map(|i| (i["id"].clone(), i["error"]["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!(10), json!(-32005)),
            (json!(11), json!(-32005)),
            (json!(12), json!(-32029)),
            (json!(13), json!(-32005)),
        ],
        "{items}"
    );
    assert_eq!(items[2]["error"]["data"]["counter"], "previews");
    assert_eq!(
        d.upstream_posts("wechat"),
        posts_before,
        "nothing of the refused batch reached the upstream: {}",
        d.upstream_stats("wechat")
    );

    // Each innocent counter still has its whole budget: READS reads and SENDS sends go
    // through, one at a time, and the next of each is refused.
    let mut id = 100;
    for (tool, arguments, budget, counter) in [
        ("wechat_get_followers", json!({}), READS, "reads"),
        ("wechat_mass_send", send_args.clone(), SENDS, "sends"),
    ] {
        for n in 1..=budget {
            id += 1;
            let answer = post(&url, tool_call_body(id, tool, &arguments), &agent)
                .await
                .json();
            assert!(
                answer.get("result").is_some(),
                "{tool} call {n} of {budget} after the refused batch: {answer}"
            );
            assert_eq!(d.upstream_tool_calls("wechat", tool), n);
        }
        id += 1;
        let over = post(&url, tool_call_body(id, tool, &arguments), &agent)
            .await
            .json();
        assert_eq!(over["error"]["code"], -32029, "{tool}: {over}");
        assert_eq!(over["error"]["data"]["counter"], counter);
        assert_eq!(over["error"]["data"]["used"], budget, "{over}");
        assert_eq!(d.upstream_tool_calls("wechat", tool), budget);
    }
    assert_eq!(d.upstream_tool_calls("wechat", "wechat_mass_preview"), 1);
    assert_eq!(
        d.decisions_counted("wechat", "wechat_get_followers", "batch_refused"),
        Some(2)
    );
}

/// One rule per tool, one operator per rule (conditions must all hold for the call to pass).
fn operators_policies() -> (String, String) {
    let rule = |name: &str, path: &str, op: &str, value: Value| {
        json!({"rules": [{"name": name, "conditions": [{"path": path, "op": op, "value": value}],
                          "on_deny": format!("{op}: {name}")}]})
    };
    let wechat = json!({"version": "1", "default": "deny", "tools": {
        "wechat_mass_preview": rule("previews are text", "args.msg_type", "eq", json!("text")),
        "wechat_mass_delete": rule("never message 1", "args.msg_id", "neq", json!(1)),
        "wechat_mass_status": rule("no waiting", "args.wait_seconds", "lt", json!(1)),
        "wechat_mass_send": rule("a real tag", "args.tag_id", "gt", json!(0)),
        "wechat_get_user_info": rule("sample users", "args.openid", "contains", json!("oSample_")),
        "wechat_get_followers": rule("first page only", "args.next_openid", "exists", json!(false))}});
    let notify = json!({"version": "1", "default": "deny", "tools": {
        "ding_send_markdown": rule("titled", "args.title", "exists", json!(true)),
        "ding_send_text": rule("no mass mentions", "args.text", "not_in", json!(["@all", "@everyone"]))}});
    (wechat.to_string(), notify.to_string())
}

/// `eq`, `neq`, `lt`, `gt`, `contains`, `exists` (both ways) and `not_in` on arguments: for
/// each, a call whose argument meets the condition (allowed, the upstream runs it) and one whose
/// argument does not (denied with the rule's message, the upstream never sees it), including
/// the boundaries of `lt`/`gt`, a missing argument, and a number written as text for `neq`.
#[tokio::test(flavor = "multi_thread")]
async fn rule_operators_on_arguments_decide_through_envoy() {
    let (wechat, notify) = operators_policies();
    let d = stateless(&wechat, &notify);
    // (server, tool, arguments, allowed, the operator's rule message when denied)
    let cases: Vec<(&str, &str, Value, bool, &str)> = vec![
        (
            "wechat",
            "wechat_mass_preview",
            json!({"openid": "oUser_0001", "msg_type": "text", "content": "c"}),
            true,
            "",
        ),
        (
            "wechat",
            "wechat_mass_preview",
            json!({"openid": "oUser_0001", "msg_type": "image", "content": "c"}),
            false,
            "eq: previews are text",
        ),
        (
            "wechat",
            "wechat_mass_delete",
            json!({"msg_id": 2}),
            true,
            "",
        ),
        (
            "wechat",
            "wechat_mass_delete",
            json!({"msg_id": 1}),
            false,
            "neq: never message 1",
        ),
        // Compared as Intercept does: the text "1" equals the number 1.
        (
            "wechat",
            "wechat_mass_delete",
            json!({"msg_id": "1"}),
            false,
            "neq: never message 1",
        ),
        (
            "wechat",
            "wechat_mass_status",
            json!({"msg_id": "m1", "wait_seconds": 0}),
            true,
            "",
        ),
        (
            "wechat",
            "wechat_mass_status",
            json!({"msg_id": "m1", "wait_seconds": 1}),
            false,
            "lt: no waiting",
        ),
        (
            "wechat",
            "wechat_mass_send",
            json!({"openids": [], "tag_id": 7, "msg_type": "text", "content": "hi"}),
            true,
            "",
        ),
        (
            "wechat",
            "wechat_mass_send",
            json!({"openids": [], "tag_id": 0, "msg_type": "text", "content": "hi"}),
            false,
            "gt: a real tag",
        ),
        // A missing argument fails every operator but `exists`.
        (
            "wechat",
            "wechat_mass_send",
            json!({"openids": ["o1"], "msg_type": "text", "content": "hi"}),
            false,
            "gt: a real tag",
        ),
        (
            "wechat",
            "wechat_get_user_info",
            json!({"openid": "oSample_follower_0001"}),
            true,
            "",
        ),
        (
            "wechat",
            "wechat_get_user_info",
            json!({"openid": "oOther_0001"}),
            false,
            "contains: sample users",
        ),
        ("wechat", "wechat_get_followers", json!({}), true, ""),
        (
            "wechat",
            "wechat_get_followers",
            json!({"next_openid": "oSample_follower_0003"}),
            false,
            "exists: first page only",
        ),
        (
            "notify",
            "ding_send_markdown",
            json!({"title": "T", "text": "x"}),
            true,
            "",
        ),
        (
            "notify",
            "ding_send_markdown",
            json!({"text": "x"}),
            false,
            "exists: titled",
        ),
        (
            "notify",
            "ding_send_text",
            json!({"text": "hello team"}),
            true,
            "",
        ),
        (
            "notify",
            "ding_send_text",
            json!({"text": "@all"}),
            false,
            "not_in: no mass mentions",
        ),
    ];
    let mut expected: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (i, (server, tool, arguments, allowed, message)) in cases.iter().enumerate() {
        let before = d.upstream_tool_calls(server, tool);
        let response = post(
            &d.url(server),
            tool_call_body(i as u64 + 1, tool, arguments),
            &[("x-agent-id", "agent-1")],
        )
        .await;
        assert_eq!(response.status, 200, "{tool} {arguments}: {response:?}");
        let answer = response.json();
        let after = d.upstream_tool_calls(server, tool);
        if *allowed {
            assert!(
                answer.get("result").is_some(),
                "{tool} {arguments} should pass: {answer}"
            );
            assert_eq!(after, before + 1, "the upstream ran {tool} {arguments}");
            *expected.entry(server).or_default().entry(tool).or_default() += 1;
        } else {
            assert_eq!(
                answer["error"]["code"], -32003,
                "{tool} {arguments} should be denied: {answer}"
            );
            assert_eq!(answer["error"]["data"]["decision"], "denied", "{answer}");
            assert_eq!(answer["error"]["data"]["reason"], *message, "{answer}");
            assert_eq!(after, before, "the upstream never saw {tool} {arguments}");
        }
    }
    // The upstreams' own totals: exactly the allowed calls, nothing else.
    for server in ["wechat", "notify"] {
        let ran: BTreeMap<String, u64> =
            serde_json::from_value(d.upstream_stats(server)["tool_calls"].clone())
                .expect("tool_calls");
        let wanted: BTreeMap<String, u64> = expected
            .get(server)
            .into_iter()
            .flatten()
            .map(|(tool, n)| ((*tool).to_owned(), *n))
            .collect();
        assert_eq!(ran, wanted, "{server}");
    }
}

/// `"audit": {"include_arguments": true, "hash_arguments": true}`: every call's record carries
/// its `arguments` exactly as the client wrote them (whitespace, key order and escapes kept),
/// allowed or refused, next to their hash.
#[tokio::test(flavor = "multi_thread")]
async fn included_arguments_are_audited_verbatim() {
    let d = stateless(
        r#"{"version":"1","default":"deny","audit":{"include_arguments":true,"hash_arguments":true},"tools":{
            "wechat_mass_send":{},
            "wechat_mass_delete":{"action":"deny","reason":"needs a human"}}}"#,
        &e2e::sample_policy("notify.json"),
    );
    let url = d.url("wechat");
    // Written by hand: odd spacing, keys out of order, escapes, a non-ASCII letter.
    let send_arguments = "{ \"msg_type\":\"text\" ,\"openids\" : [\"o1\",\"o2\"],\n \"content\":\"launch \\u00e9 plan \u{e9}\\n\\\"quoted\\\"\"}";
    let delete_arguments = "{\"msg_id\":  42}";
    let body = |id: u64, tool: &str, arguments: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        )
    };
    let agent = [("x-agent-id", "auditor")];
    let sent = post(&url, body(1, "wechat_mass_send", send_arguments), &agent)
        .await
        .json();
    assert!(sent.get("result").is_some(), "{sent}");
    let denied = post(
        &url,
        body(2, "wechat_mass_delete", delete_arguments),
        &agent,
    )
    .await
    .json();
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let stats = d.upstream_stats("wechat");
    assert_eq!(
        stats["tool_calls"],
        json!({"wechat_mass_send": 1}),
        "{stats}"
    );
    assert_eq!(
        stats["recent_posts"][0]["body"],
        body(1, "wechat_mass_send", send_arguments)
    );

    // The access log's lines, each `mcp_policy` field the record's text as the filter wrote it.
    let parsed = d.audit_records(2);
    assert_eq!(parsed.len(), 2, "{parsed:#?}");
    let access_log = d.envoy.log_path.with_file_name("access.log");
    let raw: Vec<String> = std::fs::read_to_string(&access_log)
        .expect("access log")
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).expect("a JSON access-log line");
            line["mcp_policy"]
                .as_str()
                .unwrap_or_else(|| panic!("no record in {l}"))
                .to_owned()
        })
        .collect();
    for (record, arguments, decision) in [
        (0, send_arguments, "allowed"),
        (1, delete_arguments, "denied"),
    ] {
        let text = &raw[record];
        assert!(
            text.contains(&format!("\"arguments\":{arguments}")),
            "the arguments are not in the record verbatim:\n{text}\nexpected {arguments}"
        );
        let call = &parsed[record]["mcp_policy"]["calls"][0];
        assert_eq!(call["decision"], decision, "{call}");
        assert_eq!(
            call["arguments"],
            serde_json::from_str::<Value>(arguments).unwrap(),
            "{call}"
        );
        assert!(
            call["arguments_sha256"]
                .as_str()
                .is_some_and(|h| h.starts_with("sha256:")),
            "the hash is kept too: {call}"
        );
    }
}
