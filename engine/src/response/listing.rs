//! Filtering listings: a `tools/list`, `resources/list`, `resources/templates/list` or
//! `prompts/list` answer loses the entries the caller could never use, so agents do not spend
//! turns and context on them. Tools are judged by `tools_list`; resources (templates matched as
//! plain text, `{…}` included) and prompts by the `resources` and `prompts` blocks. Works on a
//! JSON body and, event by event as it streams, on an SSE body.

use serde_json::Value;

use super::tools_list::{Drift, Lister};
use crate::counters::CasStore;
use crate::policy::caller::Caller;
use crate::policy::Policy;
use crate::protocol::jsonrpc::same_id;
use crate::protocol::listing::{Listing, ListingKind};
use crate::request::targets::may_list;

/// What rewriting one stream's listings needs, and what it found: tools are judged by a
/// `Lister` (access and pins), which keeps pin state in `store` and notes drift and problems.
pub struct Listings<'a> {
    pub policy: &'a Policy,
    /// Whose listings they are.
    pub caller: &'a Caller<'a>,
    /// The forwarded listing requests.
    pub listings: &'a [Listing],
    /// Where pin state is kept (the counter store).
    pub store: &'a mut dyn CasStore,
    pub namespace: &'a str,
    /// Listed tools whose definitions differ from their pins, in listing order.
    pub drifts: &'a mut Vec<Drift>,
    /// Pin state that could not be read or kept (for the log).
    pub problems: &'a mut Vec<String>,
}

impl Listings<'_> {
    /// If `message` answers one of `listings` (matched by id), drop the entries the caller may
    /// not use. Returns the rewritten message, or `None` when nothing changes.
    pub fn filter_message(&mut self, message: &Value) -> Option<Value> {
        let id = message.get("id")?;
        let listing = self.listings.iter().find(|l| same_id(&l.id, id))?;
        if listing.kind == ListingKind::Tools {
            return Lister {
                policy: self.policy,
                caller: self.caller,
                ids: std::slice::from_ref(&listing.id),
                store: &mut *self.store,
                namespace: self.namespace,
                drifts: &mut *self.drifts,
                problems: &mut *self.problems,
            }
            .filter_message(message);
        }
        filter_entries(self.policy, self.caller, listing.kind, message)
    }

    /// Filter a whole JSON body (one message or a batch). `None` when nothing changes.
    pub fn filter_json_body(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let rewritten = match &value {
            Value::Array(items) => {
                let mut changed = false;
                let items: Vec<Value> = items
                    .iter()
                    .map(|m| match self.filter_message(m) {
                        Some(new) => {
                            changed = true;
                            new
                        }
                        None => m.clone(),
                    })
                    .collect();
                changed.then_some(Value::Array(items))?
            }
            single => self.filter_message(single)?,
        };
        Some(rewritten.to_string().into_bytes())
    }
}

/// A resource, resource template or prompt listing without what the caller may not request.
fn filter_entries(
    policy: &Policy,
    caller: &Caller,
    kind: ListingKind,
    message: &Value,
) -> Option<Value> {
    let (entries, name) = (kind.entries(), kind.name());
    let listed = message.get("result")?.get(entries)?.as_array()?;
    let kept: Vec<Value> = listed
        .iter()
        .filter(|entry| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .is_none_or(|name| may_list(policy, caller, kind, name))
        })
        .cloned()
        .collect();
    if kept.len() == listed.len() {
        return None;
    }
    let mut rewritten = message.clone();
    if let Some(result) = rewritten.get_mut("result").and_then(Value::as_object_mut) {
        result.insert(entries.to_owned(), Value::Array(kept));
    }
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    use crate::protocol::sse::SseRewriter;
    use crate::test_support::{test, MemoryStore};
    use serde_json::json;

    fn filter_message(
        policy: &Policy,
        caller: &Caller,
        listings: &[Listing],
        message: &Value,
    ) -> Option<Value> {
        let (mut drifts, mut problems) = (Vec::new(), Vec::new());
        Listings {
            policy,
            caller,
            listings,
            store: &mut MemoryStore::default(),
            namespace: "ns",
            drifts: &mut drifts,
            problems: &mut problems,
        }
        .filter_message(message)
    }

    fn filter_json_body(
        policy: &Policy,
        caller: &Caller,
        listings: &[Listing],
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let (mut drifts, mut problems) = (Vec::new(), Vec::new());
        Listings {
            policy,
            caller,
            listings,
            store: &mut MemoryStore::default(),
            namespace: "ns",
            drifts: &mut drifts,
            problems: &mut problems,
        }
        .filter_json_body(body)
    }

    const POLICY: &str = r#"{"version":"1","default":"deny",
        "tools":{"send":{}},
        "resources":[
            {"uri":"wechat://account/profile"},
            {"glob":"wechat://internal/**","action":"deny"},
            {"prefix":"wechat://drafts/","rules":[{"name":"r","conditions":[{"path":"args.uri","op":"exists","value":true}]}]},
            {"prefix":"wechat://trial/","action":"deny","shadow":true},
            {"glob":"stock://*/earnings"}],
        "prompts":{"draft_campaign":{},"apology_notice":{"action":"deny"}}}"#;

    fn answer(id: u64, kind: ListingKind, names: &[&str]) -> Value {
        let entries: Vec<Value> = names
            .iter()
            .map(|n| json!({kind.name(): n, "description": "d"}))
            .collect();
        let mut result = json!({"nextCursor": "c2"});
        result[kind.entries()] = Value::Array(entries);
        json!({"jsonrpc":"2.0","id":id,"result":result})
    }

    fn names(message: &Value, kind: ListingKind) -> Vec<String> {
        message["result"][kind.entries()]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[kind.name()].as_str().unwrap().to_owned())
            .collect()
    }

    fn listed(id: u64, kind: ListingKind) -> Vec<Listing> {
        vec![Listing {
            id: json!(id),
            kind,
        }]
    }

    #[test]
    fn each_listing_loses_what_the_caller_could_never_request() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let caller = Caller::new(&policy, None);
        for (kind, all, kept) in [
            (
                ListingKind::Resources,
                &[
                    "wechat://account/profile",
                    "wechat://internal/keys",
                    "wechat://drafts/a",
                    "wechat://trial/x",
                    "wechat://other",
                ][..],
                &[
                    "wechat://account/profile",
                    "wechat://drafts/a",
                    "wechat://trial/x",
                ][..],
            ),
            (
                ListingKind::ResourceTemplates,
                &[
                    "stock://{symbol}/earnings",
                    "wechat://internal/{key}",
                    "stock://{a}/{b}",
                ][..],
                &["stock://{symbol}/earnings"][..],
            ),
            (
                ListingKind::Prompts,
                &["draft_campaign", "apology_notice", "unlisted"][..],
                &["draft_campaign"][..],
            ),
            (ListingKind::Tools, &["send", "delete"][..], &["send"][..]),
        ] {
            let out =
                filter_message(&policy, &caller, &listed(1, kind), &answer(1, kind, all)).unwrap();
            assert_eq!(names(&out, kind), kept, "{kind:?}");
            assert_eq!(out["result"]["nextCursor"], "c2", "other members are kept");
        }
        // Another id, another kind of answer, an entry without a name: left alone.
        let resources = ListingKind::Resources;
        let message = answer(1, resources, &["wechat://other"]);
        assert!(filter_message(&policy, &caller, &listed(2, resources), &message).is_none());
        let prompts = answer(1, ListingKind::Prompts, &["unlisted"]);
        assert!(filter_message(&policy, &caller, &listed(1, resources), &prompts).is_none());
        let odd = json!({"jsonrpc":"2.0","id":1,"result":{"resources":[{"name":"no uri"}]}});
        assert!(filter_message(&policy, &caller, &listed(1, resources), &odd).is_none());
    }

    #[test]
    fn shadow_mode_changes_no_listing() {
        let policy = load_policy(
            POLICY
                .replacen(
                    r#""default":"deny""#,
                    r#""default":"deny","shadow":true"#,
                    1,
                )
                .as_bytes(),
        )
        .unwrap();
        let caller = Caller::new(&policy, None);
        let kind = ListingKind::Resources;
        let message = answer(1, kind, &["wechat://internal/keys", "wechat://other"]);
        assert!(filter_message(&policy, &caller, &listed(1, kind), &message).is_none());
    }

    #[test]
    fn without_identity_under_missing_deny_nothing_is_listed() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","identity":{"sources":[{"header":"x-agent-id"}],"missing":"deny"},
                "prompts":{"p":{}}}"#,
        )
        .unwrap();
        let kind = ListingKind::Prompts;
        let message = answer(1, kind, &["p", "q"]);
        let anonymous = Caller::new(&policy, None);
        let out = filter_message(&policy, &anonymous, &listed(1, kind), &message).unwrap();
        assert!(names(&out, kind).is_empty());
        let agent = Identity::new("a");
        let known = Caller::new(&policy, Some(&agent));
        assert!(filter_message(&policy, &known, &listed(1, kind), &message).is_none());
    }

    #[test]
    fn json_bodies_and_batches() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let caller = Caller::new(&policy, None);
        let listings = vec![
            Listing {
                id: json!(3),
                kind: ListingKind::Tools,
            },
            Listing {
                id: json!(4),
                kind: ListingKind::Prompts,
            },
        ];
        let tools = answer(3, ListingKind::Tools, &["send", "delete"]);
        let out: Value = serde_json::from_slice(
            &filter_json_body(&policy, &caller, &listings, tools.to_string().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(names(&out, ListingKind::Tools), ["send"]);
        let prompts = answer(4, ListingKind::Prompts, &["apology_notice"]);
        let batch = json!([tools, prompts, {"jsonrpc":"2.0","id":5,"result":{}}]).to_string();
        let out: Value = serde_json::from_slice(
            &filter_json_body(&policy, &caller, &listings, batch.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(names(&out[0], ListingKind::Tools), ["send"]);
        assert!(names(&out[1], ListingKind::Prompts).is_empty());
        assert_eq!(out[2]["id"], 5);
        let unasked = answer(9, ListingKind::Prompts, &["apology_notice"]).to_string();
        assert!(filter_json_body(&policy, &caller, &listings, unasked.as_bytes()).is_none());
    }

    #[test]
    fn sse_events_are_rewritten_one_by_one() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let caller = Caller::new(&policy, None);
        let kind = ListingKind::Resources;
        let listings = listed(7, kind);
        let mut rewrite = |m: &Value, _: &str| {
            filter_message(&policy, &caller, &listings, m).map(|v| v.to_string())
        };
        let stream = format!(
            "event: message\r\ndata: {}\r\n\r\nevent: message\ndata: {}\n\n",
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{}}),
            answer(
                7,
                kind,
                &["wechat://internal/keys", "wechat://account/profile"]
            )
        );
        let mut sse = SseRewriter::default();
        let mut out = Vec::new();
        for byte in stream.as_bytes() {
            let piece = sse.feed(std::slice::from_ref(byte), &mut rewrite);
            // Only ever whole events.
            assert!(piece.is_empty() || piece.ends_with(b"\n\n") || piece.ends_with(b"\r\n\r\n"));
            out.extend(piece);
        }
        out.extend(sse.finish(&mut rewrite));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("notifications/progress"), "{text}");
        let last = text.lines().rfind(|l| l.starts_with("data: {")).unwrap();
        let message: Value = serde_json::from_str(&last["data: ".len()..]).unwrap();
        assert_eq!(names(&message, kind), ["wechat://account/profile"]);
    }
}
