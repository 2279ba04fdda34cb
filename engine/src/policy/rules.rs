//! Rules on a call's arguments and on counters, with the meanings of PolicyLayer's Intercept
//! rule language: `evaluate` rules pass only if all their conditions hold, `deny` rules always
//! deny, the first failing rule decides, and a rule's `state` counter is charged (by a fixed
//! increment or by an argument, e.g. the number of recipients) only once every rule passed.

use serde_json::Value;

use super::counter::CounterId;
use crate::counters::CounterError;

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub deny: bool,
    /// `"action": "require_approval"`: when every condition holds, the call needs a human's
    /// approval (this rule never denies).
    pub approval: bool,
    pub conditions: Vec<Condition>,
    pub on_deny: Option<String>,
    /// A shadow rule that fails is reported as "would deny" and does not stop the call.
    pub shadow: bool,
    /// What this rule's `state` block charges when the call goes through.
    pub charge: Option<RuleCharge>,
}

#[derive(Debug, Clone)]
pub struct RuleCharge {
    /// `None` when the rule has no `lt`/`lte` limit on its counter: nothing is counted (as in
    /// Intercept), but the amount is still checked, as Intercept checks it.
    pub counter: Option<CounterId>,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Fixed(u64),
    /// `increment_from: "args.recipients"`: the argument's value, a fraction rounded up.
    FromArgument(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Condition {
    pub subject: Subject,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// `args.a.b`: object keys below the call's `arguments`.
    Argument(Vec<String>),
    /// `state.<scope>.<counter>`: the counter's value before this call (0 if it never counts).
    Counter(Option<CounterId>),
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
    Regex(regex_lite::Regex),
    Contains(Value),
    Exists(bool),
}

/// What a passing set of rules charges: `amount` on `counter`, refused with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub counter: CounterId,
    pub amount: u64,
    pub reason: Option<String>,
    /// Charged by a rule in shadow mode: counted as usual, but running out is only reported.
    pub shadow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesOutcome {
    /// The call may go on; `shadow_denials` are (reason, rule index) of failing shadow rules.
    Pass {
        charges: Vec<Charge>,
        shadow_denials: Vec<(String, usize)>,
        /// Index of the first `require_approval` rule whose conditions all hold.
        approval: Option<usize>,
    },
    /// `rule`: index of the deciding rule in the list evaluated; `unreadable`: the counter its
    /// condition could not read, when that is why it denied (the filter cannot enforce it).
    Deny {
        reason: String,
        rule: usize,
        unreadable: Option<Unreadable>,
    },
}

/// A counter a condition could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub counter: CounterId,
    pub error: CounterError,
}

fn lookup<'v>(arguments: Option<&'v Value>, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(arguments?, |value, key| value.as_object()?.get(key))
}

/// Whether the path is missing only in this spelling: some level lacks the exact key but holds
/// one differing only in case (`Bcc` for `bcc`), which a server that folds case (Go) binds. A
/// rule must not count such a value as absent (`exists: false` would pass).
fn present_in_another_case(arguments: Option<&Value>, path: &[String]) -> bool {
    let mut value = arguments;
    for key in path {
        let Some(object) = value.and_then(Value::as_object) else {
            return false;
        };
        match object.get(key) {
            Some(next) => value = Some(next),
            None => {
                return object
                    .keys()
                    .any(|other| crate::json::strict::same_folded(other, key))
            }
        }
    }
    false
}

/// Intercept compares numbers as numbers and everything else by its text (`"5"` equals `5`).
fn loosely_equal(actual: &Value, expected: &Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => text_of(actual) == text_of(expected),
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a server could read `actual` as meeting `op` although it does not as sent: a
/// number written as text where numbers are compared (lenient servers turn `"5000"` into
/// 5000), a non-text for `regex`, neither text nor list for `contains`.
fn undecidable(op: &Op, actual: Option<&Value>) -> bool {
    let Some(actual) = actual.filter(|v| !v.is_null()) else {
        return false;
    };
    match op {
        // serde_json reads it: its number parser is in the filter already (core's is not).
        Op::Lt(_) | Op::Lte(_) | Op::Gt(_) | Op::Gte(_) => actual
            .as_str()
            .is_some_and(|text| serde_json::from_str::<serde_json::Number>(text.trim()).is_ok()),
        Op::Regex(_) => !actual.is_string(),
        Op::Contains(_) => !(actual.is_string() || actual.is_array()),
        _ => false,
    }
}

fn holds(op: &Op, actual: Option<&Value>) -> bool {
    let present = actual.filter(|v| !v.is_null());
    let Some(actual) = present else {
        // Every operator but `exists` fails on a missing (or null) value: the rule denies.
        return matches!(op, Op::Exists(false));
    };
    let number = actual.as_f64();
    match op {
        Op::Exists(expected) => *expected,
        Op::Eq(v) => loosely_equal(actual, v),
        Op::Neq(v) => !loosely_equal(actual, v),
        Op::In(list) => list.iter().any(|v| loosely_equal(actual, v)),
        Op::NotIn(list) => !list.iter().any(|v| loosely_equal(actual, v)),
        Op::Lt(v) => number.is_some_and(|n| n < *v),
        Op::Lte(v) => number.is_some_and(|n| n <= *v),
        Op::Gt(v) => number.is_some_and(|n| n > *v),
        Op::Gte(v) => number.is_some_and(|n| n >= *v),
        Op::Regex(re) => actual.as_str().is_some_and(|s| re.is_match(s)),
        Op::Contains(v) => match actual {
            Value::String(s) => v.as_str().is_some_and(|needle| s.contains(needle)),
            Value::Array(items) => items.iter().any(|item| loosely_equal(item, v)),
            _ => false,
        },
    }
}

/// Evaluate `rules` in order for a call with `arguments`. `counter_value` reads a counter's
/// current value; if it fails, conditions on it fail (the rule denies: fail closed), unless
/// `fail_open` (the policy's `failure_mode: open`), where they hold (the call goes through).
pub fn evaluate(
    rules: &[&Rule],
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
    fail_open: bool,
) -> RulesOutcome {
    let mut shadow_denials = Vec::new();
    let approval = match check_conditions(
        rules,
        arguments,
        counter_value,
        fail_open,
        &mut shadow_denials,
    ) {
        Ok(approval) => approval,
        Err(denied) => return denied,
    };
    match charges(rules, arguments, &mut shadow_denials) {
        Ok(charges) => RulesOutcome::Pass {
            charges,
            shadow_denials,
            approval,
        },
        Err(denied) => denied,
    }
}

/// Each rule's conditions, in order: `Err` is the first denial that is not in shadow mode
/// (those are added to `shadow_denials`); `Ok` the index of the first `require_approval` rule
/// whose conditions all hold, if any.
fn check_conditions(
    rules: &[&Rule],
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
    fail_open: bool,
    shadow_denials: &mut Vec<(String, usize)>,
) -> Result<Option<usize>, RulesOutcome> {
    let mut approval = None;
    for (index, rule) in rules.iter().enumerate() {
        let (all_hold, unreadable) = conditions_hold(rule, arguments, counter_value, fail_open);
        if rule.approval {
            if all_hold && approval.is_none() {
                approval = Some(index);
            }
            continue;
        }
        let denied = rule.deny || !all_hold;
        if denied {
            let reason = rule
                .on_deny
                .clone()
                .unwrap_or_else(|| format!("Denied by rule \"{}\"", rule.name));
            if rule.shadow {
                shadow_denials.push((reason, index));
                continue;
            }
            return Err(RulesOutcome::Deny {
                reason,
                rule: index,
                unreadable,
            });
        }
    }
    Ok(approval)
}

/// What the rules charge once every rule passed: `Err` is the first amount that cannot be
/// charged, outside shadow mode (those are added to `shadow_denials`). Every rule's amount is
/// checked, also where no limit makes the counter count.
fn charges(
    rules: &[&Rule],
    arguments: Option<&Value>,
    shadow_denials: &mut Vec<(String, usize)>,
) -> Result<Vec<Charge>, RulesOutcome> {
    let mut charges = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let Some(charge) = &rule.charge else { continue };
        let amount = match charged_amount(rule, &charge.amount, arguments) {
            Ok(amount) => amount,
            Err(reason) if rule.shadow => {
                shadow_denials.push((reason, index));
                continue;
            }
            Err(reason) => {
                return Err(RulesOutcome::Deny {
                    reason,
                    rule: index,
                    unreadable: None,
                })
            }
        };
        let Some(counter) = charge.counter else {
            continue;
        };
        charges.push(Charge {
            counter,
            amount,
            shadow: rule.shadow,
            reason: Some(
                rule.on_deny
                    .clone()
                    .unwrap_or_else(|| format!("Rate limit exceeded for {}", rule.name)),
            ),
        });
    }
    Ok(charges)
}

/// Whether every condition of `rule` holds, checked in order up to the first that fails; and
/// the counter that could not be read, when that is why a condition failed.
fn conditions_hold(
    rule: &Rule,
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, CounterError>,
    fail_open: bool,
) -> (bool, Option<Unreadable>) {
    let mut unreadable = None;
    let all_hold = rule
        .conditions
        .iter()
        .all(|condition| match &condition.subject {
            // A value we cannot judge as the server will read it (another case of
            // the key, a text where a number is compared) fails an evaluate rule's
            // condition (deny), and meets an approval rule's (ask): never let through.
            Subject::Argument(path) => {
                let value = lookup(arguments, path);
                let unsure =
                    present_in_another_case(arguments, path) || undecidable(&condition.op, value);
                if rule.approval {
                    unsure || holds(&condition.op, value)
                } else {
                    !present_in_another_case(arguments, path) && holds(&condition.op, value)
                }
            }
            Subject::Counter(None) => holds(&condition.op, Some(&Value::from(0))),
            // An unreadable counter: an approval rule asks; otherwise the condition holds
            // under `fail_open` and fails (the filter cannot enforce the rule) if not.
            Subject::Counter(Some(id)) => match counter_value(*id) {
                Ok(n) => holds(&condition.op, Some(&Value::from(n))),
                Err(_) if rule.approval || fail_open => true,
                Err(error) => {
                    unreadable = Some(Unreadable {
                        counter: *id,
                        error,
                    });
                    false
                }
            },
        });
    (all_hold, unreadable)
}

/// What a passing call costs `rule`'s counter; `Err` is the reason it is refused instead.
fn charged_amount(rule: &Rule, amount: &Amount, arguments: Option<&Value>) -> Result<u64, String> {
    let path = match amount {
        Amount::Fixed(n) => return Ok(*n),
        Amount::FromArgument(path) => path,
    };
    // A number is charged as is (a fraction rounded up); a list by its length, e.g. the
    // recipients of a mass send (an extension: Intercept accepts numbers only).
    match lookup(arguments, path).and_then(|v| match v {
        Value::Array(items) => Some(items.len() as f64),
        other => other.as_f64(),
    }) {
        // A fraction is rounded up: 0.99 a thousand times must not cost nothing
        // (Intercept truncates; charged, never undercharged).
        Some(n) if n >= 0.0 => Ok(n.ceil() as u64),
        // Intercept lets a negative amount lower the counter; that would be a way to
        // buy back budget, so it is refused here, as is a missing or non-numeric one.
        _ => Err(format!(
            "rule \"{}\" charges its counter by args.{}, which must be a number of at least 0",
            rule.name,
            path.join(".")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::caller::Caller;
    use crate::request::access::{decide_tool, ToolDecision};
    use crate::test_support::test;
    use serde_json::json;

    /// Decide `tool` with `arguments` under a policy whose tool `t` has one condition.
    fn check(op: &str, value: Value, arguments: Value) -> bool {
        let policy = load_policy(
            json!({"version":"1","default":"allow","tools":{"t":{"rules":[
                {"name":"r","conditions":[{"path":"args.a.b","op":op,"value":value}],"on_deny":"no"}]}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let caller = Caller::new(&policy, None);
        matches!(
            decide_tool(&policy, &caller, "t", Some(&arguments), &mut |_| Ok(0)),
            ToolDecision::Allow { .. }
        )
    }

    fn with_b(b: Value) -> Value {
        json!({"a": {"b": b}})
    }

    #[test]
    fn eq_and_neq_compare_numbers_as_numbers_and_the_rest_as_text() {
        assert!(check("eq", json!(5), with_b(json!(5.0))));
        assert!(
            check("eq", json!(5), with_b(json!("5"))),
            "Intercept's loose equality"
        );
        assert!(check("eq", json!("true"), with_b(json!(true))));
        assert!(
            !check("eq", json!("Main"), with_b(json!("main"))),
            "case-sensitive"
        );
        assert!(check("neq", json!("draft"), with_b(json!("final"))));
        assert!(
            !check("neq", json!("draft"), json!({})),
            "missing value: every op but exists fails"
        );
    }

    #[test]
    fn in_and_not_in() {
        assert!(check("in", json!(["usd", "eur"]), with_b(json!("eur"))));
        assert!(!check("in", json!(["usd", "eur"]), with_b(json!("gbp"))));
        assert!(check("in", json!([1, 2]), with_b(json!("2"))));
        assert!(check("not_in", json!(["prod"]), with_b(json!("dev"))));
        assert!(!check("not_in", json!(["prod"]), json!({"a": {}})));
    }

    #[test]
    fn numeric_comparisons_never_parse_strings() {
        assert!(check("lt", json!(10), with_b(json!(9.5))));
        assert!(!check("lt", json!(10), with_b(json!(10))));
        assert!(check("lte", json!(10), with_b(json!(10))));
        assert!(check("gt", json!(0), with_b(json!(1))));
        assert!(check("gte", json!(1), with_b(json!(1))));
        assert!(
            !check("lte", json!(10), with_b(json!("5"))),
            "a string is not a number"
        );
        assert!(!check("gte", json!(0), with_b(json!(null))));
    }

    #[test]
    fn regex_is_unanchored_and_needs_a_string() {
        assert!(check("regex", json!("^feat/"), with_b(json!("feat/x"))));
        assert!(
            check("regex", json!("fix"), with_b(json!("a-fix-b"))),
            "unanchored"
        );
        assert!(!check("regex", json!("^feat/"), with_b(json!("main"))));
        assert!(
            !check("regex", json!("1"), with_b(json!(1))),
            "numbers are not stringified"
        );
        assert!(check("regex", json!("(?i)^MAIN$"), with_b(json!("main"))));
    }

    #[test]
    fn contains_on_strings_and_lists() {
        assert!(check(
            "contains",
            json!("secret"),
            with_b(json!("top-secret-plan"))
        ));
        assert!(!check(
            "contains",
            json!("Secret"),
            with_b(json!("top-secret"))
        ));
        assert!(check(
            "contains",
            json!("admin"),
            with_b(json!(["user", "admin"]))
        ));
        assert!(check("contains", json!(3), with_b(json!([1, 2, 3]))));
        assert!(!check("contains", json!("x"), with_b(json!({"x": 1}))));
    }

    #[test]
    fn exists_treats_null_as_absent() {
        assert!(check("exists", json!(true), with_b(json!(0))));
        assert!(!check("exists", json!(true), with_b(json!(null))));
        assert!(check("exists", json!(false), json!({})));
        assert!(check("exists", json!(false), json!({"a": "not an object"})));
    }

    #[test]
    fn a_null_argument_fails_every_operator_but_exists_false() {
        // Intercept lets `{"branch": null}` through `neq "main"` and `not_in ["main"]`; a server
        // that reads null as its default branch would then be pushed to. Here null is absent.
        let null = with_b(json!(null));
        for (op, value) in [
            ("neq", json!("main")),
            ("not_in", json!(["main"])),
            ("eq", json!("main")),
            ("in", json!(["main"])),
            ("lt", json!(1)),
            ("regex", json!("")),
            ("contains", json!("")),
            ("exists", json!(true)),
        ] {
            assert!(!check(op, value, null.clone()), "{op}");
        }
        assert!(check("exists", json!(false), null));
    }

    #[test]
    fn a_key_in_another_case_is_not_absent() {
        // A Go server binds `B` (or `A`) to the field the rule names `b` (`a`).
        assert!(!check("exists", json!(false), json!({"a": {"B": 1}})));
        assert!(!check("exists", json!(false), json!({"A": {"b": 1}})));
        assert!(!check("neq", json!(1), json!({"a": {"B": 1}})));
        assert!(check("exists", json!(false), json!({"a": {"c": 1}})));
        assert!(check("eq", json!(1), json!({"a": {"b": 1, "c": 2}})));
    }

    fn counter_policy(extra_rule: Value) -> crate::policy::Policy {
        load_policy(
            json!({"version":"1","default":"allow","tools":{
                "send":{"rules":[{"name":"recipients per hour","on_deny":"too many recipients",
                    "conditions":[{"path":"state.send.recipients","op":"lt","value":6}],
                    "state":{"counter":"recipients","window":"hour","increment_from":"args.openids"}}]},
                "report":{"rules":[extra_rule]}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn weighted_counters_charge_an_argument_and_lt_keeps_intercepts_meaning() {
        let policy = counter_policy(
            json!({"name":"x","conditions":[{"path":"state.send.recipients","op":"gt","value":2}]}),
        );
        let spec = &policy.counters[0];
        assert_eq!(
            (spec.name.as_str(), spec.max),
            ("send.recipients", 5),
            "lt 6 allows 5 after adding the call"
        );
        let caller = Caller::new(&policy, None);
        let decide = |tool: &str, args: Value, current: u64| {
            decide_tool(&policy, &caller, tool, Some(&args), &mut |_| Ok(current))
        };
        match decide("send", json!({"openids": ["a", "b", "c"]}), 0) {
            ToolDecision::Allow { charges, .. } => assert_eq!(
                (charges[0].amount, charges[0].reason.as_deref()),
                (3, Some("too many recipients"))
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide("send", json!({"openids": 2}), 0),
            ToolDecision::Allow { .. }
        ));
        for (amount, charged) in [(0.99, 1), (2.0, 2), (2.01, 3), (0.0, 0)] {
            match decide("send", json!({ "openids": amount }), 0) {
                ToolDecision::Allow { charges, .. } => {
                    assert_eq!(charges[0].amount, charged, "{amount}")
                }
                other => panic!("{amount}: {other:?}"),
            }
        }
        assert!(matches!(
            decide("send", json!({"openids": "many"}), 0),
            ToolDecision::Deny { .. }
        ));
        // Another tool's rule reads the counter as it stands.
        assert!(matches!(
            decide("report", json!({}), 3),
            ToolDecision::Allow { .. }
        ));
        assert!(matches!(
            decide("report", json!({}), 2),
            ToolDecision::Deny { .. }
        ));
        // A counter that cannot be read fails the condition: closed.
        let failing = decide_tool(&policy, &caller, "report", Some(&json!({})), &mut |_| {
            Err(CounterError::Store(crate::counters::StoreError(
                "store down".into(),
            )))
        });
        assert!(matches!(failing, ToolDecision::Deny { .. }));
    }

    #[test]
    fn an_amount_is_checked_even_where_no_limit_counts_it() {
        // Intercept reads `increment_from` for every state block, limited or not, and denies a
        // call whose amount is missing or not a number.
        let policy = load_policy(
            json!({"version":"1","default":"allow","tools":{"pay":{"rules":[
                {"name":"spend log","on_deny":"no amount",
                 "conditions":[{"path":"args.to","op":"exists","value":true}],
                 "state":{"counter":"spend","window":"day","increment_from":"args.amount"}}]}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert!(policy.counters.is_empty(), "no limit: nothing counts");
        let caller = Caller::new(&policy, None);
        let decide =
            |args: Value| decide_tool(&policy, &caller, "pay", Some(&args), &mut |_| Ok(0));
        match decide(json!({"to": "x", "amount": 250})) {
            ToolDecision::Allow { charges, .. } => assert!(charges.is_empty(), "{charges:?}"),
            other => panic!("{other:?}"),
        }
        for amount in [
            json!(null),
            json!("250"),
            json!(-1),
            json!({"value": 250}),
            json!(true),
        ] {
            let decision = decide(json!({"to": "x", "amount": amount}));
            assert!(
                matches!(&decision, ToolDecision::Deny { reason, .. }
                    if reason.contains("charges its counter by args.amount")),
                "{amount}: {decision:?}"
            );
        }
        assert!(matches!(
            decide(json!({"to": "x"})),
            ToolDecision::Deny { .. }
        ));
        assert!(
            matches!(decide(json!({"amount": 250})), ToolDecision::Deny { reason, .. } if reason == "no amount"),
            "the conditions decide first"
        );
    }

    #[test]
    fn wildcard_rules_follow_tool_rules_and_do_not_rescue_unlisted_tools() {
        let policy = load_policy(
            br#"{"version":"1","default":"deny","tools":{
                "a":{"rules":[{"name":"first","conditions":[{"path":"args.x","op":"exists","value":true}],"on_deny":"tool rule"}]},
                "b":{},
                "*":{"rules":[{"name":"everyone","conditions":[{"path":"args.ok","op":"eq","value":true}],"on_deny":"wildcard rule"}]}}}"#,
        )
        .unwrap();
        let caller = Caller::new(&policy, None);
        let reason = |tool: &str, args: Value| match decide_tool(
            &policy,
            &caller,
            tool,
            Some(&args),
            &mut |_| Ok(0),
        ) {
            ToolDecision::Deny { reason, .. } => reason,
            ToolDecision::Allow { .. } => "allowed".into(),
        };
        assert_eq!(reason("a", json!({})), "tool rule");
        assert_eq!(reason("a", json!({"x": 1})), "wildcard rule");
        assert_eq!(reason("a", json!({"x": 1, "ok": true})), "allowed");
        assert_eq!(reason("b", json!({"ok": true})), "allowed");
        assert_eq!(
            reason("c", json!({"ok": true})),
            crate::request::access::UNLISTED_UNDER_DEFAULT_DENY
        );
    }

    #[test]
    fn rule_errors_name_the_path() {
        let cases = [
            (json!({"name":"r"}), "tools.t.rules[0]: evaluate rules must have at least one condition"),
            (json!({"action":"deny","conditions":[{"path":"args.x","op":"exists","value":true}],"name":"r"}), "tools.t.rules[0].conditions: deny rules must not have conditions"),
            (json!({"conditions":[{"path":"args.x","op":"exists","value":true}]}), "tools.t.rules[0].name: required"),
            (json!({"name":"r","conditions":[{"path":"x","op":"eq","value":1}]}), "tools.t.rules[0].conditions[0].path: must start with \"args.\" or \"state.\""),
            (json!({"name":"r","conditions":[{"path":"state.t.nope","op":"lt","value":1}]}), "tools.t.rules[0].conditions[0].path: condition references state.t.nope but no rule defines"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"like","value":1}]}), "tools.t.rules[0].conditions[0].op: expected one of"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"in","value":"usd"}]}), "tools.t.rules[0].conditions[0].value: operator \"in\" requires a list"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"lt","value":"5"}]}), "tools.t.rules[0].conditions[0].value: operator \"lt\" requires a number"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"regex","value":"(unclosed"}]}), "tools.t.rules[0].conditions[0].value: invalid regex"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"exists","value":"yes"}]}), "tools.t.rules[0].conditions[0].value: operator \"exists\" requires true or false"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"neq","value":null}]}), "tools.t.rules[0].conditions[0].value: operator \"neq\" cannot compare with null: a null argument counts as absent; use \"exists\""),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"eq"}]}), "tools.t.rules[0].conditions[0].value: operator \"eq\" cannot compare with null"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"in","value":["a",null]}]}), "tools.t.rules[0].conditions[0].value: operator \"in\" cannot compare with null"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"contains","value":null}]}), "tools.t.rules[0].conditions[0].value: operator \"contains\" cannot compare with null"),
            (json!({"name":"r","rate_limit":"5/fortnight"}), "tools.t.rules[0].rate_limit: the window must be"),
            (json!({"name":"r","rate_limit":"0/hour"}), "tools.t.rules[0].rate_limit: the count must be a positive integer"),
            (json!({"name":"r","rate_limit":"5/hour","conditions":[{"path":"args.x","op":"exists","value":true}]}), "tools.t.rules[0].rate_limit: rate_limit cannot be combined"),
            (json!({"name":"r","conditions":[{"path":"args.x","op":"exists","value":true}],"state":{"counter":"c","window":"hour","increment_from":"amount"}}), "tools.t.rules[0].state.increment_from: must start with \"args.\""),
            (json!({"name":"r","when":"always","conditions":[]}), "tools.t.rules[0].when: unknown field"),
        ];
        for (rule, expected) in cases {
            let text = json!({"version":"1","tools":{"t":{"rules":[rule]}}}).to_string();
            let got = load_policy(text.as_bytes()).unwrap_err().to_string();
            assert!(
                got.starts_with(expected),
                "rule {rule}\n  got:      {got}\n  expected: {expected}…"
            );
        }
        let star = json!({"version":"1","tools":{"*":{"action":"deny"}}}).to_string();
        assert!(load_policy(star.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("the \"*\" entry takes only \"rules\""));
        let hidden = json!({"version":"1","hide":["a","a"]}).to_string();
        assert!(load_policy(hidden.as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("hide[1]: duplicate entry"));
    }

    #[test]
    fn hidden_tools_are_denied_first() {
        let policy = load_policy(br#"{"version":"1","default":"allow","hide":["secret_tool"],"tools":{"secret_tool":{}}}"#).unwrap();
        let caller = Caller::new(&policy, None);
        let decision = decide_tool(&policy, &caller, "secret_tool", None, &mut |_| Ok(0));
        assert_eq!(
            decision,
            ToolDecision::Deny {
                reason: crate::request::access::HIDDEN.into(),
                unreadable: None,
            }
        );
        let all = load_policy(br#"{"version":"1","default":"allow","hide":["*"]}"#).unwrap();
        assert!(matches!(
            decide_tool(
                &all,
                &Caller::new(&all, None),
                "anything",
                None,
                &mut |_| Ok(0)
            ),
            ToolDecision::Deny { .. }
        ));
    }
}
