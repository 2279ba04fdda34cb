//! Rewriting `tools/list` answers. Tools the caller could never call (hidden, denied, unlisted
//! under default deny, outside its grant) are removed, so agents do not spend turns and context
//! on them; tools whose rules depend on arguments stay listed. Under `pins`, every listed tool is
//! hashed and checked against its pin: a tool whose definition drifted, or that has no pin, is
//! removed too (`enforce`, `first_seen`) or only reported (`report`). Works on a JSON body and,
//! event by event as it streams, on an SSE body.

use serde_json::{Map, Value};

use crate::counters::CasStore;
use crate::policy::caller::Caller;
use crate::policy::pins::{Class, Hints};
use crate::policy::Policy;
use crate::protocol::definition::definition_sha256;
use crate::protocol::jsonrpc::same_id;
use crate::request::access::{decide_access, ToolDecision};
use crate::request::integrity::{check_listed, seal, Listed};

/// Could this caller ever call `tool` (of risk `class`)? (Rules on arguments are not judged
/// here.) A tool in shadow mode stays listed: shadow never changes what the agent sees.
pub fn may_call(policy: &Policy, caller: &Caller, tool: &str, class: Option<Class>) -> bool {
    policy.in_shadow(policy.entry(tool, class))
        || !policy.is_hidden(tool)
            && matches!(
                decide_access(policy, caller, tool, class),
                ToolDecision::Allow { .. }
            )
}

/// A listed tool whose definition is not the pinned one, or that has no pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub tool: String,
    /// `None`: the tool has no pin.
    pub pinned: Option<String>,
    pub seen: String,
    /// Removed from the listing (else only reported).
    pub dropped: bool,
}

/// What rewriting one stream's listings needs, and what it found.
pub struct Lister<'a> {
    pub policy: &'a Policy,
    /// Whose listing it is.
    pub caller: &'a Caller<'a>,
    /// Ids of the forwarded tools/list requests.
    pub ids: &'a [Value],
    /// Where pin state is kept (the counter store).
    pub store: &'a mut dyn CasStore,
    pub namespace: &'a str,
    /// Drift found, in listing order.
    pub drifts: &'a mut Vec<Drift>,
    /// Pin state that could not be read or kept (for the log); the tool is dropped.
    pub problems: &'a mut Vec<String>,
}

impl Lister<'_> {
    /// If `message` is a JSON-RPC result whose id is one of `ids` and it lists tools, drop the
    /// tools the caller may not call, or whose definition is not pinned. Returns the rewritten
    /// message, or `None` when nothing changes.
    pub fn filter_message(&mut self, message: &Value) -> Option<Value> {
        if !message
            .get("id")
            .is_some_and(|id| self.ids.iter().any(|asked| same_id(asked, id)))
        {
            return None;
        }
        let result = message.get("result")?;
        let tools = result.get("tools")?.as_array()?;
        let kept: Vec<Value> = tools
            .iter()
            .filter(|tool| self.keeps(tool))
            .cloned()
            .collect();
        if result.get("nextCursor").is_none() {
            if let Err(problem) = seal(self.policy, self.store, self.namespace) {
                self.problems.push(format!("pins: {problem}"));
            }
        }
        if kept.len() == tools.len() {
            return None;
        }
        let mut rewritten = message.clone();
        if let Some(result) = rewritten.get_mut("result").and_then(Value::as_object_mut) {
            result.insert("tools".to_owned(), Value::Array(kept));
        }
        Some(rewritten)
    }

    /// Whether a listed tool stays listed. Tools without a name are left for the server's
    /// client to judge: nobody can call them.
    fn keeps(&mut self, tool: &Value) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return true;
        };
        let (pinned_ok, class) = match tool.as_object() {
            Some(definition) if self.policy.pins.is_some() => self.check_pin(name, definition),
            _ => (true, None),
        };
        pinned_ok && may_call(self.policy, self.caller, name, class)
    }

    /// Whether `name` stays listed as far as pins go, and its risk class (from its pin).
    fn check_pin(&mut self, name: &str, definition: &Map<String, Value>) -> (bool, Option<Class>) {
        let Some(pins) = &self.policy.pins else {
            return (true, None);
        };
        let seen = definition_sha256(definition);
        let listed_hints = Hints::from_annotations(definition.get("annotations"));
        let listed = check_listed(
            self.policy,
            self.store,
            self.namespace,
            name,
            &seen,
            listed_hints,
        );
        let (pinned, hints) = match listed {
            // As pinned: the listing's annotations are the pin's.
            Ok(Listed::Kept) => return (true, self.class_of(listed_hints)),
            Ok(Listed::Drift { pinned, .. }) => {
                let hints = pins.tools.get(name).map(|pin| pin.hints);
                (pinned, hints)
            }
            Err(problem) => {
                // Unknown is not drift: not counted as such, only kept out when pins refuse.
                self.problems
                    .push(format!("pin of tool {name:?}: {problem}"));
                return (!pins.mode.refuses(), None);
            }
        };
        let class = hints.and_then(|h| self.class_of(h));
        let dropped = pins.mode.refuses() && !self.policy.in_shadow(self.policy.entry(name, class));
        self.drifts.push(Drift {
            tool: name.to_owned(),
            pinned,
            seen,
            dropped,
        });
        (!dropped, class)
    }

    fn class_of(&self, hints: Hints) -> Option<Class> {
        self.policy.classes.class_of(hints).map(|(class, _)| class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    use crate::protocol::listing::{Listing, ListingKind};
    use crate::protocol::sse::SseRewriter;
    use crate::response::listing::Listings;
    use crate::test_support::{test, MemoryStore};
    use serde_json::json;

    fn filter_message(
        policy: &Policy,
        caller: &Caller,
        ids: &[Value],
        message: &Value,
    ) -> Option<Value> {
        let mut store = MemoryStore::default();
        let (mut drifts, mut problems) = (Vec::new(), Vec::new());
        Lister {
            policy,
            caller,
            ids,
            store: &mut store,
            namespace: "ns",
            drifts: &mut drifts,
            problems: &mut problems,
        }
        .filter_message(message)
    }

    fn filter_json_body(
        policy: &Policy,
        caller: &Caller,
        ids: &[Value],
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let mut store = MemoryStore::default();
        let (mut drifts, mut problems) = (Vec::new(), Vec::new());
        let listings: Vec<Listing> = ids
            .iter()
            .map(|id| Listing {
                id: id.clone(),
                kind: ListingKind::Tools,
            })
            .collect();
        Listings {
            policy,
            caller,
            listings: &listings,
            store: &mut store,
            namespace: "ns",
            drifts: &mut drifts,
            problems: &mut problems,
        }
        .filter_json_body(body)
    }

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
        let mut rewrite =
            |m: &Value, _: &str| filter_message(&policy, &caller, &ids, m).map(|v| v.to_string());
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

    #[test]
    fn json_bodies_and_batches() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let caller = Caller::new(&policy, None);
        let body = listing(json!(3)).to_string();
        let out: Value = serde_json::from_slice(
            &filter_json_body(&policy, &caller, &[json!(3)], body.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(
            names(&out).is_empty(),
            "anonymous holds no grant under default deny"
        );
        let batch = json!([listing(json!(3)), {"jsonrpc":"2.0","id":4,"result":{}}]).to_string();
        let out: Value = serde_json::from_slice(
            &filter_json_body(&policy, &caller, &[json!(3)], batch.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(out[1]["id"], 4);
        assert!(filter_json_body(&policy, &caller, &[json!(9)], body.as_bytes()).is_none());
    }
}
