//! `mcp-policy explain`: what the filter would decide for one call (or resource read, prompt,
//! other request), and which element of the policy decided it, computed by the same decision
//! code the filter runs. Counters are taken as empty (a fresh window), since the CLI has no view
//! of a running Envoy's shared data.

use serde_json::{json, Map, Value};

use crate::counters::{CasStore, SetOutcome, StoreError};
use crate::policy::caller::Caller;
use crate::policy::identity::{self, Identity, RequestAttributes};
use crate::policy::Policy;
use crate::protocol::jsonrpc::{
    BodyError, Message, MessageKind, INVALID_PARAMS, PROMPTS_GET, RESOURCES_READ,
    RESOURCES_SUBSCRIBE,
};
use crate::reply::denied_message;
use crate::request::access::{decide_with_rule, ToolDecision};
use crate::request::integrity::{self, Standing};
use crate::request::targets::{decide_target, governed, Governed};
use crate::target::Target;

struct GivenIdentity<'a>(&'a str);

/// The store of a filter that has seen nothing: no listing, so no drift and nothing learned.
struct NothingSeen;

impl CasStore for NothingSeen {
    fn get(&mut self, _key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(None)
    }
    fn set(&mut self, _key: &str, _value: &[u8], _cas: u32) -> Result<SetOutcome, StoreError> {
        Ok(SetOutcome::Stored)
    }
}

impl RequestAttributes for GivenIdentity<'_> {
    fn header(&self, _name: &str) -> Option<String> {
        Some(self.0.to_owned())
    }
    fn jwt_claim(&self, _metadata_key: &str, _path: &[String]) -> Option<String> {
        Some(self.0.to_owned())
    }
    fn peer_uri_san(&self) -> Option<String> {
        Some(self.0.to_owned())
    }
}

/// The decision for `tool` called with `arguments` by `identity` (as the policy's first
/// identity source would report it; `None`: no identity), as a JSON document.
pub fn explain(
    policy: &Policy,
    tool: &str,
    identity_value: Option<&str>,
    arguments: Option<&Value>,
) -> Value {
    let identity = given_identity(policy, identity_value);
    let caller = Caller::new(policy, identity.as_ref());
    // As a filter that has seen no listing yet: no drift, nothing learned.
    let standing = integrity::standing(policy, &mut NothingSeen, "explain", tool);
    let class = standing
        .hints()
        .and_then(|hints| policy.classes.class_of(hints))
        .map(|(class, _)| class);
    let (decision, mut rule) =
        decide_with_rule(policy, &caller, tool, class, arguments, &mut |_| Ok(0));
    let decision = match integrity::judge(policy, tool, class, &standing, decision) {
        Ok(decision) => decision,
        Err(refused) => {
            rule = refused.rule;
            ToolDecision::Deny {
                reason: refused.problem,
                unreadable: None,
            }
        }
    };
    let mut out = Map::new();
    out.insert("tool".into(), json!(tool));
    out.insert("pin".into(), pin_of(policy, tool, &standing));
    out.insert("class".into(), json!(class.map(|c| c.as_str())));
    out.insert("guard".into(), guard_of(policy, policy.entry(tool, class)));
    out.insert(
        "identity".into(),
        json!(identity.as_ref().map(|i| i.display())),
    );
    out.insert("grant".into(), json!(caller.grant.map(|g| g.name.clone())));
    out.insert("rule".into(), json!(rule));
    if let ToolDecision::Allow { approval, .. } = &decision {
        out.insert("requires_approval".into(), json!(approval));
    }
    describe(policy, &Target::Tool(tool.to_owned()), decision, &mut out);
    Value::Object(out)
}

/// The decision for a request with `method` other than a tools/call, naming `name` (the URI of
/// a `resources/read` or `resources/subscribe`, the name of a `prompts/get`), by `identity`,
/// with `arguments` (a prompt's arguments; a resource request's other params), as a JSON
/// document.
pub fn explain_request(
    policy: &Policy,
    method: &str,
    name: Option<&str>,
    identity_value: Option<&str>,
    arguments: Option<&Value>,
) -> Value {
    let identity = given_identity(policy, identity_value);
    let caller = Caller::new(policy, identity.as_ref());
    let mut out = Map::new();
    out.insert("method".into(), json!(method));
    out.insert(
        "identity".into(),
        json!(identity.as_ref().map(|i| i.display())),
    );
    let (target, rule) = match governed(policy, &message(method, name)) {
        Governed::Passes => {
            out.insert("decision".into(), json!("passes"));
            out.insert("rule".into(), Value::Null);
            out.insert("reason".into(), json!(why_it_passes(policy, method)));
            return Value::Object(out);
        }
        Governed::Invalid(e) => {
            out.insert("decision".into(), json!("invalid"));
            out.insert("message".into(), json!(e.problem));
            return Value::Object(out);
        }
        Governed::Decided { target, rule } => (target, rule),
    };
    if !matches!(target, Target::Method(_)) {
        out.insert(target.member().into(), json!(target.name()));
    }
    let read = rule_arguments(&target, arguments);
    let (decision, path) =
        decide_target(policy, &caller, &target, rule, read.as_ref(), &mut |_| {
            Ok(0)
        });
    out.insert("rule".into(), json!(path));
    describe(policy, &target, decision, &mut out);
    Value::Object(out)
}

/// The identity the policy's first source would report for `value`.
fn given_identity(policy: &Policy, value: Option<&str>) -> Option<Identity> {
    let first_source = policy.identity_sources.get(..1).unwrap_or(&[]);
    value.and_then(|v| identity::resolve(first_source, &GivenIdentity(v)))
}

/// The message a client would send, as the filter reads it.
fn message(method: &str, name: Option<&str>) -> Message<'static> {
    let kind = match method {
        RESOURCES_READ | RESOURCES_SUBSCRIBE | PROMPTS_GET => MessageKind::Named {
            method: method.to_owned(),
            name: name.map(str::to_owned).ok_or_else(|| BodyError {
                code: INVALID_PARAMS,
                problem: format!(
                    "{method} names what it asks for: explain it with --resource URI or --prompt NAME"
                ),
            }),
        },
        _ => MessageKind::Other {
            method: method.to_owned(),
        },
    };
    Message {
        id: None,
        kind,
        arguments: None,
    }
}

/// What the rules of `target`'s entry read: a prompt's arguments; a resource request's params,
/// its `uri` included.
fn rule_arguments(target: &Target, arguments: Option<&Value>) -> Option<Value> {
    match target {
        Target::Resource { uri, .. } => {
            let mut params = arguments
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            params.insert("uri".into(), json!(uri));
            Some(Value::Object(params))
        }
        _ => arguments.cloned(),
    }
}

/// Why the policy does not decide a request with `method`.
fn why_it_passes(policy: &Policy, method: &str) -> String {
    if let Some(why) = policy.targets.outside_methods(method) {
        return format!("{method}: {why}");
    }
    let block = match method {
        RESOURCES_READ | RESOURCES_SUBSCRIBE => "\"resources\" or \"methods\" block",
        PROMPTS_GET => "\"prompts\" or \"methods\" block",
        _ => "\"methods\" block",
    };
    format!("the policy has no {block}: {method} passes untouched")
}

/// The decision's members: `decision`, and `message` for a denial, or `would_deny` and `charges`.
fn describe(
    policy: &Policy,
    target: &Target,
    decision: ToolDecision,
    out: &mut Map<String, Value>,
) {
    match decision {
        ToolDecision::Deny { reason, .. } => {
            out.insert("decision".into(), json!("denied"));
            out.insert("message".into(), json!(denied_message(target, &reason)));
        }
        ToolDecision::Allow {
            charges,
            shadow_denials,
            ..
        } => {
            let would_deny: Vec<Value> = shadow_denials
                .iter()
                .map(|(reason, rule)| json!({"reason": reason, "rule": rule}))
                .collect();
            out.insert("would_deny".into(), Value::Array(would_deny));
            let charges: Vec<Value> = charges
                .iter()
                .filter_map(|c| {
                    let spec = policy.counter(c.counter)?;
                    Some(json!({
                        "counter": spec.name, "amount": c.amount, "max": spec.max,
                        "window_seconds": spec.window.seconds(), "scope": spec.scope.as_str(),
                        "fits_in_an_empty_window": c.amount <= spec.max,
                    }))
                })
                .collect();
            out.insert("decision".into(), json!("allowed"));
            out.insert("charges".into(), Value::Array(charges));
        }
    }
}

/// The guard a call of a tool with `entry` takes: per direction, its action, detectors and
/// where it is in the policy; `null` without one.
fn guard_of(policy: &Policy, entry: Option<&crate::policy::ToolRule>) -> Value {
    let Some(guard) = policy.guard(entry) else {
        return Value::Null;
    };
    let direction = |rule: Option<&crate::policy::guard::GuardRule>, name: &str| {
        rule.map(|rule| {
            json!({"action": rule.action.as_str(), "detectors": rule.detectors.names(),
                   "rule": format!("{}.{name}", guard.path)})
        })
    };
    json!({"arguments": direction(guard.arguments.as_ref(), "arguments"),
           "results": direction(guard.results.as_ref(), "results"),
           "failure_mode": if guard.fail_open { "open" } else { "closed" }})
}

/// What the policy pins for `tool`: its hash, `"learned"` (first_seen learns it at run time),
/// or `null` (no pins, or none for this tool).
fn pin_of(policy: &Policy, tool: &str, standing: &Standing) -> Value {
    match (&policy.pins, standing) {
        (Some(pins), _) if pins.tools.contains_key(tool) => {
            json!(pins.tools.get(tool).map(|p| p.sha256.as_str()))
        }
        (Some(pins), Standing::Unpinned)
            if pins.mode == crate::policy::pins::PinMode::FirstSeen =>
        {
            json!("learned from the first listing")
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;

    const POLICY: &str = r#"{"version":"1","default":"deny",
        "tools":{"wechat_mass_delete":{"action":"deny","reason":"needs a human"},
                 "wechat_mass_send":{"rules":[{"name":"types","conditions":[{"path":"args.msg_type","op":"in","value":["text"]}]}]}},
        "grants":{"campaigns":{"identities":["campaign-agent"],"tools":{"wechat_mass_send":{"limits":[
            {"counter":"sends","window":"minute","max":30,"scope":"grant"}]}}}}}"#;

    #[test]
    fn explains_the_deciding_rule() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let allowed = explain(
            &policy,
            "wechat_mass_send",
            Some("campaign-agent"),
            Some(&json!({"msg_type": "text"})),
        );
        assert_eq!(allowed["decision"], "allowed");
        assert_eq!(allowed["rule"], "grants.campaigns.tools.wechat_mass_send");
        assert_eq!(allowed["grant"], "campaigns");
        assert_eq!(allowed["charges"][0]["counter"], "sends");

        let by_rule = explain(
            &policy,
            "wechat_mass_send",
            Some("campaign-agent"),
            Some(&json!({"msg_type": "image"})),
        );
        assert_eq!(
            (by_rule["decision"].clone(), by_rule["rule"].clone()),
            (json!("denied"), json!("tools.wechat_mass_send.rules[0]"))
        );

        let explicit = explain(&policy, "wechat_mass_delete", Some("campaign-agent"), None);
        assert_eq!(explicit["rule"], "tools.wechat_mass_delete.action");
        assert_eq!(
            explicit["message"],
            "Tool \"wechat_mass_delete\" is not allowed by policy: needs a human"
        );

        assert_eq!(
            explain(&policy, "wechat_mass_send", Some("stranger"), None)["rule"],
            "grants"
        );
        assert_eq!(
            explain(
                &policy,
                "wechat_get_followers",
                Some("campaign-agent"),
                None
            )["rule"],
            "grants.campaigns.tools"
        );
    }

    const BLOCKS: &str = r#"{"version":"1","default":"deny",
        "identity":{"sources":[{"header":"x-agent-id"}],"missing":"deny"},
        "resources":[{"prefix":"wechat://followers/","limits":[{"counter":"reads","window":"minute","max":20,"scope":"identity"}]},
                     {"prefix":"wechat://drafts/","rules":[{"name":"plain","conditions":[{"path":"args.uri","op":"regex","value":"^wechat://drafts/[a-z]+$"}]}]},
                     {"glob":"wechat://internal/**","action":"deny","reason":"internal data is not for agents"}],
        "prompts":{"draft":{"rules":[{"name":"tone","conditions":[{"path":"args.tone","op":"eq","value":"warm"}]}]}},
        "methods":{"completion/complete":{"action":"deny","reason":"no completions here"}}}"#;

    #[test]
    fn explains_resources_prompts_and_methods() {
        let policy = load_policy(BLOCKS.as_bytes()).unwrap();
        let ask = |method: &str, name: Option<&str>, arguments: Option<Value>| {
            explain_request(&policy, method, name, Some("a"), arguments.as_ref())
        };
        let read = ask("resources/read", Some("wechat://followers/o1"), None);
        assert_eq!(
            (
                read["decision"].clone(),
                read["rule"].clone(),
                read["resource"].clone()
            ),
            (
                json!("allowed"),
                json!("resources[0]"),
                json!("wechat://followers/o1")
            )
        );
        assert_eq!(read["charges"][0]["counter"], "reads");
        let internal = ask("resources/read", Some("wechat://internal/keys"), None);
        assert_eq!(internal["rule"], "resources[2].action");
        assert_eq!(
            internal["message"],
            "Resource \"wechat://internal/keys\" is not allowed by policy: internal data is not for agents"
        );
        // A resource's rules read its params, the URI among them.
        let draft = ask("resources/read", Some("wechat://drafts/Spring"), None);
        assert_eq!(draft["rule"], "resources[1].rules[0]");
        let warm = ask("prompts/get", Some("draft"), Some(json!({"tone": "warm"})));
        assert_eq!(
            (warm["decision"].clone(), warm["prompt"].clone()),
            (json!("allowed"), json!("draft"))
        );
        let cold = ask("prompts/get", Some("draft"), Some(json!({"tone": "cold"})));
        assert_eq!(cold["rule"], "prompts.draft.rules[0]");
        let complete = ask("completion/complete", None, None);
        assert_eq!(complete["rule"], r#"methods["completion/complete"].action"#);
        assert_eq!(ask("logging/setLevel", None, None)["rule"], "default");
        let anonymous = explain_request(
            &policy,
            "resources/read",
            Some("wechat://followers/o1"),
            None,
            None,
        );
        assert_eq!(anonymous["rule"], "identity.missing");
    }

    #[test]
    fn explains_what_passes_undecided() {
        let policy = load_policy(BLOCKS.as_bytes()).unwrap();
        let initialize = explain_request(&policy, "initialize", None, None, None);
        assert_eq!(
            (initialize["decision"].clone(), initialize["rule"].clone()),
            (json!("passes"), Value::Null)
        );
        assert_eq!(
            initialize["reason"],
            "initialize: it always passes: sessions need it"
        );
        let bare = load_policy(br#"{"version":"1"}"#).unwrap();
        let read = explain_request(&bare, "resources/read", Some("x://y"), None, None);
        assert_eq!(
            read["reason"],
            "the policy has no \"resources\" or \"methods\" block: resources/read passes untouched"
        );
        let unnamed = explain_request(&policy, "resources/read", None, None, None);
        assert_eq!(unnamed["decision"], "invalid");
    }

    #[test]
    fn secret_identities_are_hashed_like_the_filter_does() {
        let policy = load_policy(br#"{"version":"1","default":"allow","identity":{"sources":[{"header":"x-api-key","secret":true}]}}"#).unwrap();
        let out = explain(&policy, "t", Some("sk-live-1"), None);
        assert!(out["identity"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(out["rule"], "default");
    }

    #[test]
    fn explains_pins_and_classes() {
        let hash = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let policy = load_policy(
            format!(
                r#"{{"version":"1","default":"allow",
                "approval":{{"cluster":"approvals"}},
                "pins":{{"tools":{{"drop_table":{{"sha256":"{hash}","annotations":{{"destructiveHint":true}}}},
                                   "lookup":{{"sha256":"{hash}","annotations":{{"readOnlyHint":true}}}}}}}},
                "classes":{{"read_only":{{}},"destructive":{{"action":"require_approval"}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let drop = explain(&policy, "drop_table", None, None);
        assert_eq!(drop["class"], "destructive");
        assert_eq!(drop["pin"], hash);
        assert_eq!(drop["requires_approval"], "classes.destructive.action");
        let lookup = explain(&policy, "lookup", None, None);
        assert_eq!(
            (lookup["class"].clone(), lookup["rule"].clone()),
            (json!("read_only"), json!("classes.read_only"))
        );
        let unpinned = explain(&policy, "new_tool", None, None);
        assert_eq!(unpinned["decision"], "denied");
        assert_eq!(unpinned["rule"], "pins");
        assert_eq!(unpinned["class"], Value::Null);
        assert!(policy
            .summary()
            .ends_with(", pins enforce (2 pinned tool(s)), classes: read_only, destructive"));
    }

    #[test]
    fn explains_which_guard_applies() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow",
                "tools":{"send":{"guard":{"arguments":{"action":"block","detectors":["private_key"]},"results":"redact"}},
                         "*":{"guard":{"arguments":"report"}}}}"#,
        )
        .unwrap();
        let send = explain(&policy, "send", None, None);
        assert_eq!(
            send["guard"]["arguments"],
            json!({"action":"block","detectors":["private_key"],"rule":"tools.send.guard.arguments"})
        );
        assert_eq!(send["guard"]["results"]["action"], "redact");
        assert_eq!(send["guard"]["results"]["rule"], "tools.send.guard.results");
        let other = explain(&policy, "other", None, None);
        assert_eq!(
            other["guard"]["arguments"]["rule"],
            "tools[\"*\"].guard.arguments"
        );
        assert_eq!(other["guard"]["arguments"]["action"], "report");
    }
}
