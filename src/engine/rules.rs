//! Rules on a call's arguments and on counters, with the meanings of PolicyLayer's Intercept
//! rule language: `evaluate` rules pass only if all their conditions hold, `deny` rules always
//! deny, the first failing rule decides, and a rule's `state` counter is charged (by a fixed
//! increment or by an argument, e.g. the number of recipients) only once every rule passed.

use serde_json::Value;

use super::policy::CounterId;

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub deny: bool,
    pub conditions: Vec<Condition>,
    pub on_deny: Option<String>,
    /// The counter this rule charges when the call goes through (absent, or inert because the
    /// rule has no `lt`/`lte` limit on it, as in Intercept).
    pub charge: Option<RuleCharge>,
}

#[derive(Debug, Clone)]
pub struct RuleCharge {
    pub counter: CounterId,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Fixed(u64),
    /// `increment_from: "args.recipients"`: the argument's value, decimals truncated.
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesOutcome {
    Pass(Vec<Charge>),
    Deny(String),
}

fn lookup<'v>(arguments: Option<&'v Value>, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(arguments?, |value, key| value.as_object()?.get(key))
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
/// current value; if it fails, conditions on it fail (the rule denies: fail closed).
pub fn evaluate(
    rules: &[&Rule],
    arguments: Option<&Value>,
    counter_value: &mut dyn FnMut(CounterId) -> Result<u64, String>,
) -> RulesOutcome {
    for rule in rules {
        let denied = rule.deny
            || !rule
                .conditions
                .iter()
                .all(|condition| match &condition.subject {
                    Subject::Argument(path) => holds(&condition.op, lookup(arguments, path)),
                    Subject::Counter(None) => holds(&condition.op, Some(&Value::from(0))),
                    Subject::Counter(Some(id)) => counter_value(*id)
                        .is_ok_and(|n| holds(&condition.op, Some(&Value::from(n)))),
                });
        if denied {
            return RulesOutcome::Deny(
                rule.on_deny
                    .clone()
                    .unwrap_or_else(|| format!("Denied by rule \"{}\"", rule.name)),
            );
        }
    }
    let mut charges = Vec::new();
    for rule in rules {
        let Some(charge) = &rule.charge else { continue };
        let amount = match &charge.amount {
            Amount::Fixed(n) => *n,
            Amount::FromArgument(path) => match lookup(arguments, path).and_then(Value::as_f64) {
                Some(n) if n >= 0.0 => n.trunc() as u64,
                // Intercept lets a negative amount lower the counter; that would be a way to
                // buy back budget, so it is refused here, as is a missing or non-numeric one.
                _ => {
                    return RulesOutcome::Deny(format!(
                        "rule \"{}\" charges its counter by args.{}, which must be a number of at least 0",
                        rule.name,
                        path.join(".")
                    ))
                }
            },
        };
        charges.push(Charge {
            counter: charge.counter,
            amount,
            reason: Some(
                rule.on_deny
                    .clone()
                    .unwrap_or_else(|| format!("Rate limit exceeded for {}", rule.name)),
            ),
        });
    }
    RulesOutcome::Pass(charges)
}
