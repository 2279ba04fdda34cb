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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::decision::Decision;
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    use crate::reply::{CANNOT_ENFORCE, HEADER_MISMATCH, POLICY_DENIED, RATE_LIMITED};
    use crate::request::evaluate::{evaluate, RequestMeta};
    use crate::request::outcome::{Outcome, Verdict};
    use crate::test_support::{done, test, MemoryStore};

    const POLICY: &str = r#"{"version":"1","default":"deny",
        "tools":{"send":{}},
        "resources":[
            {"uri":"wechat://account/profile"},
            {"prefix":"wechat://followers/","limits":[{"counter":"follower_reads","window":"minute","max":2,"scope":"identity"}]},
            {"glob":"wechat://internal/**","action":"deny","reason":"internal data is not for agents"},
            {"prefix":"wechat://drafts/","rules":[{"name":"plain names","conditions":[{"path":"args.uri","op":"regex","value":"^wechat://drafts/[a-z]+$"}]}]},
            {"prefix":"wechat://trial/","shadow":true,"action":"deny","reason":"trying it out"}],
        "prompts":{"draft_campaign":{"rules":[{"name":"tone","conditions":[{"path":"args.tone","op":"in","value":["warm","formal"]}]}]},
                   "apology_notice":{"action":"deny","reason":"legal writes these"}},
        "methods":{"completion/complete":{"action":"deny","reason":"no completions here"},"logging/setLevel":{}}}"#;

    const NOW: u64 = 1_795_342_542;

    fn policy(text: &str) -> Policy {
        let mut policy = load_policy(text.as_bytes()).unwrap();
        policy.prepare_counter_keys("wechat");
        policy
    }

    fn run(policy: &Policy, store: &mut MemoryStore, agent: Option<&str>, body: &str) -> Outcome {
        let identity = agent.map(Identity::new);
        let meta = RequestMeta {
            namespace: "wechat",
            identity: identity.as_ref(),
            now: NOW,
            ..Default::default()
        };
        done(evaluate(policy, body.as_bytes(), &meta, store))
    }

    fn request(id: u64, method: &str, params: Value) -> String {
        json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
    }

    fn read(id: u64, uri: &str) -> String {
        request(id, "resources/read", json!({"uri": uri}))
    }

    fn error(outcome: &Outcome) -> Value {
        match &outcome.verdict {
            Verdict::Reply(reply) => {
                serde_json::from_str::<Value>(&reply.body).unwrap()["error"].clone()
            }
            Verdict::Forward => panic!("forwarded: {outcome:?}"),
        }
    }

    /// (decision, rule) of the only record.
    fn decided(outcome: &Outcome) -> (String, String) {
        assert_eq!(outcome.calls.len(), 1, "{outcome:?}");
        let call = &outcome.calls[0];
        (call.decision.as_str().to_owned(), call.rule.clone())
    }

    #[test]
    fn the_first_matching_resource_entry_decides() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        for (uri, decision, rule) in [
            ("wechat://account/profile", "allowed", "resources[0]"),
            ("wechat://followers/o1", "allowed", "resources[1]"),
            (
                "wechat://internal/api-keys",
                "denied",
                "resources[2].action",
            ),
            ("wechat://internal/a/b", "denied", "resources[2].action"),
            ("wechat://drafts/spring", "allowed", "resources[3]"),
            (
                "wechat://drafts/../internal",
                "denied",
                "resources[3].rules[0]",
            ),
            ("wechat://trial/x", "would_deny", "resources[4].action"),
            ("wechat://account/profile/photo", "denied", "default"),
        ] {
            let outcome = run(&policy, &mut store, Some("a"), &read(1, uri));
            assert_eq!(
                decided(&outcome),
                (decision.to_owned(), rule.to_owned()),
                "{uri}"
            );
        }
    }

    #[test]
    fn a_denied_resource_is_answered_like_a_denied_tool() {
        let policy = policy(POLICY);
        let outcome = run(
            &policy,
            &mut MemoryStore::default(),
            Some("a"),
            &read(7, "wechat://internal/api-keys"),
        );
        assert_eq!(
            error(&outcome),
            json!({"code": POLICY_DENIED,
                "message": "Resource \"wechat://internal/api-keys\" is not allowed by policy: internal data is not for agents",
                "data": {"decision": "denied", "reason": "internal data is not for agents",
                         "resource": "wechat://internal/api-keys"}})
        );
        let unmatched = run(
            &policy,
            &mut MemoryStore::default(),
            Some("a"),
            &read(8, "wechat://elsewhere"),
        );
        assert_eq!(
            error(&unmatched)["data"]["reason"],
            "the policy denies every resource no entry of \"resources\" matches (default: deny)"
        );
    }

    #[test]
    fn prompts_are_decided_by_name_and_their_arguments() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        let get = |name: &str, arguments: Value| {
            request(
                3,
                "prompts/get",
                json!({"name": name, "arguments": arguments}),
            )
        };
        let denied = run(&policy, &mut store, None, &get("apology_notice", json!({})));
        assert_eq!(
            decided(&denied),
            ("denied".into(), "prompts.apology_notice.action".into())
        );
        assert_eq!(
            error(&denied)["message"],
            "Prompt \"apology_notice\" is not allowed by policy: legal writes these"
        );
        assert_eq!(error(&denied)["data"]["prompt"], "apology_notice");
        let warm = run(
            &policy,
            &mut store,
            None,
            &get("draft_campaign", json!({"tone": "warm"})),
        );
        assert_eq!(
            decided(&warm),
            ("allowed".into(), "prompts.draft_campaign".into())
        );
        let rude = run(
            &policy,
            &mut store,
            None,
            &get("draft_campaign", json!({"tone": "rude"})),
        );
        assert_eq!(
            decided(&rude),
            ("denied".into(), "prompts.draft_campaign.rules[0]".into())
        );
        let unnamed = run(&policy, &mut store, None, &get("other", json!({})));
        assert_eq!(
            error(&unnamed)["data"]["reason"],
            "the policy denies every prompt it does not list (default: deny)"
        );
    }

    #[test]
    fn other_methods_are_decided_by_the_methods_block_or_the_default() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        let complete = run(
            &policy,
            &mut store,
            None,
            &request(1, "completion/complete", json!({})),
        );
        assert_eq!(
            decided(&complete),
            (
                "denied".into(),
                r#"methods["completion/complete"].action"#.into()
            )
        );
        assert_eq!(
            error(&complete)["message"],
            "Method \"completion/complete\" is not allowed by policy: no completions here"
        );
        assert_eq!(error(&complete)["data"]["method"], "completion/complete");
        let level = run(
            &policy,
            &mut store,
            None,
            &request(2, "logging/setLevel", json!({"level": "info"})),
        );
        assert_eq!(
            decided(&level),
            ("allowed".into(), r#"methods["logging/setLevel"]"#.into())
        );
        // Under default deny, a methods block denies every method it does not name.
        for method in ["tasks/list", "made/up"] {
            let outcome = run(&policy, &mut store, None, &request(3, method, json!({})));
            assert_eq!(decided(&outcome), ("denied".into(), "default".into()));
        }
    }

    #[test]
    fn what_keeps_sessions_working_always_passes() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        for body in [
            request(1, "initialize", json!({"protocolVersion": "2025-06-18"})),
            request(2, "ping", json!({})),
            request(3, "tools/list", json!({})),
            request(4, "resources/list", json!({})),
            request(5, "resources/templates/list", json!({})),
            request(6, "prompts/list", json!({})),
            request(
                7,
                "resources/unsubscribe",
                json!({"uri": "wechat://internal/x"}),
            ),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
            json!({"jsonrpc":"2.0","id":8,"result":{}}).to_string(),
        ] {
            let outcome = run(&policy, &mut store, None, &body);
            assert_eq!(outcome.verdict, Verdict::Forward, "{body}");
            assert!(outcome.calls.is_empty(), "{body}");
        }
    }

    #[test]
    fn without_the_blocks_nothing_changes() {
        let policy = policy(r#"{"version":"1","default":"deny"}"#);
        let mut store = MemoryStore::default();
        for body in [
            read(1, "wechat://internal/api-keys"),
            request(2, "resources/read", json!({})),
            request(3, "prompts/get", json!({"name": 5})),
            request(4, "completion/complete", json!({})),
        ] {
            let outcome = run(&policy, &mut store, None, &body);
            assert_eq!(outcome.verdict, Verdict::Forward, "{body}");
            assert!(outcome.calls.is_empty(), "{body}");
        }
        // A methods block alone decides resources and prompts by their method.
        let methods = policy_with(r#""methods":{"prompts/get":{}}"#);
        let outcome = run(&methods, &mut store, None, &read(5, "wechat://x"));
        assert_eq!(decided(&outcome), ("denied".into(), "default".into()));
        assert_eq!(
            error(&outcome)["message"],
            "Method \"resources/read\" is not allowed by policy: the policy denies every method it does not list (default: deny)"
        );
        let outcome = run(
            &methods,
            &mut store,
            None,
            &request(6, "prompts/get", json!({"name": "p"})),
        );
        assert_eq!(
            decided(&outcome),
            ("allowed".into(), r#"methods["prompts/get"]"#.into())
        );
    }

    fn policy_with(blocks: &str) -> Policy {
        policy(&format!(r#"{{"version":"1","default":"deny",{blocks}}}"#))
    }

    #[test]
    fn a_request_that_names_nothing_is_invalid_params_where_the_policy_decides_it() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        for body in [
            request(1, "resources/read", json!({})),
            request(1, "resources/subscribe", json!({"uri": 1})),
            request(1, "prompts/get", json!({"arguments": {}})),
        ] {
            let outcome = run(&policy, &mut store, None, &body);
            let error = error(&outcome);
            assert_eq!(error["code"], -32602, "{body}");
            assert_eq!(error["data"]["decision"], "invalid");
            assert!(outcome.calls.is_empty());
        }
    }

    #[test]
    fn a_missing_identity_is_refused_when_the_policy_says_so() {
        let policy = policy_with(
            r#""identity":{"sources":[{"header":"x-agent-id"}],"missing":"deny"},
               "resources":[{"glob":"**"}],"methods":{"logging/setLevel":{}}"#,
        );
        let mut store = MemoryStore::default();
        let anonymous = run(&policy, &mut store, None, &read(1, "wechat://a"));
        assert_eq!(
            decided(&anonymous),
            ("denied".into(), "identity.missing".into())
        );
        assert_eq!(
            error(&anonymous)["data"]["reason"],
            "the caller has no identity (expected header x-agent-id)"
        );
        let level = request(2, "logging/setLevel", json!({}));
        assert_eq!(
            decided(&run(&policy, &mut store, None, &level)).1,
            "identity.missing"
        );
        assert_eq!(
            decided(&run(&policy, &mut store, Some("a"), &level)),
            ("allowed".into(), r#"methods["logging/setLevel"]"#.into())
        );
        // Grants are about tools: a caller without one still reads what the blocks allow.
        let granted = policy_with(
            r#""grants":{"g":{"identities":["a"],"tools":{"send":{}}}},"resources":[{"glob":"**"}]"#,
        );
        let outcome = run(&granted, &mut store, Some("stranger"), &read(3, "x://y"));
        assert_eq!(decided(&outcome), ("allowed".into(), "resources[0]".into()));
    }

    #[test]
    fn shadow_mode_reports_what_it_would_refuse() {
        let whole = policy(&POLICY.replacen(
            r#""default":"deny""#,
            r#""default":"deny","shadow":true"#,
            1,
        ));
        let mut store = MemoryStore::default();
        for body in [
            read(1, "wechat://internal/x"),
            request(2, "prompts/get", json!({"name": "apology_notice"})),
            request(3, "completion/complete", json!({})),
            request(
                4,
                "prompts/get",
                json!({"name": "draft_campaign", "arguments": {"tone": "rude"}}),
            ),
        ] {
            let outcome = run(&whole, &mut store, None, &body);
            assert_eq!(outcome.verdict, Verdict::Forward, "{body}");
            assert_eq!(outcome.calls[0].decision, Decision::WouldDeny, "{body}");
        }
    }

    #[test]
    fn limits_are_charged_like_a_tool_calls() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        for id in 1..=2 {
            let outcome = run(
                &policy,
                &mut store,
                Some("a"),
                &read(id, "wechat://followers/o1"),
            );
            assert_eq!(outcome.verdict, Verdict::Forward);
            assert_eq!(outcome.reservations.len(), 1, "held until the answer");
        }
        let outcome = run(
            &policy,
            &mut store,
            Some("a"),
            &read(3, "wechat://followers/o2"),
        );
        let error = error(&outcome);
        assert_eq!(error["code"], RATE_LIMITED);
        assert_eq!(error["data"]["resource"], "wechat://followers/o2");
        assert_eq!(error["data"]["counter"], "follower_reads");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("Resource \"wechat://followers/o2\" is rate limited by policy: counter \"follower_reads\" allows 2 call(s) per minute (identity scope)"),
            "{error}"
        );
        assert_eq!(
            decided(&outcome),
            ("rate_limited".into(), "resources[1]".into())
        );
        match &outcome.verdict {
            Verdict::Reply(reply) => {
                assert!(reply.headers.iter().any(|(k, _)| *k == "retry-after"))
            }
            Verdict::Forward => panic!("refused"),
        }
        // Another identity has its own budget.
        let other = run(
            &policy,
            &mut store,
            Some("b"),
            &read(4, "wechat://followers/o1"),
        );
        assert_eq!(other.verdict, Verdict::Forward);
    }

    #[test]
    fn a_batch_with_a_refused_resource_is_refused_whole() {
        let policy = policy(POLICY);
        let mut store = MemoryStore::default();
        let batch = format!(
            "[{},{},{}]",
            read(1, "wechat://followers/o1"),
            read(2, "wechat://internal/x"),
            request(3, "ping", json!({}))
        );
        let outcome = run(&policy, &mut store, Some("a"), &batch);
        let Verdict::Reply(reply) = &outcome.verdict else {
            panic!("refused")
        };
        let answers: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(answers[0]["error"]["data"]["decision"], "batch_refused");
        assert_eq!(
            answers[1]["error"]["data"]["resource"],
            "wechat://internal/x"
        );
        let decisions: Vec<&str> = outcome.calls.iter().map(|c| c.decision.as_str()).collect();
        assert_eq!(decisions, ["batch_refused", "denied"]);
        // Nothing was charged.
        let again = run(
            &policy,
            &mut store,
            Some("a"),
            &read(4, "wechat://followers/o1"),
        );
        assert_eq!(again.verdict, Verdict::Forward);
        let again = run(
            &policy,
            &mut store,
            Some("a"),
            &read(5, "wechat://followers/o1"),
        );
        assert_eq!(again.verdict, Verdict::Forward);
    }

    #[test]
    fn mcp_name_must_repeat_what_the_policy_decides_on() {
        let policy = policy(POLICY);
        let with_name = |name: &str, body: &str| {
            let meta = RequestMeta {
                namespace: "wechat",
                mcp_name: Some(name),
                now: NOW,
                ..Default::default()
            };
            done(evaluate(
                &policy,
                body.as_bytes(),
                &meta,
                &mut MemoryStore::default(),
            ))
        };
        let outcome = with_name("wechat://account/profile", &read(1, "wechat://internal/x"));
        assert_eq!(error(&outcome)["code"], HEADER_MISMATCH);
        assert_eq!(
            error(&outcome)["message"],
            "Header mismatch: Mcp-Name header is \"wechat://account/profile\" but the body names resource \"wechat://internal/x\""
        );
        let prompt = request(2, "prompts/get", json!({"name": "apology_notice"}));
        assert_eq!(
            error(&with_name("draft_campaign", &prompt))["code"],
            HEADER_MISMATCH
        );
        let agreeing = with_name(
            "wechat://account/profile",
            &read(3, "wechat://account/profile"),
        );
        assert_eq!(agreeing.verdict, Verdict::Forward);
        // Where no block decides by the name, the header is not compared (as before).
        let open = policy_with(r#""tools":{}"#);
        let meta = RequestMeta {
            mcp_name: Some("other"),
            ..Default::default()
        };
        let outcome = done(evaluate(
            &open,
            read(4, "x").as_bytes(),
            &meta,
            &mut MemoryStore::default(),
        ));
        assert_eq!(outcome.verdict, Verdict::Forward);
    }

    #[test]
    fn an_unreadable_rule_counter_refuses_under_fail_closed() {
        let policy = policy_with(
            r#""resources":[{"glob":"**","rules":[{"name":"few","rate_limit":"1/minute"}]}]"#,
        );
        let mut broken = MemoryStore::default();
        broken.fail = true;
        let outcome = run(&policy, &mut broken, None, &read(1, "x://y"));
        let error = error(&outcome);
        assert_eq!(error["code"], CANNOT_ENFORCE);
        assert_eq!(error["data"]["resource"], "x://y");
        assert!(error["message"].as_str().unwrap().starts_with(
            "Resource \"x://y\" was not requested: the policy filter could not check counter"
        ));
    }

    #[test]
    fn listings_keep_what_the_caller_could_request() {
        let open = policy(r#"{"version":"1","default":"allow","resources":[],"prompts":{}}"#);
        let policy = policy(POLICY);
        let caller = Caller::new(&policy, None);
        let kept = |kind, name| may_list(&policy, &caller, kind, name);
        assert!(kept(ListingKind::Resources, "wechat://account/profile"));
        assert!(
            kept(ListingKind::Resources, "wechat://drafts/x"),
            "rules are not judged"
        );
        assert!(
            kept(ListingKind::Resources, "wechat://trial/x"),
            "shadow keeps it"
        );
        assert!(!kept(ListingKind::Resources, "wechat://internal/x"));
        assert!(!kept(ListingKind::Resources, "wechat://unmatched"));
        assert!(kept(
            ListingKind::ResourceTemplates,
            "wechat://followers/{openid}"
        ));
        assert!(!kept(
            ListingKind::ResourceTemplates,
            "wechat://internal/{key}"
        ));
        assert!(kept(ListingKind::Prompts, "draft_campaign"));
        assert!(!kept(ListingKind::Prompts, "apology_notice"));
        assert!(!kept(ListingKind::Prompts, "unlisted"));
        let caller = Caller::new(&open, None);
        assert!(may_list(&open, &caller, ListingKind::Prompts, "anything"));
    }
}
