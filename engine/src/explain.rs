//! `mcp-policy explain`: what the filter would decide for one call, and which element of the
//! policy decided it, computed by the same decision code the filter runs. Counters are taken as
//! empty (a fresh window), since the CLI has no view of a running Envoy's shared data.

use serde_json::{json, Map, Value};

use crate::counters::{CasStore, SetOutcome, StoreError};
use crate::policy::caller::Caller;
use crate::policy::identity::{self, RequestAttributes};
use crate::policy::Policy;
use crate::request::access::{decide_with_rule, ToolDecision};
use crate::request::integrity::{self, Standing};

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
    let first_source = policy.identity_sources.get(..1).unwrap_or(&[]);
    let identity = identity_value.and_then(|v| identity::resolve(first_source, &GivenIdentity(v)));
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
    out.insert(
        "identity".into(),
        json!(identity.as_ref().map(|i| i.display())),
    );
    out.insert("grant".into(), json!(caller.grant.map(|g| g.name.clone())));
    out.insert("rule".into(), json!(rule));
    match decision {
        ToolDecision::Deny { reason, .. } => {
            out.insert("decision".into(), json!("denied"));
            out.insert(
                "message".into(),
                json!(format!(
                    "Tool \"{tool}\" is not allowed by policy: {reason}"
                )),
            );
        }
        ToolDecision::Allow {
            charges,
            shadow_denials,
            approval,
        } => {
            out.insert("requires_approval".into(), json!(approval));
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
    Value::Object(out)
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
}
