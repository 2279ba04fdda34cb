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
    for (index, rules) in indexes
        .into_iter()
        .zip(load_rules(&lists, reading.counters)?)
    {
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

#[cfg(test)]
mod tests {
    use crate::load::load_policy;
    use crate::policy::resources::UriPattern;
    use crate::test_support::test;

    fn error_of(blocks: &str) -> String {
        let text = format!(r#"{{"version":"1",{blocks}}}"#);
        load_policy(text.as_bytes()).unwrap_err().to_string()
    }

    const LIMIT: &str = r#"{"counter":"reads","window":"minute","max":20,"scope":"identity"}"#;

    #[test]
    fn the_three_blocks_load_with_their_paths() {
        let text = format!(
            r#"{{"version":"1","default":"deny",
            "resources":[{{"uri":"wechat://account/profile"}},
                {{"prefix":"wechat://followers/","limits":[{LIMIT}]}},
                {{"glob":"wechat://internal/**","action":"deny","reason":"internal"}},
                {{"prefix":"wechat://drafts/","shadow":true,"rules":[{{"name":"r","conditions":[{{"path":"args.uri","op":"regex","value":"^x"}}]}}]}}],
            "prompts":{{"draft_campaign":{{}},"apology_notice":{{"action":"deny","reason":"legal"}},
                "a.b":{{"limits":[{LIMIT}],"rules":[{{"name":"r","rate_limit":"5/minute"}}]}}}},
            "methods":{{"completion/complete":{{"action":"deny"}},"logging/setLevel":{{"limits":[{LIMIT}]}}}}}}"#
        );
        let policy = load_policy(text.as_bytes()).unwrap();
        let targets = &policy.targets;
        let resources = targets.resources.as_ref().unwrap();
        let paths: Vec<&str> = resources.iter().map(|e| e.rule.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "resources[0]",
                "resources[1]",
                "resources[2]",
                "resources[3]"
            ]
        );
        assert_eq!(
            resources[0].pattern,
            UriPattern::Exact("wechat://account/profile".into())
        );
        assert!(resources[2].rule.deny && resources[3].rule.shadow);
        assert_eq!(resources[3].rule.rules.len(), 1);
        let reads = policy.counters.iter().position(|c| c.name == "reads");
        assert_eq!(resources[1].rule.limits, vec![reads.unwrap()]);
        let prompt = targets.prompt("a.b").unwrap();
        assert_eq!(prompt.path, r#"prompts["a.b"]"#);
        // One counter, shared by every block that names it; rule counters live under the entry.
        assert_eq!(prompt.limits, resources[1].rule.limits);
        assert!(policy
            .counters
            .iter()
            .any(|c| c.name == r#"prompts["a.b"]._rate_minute"#));
        assert_eq!(
            targets.method("completion/complete").unwrap().path,
            r#"methods["completion/complete"]"#
        );
        let summary = policy.summary();
        assert!(
            summary.starts_with(
                "policy ok: default deny, 0 tool rule(s) (0 deny), 4 resource rule(s) (1 deny), \
                 3 prompt rule(s) (1 deny), 2 method rule(s) (1 deny), 2 counter(s)"
            ),
            "{summary}"
        );
    }

    #[test]
    fn absent_blocks_decide_nothing_and_leave_the_summary_alone() {
        let policy = load_policy(br#"{"version":"1"}"#).unwrap();
        assert!(policy.targets.resources.is_none());
        assert!(policy.targets.prompts.is_none());
        assert!(policy.targets.methods.is_none());
        assert!(
            policy
                .summary()
                .starts_with("policy ok: default deny, 0 tool rule(s) (0 deny), 0 counter(s)"),
            "{}",
            policy.summary()
        );
        // Empty blocks are present: they decide (everything by `default`).
        let empty =
            load_policy(br#"{"version":"1","resources":[],"prompts":{},"methods":{}}"#).unwrap();
        assert!(empty.targets.methods_decide("completion/complete"));
    }

    #[test]
    fn resource_errors_name_the_json_path() {
        let cases = [
            (r#""resources":{}"#, "resources: expected an array, got an object"),
            (r#""resources":[5]"#, "resources[0]: expected an object, got number 5"),
            (
                r#""resources":[{"action":"deny"}]"#,
                r#"resources[0]: expected one of "uri" (exact), "prefix" or "glob""#,
            ),
            (
                r#""resources":[{"uri":"a"},{"uri":"b","glob":"c*"}]"#,
                r#"resources[1].glob: an entry matches one way; this one already has "uri""#,
            ),
            (
                r#""resources":[{"prefix":"a","glob":"b"}]"#,
                r#"resources[0].glob: an entry matches one way; this one already has "prefix""#,
            ),
            (
                r#""resources":[{"uri":5}]"#,
                "resources[0].uri: expected a string, got number 5",
            ),
            (r#""resources":[{"prefix":""}]"#, "resources[0].prefix: must not be empty"),
            (r#""resources":[{"glob":""}]"#, "resources[0].glob: must not be empty"),
            (r#""resources":[{"uri":""}]"#, "resources[0].uri: must not be empty"),
            (
                r#""resources":[{"uri":"a","action":"require_approval"}]"#,
                r#"resources[0].action: "require_approval" is for tools only"#,
            ),
            (
                r#""resources":[{"uri":"a","action":"block"}]"#,
                r#"resources[0].action: expected one of "allow", "deny", got string "block""#,
            ),
            (
                r#""resources":[{"uri":"a","reason":1}]"#,
                "resources[0].reason: expected a string, got number 1",
            ),
            (
                r#""resources":[{"uri":"a","shadow":"yes"}]"#,
                "resources[0].shadow: expected true or false",
            ),
            (
                r#""resources":[{"uri":"a","limits":{}}]"#,
                "resources[0].limits: expected an array, got an object",
            ),
            (
                r#""resources":[{"uri":"a","limits":[{"counter":"c","window":60,"max":0,"scope":"global"}]}]"#,
                "resources[0].limits[0].max: expected a positive integer",
            ),
            (
                r#""resources":[{"uri":"a","hide":true}]"#,
                r#"resources[0].hide: unknown field; expected one of "uri", "prefix", "glob""#,
            ),
            (
                r#""resources":[{"uri":"a","rules":{}}]"#,
                "resources[0].rules: expected an array, got an object",
            ),
            (
                r#""resources":[{"uri":"a","rules":[{"name":"r"}]}]"#,
                "resources[0].rules[0]: evaluate rules must have at least one condition",
            ),
            (
                r#""resources":[{"uri":"a","rules":[{"name":"r","action":"require_approval","conditions":[{"path":"args.uri","op":"exists","value":true}]}]}]"#,
                r#"resources[0].rules[0].action: "require_approval" is for tools only"#,
            ),
            (
                r#""resources":[{"uri":"a","rules":[{"name":"r","conditions":[{"path":"state.tools.x","op":"lte","value":1}]}]}]"#,
                "resources[0].rules[0].conditions[0].path: condition references state.tools.x but no rule defines that counter",
            ),
            (
                r#""tools":{"t":{"limits":[{"counter":"c","window":60,"max":1,"scope":"global"}]}},
                   "resources":[{"uri":"a","limits":[{"counter":"c","window":60,"max":2,"scope":"global"}]}]"#,
                r#"resources[0].limits[0]: counter "c" is already defined at tools.t.limits[0]"#,
            ),
        ];
        for (blocks, expected) in cases {
            let got = error_of(blocks);
            assert!(
                got.starts_with(expected),
                "{blocks}\n  got:      {got}\n  expected: {expected}…"
            );
        }
    }

    #[test]
    fn prompt_and_method_errors_name_the_json_path() {
        let cases = [
            (
                r#""prompts":[]"#,
                "prompts: expected an object, got an array",
            ),
            (
                r#""prompts":{"":{}}"#,
                r#"prompts[""]: a prompt name must not be empty"#,
            ),
            (
                r#""prompts":{"p":true}"#,
                "prompts.p: expected an object, got boolean true",
            ),
            (
                r#""prompts":{"p":{"action":"require_approval"}}"#,
                r#"prompts.p.action: "require_approval" is for tools only"#,
            ),
            (
                r#""prompts":{"p":{"uri":"x"}}"#,
                r#"prompts.p.uri: unknown field; expected one of "action", "reason", "limits", "rules", "shadow""#,
            ),
            (
                r#""prompts":{"p":{"rules":[{"name":"r","action":"require_approval","conditions":[{"path":"args.x","op":"exists","value":true}]}]}}"#,
                r#"prompts.p.rules[0].action: "require_approval" is for tools only"#,
            ),
            (
                r#""methods":[]"#,
                "methods: expected an object, got an array",
            ),
            (
                r#""methods":{"":{}}"#,
                r#"methods[""]: a method name must not be empty"#,
            ),
            (
                r#""methods":{"tools/call":{}}"#,
                r#"methods["tools/call"]: "methods" cannot decide tools/call: it is decided by "tools" (and grants)"#,
            ),
            (
                r#""methods":{"initialize":{}}"#,
                r#"methods.initialize: "methods" cannot decide initialize: it always passes"#,
            ),
            (
                r#""methods":{"ping":{}}"#,
                r#"methods.ping: "methods" cannot decide ping"#,
            ),
            (
                r#""methods":{"tools/list":{}}"#,
                r#"methods["tools/list"]: "methods" cannot decide tools/list"#,
            ),
            (
                r#""methods":{"notifications/initialized":{}}"#,
                r#"methods["notifications/initialized"]: "methods" cannot decide notifications/initialized: notifications always pass"#,
            ),
            (
                r#""methods":{"resources/unsubscribe":{}}"#,
                r#"methods["resources/unsubscribe"]: "methods" cannot decide resources/unsubscribe: it always passes"#,
            ),
            (
                r#""resources":[],"methods":{"resources/read":{}}"#,
                r#"methods["resources/read"]: "methods" cannot decide resources/read: it is decided by the "resources" block"#,
            ),
            (
                r#""resources":[],"methods":{"resources/subscribe":{}}"#,
                r#"methods["resources/subscribe"]: "methods" cannot decide resources/subscribe: it is decided by the "resources" block"#,
            ),
            (
                r#""resources":[],"methods":{"resources/templates/list":{}}"#,
                r#"methods["resources/templates/list"]: "methods" cannot decide resources/templates/list: it always passes when there is a "resources" block"#,
            ),
            (
                r#""prompts":{},"methods":{"prompts/get":{}}"#,
                r#"methods["prompts/get"]: "methods" cannot decide prompts/get: it is decided by the "prompts" block"#,
            ),
            (
                r#""prompts":{},"methods":{"prompts/list":{}}"#,
                r#"methods["prompts/list"]: "methods" cannot decide prompts/list"#,
            ),
            (
                r#""methods":{"logging/setLevel":{"rules":[]}}"#,
                r#"methods["logging/setLevel"].rules: a method takes no rules"#,
            ),
            (
                r#""methods":{"logging/setLevel":{"action":"require_approval"}}"#,
                r#"methods["logging/setLevel"].action: "require_approval" is for tools only"#,
            ),
            (
                r#""methods":{"logging/setLevel":{"limit":[]}}"#,
                r#"methods["logging/setLevel"].limit: unknown field; expected one of "action", "reason", "limits", "shadow""#,
            ),
            (
                r#""resource":[]"#,
                r#"resource: unknown field; expected one of"#,
            ),
        ];
        for (blocks, expected) in cases {
            let got = error_of(blocks);
            assert!(
                got.starts_with(expected),
                "{blocks}\n  got:      {got}\n  expected: {expected}…"
            );
        }
        // Without the block that decides them, their methods may be named.
        for method in [
            "resources/read",
            "resources/list",
            "prompts/get",
            "prompts/list",
        ] {
            let text = format!(r#"{{"version":"1","methods":{{"{method}":{{}}}}}}"#);
            assert!(load_policy(text.as_bytes()).is_ok(), "{method}");
        }
    }
}
