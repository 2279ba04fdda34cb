//! Allow or deny a request that a `resources`, `prompts` or `methods` block decides. These
//! blocks are server-wide: grants are about tools and play no part here.
//!
//! Precedence, first match wins:
//! 1. no identity and `identity.missing: deny` → denied;
//! 2. the deciding entry says `deny` → denied;
//! 3. no entry decides → the policy's `default`;
//! 4. the entry's rules, on the request's arguments (a resource request's `params`, a prompt's
//!    `arguments`), then every limit of the entry and its rules.
//!
//! In shadow mode (the policy's or the entry's) refusals are only reported.

use serde_json::Value;

use super::access::ToolDecision;
use crate::counters::CounterError;
use crate::policy::caller::Caller;
use crate::policy::identity::{missing_reason, MissingIdentity};
use crate::policy::rules::{self, Charge, RulesOutcome};
use crate::policy::targets::TargetRule;
use crate::policy::{CounterId, DefaultAction, Policy};
use crate::protocol::jsonrpc::{BodyError, Message, MessageKind, PROMPTS_GET};
use crate::protocol::listing::ListingKind;
use crate::target::Target;

/// What the policy does with a message other than a tools/call.
#[derive(Debug)]
pub(crate) enum Governed<'p> {
    /// Nothing: it passes.
    Passes,
    /// It decides it, but the message does not name what it asks for: refused.
    Invalid(BodyError),
    /// It decides `target` by `rule` (`None`: by the policy's `default`).
    Decided {
        target: Target,
        rule: Option<&'p TargetRule>,
    },
}

/// What decides `message`: the `resources` or `prompts` block for what they cover, else the
/// `methods` block, else nothing.
pub(crate) fn governed<'p>(policy: &'p Policy, message: &Message) -> Governed<'p> {
    let targets = &policy.targets;
    match &message.kind {
        MessageKind::Named { method, name } => {
            let prompt = method == PROMPTS_GET;
            let block = if prompt {
                targets.prompts.is_some()
            } else {
                targets.resources.is_some()
            };
            match (block, name) {
                (false, _) => by_method(policy, method),
                (true, Err(e)) => Governed::Invalid(e.clone()),
                (true, Ok(name)) if prompt => Governed::Decided {
                    target: Target::Prompt(name.clone()),
                    rule: targets.prompt(name),
                },
                (true, Ok(uri)) => Governed::Decided {
                    target: Target::Resource {
                        method: method.clone(),
                        uri: uri.clone(),
                    },
                    rule: targets.resource(uri).map(|entry| &entry.rule),
                },
            }
        }
        MessageKind::Other { method } => by_method(policy, method),
        MessageKind::ToolCall { .. } | MessageKind::Response | MessageKind::Invalid { .. } => {
            Governed::Passes
        }
    }
}

fn by_method<'p>(policy: &'p Policy, method: &str) -> Governed<'p> {
    if !policy.targets.methods_decide(method) {
        return Governed::Passes;
    }
    Governed::Decided {
        target: Target::Method(method.to_owned()),
        rule: policy.targets.method(method),
    }
}

/// The decision on `target`, which `rule` decides (`None`: the default), with `arguments` for
/// its rules; and the policy element that decided, as a JSON path (`resources[2].rules[0]`,
/// `prompts.draft`, `default`, …).
pub fn decide_target(
    policy: &Policy,
    caller: &Caller,
    target: &Target,
    rule: Option<&TargetRule>,
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
) -> (ToolDecision, String) {
    let shadow = policy.shadow || rule.is_some_and(|r| r.shadow);
    let (limits, access_path) = match access(policy, caller, target.member(), rule) {
        Ok(allowed) => allowed,
        Err((reason, path)) if shadow => return only_reported(Vec::new(), reason, path),
        Err((reason, path)) => return (deny(reason), path),
    };
    let Some(rule) = rule else {
        return (allowed(limits, Vec::new()), access_path);
    };
    let in_order: Vec<&rules::Rule> = rule.rules.iter().collect();
    let rule_path = |index: usize| format!("{}.rules[{index}]", rule.path);
    match rules::evaluate(&in_order, arguments, counter_value, policy.fail_open) {
        RulesOutcome::Deny {
            reason,
            rule: index,
            unreadable,
        } => {
            if shadow {
                return only_reported(limits, reason, rule_path(index));
            }
            (ToolDecision::Deny { reason, unreadable }, rule_path(index))
        }
        RulesOutcome::Pass {
            mut charges,
            shadow_denials,
            ..
        } => {
            let mut all = limits;
            all.append(&mut charges);
            let shadow_denials = shadow_denials
                .into_iter()
                .map(|(reason, index)| (reason, rule_path(index)))
                .collect();
            (allowed(all, shadow_denials), access_path)
        }
    }
}

/// Whether an entry named `name` of a listing of `kind` stays in the answer: the caller could
/// request it (its rules are not judged here), or shadow mode keeps everything listed.
pub fn may_list(policy: &Policy, caller: &Caller, kind: ListingKind, name: &str) -> bool {
    let (what, rule) = match kind {
        ListingKind::Resources | ListingKind::ResourceTemplates => (
            "resource",
            policy.targets.resource(name).map(|entry| &entry.rule),
        ),
        ListingKind::Prompts => ("prompt", policy.targets.prompt(name)),
        // Tools are listed by `tools_list`.
        ListingKind::Tools => return true,
    };
    policy.shadow || rule.is_some_and(|r| r.shadow) || access(policy, caller, what, rule).is_ok()
}

/// Who may request what (`what`: `resource`, `prompt`, `method`), before any rule: the limits
/// to charge and the path of what allowed it; or why not, and what refused.
fn access(
    policy: &Policy,
    caller: &Caller,
    what: &str,
    rule: Option<&TargetRule>,
) -> Result<(Vec<Charge>, String), (String, String)> {
    if caller.identity.is_none() && policy.missing_identity == MissingIdentity::Deny {
        let why = missing_reason(&policy.identity_sources);
        return Err((why, "identity.missing".to_owned()));
    }
    match (rule, policy.default_action) {
        (Some(rule), _) if rule.deny => {
            let why = rule
                .reason
                .clone()
                .unwrap_or_else(|| format!("this {what} is denied by the policy"));
            Err((why, format!("{}.action", rule.path)))
        }
        (Some(rule), _) => Ok((charges(&rule.limits), rule.path.clone())),
        (None, DefaultAction::Allow) => Ok((Vec::new(), "default".to_owned())),
        (None, DefaultAction::Deny) => Err((unlisted(what), "default".to_owned())),
    }
}

/// Why the default denies a request no entry decides.
fn unlisted(what: &str) -> String {
    if what == "resource" {
        "the policy denies every resource no entry of \"resources\" matches (default: deny)"
            .to_owned()
    } else {
        format!("the policy denies every {what} it does not list (default: deny)")
    }
}

fn charges(limits: &[CounterId]) -> Vec<Charge> {
    limits
        .iter()
        .map(|counter| Charge {
            counter: *counter,
            amount: 1,
            reason: None,
            shadow: false,
        })
        .collect()
}

fn allowed(charges: Vec<Charge>, shadow_denials: Vec<(String, String)>) -> ToolDecision {
    ToolDecision::Allow {
        charges,
        shadow_denials,
        approval: None,
    }
}

fn deny(reason: String) -> ToolDecision {
    ToolDecision::Deny {
        reason,
        unreadable: None,
    }
}

/// A refusal in shadow mode: allowed with `charges`, the refusal (`reason`, by the element at
/// `path`) only reported.
fn only_reported(charges: Vec<Charge>, reason: String, path: String) -> (ToolDecision, String) {
    let shadow_denials = vec![(reason, path.clone())];
    (allowed(charges, shadow_denials), path)
}
