//! `result_texts`: arbitrary bytes to the one-pass reader that finds the texts a result guard
//! reads in an answer.
//!
//! Properties checked, for every input that is UTF-8 and JSON serde_json reads (what an agent's
//! client reads):
//! - the reader reads it: an answer a client can read never escapes the guard unread;
//! - every text serde_json's document gives an agent (`result.content[].text`,
//!   `result.content[].resource.text`, every string of `result.structuredContent`, in the one
//!   message or each message of a batch) is among the texts the reader found, decoded; with
//!   duplicate members serde_json keeps the last, the reader all of them;
//! - every span the reader gives is a whole JSON string of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::testing::result_texts;
use serde_json::Value;

fn texts_of(message: &Value, out: &mut Vec<String>) {
    let Some(result) = message.get("result") else {
        return;
    };
    if let Some(content) = result.get("content").and_then(Value::as_array) {
        for item in content {
            if let Some(Value::String(text)) = item.get("text") {
                out.push(text.clone());
            }
            if let Some(Value::String(text)) = item.get("resource").and_then(|r| r.get("text")) {
                out.push(text.clone());
            }
        }
    }
    if let Some(structured) = result.get("structuredContent") {
        strings(structured, out);
    }
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let read = result_texts::read(text);
    if let Some(messages) = &read {
        for message in messages {
            for found in &message.texts {
                let token = text.get(found.span.clone()).expect("a span inside the input");
                let decoded = serde_json::from_str::<String>(token);
                assert!(decoded.is_ok() || serde_json::from_str::<Value>(text).is_err(),
                    "span {token:?} is not a JSON string");
            }
        }
    }
    // serde_json's `raw_value` feature reads this key specially: not a document a client reads.
    if text.contains("$serde_json::private::RawValue") {
        return;
    }
    let Ok(document) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let messages = read.expect("JSON serde_json reads is read");
    let found: Vec<String> = messages
        .iter()
        .flat_map(|m| &m.texts)
        .filter_map(|t| serde_json::from_str::<String>(text.get(t.span.clone())?).ok())
        .collect();
    let mut expected = Vec::new();
    match &document {
        Value::Array(batch) => batch.iter().for_each(|m| texts_of(m, &mut expected)),
        single => texts_of(single, &mut expected),
    }
    for text in expected {
        assert!(found.contains(&text), "{text:?} was not found; found {found:?}");
    }
});
