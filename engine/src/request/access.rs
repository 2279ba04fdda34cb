//! Allow or deny one tool for one caller. Rate limits are applied afterwards by `evaluate`,
//! because they need the counter store and the whole request (a batch is charged all at once).
//!
//! Precedence, first match wins:
//! 1. no identity and `identity.missing: deny` → denied;
//! 2. the server-wide rule says `deny` → denied (grants never widen past an explicit deny);
//! 3. the policy has grants and the caller holds none → denied under `default: deny`
//!    (under `default: allow`, the server-wide rules alone decide);
//! 4. the caller's grant lists tools → only those, with the grant's own allow/deny and reason
//!    (listing a tool in a grant is what allows it under `default: deny`);
//! 5. otherwise the server-wide rules decide: listed → allowed, unlisted → `default`.
//!
//! A tool's server-wide entry is its own (`tools.<name>`), else the entry of its risk class
//! (`classes.<class>`, from the annotations of its pin), else none.
//!
//! An allowed call must then fit every limit that applies: the server-wide tool's, the grant's
//! own, and the grant's rule for that tool.

use crate::policy::caller::Caller;
use crate::policy::identity::{Identity, IdentitySource, MissingIdentity};
use serde_json::Value;

use crate::counters::CounterError;
use crate::json::path::key_path;
use crate::policy::pins::Class;
use crate::policy::rules::{self, Charge, RulesOutcome, Unreadable};
use crate::policy::{CounterId, DefaultAction, Policy, ToolAction, ToolRule};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDecision {
    /// Allowed if every charge fits its counter. `shadow_denials`: (reason, rule path) of the
    /// shadowed refusals it passed, reported as "would deny".
    Allow {
        charges: Vec<Charge>,
        shadow_denials: Vec<(String, String)>,
        /// The policy element (JSON path) that makes this call wait for a human's approval:
        /// the tool's `require_approval` action or a `require_approval` rule that matched.
        approval: Option<String>,
    },
    Deny {
        reason: String,
        /// Set when a rule denied only because this counter could not be read: not the
        /// policy's answer but the filter's failure to enforce it (`failure_mode` closed).
        unreadable: Option<Unreadable>,
    },
}

pub const UNLISTED_UNDER_DEFAULT_DENY: &str =
    "the policy denies every tool it does not list (default: deny)";
pub const DENIED_WITHOUT_REASON: &str = "this tool is denied by the policy";

fn deny(reason: impl Into<String>) -> ToolDecision {
    ToolDecision::Deny {
        reason: reason.into(),
        unreadable: None,
    }
}

fn shown(caller: &Caller) -> String {
    caller
        .identity
        .map_or_else(|| "anonymous".to_owned(), Identity::display)
}

fn union(lists: &[&[CounterId]]) -> Vec<CounterId> {
    let mut out: Vec<CounterId> = Vec::new();
    for id in lists.iter().flat_map(|l| l.iter()) {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

pub const HIDDEN: &str = "this tool is hidden by policy";

#[cfg(test)]
/// The full decision for one call: hidden tools, then access (identity, deny, grants, default),
/// then the tool's rules and the `"*"` rules on its `arguments` and counters.
pub fn decide_tool(
    policy: &Policy,
    caller: &Caller,
    tool: &str,
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
) -> ToolDecision {
    decide_with_rule(policy, caller, tool, None, arguments, counter_value).0
}

/// `decide_tool`, plus the policy element that decided, as a JSON path (`tools.x.rules[1]`,
/// `grants.g.tools`, `default`, ...): for `mcp-policy explain` and audit records.
/// `class`: the tool's risk class, from its pin (`None` for a tool without one).
pub fn decide_with_rule(
    policy: &Policy,
    caller: &Caller,
    tool: &str,
    class: Option<Class>,
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
) -> (ToolDecision, String) {
    let entry = policy.entry(tool, class);
    let shadow = policy.in_shadow(entry);
    if policy.is_hidden(tool) {
        if !shadow {
            return (deny(HIDDEN), "hide".to_owned());
        }
        return only_reported(Vec::new(), HIDDEN.to_owned(), "hide".to_owned());
    }
    let (limits, access_rule) = match access(policy, caller, tool, entry) {
        (ToolDecision::Allow { charges, .. }, rule) => (charges, rule),
        (ToolDecision::Deny { reason, .. }, rule) if shadow => {
            return only_reported(Vec::new(), reason, rule)
        }
        denied => return denied,
    };
    let tool_rules = ToolRules::of(policy, entry);
    match rules::evaluate(
        &tool_rules.in_order(),
        arguments,
        counter_value,
        policy.fail_open,
    ) {
        RulesOutcome::Deny {
            reason,
            rule,
            unreadable,
        } => {
            let path = tool_rules.path(rule);
            if shadow {
                return only_reported(limits, reason, path);
            }
            (ToolDecision::Deny { reason, unreadable }, path)
        }
        RulesOutcome::Pass {
            charges,
            shadow_denials,
            approval,
        } => {
            let shadow_denials = shadow_denials
                .into_iter()
                .map(|(reason, index)| (reason, tool_rules.path(index)))
                .collect();
            let approval = approval_path(entry).or_else(|| approval.map(|i| tool_rules.path(i)));
            let decision = passed(limits, charges, shadow_denials, approval, shadow);
            (decision, access_rule)
        }
    }
}

/// A refusal in shadow mode: the call is allowed with `charges`, and the refusal (`reason`,
/// by the policy element at `path`) is only reported.
fn only_reported(charges: Vec<Charge>, reason: String, path: String) -> (ToolDecision, String) {
    let shadow_denials = vec![(reason, path.clone())];
    (
        ToolDecision::Allow {
            charges,
            shadow_denials,
            approval: None,
        },
        path,
    )
}

/// The rules a call to a tool must pass: its entry's, then the `"*"` rules.
struct ToolRules<'p> {
    entry: Option<&'p ToolRule>,
    own: &'p [rules::Rule],
    wildcard: &'p [rules::Rule],
}

impl<'p> ToolRules<'p> {
    fn of(policy: &'p Policy, entry: Option<&'p ToolRule>) -> Self {
        ToolRules {
            entry,
            own: entry.map_or(&[], |t| &t.rules),
            wildcard: &policy.wildcard_rules,
        }
    }

    fn in_order(&self) -> Vec<&'p rules::Rule> {
        self.own.iter().chain(self.wildcard.iter()).collect()
    }

    /// The JSON path of the rule at `index` in `in_order`. Built only for a rule that decided:
    /// most calls never need one.
    fn path(&self, index: usize) -> String {
        match (index.checked_sub(self.own.len()), self.entry) {
            (None, Some(entry)) => format!("{}.rules[{index}]", entry.path),
            (None, None) => format!("rules[{index}]"),
            (Some(wildcard), _) => format!("tools[\"*\"].rules[{wildcard}]"),
        }
    }
}

/// The JSON path of the entry's `require_approval` action, if it has one.
fn approval_path(entry: Option<&ToolRule>) -> Option<String> {
    entry
        .filter(|t| t.action == ToolAction::RequireApproval)
        .map(|t| format!("{}.action", t.path))
}

/// A call that passed its rules: it is charged the access `limits` and the rules' `charges`,
/// and waits for approval when `approval` names what asks for it.
fn passed(
    limits: Vec<Charge>,
    mut charges: Vec<Charge>,
    mut shadow_denials: Vec<(String, String)>,
    mut approval: Option<String>,
    shadow: bool,
) -> ToolDecision {
    let mut all = limits;
    all.append(&mut charges);
    if shadow {
        // Shadow mode asks nobody: the call is reported as one that would wait.
        if let Some(path) = approval.take() {
            shadow_denials.push(("requires a human's approval".to_owned(), path));
        }
    }
    ToolDecision::Allow {
        charges: all,
        shadow_denials,
        approval,
    }
}

fn allow(limits: Vec<CounterId>) -> ToolDecision {
    let charges = limits
        .into_iter()
        .map(|counter| Charge {
            counter,
            amount: 1,
            reason: None,
            shadow: false,
        })
        .collect();
    ToolDecision::Allow {
        charges,
        shadow_denials: Vec::new(),
        approval: None,
    }
}

/// Who may call what, before any rule: see the module documentation for the precedence.
pub fn decide_access(
    policy: &Policy,
    caller: &Caller,
    tool: &str,
    class: Option<Class>,
) -> ToolDecision {
    access(policy, caller, tool, policy.entry(tool, class)).0
}

/// `server_rule`: the tool's server-wide entry (`Policy::entry`).
fn access(
    policy: &Policy,
    caller: &Caller,
    tool: &str,
    server_rule: Option<&ToolRule>,
) -> (ToolDecision, String) {
    if caller.identity.is_none() && policy.missing_identity == MissingIdentity::Deny {
        let expected: Vec<String> = policy
            .identity_sources
            .iter()
            .map(IdentitySource::describe)
            .collect();
        let why = format!(
            "the caller has no identity (expected {})",
            expected.join(" or ")
        );
        return (deny(why), "identity.missing".to_owned());
    }
    if let Some(ToolRule {
        action: ToolAction::Deny,
        reason,
        path,
        ..
    }) = server_rule
    {
        let why = reason
            .clone()
            .unwrap_or_else(|| DENIED_WITHOUT_REASON.to_owned());
        return (deny(why), format!("{path}.action"));
    }
    let server_limits: &[CounterId] = server_rule.map_or(&[], |r| &r.limits);

    let grant = match caller.grant {
        Some(grant) => grant,
        None if !policy.grants.is_empty() && policy.default_action == DefaultAction::Deny => {
            let why = format!(
                "identity \"{}\" holds no grant on this server (grants: {})",
                shown(caller),
                policy.grants.names().join(", ")
            );
            return (deny(why), "grants".to_owned());
        }
        None => return server_wide(policy, server_rule, &[]),
    };
    match &grant.tools {
        Some(tools) => match tools.get(tool) {
            None => {
                let why = format!(
                    "grant \"{}\" (held by identity \"{}\") does not include this tool",
                    grant.name,
                    shown(caller)
                );
                (
                    deny(why),
                    format!("{}.tools", key_path("grants", &grant.name)),
                )
            }
            Some(ToolRule {
                action: ToolAction::Deny,
                reason,
                path,
                ..
            }) => {
                let why = reason
                    .clone()
                    .unwrap_or_else(|| format!("grant \"{}\" denies this tool", grant.name));
                (deny(why), format!("{path}.action"))
            }
            Some(rule) => (
                allow(union(&[server_limits, &grant.limits, &rule.limits])),
                rule.path.clone(),
            ),
        },
        None => server_wide(policy, server_rule, &grant.limits),
    }
}

fn server_wide(
    policy: &Policy,
    rule: Option<&ToolRule>,
    grant_limits: &[CounterId],
) -> (ToolDecision, String) {
    match (rule, policy.default_action) {
        (Some(rule), _) => (
            allow(union(&[&rule.limits, grant_limits])),
            rule.path.clone(),
        ),
        (None, DefaultAction::Allow) => (allow(grant_limits.to_vec()), "default".to_owned()),
        (None, DefaultAction::Deny) => (deny(UNLISTED_UNDER_DEFAULT_DENY), "default".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::identity::sha256_tag;
    use crate::test_support::test;

    const SEED: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[{"counter":"wechat_mass_send_rate","window":"minute","max":30,"scope":"grant"}]}}}"#;

    fn decide(policy: &Policy, identity: Option<&str>, tool: &str) -> ToolDecision {
        let identity = identity.map(Identity::new);
        decide_tool(
            policy,
            &Caller::new(policy, identity.as_ref()),
            tool,
            None,
            &mut |_| Ok(0),
        )
    }

    fn limits(ids: &[CounterId]) -> ToolDecision {
        allow(ids.to_vec())
    }

    fn reason(decision: ToolDecision) -> String {
        match decision {
            ToolDecision::Deny { reason, .. } => reason,
            allowed => panic!("expected a denial, got {allowed:?}"),
        }
    }

    #[test]
    fn seed_allows_its_listed_tool_with_its_limit() {
        let policy = load_policy(SEED.as_bytes()).unwrap();
        assert_eq!(decide(&policy, Some("a"), "wechat_mass_send"), limits(&[0]));
        assert_eq!(decide(&policy, None, "wechat_mass_send"), limits(&[0]));
    }

    #[test]
    fn seed_denies_everything_else() {
        let policy = load_policy(SEED.as_bytes()).unwrap();
        assert_eq!(
            reason(decide(&policy, Some("a"), "wechat_mass_delete")),
            UNLISTED_UNDER_DEFAULT_DENY
        );
        // Names are exact: no case folding, no trimming.
        assert!(matches!(
            decide(&policy, None, "WECHAT_MASS_SEND"),
            ToolDecision::Deny { .. }
        ));
        assert!(matches!(
            decide(&policy, None, "wechat_mass_send "),
            ToolDecision::Deny { .. }
        ));
    }

    #[test]
    fn explicit_deny_carries_its_reason() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","tools":{"wechat_mass_delete":{"action":"deny","reason":"deleting mass messages needs a human"},"x":{"action":"deny"}}}"#,
        )
        .unwrap();
        assert_eq!(
            reason(decide(&policy, None, "wechat_mass_delete")),
            "deleting mass messages needs a human"
        );
        assert_eq!(reason(decide(&policy, None, "x")), DENIED_WITHOUT_REASON);
        assert_eq!(decide(&policy, None, "anything_else"), limits(&[]));
    }

    const GRANTS: &str = r#"{"version":"1","default":"deny",
        "identity":{"sources":[{"header":"x-agent-id"}]},
        "tools":{
            "wechat_mass_send":{"limits":[{"counter":"server_sends","window":"minute","max":100,"scope":"global"}]},
            "wechat_get_followers":{},
            "wechat_mass_delete":{"action":"deny","reason":"never by an agent"}},
        "grants":{
            "marketing":{"identities":["mkt-bot","spiffe://cluster.local/ns/marketing/*"],
                "limits":[{"counter":"marketing_calls","window":"hour","max":500,"scope":"grant"}],
                "tools":{"wechat_mass_send":{"limits":[{"counter":"marketing_sends","window":"minute","max":30,"scope":"grant"}]},
                         "wechat_mass_preview":{},
                         "wechat_mass_delete":{},
                         "wechat_get_followers":{"action":"deny","reason":"marketing has its own CRM"}}},
            "readers":{"identities":["reader-*"]}}}"#;

    #[test]
    fn a_grant_lists_what_its_holders_may_call_with_all_limits() {
        let policy = load_policy(GRANTS.as_bytes()).unwrap();
        let id = |name: &str| policy.counters.iter().position(|c| c.name == name).unwrap();
        assert_eq!(
            decide(&policy, Some("mkt-bot"), "wechat_mass_send"),
            limits(&[
                id("server_sends"),
                id("marketing_calls"),
                id("marketing_sends")
            ])
        );
        // Listed only in the grant: the grant is what allows it under default deny.
        assert_eq!(
            decide(
                &policy,
                Some("spiffe://cluster.local/ns/marketing/sa/x"),
                "wechat_mass_preview"
            ),
            limits(&[id("marketing_calls")])
        );
        assert_eq!(
            reason(decide(&policy, Some("mkt-bot"), "wechat_get_followers")),
            "marketing has its own CRM"
        );
        assert_eq!(
            reason(decide(&policy, Some("mkt-bot"), "wechat_get_user_info")),
            "grant \"marketing\" (held by identity \"mkt-bot\") does not include this tool"
        );
    }

    #[test]
    fn grants_never_widen_past_a_server_wide_deny() {
        let policy = load_policy(GRANTS.as_bytes()).unwrap();
        assert_eq!(
            reason(decide(&policy, Some("mkt-bot"), "wechat_mass_delete")),
            "never by an agent"
        );
    }

    #[test]
    fn a_grant_without_a_tool_list_gets_the_server_wide_rules() {
        let policy = load_policy(GRANTS.as_bytes()).unwrap();
        assert_eq!(
            decide(&policy, Some("reader-7"), "wechat_get_followers"),
            limits(&[])
        );
        assert_eq!(
            reason(decide(&policy, Some("reader-7"), "wechat_mass_preview")),
            UNLISTED_UNDER_DEFAULT_DENY
        );
    }

    #[test]
    fn no_grant_under_default_deny_names_the_identity_and_the_grants() {
        let policy = load_policy(GRANTS.as_bytes()).unwrap();
        assert_eq!(
            reason(decide(&policy, Some("intruder"), "wechat_get_followers")),
            "identity \"intruder\" holds no grant on this server (grants: marketing, readers)"
        );
        assert_eq!(
            reason(decide(&policy, None, "wechat_get_followers")),
            "identity \"anonymous\" holds no grant on this server (grants: marketing, readers)"
        );
        // Under default allow, an identity without grant falls back to the server-wide rules.
        let open = load_policy(
            GRANTS
                .replacen(r#""default":"deny""#, r#""default":"allow""#, 1)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            decide(&open, Some("intruder"), "wechat_get_user_info"),
            limits(&[])
        );
    }

    #[test]
    fn secret_identities_are_named_by_hash_in_reasons() {
        let policy = load_policy(
            br#"{"version":"1","identity":{"sources":[{"header":"x-api-key","secret":true}]},"grants":{"g":{"identities":["k-1"]}}}"#,
        )
        .unwrap();
        let key = Identity {
            value: sha256_tag("sk-live-123"),
            secret: true,
            source: "header:x-api-key".into(),
        };
        let why = reason(decide_tool(
            &policy,
            &Caller::new(&policy, Some(&key)),
            "t",
            None,
            &mut |_| Ok(0),
        ));
        assert!(why.contains("sha256:") && !why.contains("sk-live"), "{why}");
    }

    #[test]
    fn a_hashed_key_grant_is_held_only_by_the_secret_source() {
        // The hash is in the policy for anyone to read: a plain header carrying it must not take
        // the key's grant.
        let hash = sha256_tag("sk-premium");
        let policy = load_policy(
            format!(
                r#"{{"version":"1","default":"deny","identity":{{"sources":[{{"header":"x-api-key","secret":true}},{{"header":"x-agent-id"}}]}},
                    "grants":{{"premium":{{"identities":["{hash}"],"tools":{{"wire_money":{{}}}}}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let key = Identity {
            value: hash.clone(),
            secret: true,
            source: "header:x-api-key".into(),
        };
        let posing = Identity {
            value: hash,
            secret: false,
            source: "header:x-agent-id".into(),
        };
        let call = |who: &Identity| {
            decide_tool(
                &policy,
                &Caller::new(&policy, Some(who)),
                "wire_money",
                None,
                &mut |_| Ok(0),
            )
        };
        assert_eq!(call(&key), limits(&[]));
        assert!(matches!(call(&posing), ToolDecision::Deny { .. }));
        // `sha256:*`, every key holder, likewise.
        let holders = load_policy(
            br#"{"version":"1","default":"deny","identity":{"sources":[{"header":"x-api-key","secret":true},{"header":"x-agent-id"}]},
                "grants":{"keys":{"identities":["sha256:*"],"tools":{"wire_money":{}}}}}"#,
        )
        .unwrap();
        let call = |who: &Identity| {
            decide_tool(
                &holders,
                &Caller::new(&holders, Some(who)),
                "wire_money",
                None,
                &mut |_| Ok(0),
            )
        };
        assert_eq!(call(&key), limits(&[]));
        assert!(matches!(call(&posing), ToolDecision::Deny { .. }));
    }

    #[test]
    fn a_grant_for_everyone_also_binds_anonymous_callers() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","grants":{"everyone":{"identities":["*"],"tools":{"safe":{}}}}}"#,
        )
        .unwrap();
        assert_eq!(decide(&policy, None, "safe"), limits(&[]));
        assert!(matches!(
            decide(&policy, None, "unsafe"),
            ToolDecision::Deny { .. }
        ));
        assert!(matches!(
            decide(&policy, Some("bob"), "unsafe"),
            ToolDecision::Deny { .. }
        ));
    }

    #[test]
    fn missing_identity_can_be_denied() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","identity":{"sources":[{"jwt_claim":"sub"},{"mtls":"uri_san"}],"missing":"deny"}}"#,
        )
        .unwrap();
        assert_eq!(
            reason(decide(&policy, None, "t")),
            "the caller has no identity (expected JWT claim sub or mTLS peer URI SAN)"
        );
        assert_eq!(decide(&policy, Some("x"), "t"), limits(&[]));
    }
}
