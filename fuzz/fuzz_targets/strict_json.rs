//! `strict_json`: arbitrary bytes to the duplicate-key-refusing JSON reader.
//!
//! Properties checked:
//! - `validate` (no document built) accepts exactly what `from_slice` (document built, used for
//!   policies) accepts, and so does `json_scan::scan` (one pass, used on request bodies) for
//!   every input that is UTF-8 (request bodies that are not are refused before scanning);
//! - both agree with `serde_json::from_slice::<Value>` except on duplicate keys: where serde_json
//!   accepts and `from_slice` refuses, the reason is a duplicate key; where `from_slice`
//!   accepts, serde_json reads the same document. One known exception is excluded, where
//!   serde_json is the one misreading: with its `raw_value` feature (on in this crate), `Value`
//!   treats an object whose key is `$serde_json::private::RawValue` as an embedded raw value
//!   (`{KEY: "[1]"}` reads as `[1]`). The filter therefore never reads request data as a
//!   `Value` (see `evaluate::rule_arguments`, and the `body_parser` seed `raw_value_token.json`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::testing::{scan as json_scan, strict as strict_json};
use serde_json::Value;

const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

fn has_raw_value_token(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k == RAW_VALUE_TOKEN || has_raw_value_token(v)),
        Value::Array(items) => items.iter().any(has_raw_value_token),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let strict = strict_json::from_slice(data);
    let validated = strict_json::validate(data);
    assert_eq!(
        validated.is_ok(),
        strict.is_ok(),
        "validate: {validated:?}, from_slice: {strict:?}"
    );
    if let Ok(text) = std::str::from_utf8(data) {
        let scanned = json_scan::scan(text);
        assert_eq!(
            scanned.is_ok(),
            validated.is_ok(),
            "json_scan: {scanned:?}, validate: {validated:?}"
        );
    }
    let reference = serde_json::from_slice::<Value>(data);
    match (&strict, &reference) {
        (Ok(ours), _) if has_raw_value_token(ours) => {}
        (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs),
        (Ok(ours), Err(e)) => panic!("strict accepts {ours:?}, serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(
            e.to_string().contains("duplicate key"),
            "strict refuses ({e}) what serde_json accepts"
        ),
        (Err(_), Err(_)) => {}
    }
});
