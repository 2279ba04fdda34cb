//! Hiding tools from `tools/list` answers: tools the caller could never call (hidden, denied,
//! unlisted under default deny, outside its grant) are removed, so agents do not spend turns and
//! context on them. Tools whose rules depend on arguments stay listed. Works on a JSON body and,
//! event by event as it streams, on an SSE body.

use serde_json::Value;

use crate::policy::caller::Caller;
use crate::policy::Policy;
use crate::protocol::jsonrpc::same_id;
use crate::request::access::{decide_access, ToolDecision};

/// Could this caller ever call `tool`? (Rules on arguments are not judged here.) A tool in
/// shadow mode stays listed: shadow never changes what the agent sees.
pub fn may_call(policy: &Policy, caller: &Caller, tool: &str) -> bool {
    policy.in_shadow(tool)
        || !policy.is_hidden(tool)
            && matches!(
                decide_access(policy, caller, tool),
                ToolDecision::Allow { .. }
            )
}

/// If `message` is a JSON-RPC result whose id is one of `ids` and it lists tools, drop the tools
/// the caller may not call. Returns the rewritten message, or `None` when nothing changes.
pub fn filter_message(
    policy: &Policy,
    caller: &Caller,
    ids: &[Value],
    message: &Value,
) -> Option<Value> {
    if !message
        .get("id")
        .is_some_and(|id| ids.iter().any(|asked| same_id(asked, id)))
    {
        return None;
    }
    let tools = message.get("result")?.get("tools")?.as_array()?;
    let kept: Vec<Value> = tools
        .iter()
        .filter(|tool| {
            tool.get("name")
                .and_then(Value::as_str)
                .is_none_or(|name| may_call(policy, caller, name))
        })
        .cloned()
        .collect();
    if kept.len() == tools.len() {
        return None;
    }
    let mut rewritten = message.clone();
    if let Some(result) = rewritten.get_mut("result").and_then(Value::as_object_mut) {
        result.insert("tools".to_owned(), Value::Array(kept));
    }
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    use crate::protocol::sse::SseRewriter;
    use crate::test_support::test;
    use serde_json::json;

    const POLICY: &str = r#"{"version":"1","default":"deny","hide":["wechat_mass_delete"],
        "tools":{"wechat_mass_send":{},"wechat_mass_delete":{},"wechat_get_user_info":{"action":"deny"},
                 "wechat_mass_preview":{"rules":[{"name":"r","conditions":[{"path":"args.x","op":"exists","value":true}]}]}},
        "grants":{"readers":{"identities":["reader"],"tools":{"wechat_get_followers":{}}}}}"#;

    fn listing(id: Value) -> Value {
        let tools: Vec<Value> = [
            "wechat_mass_send",
            "wechat_mass_delete",
            "wechat_mass_preview",
            "wechat_get_followers",
            "wechat_get_user_info",
        ]
        .iter()
        .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
        .collect();
        json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools,"nextCursor":"c2"}})
    }

    fn names(message: &Value) -> Vec<String> {
        message["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn only_callable_tools_stay_listed() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let stranger = Identity::new("stranger");
        let caller = Caller::new(&policy, Some(&stranger));
        // No grant under default deny: nothing is callable.
        let out = filter_message(&policy, &caller, &[json!(1)], &listing(json!(1))).unwrap();
        assert!(names(&out).is_empty());
        let reader = Identity::new("reader");
        let caller = Caller::new(&policy, Some(&reader));
        let out = filter_message(&policy, &caller, &[json!(1)], &listing(json!(1))).unwrap();
        assert_eq!(names(&out), vec!["wechat_get_followers"]);
        assert_eq!(out["result"]["nextCursor"], "c2", "other members are kept");
        // Other ids and non-listing messages are left alone.
        assert!(filter_message(&policy, &caller, &[json!(2)], &listing(json!(1))).is_none());
    }

    #[test]
    fn ids_match_as_a_server_reads_them() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let caller = Caller::new(&policy, None);
        // Asked with 1.0, answered with 1 (a JavaScript server echoes the number it read).
        for (asked, answered) in [(json!(1.0), json!(1)), (json!(1), json!(1.0))] {
            let out = filter_message(&policy, &caller, &[asked], &listing(answered)).unwrap();
            assert!(names(&out).is_empty());
        }
        assert!(filter_message(&policy, &caller, &[json!("1")], &listing(json!(1))).is_none());
    }

    #[test]
    fn shadow_mode_changes_no_listing() {
        let shadow = load_policy(
            br#"{"version":"1","default":"deny","shadow":true,"hide":["wechat_mass_delete"]}"#,
        )
        .unwrap();
        let caller = Caller::new(&shadow, None);
        assert!(filter_message(&shadow, &caller, &[json!(1)], &listing(json!(1))).is_none());
        let one_tool = load_policy(
            br#"{"version":"1","default":"deny","tools":{"wechat_get_user_info":{"action":"deny","shadow":true}}}"#,
        )
        .unwrap();
        let caller = Caller::new(&one_tool, None);
        let out = filter_message(&one_tool, &caller, &[json!(1)], &listing(json!(1))).unwrap();
        assert_eq!(names(&out), vec!["wechat_get_user_info"]);
    }

    #[test]
    fn rules_on_arguments_keep_a_tool_listed() {
        let policy = load_policy(br#"{"version":"1","default":"deny","tools":{"a":{"rules":[{"name":"r","conditions":[{"path":"args.x","op":"exists","value":true}]}]}}}"#).unwrap();
        let caller = Caller::new(&policy, None);
        let message =
            json!({"jsonrpc":"2.0","id":"l","result":{"tools":[{"name":"a"},{"name":"b"}]}});
        assert_eq!(
            names(&filter_message(&policy, &caller, &[json!("l")], &message).unwrap()),
            vec!["a"]
        );
    }

    #[test]
    fn sse_events_are_rewritten_as_they_complete() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let reader = Identity::new("reader");
        let caller = Caller::new(&policy, Some(&reader));
        let ids = [json!(7)];
        let mut rewrite = |m: &Value| filter_message(&policy, &caller, &ids, m);
        let stream = format!(
            "id: 1\nevent: message\ndata: \n\n: comment\nevent: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}}),
            listing(json!(7))
        );
        // Fed one byte at a time, the output only ever holds complete events.
        let mut sse = SseRewriter::default();
        let mut out = Vec::new();
        for byte in stream.as_bytes() {
            let piece = sse.feed(std::slice::from_ref(byte), &mut rewrite);
            assert!(piece.is_empty() || piece.ends_with(b"\n\n"));
            out.extend(piece);
        }
        out.extend(sse.finish(&mut rewrite));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("id: 1\nevent: message\ndata: \n\n: comment\n"),
            "{text}"
        );
        assert!(text.contains("notifications/progress"));
        let last = text.lines().rfind(|l| l.starts_with("data: {")).unwrap();
        let message: Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
        assert_eq!(names(&message), vec!["wechat_get_followers"]);
    }
}
