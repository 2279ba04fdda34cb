//! Reading one value of the policy document, every error with the JSON path of the value.

use std::fmt;

use serde_json::{Map, Value};

use crate::counters::window::Window;
pub(crate) use crate::json::path::key_path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// JSON path of the offending value; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyError {
    #[cold]
    #[inline(never)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(document): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

pub(crate) type Result<T> = std::result::Result<T, PolicyError>;

pub(crate) fn err<T>(path: &str, message: impl Into<String>) -> Result<T> {
    Err(error(path, message.into()))
}

/// One body for every `err` (which is generic, and would be copied once per type).
#[cold]
#[inline(never)]
fn error(path: &str, message: String) -> PolicyError {
    PolicyError {
        path: path.to_owned(),
        message,
    }
}

#[cold]
#[inline(never)]
pub(crate) fn describe(value: &Value) -> String {
    let text = value.to_string();
    let kind = match value {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".to_owned(),
        Value::Object(_) => return "an object".to_owned(),
    };
    if text.chars().count() > 40 {
        let short: String = text.chars().take(40).collect();
        format!("{kind} {short}…")
    } else {
        format!("{kind} {text}")
    }
}

#[cold]
#[inline(never)]
pub(crate) fn as_object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>> {
    value.as_object().map_or_else(
        || err(path, format!("expected an object, got {}", describe(value))),
        Ok,
    )
}

#[cold]
#[inline(never)]
pub(crate) fn as_str<'v>(value: &'v Value, path: &str) -> Result<&'v str> {
    value.as_str().map_or_else(
        || err(path, format!("expected a string, got {}", describe(value))),
        Ok,
    )
}

#[cold]
#[inline(never)]
pub(crate) fn positive_integer(value: &Value, path: &str) -> Result<u64> {
    match value.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => err(
            path,
            format!("expected a positive integer, got {}", describe(value)),
        ),
    }
}

#[cold]
#[inline(never)]
pub(crate) fn one_of<'a>(value: &Value, path: &str, allowed: &[&'a str]) -> Result<&'a str> {
    let text = as_str(value, path)?;
    allowed.iter().copied().find(|a| *a == text).map_or_else(
        || {
            err(
                path,
                format!(
                    "expected one of {}, got {}",
                    quoted_list(allowed),
                    describe(value)
                ),
            )
        },
        Ok,
    )
}

#[cold]
#[inline(never)]
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cold]
#[inline(never)]
pub(crate) fn reject_unknown_fields(
    object: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<()> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => err(
            &key_path(path, unknown),
            format!("unknown field; expected one of {}", quoted_list(known)),
        ),
        None => Ok(()),
    }
}

#[cold]
#[inline(never)]
pub(crate) fn window(value: &Value, path: &str) -> Result<Window> {
    const NAMED: &[&str] = &["second", "minute", "hour", "day"];
    let invalid = || {
        err(
            path,
            format!(
                "expected {} or a positive integer number of seconds, got {}",
                quoted_list(NAMED),
                describe(value)
            ),
        )
    };
    match value {
        Value::String(s) => match s.as_str() {
            "second" => Ok(Window::SECOND),
            "minute" => Ok(Window::MINUTE),
            "hour" => Ok(Window::HOUR),
            "day" => Ok(Window::DAY),
            _ => invalid(),
        },
        Value::Number(n) => n
            .as_u64()
            .and_then(Window::from_seconds)
            .map_or_else(invalid, Ok),
        _ => invalid(),
    }
}
