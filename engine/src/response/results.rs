//! Guarding tool results (server → agent): the text a tool returns (`content[].text`, an
//! embedded resource's `text`, every string of `structuredContent`) is read by the call's
//! `guard.results` detectors. `redact` replaces each match by a marker naming its detector,
//! `block` replaces the whole answer by a JSON-RPC error naming the detectors, `report` only
//! records. What matched is never kept: only detector names and counts.

use serde_json::{json, Map, Value};

use crate::decision::Decision;
use crate::policy::guard::{Direction, GuardAction};
use crate::policy::Policy;
use crate::protocol::jsonrpc::same_id;
use crate::reply::POLICY_DENIED;
use crate::request::outcome::{Detection, Guarded};

/// What guarding one stream's answers needs, and what it found.
pub struct ResultGuard<'a> {
    pub policy: &'a Policy,
    pub guarded: &'a [Guarded],
    /// (tool, what its guard found), in answer order.
    pub found: &'a mut Vec<(String, Detection)>,
}

impl ResultGuard<'_> {
    /// If `message` answers a guarded call with a result, that result guarded: the message to
    /// send instead, or `None` when it goes on as it is.
    pub fn guard_message(&mut self, message: &Value) -> Option<Value> {
        let id = message.get("id")?;
        let call = self.guarded.iter().find(|g| same_id(&g.id, id))?;
        let entry = self.policy.entry(&call.tool, call.class);
        let guard = self.policy.guard(entry)?;
        let rule = guard.results.as_ref()?;
        let result = message.get("result")?;
        let mut counts: Vec<(String, u64)> = Vec::new();
        let mut guarded = result.clone();
        let redact = rule.action == GuardAction::Redact;
        visit_texts(&mut guarded, &mut |text: &mut String| {
            let redacted = rule.detectors.redact(text);
            for (name, n) in &redacted.counts {
                add(&mut counts, name, *n as u64);
            }
            if redact && !redacted.counts.is_empty() {
                *text = redacted.text.into_owned();
            }
        });
        if counts.is_empty() {
            return None;
        }
        counts.sort_unstable();
        let shadow = self.policy.in_shadow(entry);
        let action = rule.action;
        for (detector, count) in &counts {
            let found = Detection {
                detector: detector.clone(),
                count: *count,
                direction: Direction::Results,
                action,
            };
            self.found.push((call.tool.clone(), found));
        }
        match action {
            // Shadow mode never changes what an agent sees.
            _ if shadow => None,
            GuardAction::Report => None,
            GuardAction::Redact => {
                let mut message = message.clone();
                if let Some(slot) = message.get_mut("result") {
                    *slot = guarded;
                }
                Some(message)
            }
            GuardAction::Block => Some(withheld(id, &call.tool, &counts, &guard.path)),
        }
    }

    /// Guard every answer of a JSON body (one message or a batch). `None` when nothing changes.
    pub fn guard_json_body(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let rewritten = match &value {
            Value::Array(items) => {
                let mut changed = false;
                let items: Vec<Value> = items
                    .iter()
                    .map(|m| match self.guard_message(m) {
                        Some(new) => {
                            changed = true;
                            new
                        }
                        None => m.clone(),
                    })
                    .collect();
                changed.then_some(Value::Array(items))?
            }
            single => self.guard_message(single)?,
        };
        Some(rewritten.to_string().into_bytes())
    }
}

/// The error that replaces a blocked result: the detectors and their counts, never the text.
fn withheld(id: &Value, tool: &str, counts: &[(String, u64)], path: &str) -> Value {
    let what: Vec<String> = counts.iter().map(|(d, n)| format!("{d} ({n})")).collect();
    let reason = format!(
        "the result carries what the guard's detectors found: {}; results carrying them are withheld ({path}.results)",
        what.join(", ")
    );
    let detectors: Map<String, Value> = counts.iter().map(|(d, n)| (d.clone(), json!(n))).collect();
    json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": POLICY_DENIED,
        "message": format!("The result of tool \"{tool}\" was withheld by policy: {reason}"),
        "data": {"decision": Decision::Denied.as_str(), "tool": tool, "reason": reason, "detectors": detectors}}})
}

fn add(counts: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match counts.iter_mut().find(|(d, _)| d == name) {
        Some((_, total)) => *total += n,
        None => counts.push((name.to_owned(), n)),
    }
}

/// Call `visit` on every text of a tool result an agent reads: `content[].text`,
/// `content[].resource.text`, and every string of `structuredContent`.
fn visit_texts(result: &mut Value, visit: &mut dyn FnMut(&mut String)) {
    if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
        for item in content {
            if let Some(Value::String(text)) = item.get_mut("text") {
                visit(text);
            }
            if let Some(Value::String(text)) =
                item.get_mut("resource").and_then(|r| r.get_mut("text"))
            {
                visit(text);
            }
        }
    }
    if let Some(structured) = result.get_mut("structuredContent") {
        visit_strings(structured, visit);
    }
}

fn visit_strings(value: &mut Value, visit: &mut dyn FnMut(&mut String)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter_mut().for_each(|v| visit_strings(v, visit)),
        Value::Object(map) => map.values_mut().for_each(|v| visit_strings(v, visit)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn policy(action: &str) -> Policy {
        load_policy(
            format!(r#"{{"version":"1","default":"allow","tools":{{"t":{{"guard":{{"results":"{action}"}}}}}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn answer(id: u64) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{
            "content":[{"type":"text","text":format!("key {KEY}, card 4111 1111 1111 1111")},
                       {"type":"resource","resource":{"uri":"x://y","text":"mail a@example.com"}}],
            "structuredContent":{"owner":{"email":"b@example.org"},"n":4111111111111111_u64}}})
    }

    fn guard(policy: &Policy, message: &Value) -> (Option<Value>, Vec<(String, Detection)>) {
        let guarded = [Guarded {
            id: json!(1),
            tool: "t".into(),
            class: None,
        }];
        let mut found = Vec::new();
        let out = ResultGuard {
            policy,
            guarded: &guarded,
            found: &mut found,
        }
        .guard_message(message);
        (out, found)
    }

    #[test]
    fn redact_replaces_each_match_and_keeps_everything_else() {
        let (out, found) = guard(&policy("redact"), &answer(1));
        let out = out.unwrap();
        let text = out.to_string();
        assert!(
            !text.contains(KEY) && !text.contains("a@example.com") && !text.contains("4111 1111"),
            "{text}"
        );
        assert!(
            text.contains("[redacted:aws_access_key]") && text.contains("[redacted:payment_card]"),
            "{text}"
        );
        assert_eq!(
            out["result"]["structuredContent"]["n"],
            json!(4111111111111111_u64),
            "numbers are not text"
        );
        assert_eq!(out["result"]["content"][1]["resource"]["uri"], "x://y");
        let names: Vec<(&str, u64)> = found
            .iter()
            .map(|(_, d)| (d.detector.as_str(), d.count))
            .collect();
        assert_eq!(
            names,
            [("aws_access_key", 1), ("email", 2), ("payment_card", 1)]
        );
    }

    #[test]
    fn block_withholds_the_result_naming_only_detectors_and_report_changes_nothing() {
        let (out, _) = guard(&policy("block"), &answer(1));
        let out = out.unwrap();
        assert_eq!(out["id"], 1);
        assert_eq!(out["error"]["code"], POLICY_DENIED);
        assert!(!out.to_string().contains(KEY));
        assert!(out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aws_access_key (1)"));
        let (out, found) = guard(&policy("report"), &answer(1));
        assert!(out.is_none() && found.len() == 3);
        // Other ids, errors and clean results pass untouched.
        assert!(guard(&policy("block"), &answer(2)).0.is_none());
        let clean =
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"fine"}]}});
        assert!(guard(&policy("block"), &clean).0.is_none());
        let error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":KEY}});
        assert!(guard(&policy("block"), &error).0.is_none());
    }
}
