//! Policy document (JSON) → validated `Policy`. Every error names the JSON path of the offending
//! value, e.g. `tools.wechat_mass_send.limits[0].window: ...`, because that is what an operator
//! needs to fix a rejected configuration.
//!
//! The loader runs once per configuration, never per request: its functions are marked
//! `#[cold]` and `#[inline(never)]` so that the compiler builds them small, and the `.wasm`
//! spends its size on the request path.

mod counter_table;
mod guard;
mod pins;
pub mod rules;
mod targets;
mod values;

use counter_table::CounterTable;
pub use counter_table::LOCAL_COUNTING;
pub use values::PolicyError;
use values::{
    as_object, as_str, describe, err, key_path, one_of, positive_integer, reject_unknown_fields,
    window, Result,
};

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::counters::ENTRIES_PER_BUCKET;
use crate::policy::grants::{Grant, GrantTable, IdentityPattern, SECRET_PREFIX};
use crate::policy::identity::{IdentitySource, MissingIdentity};
use crate::policy::pins::{Class, Classes, Pins};
use crate::policy::rules::Rule;
use crate::policy::{
    ApprovalSettings, CounterId, CounterKeys, CounterSpec, DefaultAction, Policy, RateLimitService,
    RefusalMode, Scope, ServiceFailureMode, ToolAction, ToolRule, DEFAULT_IDENTITY_HEADER,
    DEFAULT_MAX_BODY_BYTES,
};
use crate::protocol::ratelimit::Unit;

use crate::json::strict;

#[cold]
#[inline(never)]
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

const POLICY_FIELDS: &[&str] = &[
    "version",
    "default",
    "tools",
    "identity_header",
    "identity",
    "grants",
    "max_body_bytes",
    "refusal_mode",
    "hide",
    "description",
    "shadow",
    "audit",
    "failure_mode",
    "counter_slots",
    "rate_limit_services",
    "rate_limit_service",
    "approval",
    "pins",
    "classes",
    "detectors",
];
const IDENTITY_FIELDS: &[&str] = &["sources", "missing"];
const GRANT_FIELDS: &[&str] = &["identities", "tools", "limits"];
const TOOL_FIELDS: &[&str] = &["action", "reason", "limits", "rules", "shadow", "guard"];
const GRANT_TOOL_FIELDS: &[&str] = &["action", "reason", "limits"];
const LIMIT_FIELDS: &[&str] = &["counter", "window", "max", "scope", "rate_limit_service"];
const SERVICE_FIELDS: &[&str] = &["cluster", "domain", "timeout_ms", "failure_mode"];
pub const DEFAULT_SERVICE_DOMAIN: &str = "mcp-policy";
pub const DEFAULT_SERVICE_TIMEOUT_MS: u64 = 200;
pub const MAX_SERVICE_TIMEOUT_MS: u64 = 60_000;

/// Callers each scoped counter tracks at once, unless the policy says otherwise.
pub const DEFAULT_COUNTER_SLOTS: u64 = 65_536;
/// Bounds on `counter_slots`: at least one bucket; at most about 300 MB of shared data per
/// scoped counter.
pub const MIN_COUNTER_SLOTS: u64 = ENTRIES_PER_BUCKET as u64;
pub const MAX_COUNTER_SLOTS: u64 = 1 << 24;

/// Largest `max_body_bytes` accepted: Envoy must buffer the whole body, so keep it sane.
pub const MAX_BODY_BYTES_CEILING: u64 = 64 * 1024 * 1024;

/// Parse and validate a policy document. Nothing half-understood is accepted: unknown fields,
/// wrong types, out-of-range values and inconsistent counters are all errors.
#[cold]
#[inline(never)]
pub fn load_policy(text: &[u8]) -> Result<Policy> {
    let document: Value = strict::from_slice(text).map_err(|e| PolicyError {
        path: String::new(),
        message: format!("not valid JSON: {e}"),
    })?;
    policy_from_value(&document)
}

/// A policy document already read as JSON, section by section. The sections are checked in a
/// fixed order, so a document with several errors always reports the same one.
#[cold]
#[inline(never)]
pub fn policy_from_value(document: &Value) -> Result<Policy> {
    let root = as_object(document, "")?;
    reject_unknown_fields(root, "", &[POLICY_FIELDS, targets::FIELDS].concat())?;
    version(root)?;
    let default_action = default_action(root)?;
    let (identity_sources, missing_identity) = identity(root)?;
    let max_body_bytes = max_body_bytes(root)?;
    let counter_slots = counter_slots(root)?;
    let refusal_mode = refusal_mode(root)?;
    let mut counters = counter_services(root)?;
    let tools = tools(root, &mut counters)?;
    let (hidden, hide_all) = hide(root.get("hide"))?;
    if let Some(v) = root.get("description") {
        as_str(v, "description")?;
    }
    let grants = match root.get("grants") {
        Some(v) => grants(v, &identity_sources, &mut counters)?,
        None => GrantTable::default(),
    };
    let targets = targets::load(root, &mut counters, limit_list)?;
    let shadow = flag(root.get("shadow"), "shadow")?;
    let (audit_arguments, audit_hash) = audit(root.get("audit"))?;
    if tools.wildcard_entry.as_ref().is_some_and(|w| w.shadow) {
        return err(
            "tools[\"*\"]",
            "the \"*\" entry takes only \"rules\" and \"guard\"",
        );
    }
    let pins = pins::pins(root, document)?;
    let mut classes = classes(root, pins.as_ref(), &mut counters)?;
    let mut tools = tools;
    let wildcard_guard = guards(root, &mut tools, &mut classes)?;
    let approval = approval(root, &tools)?;
    if approval.is_none() {
        if let Some(path) = class_needing_approval(&classes) {
            return err(
                &path,
                "\"require_approval\" needs the policy's \"approval\" settings (at least {\"cluster\": ...}, the approval service's Envoy cluster)",
            );
        }
    }
    let fail_open = fail_open(root)?;

    let mut policy = Policy {
        fail_open,
        counter_buckets: counter_slots.div_ceil(ENTRIES_PER_BUCKET as u64),
        counter_salt: 0,
        counter_namespace: String::new(),
        rate_limit_services: std::mem::take(&mut counters.services),
        approval,
        shadow,
        audit_arguments,
        audit_hash,
        default_action,
        tools: tools.by_name,
        wildcard_rules: tools.wildcard_rules,
        hidden,
        hide_all,
        labelled_tools: HashSet::new(),
        counters: counters.specs,
        identity_sources,
        missing_identity,
        grants,
        max_body_bytes,
        refusal_mode,
        pins,
        classes,
        targets,
        wildcard_guard,
    };
    policy.labelled_tools = policy.names_to_label();
    Ok(policy)
}

/// `version`: required, and `"1"` is the only one.
#[cold]
#[inline(never)]
fn version(root: &Map<String, Value>) -> Result<()> {
    match root.get("version") {
        None => err("version", "required; the only supported version is \"1\""),
        Some(v) => one_of(v, "version", &["1"]).map(|_| ()),
    }
}

/// `default`: what happens to a tool the policy does not list (deny unless it says allow).
#[cold]
#[inline(never)]
fn default_action(root: &Map<String, Value>) -> Result<DefaultAction> {
    Ok(match root.get("default") {
        None => DefaultAction::Deny,
        Some(v) => match one_of(v, "default", &["allow", "deny"])? {
            "allow" => DefaultAction::Allow,
            _ => DefaultAction::Deny,
        },
    })
}

/// `max_body_bytes`: the largest request body the filter buffers and reads.
#[cold]
#[inline(never)]
fn max_body_bytes(root: &Map<String, Value>) -> Result<u64> {
    let Some(v) = root.get("max_body_bytes") else {
        return Ok(DEFAULT_MAX_BODY_BYTES);
    };
    let n = positive_integer(v, "max_body_bytes")?;
    if n > MAX_BODY_BYTES_CEILING {
        return err(
            "max_body_bytes",
            format!("at most {MAX_BODY_BYTES_CEILING} bytes, got {n}"),
        );
    }
    Ok(n)
}

/// `counter_slots`: how many callers each scoped counter tracks at once.
#[cold]
#[inline(never)]
fn counter_slots(root: &Map<String, Value>) -> Result<u64> {
    let Some(v) = root.get("counter_slots") else {
        return Ok(DEFAULT_COUNTER_SLOTS);
    };
    let n = positive_integer(v, "counter_slots")?;
    if !(MIN_COUNTER_SLOTS..=MAX_COUNTER_SLOTS).contains(&n) {
        return err(
            "counter_slots",
            format!("between {MIN_COUNTER_SLOTS} and {MAX_COUNTER_SLOTS}, got {n}"),
        );
    }
    Ok(n)
}

/// `refusal_mode`: whether a refusal is a JSON-RPC error in a 200 or carries an HTTP status.
#[cold]
#[inline(never)]
fn refusal_mode(root: &Map<String, Value>) -> Result<RefusalMode> {
    Ok(match root.get("refusal_mode") {
        None => RefusalMode::JsonRpc,
        Some(v) => match one_of(v, "refusal_mode", &["jsonrpc", "http"])? {
            "http" => RefusalMode::Http,
            _ => RefusalMode::JsonRpc,
        },
    })
}

/// A counter table that knows the rate-limit services (`rate_limit_services`) and the one
/// counters use unless they name another (`rate_limit_service`), before any counter is defined.
#[cold]
#[inline(never)]
fn counter_services(root: &Map<String, Value>) -> Result<CounterTable> {
    let mut counters = CounterTable::default();
    counters.services = match root.get("rate_limit_services") {
        Some(v) => rate_limit_services(v)?,
        None => Vec::new(),
    };
    counters.default_service = match root.get("rate_limit_service") {
        Some(v) => counters.service_named(v, "rate_limit_service")?,
        None => None,
    };
    Ok(counters)
}

/// `tools`, server-wide: each named tool's rule with its `rules`, and the `"*"` entry.
struct Tools {
    by_name: HashMap<String, ToolRule>,
    /// The `"*"` entry as written: it may carry nothing but `rules`.
    wildcard_entry: Option<ToolRule>,
    wildcard_rules: Vec<Rule>,
}

#[cold]
#[inline(never)]
fn tools(root: &Map<String, Value>, counters: &mut CounterTable) -> Result<Tools> {
    let mut by_name = match root.get("tools") {
        Some(v) => tool_rules(v, "tools", TOOL_FIELDS, counters)?,
        None => HashMap::new(),
    };
    // `"*"` is not a tool: it carries the rules for every call.
    let wildcard_entry = by_name.remove("*");
    if let Some(entry) = &wildcard_entry {
        if entry.action != ToolAction::Allow || entry.reason.is_some() || !entry.limits.is_empty() {
            return err("tools[\"*\"]", "the \"*\" entry takes only \"rules\"");
        }
    }
    let rules = match root.get("tools").and_then(Value::as_object) {
        Some(tools_object) => rules::load(tools_object, counters)?,
        None => rules::LoadedRules {
            by_tool: HashMap::new(),
            wildcard: Vec::new(),
        },
    };
    for (tool, list) in rules.by_tool {
        if let Some(rule) = by_name.get_mut(&tool) {
            rule.rules = list;
        }
    }
    Ok(Tools {
        by_name,
        wildcard_entry,
        wildcard_rules: rules.wildcard,
    })
}

/// `audit`: whether audit records carry a call's arguments, and whether they carry their hash
/// (neither unless asked: the hash is most of what a large call costs, docs/performance.md).
#[cold]
#[inline(never)]
fn audit(value: Option<&Value>) -> Result<(bool, bool)> {
    let Some(v) = value else {
        return Ok((false, false));
    };
    let audit = as_object(v, "audit")?;
    reject_unknown_fields(audit, "audit", &["include_arguments", "hash_arguments"])?;
    Ok((
        flag(audit.get("include_arguments"), "audit.include_arguments")?,
        flag(audit.get("hash_arguments"), "audit.hash_arguments")?,
    ))
}

/// `approval`: how to ask a human; required once a tool or a rule says `require_approval`.
#[cold]
#[inline(never)]
fn approval(root: &Map<String, Value>, tools: &Tools) -> Result<Option<ApprovalSettings>> {
    if let Some(v) = root.get("approval") {
        return approval_settings(v).map(Some);
    }
    match first_needing_approval(tools) {
        Some(path) => err(
            &path,
            "\"require_approval\" needs the policy's \"approval\" settings (at least {\"cluster\": ...}, the approval service's Envoy cluster)",
        ),
        None => Ok(None),
    }
}

/// The JSON path of the first `require_approval`: a tool's action, else a rule's.
#[cold]
#[inline(never)]
fn first_needing_approval(tools: &Tools) -> Option<String> {
    // The first in name order is reported (min, not a sort: each sort costs KBs of .wasm).
    let needing = tools
        .by_name
        .iter()
        .filter(|(_, t)| t.action == ToolAction::RequireApproval)
        .map(|(name, _)| name)
        .min();
    let rule_path = tools
        .by_name
        .iter()
        .flat_map(|(name, t)| {
            t.rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.approval)
                .map(move |(i, _)| format!("{}.rules[{i}].action", key_path("tools", name)))
        })
        .chain(
            tools
                .wildcard_rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.approval)
                .map(|(i, _)| format!("tools[\"*\"].rules[{i}].action")),
        )
        .min();
    needing
        .map(|name| key_path(&key_path("tools", name), "action"))
        .or(rule_path)
}

/// `classes`: an entry (what a tool entry takes) per risk class. They apply through pins, so a
/// policy without `pins` cannot have them.
#[cold]
#[inline(never)]
fn classes(
    root: &Map<String, Value>,
    pins: Option<&Pins>,
    counters: &mut CounterTable,
) -> Result<Classes> {
    let Some(value) = root.get("classes") else {
        return Ok(Classes::default());
    };
    let object = as_object(value, "classes")?;
    let names: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
    reject_unknown_fields(object, "classes", &names)?;
    if pins.is_none() && !object.is_empty() {
        return err(
            "classes",
            "classes apply through the annotations of pinned tools (a listing's own annotations are untrusted hints): add a \"pins\" block",
        );
    }
    let mut classes = Classes::default();
    for (class, slot) in Class::ALL.iter().zip(classes.entries.iter_mut()) {
        if let Some(entry) = object.get(class.as_str()) {
            let path = key_path("classes", class.as_str());
            *slot = Some(tool_rule(entry, &path, TOOL_FIELDS, counters)?);
        }
    }
    let loaded = rules::load_section("classes", object, counters)?;
    for (name, list) in loaded.by_tool {
        if let Some(entry) = Class::ALL
            .iter()
            .position(|c| c.as_str() == name)
            .and_then(|at| classes.entries.get_mut(at))
            .and_then(Option::as_mut)
        {
            entry.rules = list;
        }
    }
    Ok(classes)
}

/// Every entry's `guard` (tools, classes), with the policy's own `detectors`; the `"*"`
/// entry's is returned.
#[cold]
#[inline(never)]
fn guards(
    root: &Map<String, Value>,
    tools: &mut Tools,
    classes: &mut Classes,
) -> Result<Option<crate::policy::guard::Guard>> {
    let custom = guard::custom_detectors(root)?;
    let mut wildcard = None;
    for (name, entry) in root
        .get("tools")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let path = key_path("tools", name);
        let loaded = guard::guard(entry, &path, &custom)?;
        if name == "*" {
            wildcard = loaded;
        } else if let Some(rule) = tools.by_name.get_mut(name) {
            rule.guard = loaded;
        }
    }
    for (class, slot) in Class::ALL.iter().zip(classes.entries.iter_mut()) {
        let entry = root.get("classes").and_then(|c| c.get(class.as_str()));
        if let (Some(entry), Some(rule)) = (entry, slot.as_mut()) {
            rule.guard = guard::guard(entry, &key_path("classes", class.as_str()), &custom)?;
        }
    }
    Ok(wildcard)
}

/// The JSON path of the first class entry or class rule asking for approval.
#[cold]
#[inline(never)]
fn class_needing_approval(classes: &Classes) -> Option<String> {
    classes.entries().find_map(|entry| {
        if entry.action == ToolAction::RequireApproval {
            return Some(key_path(&entry.path, "action"));
        }
        entry
            .rules
            .iter()
            .position(|r| r.approval)
            .map(|i| format!("{}.rules[{i}].action", entry.path))
    })
}

/// `failure_mode`: whether a call goes on (`open`) when its counters cannot be consulted.
#[cold]
#[inline(never)]
fn fail_open(root: &Map<String, Value>) -> Result<bool> {
    match root.get("failure_mode") {
        None => Ok(false),
        Some(v) => Ok(one_of(v, "failure_mode", &["closed", "open"])? == "open"),
    }
}

#[cold]
#[inline(never)]
fn tool_rules(
    value: &Value,
    path: &str,
    fields: &[&str],
    counters: &mut CounterTable,
) -> Result<HashMap<String, ToolRule>> {
    let mut tools = HashMap::new();
    for (name, rule) in as_object(value, path)? {
        let tool_path = key_path(path, name);
        if name.is_empty() {
            return err(&tool_path, "a tool name must not be empty");
        }
        tools.insert(name.clone(), tool_rule(rule, &tool_path, fields, counters)?);
    }
    Ok(tools)
}

#[cold]
#[inline(never)]
fn flag(value: Option<&Value>, path: &str) -> Result<bool> {
    match value {
        None => Ok(false),
        Some(v) => v.as_bool().map_or_else(
            || err(path, format!("expected true or false, got {}", describe(v))),
            Ok,
        ),
    }
}

/// `hide`: tool names (or `"*"` for all) that agents are not to see or call.
#[cold]
#[inline(never)]
fn hide(value: Option<&Value>) -> Result<(HashSet<String>, bool)> {
    let Some(value) = value else {
        return Ok((HashSet::new(), false));
    };
    let items = value.as_array().map_or_else(
        || {
            err(
                "hide",
                format!("expected an array, got {}", describe(value)),
            )
        },
        Ok,
    )?;
    let mut names: HashSet<String> = HashSet::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("hide[{index}]");
        let name = as_str(item, &path)?.trim();
        if name.is_empty() {
            return err(&path, "entry must not be empty");
        }
        if !names.insert(name.to_owned()) {
            return err(&path, format!("duplicate entry {name:?}"));
        }
    }
    let all = names.contains("*");
    Ok((names, all))
}

/// `identity_header` (shorthand for one header source) or `identity: {sources, missing}`.
#[cold]
#[inline(never)]
fn identity(root: &Map<String, Value>) -> Result<(Vec<IdentitySource>, MissingIdentity)> {
    let identity = match (root.get("identity_header"), root.get("identity")) {
        (Some(_), Some(_)) => {
            return err(
                "identity_header",
                "use either identity_header or identity.sources, not both",
            )
        }
        (Some(v), None) => return Ok(one_header(header_name(v, "identity_header")?)),
        (None, None) => return Ok(one_header(DEFAULT_IDENTITY_HEADER.to_owned())),
        (None, Some(v)) => as_object(v, "identity")?,
    };
    reject_unknown_fields(identity, "identity", IDENTITY_FIELDS)?;
    let missing = match identity.get("missing") {
        None => MissingIdentity::Anonymous,
        Some(v) => match one_of(v, "identity.missing", &["anonymous", "deny"])? {
            "deny" => MissingIdentity::Deny,
            _ => MissingIdentity::Anonymous,
        },
    };
    let Some(list) = identity.get("sources") else {
        return err(
            "identity.sources",
            "required: a list of identity sources, tried in order",
        );
    };
    let items = list.as_array().map_or_else(
        || {
            err(
                "identity.sources",
                format!("expected an array, got {}", describe(list)),
            )
        },
        Ok,
    )?;
    if items.is_empty() {
        return err("identity.sources", "list at least one identity source");
    }
    // Loops rather than `collect::<Result<_>>`: the loader runs once per configuration, and the
    // adapter's code is larger in the .wasm.
    let mut sources = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        sources.push(identity_source(
            item,
            &format!("identity.sources[{index}]"),
        )?);
    }
    Ok((sources, missing))
}

/// The identity of a caller who sends it in header `name` (not as a secret), anonymous without.
#[cold]
#[inline(never)]
fn one_header(name: String) -> (Vec<IdentitySource>, MissingIdentity) {
    (
        vec![IdentitySource::Header {
            name,
            secret: false,
        }],
        MissingIdentity::Anonymous,
    )
}

/// An HTTP header name, lower-cased as Envoy hands headers over.
#[cold]
#[inline(never)]
fn header_name(v: &Value, path: &str) -> Result<String> {
    let name = as_str(v, path)?;
    if !is_header_name(name) {
        return err(
            path,
            format!("not a valid HTTP header name: {}", describe(v)),
        );
    }
    Ok(name.to_ascii_lowercase())
}

/// One of `identity.sources`: `{"header": NAME}`, `{"jwt_claim": CLAIM}` or `{"mtls": "uri_san"}`.
#[cold]
#[inline(never)]
fn identity_source(item: &Value, path: &str) -> Result<IdentitySource> {
    let source = as_object(item, path)?;
    let kind = ["header", "jwt_claim", "mtls"]
        .into_iter()
        .find_map(|k| source.get(k).map(|v| (k, v)));
    match kind {
        Some(("header", value)) => {
            reject_unknown_fields(source, path, &["header", "secret"])?;
            let name = header_name(value, &key_path(path, "header"))?;
            let secret = flag(source.get("secret"), &key_path(path, "secret"))?;
            Ok(IdentitySource::Header { name, secret })
        }
        Some(("jwt_claim", value)) => jwt_claim_source(source, value, path),
        Some((_, value)) => {
            reject_unknown_fields(source, path, &["mtls"])?;
            one_of(value, &key_path(path, "mtls"), &["uri_san"])?;
            Ok(IdentitySource::MtlsUriSan)
        }
        None => err(
            path,
            "expected one of {\"header\": NAME}, {\"jwt_claim\": CLAIM}, {\"mtls\": \"uri_san\"}",
        ),
    }
}

/// `{"jwt_claim": CLAIM, "metadata_key": KEY}`: a claim of the JWT Envoy's filter verified.
#[cold]
#[inline(never)]
fn jwt_claim_source(
    source: &Map<String, Value>,
    claim: &Value,
    path: &str,
) -> Result<IdentitySource> {
    reject_unknown_fields(source, path, &["jwt_claim", "metadata_key"])?;
    let claim_path = key_path(path, "jwt_claim");
    // A string is a dot-separated path ("act.sub"); a list names each level as it is,
    // for claim names with dots in them (["https://example.com/agent"]).
    let segments: Vec<String> = match claim.as_array() {
        Some(levels) => {
            let mut segments = Vec::with_capacity(levels.len());
            for (i, level) in levels.iter().enumerate() {
                segments.push(as_str(level, &format!("{claim_path}[{i}]"))?.to_owned());
            }
            segments
        }
        None => as_str(claim, &claim_path)?
            .split('.')
            .map(str::to_owned)
            .collect(),
    };
    if segments.is_empty() || segments.iter().any(String::is_empty) {
        return err(&claim_path, "a claim path is dot-separated names, e.g. \"sub\" or \"act.sub\", or a list of names, e.g. [\"https://example.com/agent\"]");
    }
    let metadata_key = match source.get("metadata_key") {
        None => "jwt_payload".to_owned(),
        Some(v) => as_str(v, &key_path(path, "metadata_key"))?.to_owned(),
    };
    Ok(IdentitySource::JwtClaim {
        metadata_key,
        path: segments,
    })
}

#[cold]
#[inline(never)]
fn grants(
    value: &Value,
    sources: &[IdentitySource],
    counters: &mut CounterTable,
) -> Result<GrantTable> {
    let secret_source = sources
        .iter()
        .any(|s| matches!(s, IdentitySource::Header { secret: true, .. }));
    let mut table = GrantTable::default();
    for (name, grant) in as_object(value, "grants")? {
        let path = key_path("grants", name);
        if name.is_empty() {
            return err(&path, "a grant name must not be empty");
        }
        let object = as_object(grant, &path)?;
        reject_unknown_fields(object, &path, GRANT_FIELDS)?;
        let identities_path = key_path(&path, "identities");
        let Some(list) = object.get("identities") else {
            return err(
                &identities_path,
                "required: the identities (or `prefix*` patterns) holding this grant",
            );
        };
        let items = list.as_array().map_or_else(
            || {
                err(
                    &identities_path,
                    format!("expected an array, got {}", describe(list)),
                )
            },
            Ok,
        )?;
        let mut patterns = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{identities_path}[{index}]");
            let text = as_str(item, &item_path)?;
            if let Some(problem) = hashed_key_problem(text, secret_source) {
                return err(&item_path, problem);
            }
            let pattern = IdentityPattern::parse(text).map_err(|m| PolicyError {
                path: item_path,
                message: m,
            })?;
            patterns.push(pattern);
        }
        let tools_path = key_path(&path, "tools");
        if let Some(listed) = object.get("tools").and_then(Value::as_object) {
            if listed.contains_key("*") {
                return err(
                    &key_path(&tools_path, "*"),
                    "a grant lists its tools by name; leave \"tools\" out for every tool the server-wide rules allow",
                );
            }
        }
        let tools = object
            .get("tools")
            .map(|v| tool_rules(v, &tools_path, GRANT_TOOL_FIELDS, counters))
            .transpose()?;
        let limits = match object.get("limits") {
            Some(v) => limit_list(v, &key_path(&path, "limits"), counters)?,
            None => Vec::new(),
        };
        table
            .add(
                Grant {
                    name: name.clone(),
                    tools,
                    limits,
                },
                patterns,
            )
            .map_err(|message| PolicyError {
                path: identities_path,
                message,
            })?;
    }
    Ok(table)
}

/// What is wrong with a grant entry written as a secret key's hash, if anything: it must be
/// exactly what `mcp-policy hash` prints, and only a secret source yields such identities.
#[cold]
#[inline(never)]
fn hashed_key_problem(text: &str, secret_source: bool) -> Option<String> {
    let digits = text
        .get(..SECRET_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(SECRET_PREFIX))
        .map(|_| text.get(SECRET_PREFIX.len()..).unwrap_or_default())?;
    // `sha256:*` (every key holder) and other prefixes of hashes are patterns, not keys.
    let hex = |d: &str| d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let well_formed = text.starts_with(SECRET_PREFIX)
        && match digits.strip_suffix('*') {
            Some(prefix) => prefix.len() < 64 && hex(prefix),
            None => digits.len() == 64 && hex(digits),
        };
    if !well_formed {
        return Some(format!(
            "a hashed key is `sha256:` and 64 lower-case hex digits, as `mcp-policy hash KEY` prints it; got {text:?}"
        ));
    }
    if !secret_source {
        return Some(
            "a hashed key only matches identities from a secret source, and no identity source is marked `\"secret\": true`"
                .to_owned(),
        );
    }
    None
}

#[cold]
#[inline(never)]
fn tool_rule(
    value: &Value,
    path: &str,
    fields: &[&str],
    counters: &mut CounterTable,
) -> Result<ToolRule> {
    let rule = as_object(value, path)?;
    reject_unknown_fields(rule, path, fields)?;

    // Approval is asked per server-wide tool; a grant decides who may call it at all.
    let actions: &[&str] = if fields == TOOL_FIELDS {
        &["allow", "deny", "require_approval"]
    } else {
        &["allow", "deny"]
    };
    let action = match rule.get("action") {
        None => ToolAction::Allow,
        Some(v) => match one_of(v, &key_path(path, "action"), actions)? {
            "deny" => ToolAction::Deny,
            "require_approval" => ToolAction::RequireApproval,
            _ => ToolAction::Allow,
        },
    };
    let reason = rule
        .get("reason")
        .map(|v| as_str(v, &key_path(path, "reason")).map(str::to_owned))
        .transpose()?;

    let limits = match rule.get("limits") {
        Some(list) => limit_list(list, &key_path(path, "limits"), counters)?,
        None => Vec::new(),
    };
    // `rules` are loaded for all tools at once (they may read each other's counters).
    let shadow = flag(rule.get("shadow"), &key_path(path, "shadow"))?;
    Ok(ToolRule {
        action,
        reason,
        limits,
        rules: Vec::new(),
        shadow,
        // Loaded for every entry at once (`guards`): they share the policy's own detectors.
        guard: None,
        path: path.to_owned(),
    })
}

#[cold]
#[inline(never)]
fn limit_list(
    list: &Value,
    list_path: &str,
    counters: &mut CounterTable,
) -> Result<Vec<CounterId>> {
    let items = list.as_array().map_or_else(
        || {
            err(
                list_path,
                format!("expected an array, got {}", describe(list)),
            )
        },
        Ok,
    )?;
    let mut limits = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{list_path}[{index}]");
        let id = counters.define(limit(item, &item_path, counters)?, &item_path)?;
        if limits.contains(&id) {
            return err(
                &item_path,
                "this list already uses that counter; list each counter once",
            );
        }
        limits.push(id);
    }
    Ok(limits)
}

#[cold]
#[inline(never)]
fn limit(value: &Value, path: &str, counters: &CounterTable) -> Result<CounterSpec> {
    let object = as_object(value, path)?;
    reject_unknown_fields(object, path, LIMIT_FIELDS)?;
    let field = |name: &str| -> Result<(&Value, String)> {
        let field_path = key_path(path, name);
        match object.get(name) {
            Some(v) => Ok((v, field_path)),
            None => err(&field_path, "required"),
        }
    };

    let (v, p) = field("counter")?;
    let name = as_str(v, &p)?;
    if name.is_empty() {
        return err(&p, "a counter name must not be empty");
    }
    let (v, p) = field("window")?;
    let window = window(v, &p)?;
    let (v, p) = field("max")?;
    let max = positive_integer(v, &p)?;
    let (v, p) = field("scope")?;
    let scope = match one_of(v, &p, &["global", "grant", "identity", "session"])? {
        "global" => Scope::Global,
        "grant" => Scope::Grant,
        "identity" => Scope::Identity,
        _ => Scope::Session,
    };
    let service = match object.get("rate_limit_service") {
        Some(v) => counters.service_named(v, &key_path(path, "rate_limit_service"))?,
        None => counters.default_service,
    };
    if let Some(service) = service.and_then(|i| counters.services.get(i)) {
        // The protocol states a limit as requests per unit: only windows that are a unit fit.
        if Unit::for_window(window.seconds()).is_none() {
            return err(
                &key_path(path, "window"),
                format!(
                    "counted by rate-limit service \"{}\", so the window must be one the rate-limit protocol has a unit for: \"second\", \"minute\", \"hour\", \"day\" or 604800 (a week); got {} s",
                    service.name,
                    window.seconds()
                ),
            );
        }
        if u32::try_from(max).is_err() {
            return err(
                &key_path(path, "max"),
                format!(
                    "counted by rate-limit service \"{}\": at most {}",
                    service.name,
                    u32::MAX
                ),
            );
        }
    }
    Ok(CounterSpec {
        name: name.to_owned(),
        window,
        max,
        scope,
        service,
        keys: CounterKeys::default(),
    })
}

pub const DEFAULT_APPROVAL_HOLD_SECONDS: u64 = 30;
pub const MAX_APPROVAL_HOLD_SECONDS: u64 = 600;
pub const DEFAULT_APPROVAL_VALID_SECONDS: u64 = 3600;
pub const MAX_APPROVAL_VALID_SECONDS: u64 = 30 * 86_400;

#[cold]
#[inline(never)]
fn approval_settings(value: &Value) -> Result<ApprovalSettings> {
    const PATH: &str = "approval";
    let object = as_object(value, PATH)?;
    reject_unknown_fields(object, PATH, &["cluster", "hold_seconds", "valid_seconds"])?;
    let cluster = match object.get("cluster") {
        Some(v) => as_str(v, "approval.cluster")?,
        None => {
            return err(
                "approval.cluster",
                "required: the Envoy cluster of the approval service",
            )
        }
    };
    if cluster.is_empty() {
        return err("approval.cluster", "must not be empty");
    }
    let bounded = |name: &str, default: u64, max: u64| -> Result<u64> {
        let path = key_path(PATH, name);
        match object.get(name) {
            None => Ok(default),
            Some(v) => {
                let n = positive_integer(v, &path)?;
                if n > max {
                    return err(&path, format!("at most {max}, got {n}"));
                }
                Ok(n)
            }
        }
    };
    Ok(ApprovalSettings {
        cluster: cluster.to_owned(),
        hold_seconds: bounded(
            "hold_seconds",
            DEFAULT_APPROVAL_HOLD_SECONDS,
            MAX_APPROVAL_HOLD_SECONDS,
        )?,
        valid_seconds: bounded(
            "valid_seconds",
            DEFAULT_APPROVAL_VALID_SECONDS,
            MAX_APPROVAL_VALID_SECONDS,
        )?,
    })
}

#[cold]
#[inline(never)]
fn rate_limit_services(value: &Value) -> Result<Vec<RateLimitService>> {
    const PATH: &str = "rate_limit_services";
    let services = as_object(value, PATH)?;
    let mut list = Vec::with_capacity(services.len());
    for (name, settings) in services {
        let path = key_path(PATH, name);
        if name.is_empty() || name == LOCAL_COUNTING {
            return err(&path, format!("a service name must not be empty or \"{LOCAL_COUNTING}\" (which names Envoy's shared data)"));
        }
        let object = as_object(settings, &path)?;
        reject_unknown_fields(object, &path, SERVICE_FIELDS)?;
        let cluster = match object.get("cluster") {
            Some(v) => as_str(v, &key_path(&path, "cluster"))?,
            None => {
                return err(
                    &key_path(&path, "cluster"),
                    "required: the Envoy cluster of the rate-limit service (HTTP/2)",
                )
            }
        };
        if cluster.is_empty() {
            return err(&key_path(&path, "cluster"), "must not be empty");
        }
        let domain = match object.get("domain") {
            Some(v) => as_str(v, &key_path(&path, "domain"))?,
            None => DEFAULT_SERVICE_DOMAIN,
        };
        if domain.is_empty() {
            return err(&key_path(&path, "domain"), "must not be empty");
        }
        let timeout_ms = match object.get("timeout_ms") {
            Some(v) => {
                let p = key_path(&path, "timeout_ms");
                let n = positive_integer(v, &p)?;
                if n > MAX_SERVICE_TIMEOUT_MS {
                    return err(&p, format!("at most {MAX_SERVICE_TIMEOUT_MS}, got {n}"));
                }
                n
            }
            None => DEFAULT_SERVICE_TIMEOUT_MS,
        };
        let failure_mode = match object.get("failure_mode") {
            None => ServiceFailureMode::Closed,
            Some(v) => match one_of(
                v,
                &key_path(&path, "failure_mode"),
                &["closed", "open", "local"],
            )? {
                "open" => ServiceFailureMode::Open,
                "local" => ServiceFailureMode::Local,
                _ => ServiceFailureMode::Closed,
            },
        };
        list.push(RateLimitService {
            name: name.clone(),
            cluster: cluster.to_owned(),
            domain: domain.to_owned(),
            timeout_ms,
            failure_mode,
        });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::window::Window;
    use crate::test_support::test;

    const SEED: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[{"counter":"wechat_mass_send_rate","window":"minute","max":30,"scope":"grant"}]}}}"#;

    fn error_of(text: &str) -> String {
        load_policy(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn the_seed_document_loads_verbatim() {
        let policy = load_policy(SEED.as_bytes()).unwrap();
        assert_eq!(policy.default_action, DefaultAction::Deny);
        assert_eq!(
            policy.counters,
            vec![CounterSpec {
                name: "wechat_mass_send_rate".into(),
                window: Window::MINUTE,
                max: 30,
                scope: Scope::Grant,
                service: None,
                keys: Default::default(),
            }]
        );
        assert_eq!(policy.tools["wechat_mass_send"].action, ToolAction::Allow);
        assert_eq!(
            policy.identity_sources,
            vec![IdentitySource::Header {
                name: "x-agent-id".into(),
                secret: false
            }]
        );
        assert_eq!(policy.missing_identity, MissingIdentity::Anonymous);
        assert!(policy.grants.is_empty());
        assert_eq!(policy.max_body_bytes, 1024 * 1024);
        assert_eq!(policy.refusal_mode, RefusalMode::JsonRpc);
    }

    #[test]
    fn defaults_when_fields_are_omitted() {
        let policy = load_policy(br#"{"version":"1"}"#).unwrap();
        assert_eq!(policy.default_action, DefaultAction::Deny);
        assert!(policy.tools.is_empty());
    }

    #[test]
    fn optional_fields() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","identity_header":"X-API-Key","max_body_bytes":2048,"refusal_mode":"http",
                 "tools":{"t":{"action":"deny","reason":"no"}}}"#,
        )
        .unwrap();
        assert_eq!(policy.default_action, DefaultAction::Allow);
        assert_eq!(
            policy.identity_sources,
            vec![IdentitySource::Header {
                name: "x-api-key".into(),
                secret: false
            }]
        );
        assert_eq!(policy.max_body_bytes, 2048);
        assert_eq!(policy.refusal_mode, RefusalMode::Http);
        assert_eq!(policy.tools["t"].reason.as_deref(), Some("no"));
    }

    #[test]
    fn windows_by_name_and_by_seconds() {
        for (window, seconds) in [
            ("\"second\"", 1),
            ("\"minute\"", 60),
            ("\"hour\"", 3600),
            ("\"day\"", 86400),
            ("60", 60),
            ("5", 5),
        ] {
            let text = format!(
                r#"{{"version":"1","tools":{{"t":{{"limits":[{{"counter":"c","window":{window},"max":10,"scope":"global"}}]}}}}}}"#
            );
            assert_eq!(
                load_policy(text.as_bytes()).unwrap().counters[0]
                    .window
                    .seconds(),
                seconds,
                "{window}"
            );
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let cases = [
            (
                r#"{"version":"1","tools":{"wechat_mass_send":{"limits":[{"counter":"c","window":"fortnight","max":30,"scope":"grant"}]}}}"#,
                r#"tools.wechat_mass_send.limits[0].window: expected "second", "minute", "hour", "day" or a positive integer number of seconds, got string "fortnight""#,
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":0,"max":30,"scope":"grant"}]}}}"#,
                "tools.t.limits[0].window: expected",
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":0,"scope":"grant"}]}}}"#,
                "tools.t.limits[0].max: expected a positive integer, got number 0",
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":2.5,"scope":"grant"}]}}}"#,
                "tools.t.limits[0].max: expected a positive integer, got number 2.5",
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":"30","scope":"grant"}]}}}"#,
                "tools.t.limits[0].max: expected a positive integer, got string \"30\"",
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":3,"scope":"team"}]}}}"#,
                r#"tools.t.limits[0].scope: expected one of "global", "grant", "identity", "session", got string "team""#,
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"window":60,"max":3,"scope":"global"}]}}}"#,
                "tools.t.limits[0].counter: required",
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":3,"scope":"global","burst":2}]}}}"#,
                r#"tools.t.limits[0].burst: unknown field; expected one of "counter", "window", "max", "scope""#,
            ),
            (
                r#"{"version":"1","tools":{"t":{"action":"allow","reson":"typo"}}}"#,
                "tools.t.reson: unknown field",
            ),
            (
                r#"{"version":"1","tools":{"t":{"action":"block"}}}"#,
                r#"tools.t.action: expected one of "allow", "deny", "require_approval", got string "block""#,
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":{}}}}"#,
                "tools.t.limits: expected an array, got an object",
            ),
            (
                r#"{"version":"1","tools":{"a.b":{"reason":5}}}"#,
                r#"tools["a.b"].reason: expected a string, got number 5"#,
            ),
            (
                r#"{"version":"1","tools":[]}"#,
                "tools: expected an object, got an array",
            ),
            (
                r#"{"version":"2"}"#,
                r#"version: expected one of "1", got string "2""#,
            ),
            (
                r#"{"version":1}"#,
                "version: expected a string, got number 1",
            ),
            (r#"{"default":"deny"}"#, "version: required"),
            (
                r#"{"version":"1","default":"block"}"#,
                r#"default: expected one of "allow", "deny", got string "block""#,
            ),
            (
                r#"{"version":"1","defaults":"deny"}"#,
                "defaults: unknown field",
            ),
            (
                r#"{"version":"1","identity_header":"x agent"}"#,
                "identity_header: not a valid HTTP header name",
            ),
            (
                r#"{"version":"1","max_body_bytes":0}"#,
                "max_body_bytes: expected a positive integer",
            ),
            (
                r#"{"version":"1","max_body_bytes":1000000000}"#,
                "max_body_bytes: at most",
            ),
            (
                r#"{"version":"1","refusal_mode":"403"}"#,
                "refusal_mode: expected one of",
            ),
            (
                r#"{"version":"1","tools":{"":{}}}"#,
                r#"tools[""]: a tool name must not be empty"#,
            ),
            ("[]", "(document): expected an object, got an array"),
            ("{", "(document): not valid JSON"),
            (
                r#"{"version":"1","tools":{"t":{"action":"deny"},"t":{}}}"#,
                "(document): not valid JSON: duplicate key \"t\" in an object",
            ),
        ];
        for (text, expected) in cases {
            let got = error_of(text);
            assert!(
                got.starts_with(expected),
                "policy {text}\n  got:      {got}\n  expected: {expected}…"
            );
        }
    }

    #[test]
    fn identity_sources_and_grants() {
        let policy = load_policy(
            br#"{"version":"1","identity":{"sources":[{"jwt_claim":"act.sub","metadata_key":"agents"},{"mtls":"uri_san"},
                    {"header":"X-API-Key","secret":true}],"missing":"deny"},
                 "grants":{"g":{"identities":["a","spiffe://td/ns/x/*"],"tools":{"t":{}},
                    "limits":[{"counter":"c","window":60,"max":5,"scope":"identity"}]}}}"#,
        )
        .unwrap();
        assert_eq!(
            policy.identity_sources,
            vec![
                IdentitySource::JwtClaim {
                    metadata_key: "agents".into(),
                    path: vec!["act".into(), "sub".into()]
                },
                IdentitySource::MtlsUriSan,
                IdentitySource::Header {
                    name: "x-api-key".into(),
                    secret: true
                },
            ]
        );
        assert_eq!(policy.missing_identity, MissingIdentity::Deny);
        let namespaced = load_policy(
            br#"{"version":"1","identity":{"sources":[{"jwt_claim":["https://example.com/agent"]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            namespaced.identity_sources,
            vec![IdentitySource::JwtClaim {
                metadata_key: "jwt_payload".into(),
                path: vec!["https://example.com/agent".into()]
            }]
        );
        let grant = policy.grants.find("spiffe://td/ns/x/sa/y", false).unwrap();
        assert_eq!(grant.name, "g");
        assert_eq!(policy.counters[grant.limits[0]].scope, Scope::Identity);
        assert!(grant.tools.as_ref().unwrap().contains_key("t"));
    }

    #[test]
    fn identity_and_grant_errors_name_the_path() {
        let cases = [
            (
                r#"{"version":"1","identity_header":"x","identity":{"sources":[{"header":"y"}]}}"#,
                "identity_header: use either",
            ),
            (
                r#"{"version":"1","identity":{}}"#,
                "identity.sources: required",
            ),
            (
                r#"{"version":"1","identity":{"sources":[]}}"#,
                "identity.sources: list at least one",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"cookie":"x"}]}}"#,
                "identity.sources[0]: expected one of",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"x","secret":"yes"}]}}"#,
                "identity.sources[0].secret: expected true or false",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"jwt_claim":"a..b"}]}}"#,
                "identity.sources[0].jwt_claim: a claim path",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"jwt_claim":[]}]}}"#,
                "identity.sources[0].jwt_claim: a claim path",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"jwt_claim":["a",1]}]}}"#,
                "identity.sources[0].jwt_claim[1]: expected a string",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"mtls":"dns_san"}]}}"#,
                r#"identity.sources[0].mtls: expected one of "uri_san""#,
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"x","jwt_claim":"sub"}]}}"#,
                "identity.sources[0].jwt_claim: unknown field",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"x"}],"missing":"allow"}}"#,
                "identity.missing: expected one of",
            ),
            (
                r#"{"version":"1","grants":{"g":{}}}"#,
                "grants.g.identities: required",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a*b"]}}}"#,
                "grants.g.identities[0]: `*` may only end a pattern",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a"],"tools":{"*":{}}}}}"#,
                "grants.g.tools[\"*\"]: a grant lists its tools by name",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"k","secret":true}]},"grants":{"g":{"identities":["x","SHA256:ab"]}}}"#,
                "grants.g.identities[1]: a hashed key is `sha256:` and 64 lower-case hex digits",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"k","secret":true}]},"grants":{"g":{"identities":["sha256:2F1C000000000000000000000000000000000000000000000000000000000000"]}}}"#,
                "grants.g.identities[0]: a hashed key is `sha256:` and 64 lower-case hex digits",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["sha256:2f1c000000000000000000000000000000000000000000000000000000000000"]}}}"#,
                "grants.g.identities[0]: a hashed key only matches identities from a secret source",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["sha256:*"]}}}"#,
                "grants.g.identities[0]: a hashed key only matches identities from a secret source",
            ),
            (
                r#"{"version":"1","identity":{"sources":[{"header":"k","secret":true}]},"grants":{"g":{"identities":["sha256:XY*"]}}}"#,
                "grants.g.identities[0]: a hashed key is",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a"],"members":[]}}}"#,
                "grants.g.members: unknown field",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a"],"tools":{"t":{"action":"maybe"}}}}}"#,
                "grants.g.tools.t.action: expected one of",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a"],"limits":[{"counter":"c","window":60,"max":0,"scope":"grant"}]}}}"#,
                "grants.g.limits[0].max: expected a positive integer",
            ),
            (
                r#"{"version":"1","grants":{"g":{"identities":["a"]},"h":{"identities":["a"]}}}"#,
                r#"grants.h.identities: "a" is already listed by grant "g""#,
            ),
            (
                r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":60,"max":1,"scope":"grant"}]}},
                "grants":{"g":{"identities":["a"],"limits":[{"counter":"c","window":60,"max":2,"scope":"grant"}]}}}"#,
                r#"grants.g.limits[0]: counter "c" is already defined at tools.t.limits[0]"#,
            ),
        ];
        for (text, expected) in cases {
            let got = error_of(text);
            assert!(
                got.starts_with(expected),
                "policy {text}\n  got:      {got}\n  expected: {expected}…"
            );
        }
    }

    #[test]
    fn a_shared_counter_must_mean_the_same_budget_everywhere() {
        let consistent = r#"{"version":"1","tools":{
            "a":{"limits":[{"counter":"sends","window":"minute","max":30,"scope":"grant"}]},
            "b":{"limits":[{"counter":"sends","window":60,"max":30,"scope":"grant"}]}}}"#;
        let policy = load_policy(consistent.as_bytes()).unwrap();
        assert_eq!(policy.counters.len(), 1);
        assert_eq!(policy.tools["a"].limits, policy.tools["b"].limits);

        for other in [
            r#""window":"hour","max":30,"scope":"grant""#,
            r#""window":60,"max":31,"scope":"grant""#,
            r#""window":60,"max":30,"scope":"global""#,
        ] {
            let text = format!(
                r#"{{"version":"1","tools":{{"a":{{"limits":[{{"counter":"sends","window":60,"max":30,"scope":"grant"}}]}},"b":{{"limits":[{{"counter":"sends",{other}}}]}}}}}}"#
            );
            let got = error_of(&text);
            assert!(
                got.starts_with(
                    "tools.b.limits[0]: counter \"sends\" is already defined at tools.a.limits[0]"
                ),
                "{got}"
            );
        }
    }

    #[test]
    fn a_tool_may_not_list_the_same_counter_twice() {
        let text = r#"{"version":"1","tools":{"a":{"limits":[
            {"counter":"c","window":60,"max":3,"scope":"global"},{"counter":"c","window":60,"max":3,"scope":"global"}]}}}"#;
        assert!(
            error_of(text).starts_with("tools.a.limits[1]: this list already uses that counter")
        );
    }

    const HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pins_and_classes_load() {
        let policy = load_policy(
            format!(
                r#"{{"version":"1","default":"deny","pins":{{"mode":"report","tools":{{"send":{{"sha256":"{HASH}","annotations":{{"readOnlyHint":true}}}}}}}},
                "classes":{{"read_only":{{"limits":[{{"counter":"reads","window":"minute","max":9,"scope":"identity"}}]}},
                            "destructive":{{"action":"deny","reason":"no","rules":[{{"name":"r","conditions":[{{"path":"args.x","op":"exists","value":true}}]}}]}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let pins = policy.pins.as_ref().unwrap();
        assert_eq!(pins.mode, crate::policy::pins::PinMode::Report);
        assert!(pins.tools["send"].hints.read_only);
        assert_eq!(pins.generation.len(), 16);
        let destructive = policy.classes.entry(Class::Destructive).unwrap();
        assert_eq!(
            (destructive.path.as_str(), destructive.rules.len()),
            ("classes.destructive", 1)
        );
        assert_eq!(
            policy.classes.entry(Class::ReadOnly).unwrap().limits.len(),
            1
        );
        assert_eq!(
            policy.metric_label("send"),
            "send",
            "pinned names are labels"
        );
        let first_seen = load_policy(br#"{"version":"1","pins":{"mode":"first_seen"}}"#).unwrap();
        assert!(first_seen.pins.unwrap().tools.is_empty());
    }

    #[test]
    fn pins_and_classes_errors_name_their_path() {
        let pinned = format!(r#""pins":{{"tools":{{"t":{{"sha256":"{HASH}"}}}}}}"#);
        for (text, expected) in [
            (r#"{"version":"1","pins":[]}"#.to_owned(), "pins: expected an object"),
            (r#"{"version":"1","pins":{"mode":"strict","tools":{}}}"#.to_owned(), "pins.mode: "),
            (r#"{"version":"1","pins":{"mode":"enforce"}}"#.to_owned(), "pins.tools: mode \"enforce\" needs at least one pinned tool"),
            (r#"{"version":"1","pins":{"tools":{"t":{}}}}"#.to_owned(), "pins.tools.t.sha256: required"),
            (r#"{"version":"1","pins":{"tools":{"t":{"sha256":"abc"}}}}"#.to_owned(), "pins.tools.t.sha256: expected \"sha256:\" and 64 lowercase hex digits"),
            (format!(r#"{{"version":"1","pins":{{"tools":{{"t":{{"sha256":"{HASH}","annotations":[]}}}}}}}}"#), "pins.tools.t.annotations: expected an object"),
            (format!(r#"{{"version":"1","pins":{{"tools":{{"t":{{"sha256":"{HASH}","hash":1}}}}}}}}"#), "pins.tools.t.hash: unknown field"),
            (r#"{"version":"1","classes":{"read_only":{}}}"#.to_owned(), "classes: classes apply through the annotations of pinned tools"),
            (format!(r#"{{"version":"1",{pinned},"classes":{{"risky":{{}}}}}}"#), "classes.risky: unknown field"),
            (format!(r#"{{"version":"1",{pinned},"classes":{{"destructive":{{"action":"block"}}}}}}"#), "classes.destructive.action: "),
            (format!(r#"{{"version":"1",{pinned},"classes":{{"destructive":{{"action":"require_approval"}}}}}}"#), "classes.destructive.action: \"require_approval\" needs the policy's \"approval\" settings"),
            (format!(r#"{{"version":"1",{pinned},"classes":{{"open_world":{{"rules":[{{"conditions":[]}}]}}}}}}"#), "classes.open_world.rules[0].name: required"),
        ] {
            let error = error_of(&text);
            assert!(error.starts_with(expected), "{text}\n  gave: {error}");
        }
    }
}
