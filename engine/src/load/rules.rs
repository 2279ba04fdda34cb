//! Loading `rules` (per tool and for `"*"`), with Intercept's validation and meanings. State
//! counters are collected first, so a condition may read a counter that any rule defines
//! (`state.<tool>.<counter>`, `state._global.<counter>` for `"*"` rules).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::counter_table::CounterTable;
use super::values::{
    as_object, as_str, describe, err, key_path, one_of, positive_integer, reject_unknown_fields,
    window, Result,
};
use crate::counters::window::Window;
use crate::policy::rules::{Amount, Condition, Op, Rule, RuleCharge, Subject};
use crate::policy::{CounterId, CounterSpec, Scope};

const RULE_FIELDS: &[&str] = &[
    "shadow",
    "name",
    "action",
    "on_deny",
    "conditions",
    "rate_limit",
    "state",
];
const STATE_FIELDS: &[&str] = &["counter", "window", "increment", "increment_from", "scope"];
const OPS: &[&str] = &[
    "eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists",
];

/// Rules by tool name, plus the wildcard (`"*"`) rules.
pub struct LoadedRules {
    pub by_tool: HashMap<String, Vec<Rule>>,
    pub wildcard: Vec<Rule>,
}

#[cold]
#[inline(never)]
fn scope_of(tool: &str) -> String {
    if tool == "*" {
        "_global".to_owned()
    } else {
        tool.to_owned()
    }
}

/// A rule as written, with `rate_limit: "N/window"` expanded the way Intercept does: an
/// evaluate rule with `lte N` on an automatic counter `_rate_<window>` and a default message.
struct Expanded<'v> {
    object: &'v Map<String, Value>,
    conditions: Vec<(Value, String)>,
    state: Option<(Map<String, Value>, String)>,
    on_deny: Option<String>,
}

#[cold]
#[inline(never)]
fn expand<'v>(object: &'v Map<String, Value>, path: &str, scope: &str) -> Result<Expanded<'v>> {
    reject_unknown_fields(object, path, RULE_FIELDS)?;
    let on_deny = object
        .get("on_deny")
        .map(|v| as_str(v, &key_path(path, "on_deny")).map(str::to_owned))
        .transpose()?;
    let conditions_path = key_path(path, "conditions");
    let mut conditions: Vec<(Value, String)> = match object.get("conditions") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), format!("{conditions_path}[{i}]")))
            .collect(),
        Some(other) => {
            return err(
                &conditions_path,
                format!("expected an array, got {}", describe(other)),
            )
        }
    };
    let state_path = key_path(path, "state");
    let mut state = match object.get("state") {
        None => None,
        Some(v) => Some((as_object(v, &state_path)?.clone(), state_path)),
    };
    let Some(shorthand) = object.get("rate_limit") else {
        return Ok(Expanded {
            object,
            conditions,
            state,
            on_deny,
        });
    };
    let rl_path = key_path(path, "rate_limit");
    if !conditions.is_empty() || state.is_some() {
        return err(&rl_path, "rate_limit cannot be combined with conditions or state; use separate rules or the full syntax instead");
    }
    if object.get("action").and_then(Value::as_str) == Some("deny") {
        return err(&rl_path, "rate_limit cannot be used with action \"deny\"");
    }
    let text = as_str(shorthand, &rl_path)?;
    let Some((count, window_name)) = text.split_once('/') else {
        return err(
            &rl_path,
            format!(
                "expected \"N/minute\", \"N/hour\" or \"N/day\", got {}",
                describe(shorthand)
            ),
        );
    };
    let count: u64 = match count.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return err(
                &rl_path,
                format!("the count must be a positive integer, got {count:?}"),
            )
        }
    };
    if !["minute", "hour", "day"].contains(&window_name) {
        return err(
            &rl_path,
            format!("the window must be \"minute\", \"hour\" or \"day\", got {window_name:?}"),
        );
    }
    let counter = format!("_rate_{window_name}");
    conditions.push((
        serde_json::json!({"path": format!("state.{scope}.{counter}"), "op": "lte", "value": count}),
        rl_path.clone(),
    ));
    let mut block = Map::new();
    block.insert("counter".into(), Value::String(counter));
    block.insert("window".into(), Value::String(window_name.to_owned()));
    state = Some((block, rl_path));
    let on_deny = on_deny.or_else(|| {
        Some(format!(
            "Rate limit of {count} per {window_name} reached. Try again later."
        ))
    });
    Ok(Expanded {
        object,
        conditions,
        state,
        on_deny,
    })
}

/// The limit a rule puts on its own counter: `lte N` → N, `lt N` → N - 1 (Intercept checks the
/// value after adding the call). No such condition: the counter is never charged.
#[cold]
#[inline(never)]
fn own_limit(conditions: &[(Value, String)], own_path: &str) -> Option<u64> {
    conditions.iter().find_map(|(c, _)| {
        if c.get("path")?.as_str()? != own_path {
            return None;
        }
        let value = c.get("value")?.as_f64()?;
        let limit = match c.get("op")?.as_str()? {
            "lte" => value.trunc(),
            "lt" => value.trunc() - 1.0,
            _ => return None,
        };
        Some(if limit < 0.0 { 0 } else { limit as u64 })
    })
}

struct StateCounter {
    /// `None`: defined but never charged (no limit condition on it).
    id: Option<CounterId>,
    amount: Amount,
}

#[cold]
#[inline(never)]
fn amount(block: &Map<String, Value>, path: &str) -> Result<Amount> {
    match (block.get("increment"), block.get("increment_from")) {
        (Some(_), Some(_)) => err(
            &key_path(path, "increment_from"),
            "use increment or increment_from, not both",
        ),
        (Some(v), None) => positive_integer(v, &key_path(path, "increment")).map(Amount::Fixed),
        (None, Some(v)) => {
            let p = key_path(path, "increment_from");
            match as_str(v, &p)?.strip_prefix("args.") {
                Some(rest) if !rest.is_empty() => Ok(Amount::FromArgument(
                    rest.split('.').map(str::to_owned).collect(),
                )),
                _ => err(
                    &p,
                    format!("must start with \"args.\", got {}", describe(v)),
                ),
            }
        }
        (None, None) => Ok(Amount::Fixed(1)),
    }
}

#[cold]
#[inline(never)]
fn state_counter(
    expanded: &Expanded,
    scope: &str,
    counters: &mut CounterTable,
) -> Result<Option<(String, StateCounter)>> {
    let Some((block, path)) = &expanded.state else {
        return Ok(None);
    };
    reject_unknown_fields(block, path, STATE_FIELDS)?;
    let counter_path = key_path(path, "counter");
    let name = as_str(block.get("counter").unwrap_or(&Value::Null), &counter_path)?;
    if name.is_empty() {
        return err(&counter_path, "must not be empty");
    }
    let window_path = key_path(path, "window");
    let window: Window = window(block.get("window").unwrap_or(&Value::Null), &window_path)?;
    let scope_path = key_path(path, "scope");
    let counter_scope = match block.get("scope") {
        None => Scope::Global,
        Some(v) => match one_of(v, &scope_path, &["global", "grant", "identity", "session"])? {
            "grant" => Scope::Grant,
            "identity" => Scope::Identity,
            "session" => Scope::Session,
            _ => Scope::Global,
        },
    };
    let amount = amount(block, path)?;
    let id = match own_limit(&expanded.conditions, &format!("state.{scope}.{name}")) {
        Some(max) => Some(counters.define(
            CounterSpec {
                name: format!("{scope}.{name}"),
                window,
                max,
                scope: counter_scope,
                // Conditions read these counters before the call: only shared data can be
                // read then, so rule counters stay local whatever the policy's service.
                service: None,
                keys: Default::default(),
            },
            path,
        )?),
        None => None,
    };
    Ok(Some((name.to_owned(), StateCounter { id, amount })))
}

#[cold]
#[inline(never)]
fn condition(
    value: &Value,
    path: &str,
    states: &HashMap<String, StateCounter>,
) -> Result<Condition> {
    let object = as_object(value, path)?;
    reject_unknown_fields(object, path, &["path", "op", "value"])?;
    let path_path = key_path(path, "path");
    let subject_text = as_str(object.get("path").unwrap_or(&Value::Null), &path_path)?;
    let subject = if let Some(rest) = subject_text.strip_prefix("args.") {
        Subject::Argument(rest.split('.').map(str::to_owned).collect())
    } else if subject_text.starts_with("state.") {
        match states.get(subject_text) {
            Some(state) => Subject::Counter(state.id),
            None => {
                return err(&path_path, format!("condition references {subject_text} but no rule defines that counter in its state block"))
            }
        }
    } else {
        return err(
            &path_path,
            format!(
                "must start with \"args.\" or \"state.\", got {}",
                describe(&Value::String(subject_text.to_owned()))
            ),
        );
    };
    let op_path = key_path(path, "op");
    let op_name = one_of(object.get("op").unwrap_or(&Value::Null), &op_path, OPS)?;
    let value_path = key_path(path, "value");
    let value = object.get("value").cloned().unwrap_or(Value::Null);
    let number = |v: &Value| {
        v.as_f64().map_or_else(
            || {
                err(
                    &value_path,
                    format!(
                        "operator \"{op_name}\" requires a number, got {}",
                        describe(v)
                    ),
                )
            },
            Ok,
        )
    };
    let list = |v: Value| match v {
        Value::Array(items) => Ok(items),
        other => err(
            &value_path,
            format!(
                "operator \"{op_name}\" requires a list, got {}",
                describe(&other)
            ),
        ),
    };
    let op = match op_name {
        "eq" => Op::Eq(not_null(value, op_name, &value_path)?),
        "neq" => Op::Neq(not_null(value, op_name, &value_path)?),
        "in" => Op::In(list(not_null(value, op_name, &value_path)?)?),
        "not_in" => Op::NotIn(list(not_null(value, op_name, &value_path)?)?),
        "lt" => Op::Lt(number(&value)?),
        "lte" => Op::Lte(number(&value)?),
        "gt" => Op::Gt(number(&value)?),
        "gte" => Op::Gte(number(&value)?),
        "regex" => {
            let pattern = as_str(&value, &value_path)?;
            // Compiled once, here: an invalid pattern is a configuration error.
            Op::Regex(
                regex_lite::Regex::new(pattern).map_err(|e| super::values::PolicyError {
                    path: value_path.clone(),
                    message: format!("invalid regex {pattern:?}: {e}"),
                })?,
            )
        }
        "contains" => Op::Contains(not_null(value, op_name, &value_path)?),
        _ => match value {
            Value::Bool(b) => Op::Exists(b),
            other => {
                return err(
                    &value_path,
                    format!(
                        "operator \"exists\" requires true or false, got {}",
                        describe(&other)
                    ),
                )
            }
        },
    };
    Ok(Condition { subject, op })
}

/// `value`, unless it is (or, a list, holds) null: a null argument counts as absent, so no
/// argument ever equals null (Intercept's `eq: null` holds for one; say `exists` instead).
#[cold]
#[inline(never)]
fn not_null(value: Value, op: &str, path: &str) -> Result<Value> {
    let null = match &value {
        Value::Array(items) => items.iter().any(Value::is_null),
        other => other.is_null(),
    };
    if null {
        return err(
            path,
            format!("operator \"{op}\" cannot compare with null: a null argument counts as absent; use \"exists\""),
        );
    }
    Ok(value)
}

/// `tools` as written (server-wide): the rules of every tool, and of `"*"`.
#[cold]
#[inline(never)]
pub(crate) fn load(tools: &Map<String, Value>, counters: &mut CounterTable) -> Result<LoadedRules> {
    load_section("tools", tools, counters)
}

/// The rules of every entry of `section` (`tools`, `classes`), by entry name. State counters
/// are scoped by entry: outside `tools`, the scope names the section too.
#[cold]
#[inline(never)]
pub(crate) fn load_section(
    section: &str,
    entries: &Map<String, Value>,
    counters: &mut CounterTable,
) -> Result<LoadedRules> {
    let (names, lists): (Vec<&String>, Vec<RuleList>) = entries
        .iter()
        .filter_map(|(name, entry)| {
            let list = RuleList {
                scope: section_scope(section, name),
                path: key_path(&key_path(section, name), "rules"),
                list: entry.get("rules")?,
            };
            Some((name, list))
        })
        .unzip();
    let mut loaded = LoadedRules {
        by_tool: HashMap::new(),
        wildcard: Vec::new(),
    };
    for (name, rules) in names.into_iter().zip(load_lists(&lists, counters)?) {
        if name == "*" && section == "tools" {
            loaded.wildcard = rules;
        } else {
            loaded.by_tool.insert(name.clone(), rules);
        }
    }
    Ok(loaded)
}

/// The scope of an entry's state counters.
#[cold]
#[inline(never)]
fn section_scope(section: &str, name: &str) -> String {
    if section == "tools" {
        scope_of(name)
    } else {
        format!("{section}.{name}")
    }
}

/// One `rules` list as written: where it is, and the scope its state counters live under (a
/// condition reads them as `state.<scope>.<counter>`).
pub(crate) struct RuleList<'v> {
    pub(crate) scope: String,
    pub(crate) path: String,
    pub(crate) list: &'v Value,
}

/// The rules of `lists`, in order. A condition may read the state counter of any rule in them.
#[cold]
#[inline(never)]
pub(crate) fn load_lists(
    lists: &[RuleList],
    counters: &mut CounterTable,
) -> Result<Vec<Vec<Rule>>> {
    // Pass 1: every state counter, under its scope, so that any condition can refer to it.
    let mut expanded_lists = Vec::with_capacity(lists.len());
    let mut states: HashMap<String, StateCounter> = HashMap::new();
    for list in lists {
        expanded_lists.push(expand_list(list, counters, &mut states)?);
    }
    // Pass 2: the rules themselves.
    let mut loaded = Vec::with_capacity(lists.len());
    for (list, expanded) in lists.iter().zip(expanded_lists) {
        let mut rules = Vec::with_capacity(expanded.len());
        for (index, rule) in expanded.into_iter().enumerate() {
            rules.push(finished_rule(
                rule,
                &format!("{}[{index}]", list.path),
                &list.scope,
                &states,
            )?);
        }
        loaded.push(rules);
    }
    Ok(loaded)
}

/// One `rules` list, expanded; each state counter a rule defines is added to `states` under the
/// list's scope.
#[cold]
#[inline(never)]
fn expand_list<'v>(
    list: &RuleList<'v>,
    counters: &mut CounterTable,
    states: &mut HashMap<String, StateCounter>,
) -> Result<Vec<Expanded<'v>>> {
    let items = list.list.as_array().map_or_else(
        || {
            err(
                &list.path,
                format!("expected an array, got {}", describe(list.list)),
            )
        },
        Ok,
    )?;
    let scope = &list.scope;
    let mut expanded = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("{}[{index}]", list.path);
        let rule = expand(as_object(item, &path)?, &path, scope)?;
        if let Some((name, state)) = state_counter(&rule, scope, counters)? {
            let key = format!("state.{scope}.{name}");
            if states.insert(key.clone(), state).is_some() {
                return err(&path, format!("duplicate state counter {name:?} for {scope}: each counter is defined by one rule"));
            }
        }
        expanded.push(rule);
    }
    Ok(expanded)
}

/// An expanded rule made a `Rule`, its conditions reading the counters in `states`.
#[cold]
#[inline(never)]
fn finished_rule(
    rule: Expanded,
    path: &str,
    scope: &str,
    states: &HashMap<String, StateCounter>,
) -> Result<Rule> {
    let name_path = key_path(path, "name");
    let name = match rule.object.get("name") {
        Some(v) => as_str(v, &name_path)?.to_owned(),
        None => return err(&name_path, "required: every rule has a name"),
    };
    let action = match rule.object.get("action") {
        None => "evaluate",
        Some(v) => one_of(
            v,
            &key_path(path, "action"),
            &["evaluate", "deny", "require_approval"],
        )?,
    };
    let deny = action == "deny";
    let approval = action == "require_approval";
    check_fields_fit_action(&rule, path, deny, approval)?;
    let mut conditions = Vec::with_capacity(rule.conditions.len());
    for (c, p) in &rule.conditions {
        conditions.push(condition(c, p, states)?);
    }
    let charge = rule.state.as_ref().and_then(|(block, _)| {
        let counter = block.get("counter")?.as_str()?;
        let state = states.get(&format!("state.{scope}.{counter}"))?;
        Some(RuleCharge {
            counter: state.id,
            amount: state.amount.clone(),
        })
    });
    let shadow = shadow(rule.object, path)?;
    Ok(Rule {
        shadow,
        name,
        deny,
        approval,
        conditions,
        on_deny: rule.on_deny,
        charge,
    })
}

/// A rule's or an entry's `shadow`: whether its refusals are only reported.
#[cold]
#[inline(never)]
pub(crate) fn shadow(object: &Map<String, Value>, path: &str) -> Result<bool> {
    match object.get("shadow") {
        None => Ok(false),
        Some(v) => v.as_bool().map_or_else(
            || {
                err(
                    &key_path(path, "shadow"),
                    format!("expected true or false, got {}", describe(v)),
                )
            },
            Ok,
        ),
    }
}

/// What each action allows beside it: an approval rule keeps no counter, a deny rule has no
/// conditions, an evaluate rule has at least one.
#[cold]
#[inline(never)]
fn check_fields_fit_action(rule: &Expanded, path: &str, deny: bool, approval: bool) -> Result<()> {
    if approval && rule.state.is_some() {
        // Name the field the user wrote: `rate_limit` is expanded into a state block.
        let field = if rule.object.contains_key("rate_limit") {
            "rate_limit"
        } else {
            "state"
        };
        return err(
            &key_path(path, field),
            "a require_approval rule selects calls; it keeps no counter",
        );
    }
    if deny && !rule.conditions.is_empty() {
        return err(
            &key_path(path, "conditions"),
            "deny rules must not have conditions",
        );
    }
    if !deny && rule.conditions.is_empty() {
        return err(
            path,
            "evaluate rules must have at least one condition (or a rate_limit)",
        );
    }
    Ok(())
}
