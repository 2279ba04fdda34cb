//! `detectors` (a policy's own, by regex) and each entry's `guard`: which detectors look at an
//! allowed call's arguments and results, and what their findings do.

use serde_json::{Map, Value};

use super::values::{
    as_object, as_str, describe, err, key_path, one_of, reject_unknown_fields, Result,
};
use crate::guard::detectors::{CustomSpec, DetectorError, Detectors, BUILTIN_NAMES};
use crate::policy::guard::{Guard, GuardAction, GuardRule};

const GUARD_FIELDS: &[&str] = &["arguments", "results", "failure_mode"];
const RULE_FIELDS: &[&str] = &["action", "detectors"];
const DETECTOR_FIELDS: &[&str] = &["name", "regex"];

/// The policy's own detectors (`detectors`: `[{"name", "regex"}]`), checked by compiling them.
#[cold]
#[inline(never)]
pub(crate) fn custom_detectors(root: &Map<String, Value>) -> Result<Vec<(String, String)>> {
    let Some(value) = root.get("detectors") else {
        return Ok(Vec::new());
    };
    let items = value.as_array().map_or_else(
        || {
            err(
                "detectors",
                format!("expected an array, got {}", describe(value)),
            )
        },
        Ok,
    )?;
    let mut custom = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("detectors[{index}]");
        let object = as_object(item, &path)?;
        reject_unknown_fields(object, &path, DETECTOR_FIELDS)?;
        let field = |name: &str| -> Result<String> {
            let field_path = key_path(&path, name);
            match object.get(name) {
                Some(v) => Ok(as_str(v, &field_path)?.to_owned()),
                None => err(&field_path, "required"),
            }
        };
        custom.push((field("name")?, field("regex")?));
    }
    let specs = specs(&custom);
    if let Err(problem) = Detectors::new(&[], &specs) {
        let (index, field) = match &problem {
            DetectorError::Builtin { index, .. } | DetectorError::Name { index, .. } => {
                (*index, "name")
            }
            DetectorError::Regex { index, .. } => (*index, "regex"),
        };
        return err(&format!("detectors[{index}].{field}"), problem.to_string());
    }
    Ok(custom)
}

fn specs(custom: &[(String, String)]) -> Vec<CustomSpec<'_>> {
    custom
        .iter()
        .map(|(name, regex)| CustomSpec { name, regex })
        .collect()
}

/// The `guard` of the entry at `entry_path` (`tools.send`), if it has one.
#[cold]
#[inline(never)]
pub(crate) fn guard(
    entry: &Value,
    entry_path: &str,
    custom: &[(String, String)],
) -> Result<Option<Guard>> {
    let Some(value) = entry.get("guard") else {
        return Ok(None);
    };
    let path = key_path(entry_path, "guard");
    let object = as_object(value, &path)?;
    reject_unknown_fields(object, &path, GUARD_FIELDS)?;
    let arguments = object
        .get("arguments")
        .map(|v| rule(v, &key_path(&path, "arguments"), custom, false))
        .transpose()?;
    let results = object
        .get("results")
        .map(|v| rule(v, &key_path(&path, "results"), custom, true))
        .transpose()?;
    let fail_open = match object.get("failure_mode") {
        None => false,
        Some(v) => one_of(v, &key_path(&path, "failure_mode"), &["closed", "open"])? == "open",
    };
    Ok(Some(Guard {
        arguments,
        results,
        fail_open,
        path,
    }))
}

/// One direction: an action (`"block"`), or `{"action", "detectors"}`.
#[cold]
#[inline(never)]
fn rule(
    value: &Value,
    path: &str,
    custom: &[(String, String)],
    results: bool,
) -> Result<GuardRule> {
    let (action_value, action_path, listed) = match value {
        Value::String(_) => (value, path.to_owned(), None),
        _ => {
            let object = as_object(value, path)?;
            reject_unknown_fields(object, path, RULE_FIELDS)?;
            let action_path = key_path(path, "action");
            let Some(action) = object.get("action") else {
                return err(
                    &action_path,
                    "required: \"block\", \"redact\" or \"report\"",
                );
            };
            (action, action_path, object.get("detectors"))
        }
    };
    let action = match one_of(action_value, &action_path, &["block", "redact", "report"])? {
        "block" => GuardAction::Block,
        "redact" if !results => {
            return err(
                &action_path,
                "arguments cannot be redacted: the server would run a call the agent did not send; use \"block\" or \"report\"",
            )
        }
        "redact" => GuardAction::Redact,
        _ => GuardAction::Report,
    };
    let detectors = match listed {
        None => all(custom),
        Some(list) => chosen(list, &key_path(path, "detectors"), custom)?,
    };
    Ok(GuardRule { action, detectors })
}

/// Every built-in detector and every one of the policy's own.
fn all(custom: &[(String, String)]) -> Detectors {
    Detectors::new(&BUILTIN_NAMES, &specs(custom)).unwrap_or_else(|_| Detectors::all())
}

/// The detectors `list` names, built-in or the policy's own.
#[cold]
#[inline(never)]
fn chosen(list: &Value, path: &str, custom: &[(String, String)]) -> Result<Detectors> {
    let items = list.as_array().map_or_else(
        || {
            err(
                path,
                format!(
                    "expected an array of detector names, got {}",
                    describe(list)
                ),
            )
        },
        Ok,
    )?;
    if items.is_empty() {
        return err(
            path,
            "an empty list guards nothing; leave the direction out instead",
        );
    }
    let mut builtins: Vec<&str> = Vec::new();
    let mut own: Vec<CustomSpec> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let name = as_str(item, &item_path)?;
        if let Some(builtin) = BUILTIN_NAMES.iter().find(|b| **b == name) {
            builtins.push(builtin);
        } else if let Some((name, regex)) = custom.iter().find(|(n, _)| n == name) {
            own.push(CustomSpec { name, regex });
        } else {
            let mut known: Vec<&str> = BUILTIN_NAMES.to_vec();
            known.extend(custom.iter().map(|(n, _)| n.as_str()));
            return err(
                &item_path,
                format!(
                    "unknown detector {name:?}; the detectors are {}",
                    known.join(", ")
                ),
            );
        }
    }
    Detectors::new(&builtins, &own).map_err(|problem| super::values::PolicyError {
        path: path.to_owned(),
        message: problem.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use crate::load::load_policy;
    use crate::test_support::test;

    fn error_of(text: &str) -> String {
        load_policy(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn guard_errors_name_their_path() {
        for (text, expected) in [
            (
                r#"{"version":"1","detectors":{}}"#,
                "detectors: expected an array",
            ),
            (
                r#"{"version":"1","detectors":[{"name":"x"}]}"#,
                "detectors[0].regex: required",
            ),
            (
                r#"{"version":"1","detectors":[{"name":"x","regex":"("}]}"#,
                "detectors[0].regex: invalid regex",
            ),
            (
                r#"{"version":"1","detectors":[{"name":"email","regex":"a"}]}"#,
                "detectors[0].name: ",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":[]}}}"#,
                "tools.t.guard: expected an object",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"args":"block"}}}}"#,
                "tools.t.guard.args: unknown field",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"arguments":"mask"}}}}"#,
                "tools.t.guard.arguments: ",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"arguments":"redact"}}}}"#,
                "tools.t.guard.arguments: arguments cannot be redacted",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"arguments":{"detectors":["email"]}}}}}"#,
                "tools.t.guard.arguments.action: required",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"arguments":{"action":"block","detectors":["ssn"]}}}}}"#,
                "tools.t.guard.arguments.detectors[0]: unknown detector \"ssn\"",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"arguments":{"action":"block","detectors":[]}}}}}"#,
                "tools.t.guard.arguments.detectors: an empty list",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"results":"mask"}}}}"#,
                "tools.t.guard.results: ",
            ),
            (
                r#"{"version":"1","tools":{"t":{"guard":{"results":"redact","failure_mode":"maybe"}}}}"#,
                "tools.t.guard.failure_mode: ",
            ),
        ] {
            let error = error_of(text);
            assert!(error.starts_with(expected), "{text}\n  gave: {error}");
        }
        assert!(load_policy(br#"{"version":"1","tools":{"*":{"guard":{"arguments":"report"}},"t":{"guard":{"arguments":{"action":"block","detectors":["private_key"]}}}}}"#).is_ok());
    }
}
