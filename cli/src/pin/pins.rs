//! The `pins` block for a policy, from the tools exactly as the server listed them.

use std::collections::BTreeMap;

use mcp_policy_engine::wire::definition::definition_sha256;
use serde_json::{json, Map, Value};

/// `{"pins": {"mode": …, "tools": {name: {"sha256": …, "annotations": …}}}}`; each hash is the
/// filter's own, so the filter finds the definitions it is given here unchanged.
pub fn pins_block(mode: &str, tools: &[Map<String, Value>]) -> Result<Value, String> {
    let mut pinned = BTreeMap::new();
    for tool in tools {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tools/list: a tool without a string name: {}", json!(tool)))?;
        if pinned.insert(name.to_owned(), pin(tool)).is_some() {
            return Err(format!("tools/list: two tools are named {name:?}"));
        }
    }
    Ok(json!({"pins": {"mode": mode, "tools": pinned}}))
}

fn pin(tool: &Map<String, Value>) -> Value {
    let mut pin = Map::new();
    pin.insert("sha256".to_owned(), Value::String(definition_sha256(tool)));
    if let Some(annotations) = tool.get("annotations") {
        pin.insert("annotations".to_owned(), annotations.clone());
    }
    Value::Object(pin)
}

/// Pretty JSON (two-space indent) with every object's keys sorted, whatever order the map type
/// keeps (serde_json's `preserve_order` may be on in another crate of the same build), and a
/// final newline.
pub fn to_sorted_pretty(value: &Value) -> Result<String, String> {
    let mut text = serde_json::to_string_pretty(&sorted(value)).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            let sorted_map: Map<String, Value> = keys
                .into_iter()
                .filter_map(|key| map.get(key).map(|v| (key.clone(), sorted(v))))
                .collect();
            Value::Object(sorted_map)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn pins_every_tool_with_the_engines_hash_and_its_annotations() {
        let send = tool(json!({"name": "send", "description": "Send.",
            "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": false, "destructiveHint": true}}));
        let read = tool(json!({"name": "read", "inputSchema": {"type": "object"}}));
        let block = pins_block("report", &[send.clone(), read.clone()]).unwrap();
        assert_eq!(
            block,
            json!({"pins": {"mode": "report", "tools": {
                "send": {"sha256": definition_sha256(&send),
                         "annotations": {"readOnlyHint": false, "destructiveHint": true}},
                "read": {"sha256": definition_sha256(&read)}}}})
        );
    }

    #[test]
    fn a_nameless_or_repeated_tool_is_an_error() {
        let nameless = pins_block("enforce", &[tool(json!({"name": 7}))]).unwrap_err();
        assert!(nameless.contains("without a string name"), "{nameless}");
        let twice = pins_block(
            "enforce",
            &[
                tool(json!({"name": "a"})),
                tool(json!({"name": "a", "title": "A"})),
            ],
        )
        .unwrap_err();
        assert!(twice.contains("two tools are named \"a\""), "{twice}");
    }

    #[test]
    fn prints_sorted_keys_with_two_space_indent_and_a_final_newline() {
        let value = json!({"b": {"z": 1, "a": [{"y": true, "x": null}]}, "a": "s"});
        assert_eq!(
            to_sorted_pretty(&value).unwrap(),
            "{\n  \"a\": \"s\",\n  \"b\": {\n    \"a\": [\n      {\n        \"x\": null,\n        \"y\": true\n      }\n    ],\n    \"z\": 1\n  }\n}\n"
        );
    }
}
