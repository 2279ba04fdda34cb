//! Where Intercept's rule language and the filter's differ, settled for each imported condition
//! and state block: translated where an exact translation exists, refused where the filter would
//! decide differently without saying so, warned about where it decides differently on purpose.

use serde_json::{Map, Value};

use crate::go_regexp;

/// What Go's `fmt` writes for a null argument: Intercept compares it as text.
const GO_NULL_TEXT: &str = "<nil>";

/// One condition, converted in place: a `regex` translated from Go's syntax; a null compared
/// value refused; a `neq`/`not_in` on an argument (null passes it in Intercept) and a value
/// compared as text in Go's way reported in `warnings`.
pub(super) fn convert_condition(
    condition: &mut Map<String, Value>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let op = condition
        .get("op")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let subject = condition
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let on_argument = subject.starts_with("args.");
    let value_path = format!("{path}.value");
    let mut notes = Vec::new();
    match op {
        "regex" => {
            let translated = translated_regex(condition.get("value"), &value_path)?;
            if let Some(pattern) = translated {
                condition.insert("value".into(), Value::String(pattern));
            }
        }
        "eq" | "neq" | "in" | "not_in" | "contains" => {
            let compared = compared_values(op, condition.get("value"));
            refuse_null(&compared, &value_path)?;
            if on_argument {
                notes.extend(compared.iter().filter_map(|v| compared_as_go_text(v)));
            }
            if on_argument && (op == "neq" || op == "not_in") {
                notes.push(null_passes(subject, op));
            }
        }
        _ => {}
    }
    warnings.extend(notes.into_iter().map(|note| format!("{path}: {note}")));
    Ok(())
}

/// A state block, converted in place: `increment` dropped where `increment_from` decides (as in
/// Intercept), an empty `increment_from` dropped (Intercept charges `increment` then),
/// `increment: 0` dropped (Intercept's 1); a negative `increment` refused.
pub(super) fn convert_state(
    state: &mut Map<String, Value>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    if state.get("increment_from").and_then(Value::as_str) == Some("") {
        state.remove("increment_from");
        warnings.push(format!(
            "{path}.increment_from: empty, dropped: Intercept charges increment (default 1) then"
        ));
    }
    if state.contains_key("increment_from") {
        if let Some(increment) = state.remove("increment") {
            warnings.push(format!(
                "{path}.increment: {increment} dropped: Intercept charges increment_from and ignores increment"
            ));
        }
    }
    match state.get("increment").and_then(Value::as_i64) {
        Some(0) => {
            state.remove("increment");
        }
        Some(n) if n < 0 => {
            return Err(format!(
            "{path}.increment: {n} would lower the counter on every call, as Intercept lets it; \
                 the filter refuses a negative amount, fixed or from an argument: a call never \
                 gives budget back"
        ))
        }
        _ => {}
    }
    Ok(())
}

/// The pattern for the filter's engine, or why it cannot be imported; `None` for a value that is
/// no text (the loader reports it).
fn translated_regex(value: Option<&Value>, path: &str) -> Result<Option<String>, String> {
    let Some(pattern) = value.and_then(Value::as_str) else {
        return Ok(None);
    };
    go_regexp::translate(pattern)
        .map(Some)
        .map_err(|refusal| format!("{path}: cannot import the regex {pattern:?}: {refusal}"))
}

/// The values an argument is compared with: a list's elements for `in` and `not_in`.
fn compared_values<'v>(op: &str, value: Option<&'v Value>) -> Vec<&'v Value> {
    match (op, value) {
        ("in" | "not_in", Some(Value::Array(items))) => items.iter().collect(),
        (_, Some(value)) => vec![value],
        (_, None) => vec![&Value::Null],
    }
}

/// Intercept compares a null argument by its Go text, `<nil>`: `eq: null` (or `"<nil>"`) holds
/// for it there. The filter counts a null argument as absent, so such a value has no equivalent.
fn refuse_null(compared: &[&Value], path: &str) -> Result<(), String> {
    match compared
        .iter()
        .find(|v| v.is_null() || v.as_str() == Some(GO_NULL_TEXT))
    {
        Some(value) => Err(format!(
            "{path}: compares with {value}, which in Intercept equals a null argument (its text is \
             \"{GO_NULL_TEXT}\"); the filter counts a null argument as absent and has no such \
             comparison: use exists"
        )),
        None => Ok(()),
    }
}

/// A note when `value` can equal an argument of another type by text, which Intercept writes
/// as Go does and the filter as JSON does: Go writes the number 1000000 as `1e+06` and 5.0 as
/// `5`, the list `["a","b"]` as `[a b]`, a mapping as `map[k:v]`. Other values (a text that
/// reads as no number, list or mapping, an integer, a boolean) have one text on both sides.
fn compared_as_go_text(value: &Value) -> Option<String> {
    let differs = match value {
        Value::String(text) => {
            serde_json::from_str::<serde_json::Number>(text).is_ok()
                || text.starts_with(['[', '{'])
                || text.starts_with("map[")
        }
        Value::Number(number) => !(number.is_i64() || number.is_u64()),
        Value::Array(_) | Value::Object(_) => true,
        Value::Null | Value::Bool(_) => false,
    };
    differs.then(|| {
        format!(
            "compares with {value} as text where the argument is of another type; Intercept \
             writes numbers, lists and mappings as Go does (1000000 as 1e+06, 5.0 as 5), the \
             filter as JSON does, so the two can decide differently"
        )
    })
}

fn null_passes(subject: &str, op: &str) -> String {
    format!(
        "a call whose {subject} is null passes this {op} condition in Intercept and is denied by \
         the filter, which counts a null argument as absent (a server may read null as its \
         default, the very value the condition excludes)"
    )
}

#[cfg(test)]
mod tests;
