//! Loading the `resources`, `prompts` and `methods` blocks (`policy::targets`), every error with
//! its JSON path. Their entries are read like a tool's, without approval: a human approves
//! tool calls only.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::counter_table::CounterTable;
use super::rules::{load_lists, shadow, RuleList};
use super::values::{as_object, as_str, describe, err, key_path, one_of, reject_unknown_fields};
use super::values::{PolicyError, Result};
use crate::policy::resources::{Glob, UriPattern};
use crate::policy::rules::Rule;
use crate::policy::targets::{ResourceRule, TargetRule, Targets};
use crate::policy::CounterId;

/// How a `limits` list is read, for tools and these blocks alike (`load`'s, handed down: it
/// sits above this module).
pub(super) type LimitReader = fn(&Value, &str, &mut CounterTable) -> Result<Vec<CounterId>>;

/// What reading an entry needs.
struct Reading<'c> {
    counters: &'c mut CounterTable,
    limits: LimitReader,
}

/// The policy's top-level fields this module reads.
pub(super) const FIELDS: &[&str] = &["resources", "prompts", "methods"];

const PATTERNS: &[&str] = &["uri", "prefix", "glob"];
const RESOURCE_FIELDS: &[&str] = &[
    "uri", "prefix", "glob", "action", "reason", "limits", "rules", "shadow",
];
const PROMPT_FIELDS: &[&str] = &["action", "reason", "limits", "rules", "shadow"];
const METHOD_FIELDS: &[&str] = &["action", "reason", "limits", "shadow"];

const APPROVAL_IS_FOR_TOOLS: &str = "\"require_approval\" is for tools only: a human approves one exact tool call; resources, prompts and methods take \"allow\" or \"deny\"";

/// The three blocks; `methods` last, since what it may name depends on the other two.
#[cold]
#[inline(never)]
pub(super) fn load(
    root: &Map<String, Value>,
    counters: &mut CounterTable,
    limits: LimitReader,
) -> Result<Targets> {
    let mut reading = Reading { counters, limits };
    let mut targets = Targets {
        resources: root
            .get("resources")
            .map(|v| resources(v, &mut reading))
            .transpose()?,
        prompts: root
            .get("prompts")
            .map(|v| prompts(v, &mut reading))
            .transpose()?,
        methods: None,
    };
    if let Some(v) = root.get("methods") {
        targets.methods = Some(methods(v, &targets, &mut reading)?);
    }
    Ok(targets)
}

/// `resources`: an array of entries, each matching URIs one way.
#[cold]
#[inline(never)]
fn resources(value: &Value, reading: &mut Reading) -> Result<Vec<ResourceRule>> {
    let items = value.as_array().map_or_else(
        || {
            err(
                "resources",
                format!("expected an array, got {}", describe(value)),
            )
        },
        Ok,
    )?;
    let mut entries = Vec::with_capacity(items.len());
    let mut lists = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("resources[{index}]");
        let object = as_object(item, &path)?;
        reject_unknown_fields(object, &path, RESOURCE_FIELDS)?;
        let pattern = uri_pattern(object, &path)?;
        let rule = entry(object, &path, reading)?;
        lists.extend(rule_list(object, &path).map(|list| (index, list)));
        entries.push(ResourceRule { pattern, rule });
    }
    let (indexes, lists): (Vec<usize>, Vec<RuleList>) = lists.into_iter().unzip();
    for (index, rules) in indexes.into_iter().zip(load_rules(&lists, reading.counters)?) {
        if let Some(entry) = entries.get_mut(index) {
            entry.rule.rules = rules;
        }
    }
    Ok(entries)
}

/// The one of `uri`, `prefix` and `glob` an entry has.
#[cold]
#[inline(never)]
fn uri_pattern(object: &Map<String, Value>, path: &str) -> Result<UriPattern> {
    let mut present = PATTERNS
        .iter()
        .filter_map(|kind| object.get(*kind).map(|v| (*kind, v)));
    let Some((kind, value)) = present.next() else {
        return err(
            path,
            "expected one of \"uri\" (exact), \"prefix\" or \"glob\": what the entry matches",
        );
    };
    if let Some((other, _)) = present.next() {
        return err(
            &key_path(path, other),
            format!("an entry matches one way; this one already has \"{kind}\""),
        );
    }
    let pattern_path = key_path(path, kind);
    let text = as_str(value, &pattern_path)?;
    if text.is_empty() {
        return err(
            &pattern_path,
            "must not be empty (for every URI, use the policy's \"default\" or {\"glob\": \"**\"})",
        );
    }
    Ok(match kind {
        "uri" => UriPattern::Exact(text.to_owned()),
        "prefix" => UriPattern::Prefix(text.to_owned()),
        _ => UriPattern::Glob(Glob::new(text)),
    })
}

/// `prompts`: entries by prompt name.
#[cold]
#[inline(never)]
fn prompts(value: &Value, reading: &mut Reading) -> Result<HashMap<String, TargetRule>> {
    let mut entries = HashMap::new();
    let mut lists = Vec::new();
    for (name, item) in as_object(value, "prompts")? {
        let path = key_path("prompts", name);
        if name.is_empty() {
            return err(&path, "a prompt name must not be empty");
        }
        let object = as_object(item, &path)?;
        reject_unknown_fields(object, &path, PROMPT_FIELDS)?;
        entries.insert(name.clone(), entry(object, &path, reading)?);
        lists.extend(rule_list(object, &path).map(|list| (name.clone(), list)));
    }
    let (names, lists): (Vec<String>, Vec<RuleList>) = lists.into_iter().unzip();
    for (name, rules) in names.into_iter().zip(load_rules(&lists, reading.counters)?) {
        if let Some(entry) = entries.get_mut(&name) {
            entry.rules = rules;
        }
    }
    Ok(entries)
}

/// `methods`: entries by method name, for methods no other block decides.
#[cold]
#[inline(never)]
fn methods(
    value: &Value,
    targets: &Targets,
    reading: &mut Reading,
) -> Result<HashMap<String, TargetRule>> {
    let mut entries = HashMap::new();
    for (name, item) in as_object(value, "methods")? {
        let path = key_path("methods", name);
        if name.is_empty() {
            return err(&path, "a method name must not be empty");
        }
        if let Some(why) = targets.outside_methods(name) {
            return err(&path, format!("\"methods\" cannot decide {name}: {why}"));
        }
        let object = as_object(item, &path)?;
        if object.contains_key("rules") {
            return err(
                &key_path(&path, "rules"),
                "a method takes no rules: the policy reads no arguments of other methods",
            );
        }
        reject_unknown_fields(object, &path, METHOD_FIELDS)?;
        entries.insert(name.clone(), entry(object, &path, reading)?);
    }
    Ok(entries)
}

/// What every entry takes: `action` (allow or deny), `reason`, `limits`, `shadow`. Its `rules`
/// are loaded once every entry of the block is, so that they may read each other's counters.
#[cold]
#[inline(never)]
fn entry(object: &Map<String, Value>, path: &str, reading: &mut Reading) -> Result<TargetRule> {
    let action_path = key_path(path, "action");
    let deny = match object.get("action") {
        None => false,
        Some(v) if v.as_str() == Some("require_approval") => {
            return err(&action_path, APPROVAL_IS_FOR_TOOLS)
        }
        Some(v) => one_of(v, &action_path, &["allow", "deny"])? == "deny",
    };
    let reason = object
        .get("reason")
        .map(|v| as_str(v, &key_path(path, "reason")).map(str::to_owned))
        .transpose()?;
    let limits = match object.get("limits") {
        Some(list) => (reading.limits)(list, &key_path(path, "limits"), reading.counters)?,
        None => Vec::new(),
    };
    Ok(TargetRule {
        deny,
        reason,
        limits,
        rules: Vec::new(),
        shadow: shadow(object, path)?,
        path: path.to_owned(),
    })
}

/// The entry's `rules`, if it has any: their state counters live under the entry's path
/// (`state.resources[2].reads`, `state.prompts.draft.gets`).
#[cold]
#[inline(never)]
fn rule_list<'v>(object: &'v Map<String, Value>, path: &str) -> Option<RuleList<'v>> {
    Some(RuleList {
        scope: path.to_owned(),
        owner: path.to_owned(),
        path: key_path(path, "rules"),
        list: object.get("rules")?,
    })
}

/// The rules of a block's entries, in the order of `lists`; approval is for tool calls only.
#[cold]
#[inline(never)]
fn load_rules(lists: &[RuleList], counters: &mut CounterTable) -> Result<Vec<Vec<Rule>>> {
    let loaded = load_lists(lists, counters)?;
    for (list, rules) in lists.iter().zip(&loaded) {
        if let Some(index) = rules.iter().position(|r| r.approval) {
            return Err(PolicyError {
                path: format!("{}[{index}].action", list.path),
                message: APPROVAL_IS_FOR_TOOLS.to_owned(),
            });
        }
    }
    Ok(loaded)
}
