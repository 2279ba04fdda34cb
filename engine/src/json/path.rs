//! JSON paths as policy errors and decisions name them: `tools.send.limits[0]`, with keys that
//! are not plain identifiers quoted (`tools["a.b"]`).

use serde_json::Value;

pub fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_owned())),
    }
}
