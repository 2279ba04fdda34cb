//! What a POSTed MCP body contains, as far as policy is concerned. Parsing is strict: anything
//! that is not clearly a JSON-RPC 2.0 message is classified as invalid and never forwarded.

use serde_json::{Map, Value};

use super::strict_json;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

pub const TOOLS_CALL: &str = "tools/call";

/// Most messages one body may carry. MCP clients send one message per POST (batches were
/// removed after protocol 2025-03-26); a cap keeps a hostile batch from costing a worker
/// thread seconds of CPU and megabytes of error replies.
pub const MAX_BATCH_LEN: usize = 64;

/// One element of the body: a request, notification or response as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The `id` member when present (requests and responses); `None` for notifications and for
    /// invalid messages whose id could not be read.
    pub id: Option<Value>,
    pub kind: MessageKind,
    /// A tools/call's `params.arguments`, for rules on arguments.
    pub arguments: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    /// `tools/call` with a string `params.name`: the only thing the policy decides on.
    ToolCall { name: String },
    /// Any other request or notification (initialize, ping, tools/list, notifications/*, ...).
    Other { method: String },
    /// A response the client sends back to a server-initiated request (sampling, elicitation).
    Response,
    /// Not acceptable as JSON-RPC; `code` is the JSON-RPC error code to answer with.
    Invalid { code: i64, problem: String },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::ToolCall { .. } => Some(TOOLS_CALL),
            MessageKind::Other { method } => Some(method),
            _ => None,
        }
    }

    /// A request expects an answer; notifications (no `id` member) do not.
    pub fn expects_answer(&self) -> bool {
        self.id.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }

    pub fn messages_mut(&mut self) -> &mut [Message] {
        match self {
            Body::Single(m) => std::slice::from_mut(m),
            Body::Batch(ms) => ms,
        }
    }
}

/// The body as a whole could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub code: i64,
    pub problem: String,
}

/// The parsed document is taken apart, not copied: what a message keeps (its id, name and
/// arguments) moves out of it.
pub fn parse_body(bytes: &[u8]) -> Result<Body, BodyError> {
    let value: Value = strict_json::from_slice(bytes).map_err(|e| BodyError {
        code: PARSE_ERROR,
        problem: format!("body is not valid JSON: {e}"),
    })?;
    let body = match value {
        Value::Object(object) => Body::Single(classify(object)),
        Value::Array(items) if items.is_empty() => {
            return Err(BodyError {
                code: INVALID_REQUEST,
                problem: "empty JSON-RPC batch".to_owned(),
            })
        }
        Value::Array(items) if items.len() > MAX_BATCH_LEN => {
            return Err(BodyError {
                code: INVALID_REQUEST,
                problem: format!(
                "a JSON-RPC batch of {} messages exceeds this endpoint's limit of {MAX_BATCH_LEN}",
                items.len()
            ),
            })
        }
        Value::Array(items) => Body::Batch(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(object) => classify(object),
                    other => invalid(
                        None,
                        INVALID_REQUEST,
                        format!("batch element is {}, not an object", kind_of(&other)),
                    ),
                })
                .collect(),
        ),
        other => {
            return Err(BodyError {
                code: INVALID_REQUEST,
                problem: format!("body is {}, not a JSON-RPC object or batch", kind_of(&other)),
            })
        }
    };
    Ok(body)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(id: Option<Value>, code: i64, problem: impl Into<String>) -> Message {
    Message {
        id,
        arguments: None,
        kind: MessageKind::Invalid {
            code,
            problem: problem.into(),
        },
    }
}

fn classify(mut object: Map<String, Value>) -> Message {
    // An id we can echo: JSON-RPC allows strings, numbers and null.
    let id = match object.remove("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v),
        Some(other) => {
            return invalid(
                None,
                INVALID_REQUEST,
                format!("\"id\" is {}", kind_of(&other)),
            )
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(id, INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"");
    }
    // Servers whose JSON decoding ignores case would read another member than we do.
    for scope in std::iter::once(&object).chain(object.get("params").and_then(Value::as_object)) {
        if let Some((a, b)) = strict_json::case_folding_collision(scope) {
            return invalid(
                id,
                INVALID_REQUEST,
                format!("keys {a:?} and {b:?} differ only in case"),
            );
        }
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        Some(other) => {
            return invalid(
                id,
                INVALID_REQUEST,
                format!("\"method\" is {}, not a string", kind_of(&other)),
            )
        }
        None if (object.contains_key("result") || object.contains_key("error")) && id.is_some() => {
            return Message {
                id,
                kind: MessageKind::Response,
                arguments: None,
            };
        }
        None => return invalid(id, INVALID_REQUEST, "no \"method\" (and not a response)"),
    };
    let mut params = object.remove("params");
    if let Some(p) = &params {
        if !matches!(p, Value::Object(_) | Value::Array(_)) {
            return invalid(id, INVALID_REQUEST, format!("\"params\" is {}", kind_of(p)));
        }
    }
    if method != TOOLS_CALL {
        return Message {
            id,
            kind: MessageKind::Other {
                method,
            },
            arguments: None,
        };
    }
    let params = params.as_mut().and_then(Value::as_object_mut);
    match params.as_ref().and_then(|p| p.get("name")) {
        Some(Value::String(_)) => {
            let (name, arguments) = match params {
                Some(p) => (p.remove("name"), p.remove("arguments")),
                None => (None, None),
            };
            match name {
                Some(Value::String(name)) => Message {
                    id,
                    kind: MessageKind::ToolCall { name },
                    arguments,
                },
                _ => invalid(id, INVALID_PARAMS, "tools/call without \"params.name\""),
            }
        }
        Some(other) => invalid(
            id,
            INVALID_PARAMS,
            format!(
                "tools/call \"params.name\" is {}, not a string",
                kind_of(other)
            ),
        ),
        None => invalid(id, INVALID_PARAMS, "tools/call without \"params.name\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::test;
    use serde_json::json;

    fn single(text: &str) -> Message {
        match parse_body(text.as_bytes()) {
            Ok(Body::Single(m)) => m,
            other => panic!("expected a single message, got {other:?}"),
        }
    }

    #[test]
    fn tool_call_is_recognised_by_method_and_name() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wechat_mass_send","arguments":{}}}"#,
        );
        assert_eq!(m.id, Some(json!(7)));
        assert_eq!(
            m.kind,
            MessageKind::ToolCall {
                name: "wechat_mass_send".into()
            }
        );
    }

    #[test]
    fn escaped_names_are_decoded_before_deciding() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools\/call","params":{"name":"wechat\u005fmass_send"}}"#,
        );
        assert_eq!(
            m.kind,
            MessageKind::ToolCall {
                name: "wechat_mass_send".into()
            }
        );
    }

    #[test]
    fn other_methods_and_notifications_are_not_tool_calls() {
        let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(
            m.kind,
            MessageKind::Other {
                method: "notifications/initialized".into()
            }
        );
        assert!(!m.expects_answer());
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(m.method(), Some("tools/list"));
    }

    #[test]
    fn client_responses_are_recognised() {
        let m = single(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
        assert_eq!(m.kind, MessageKind::Response);
    }

    #[test]
    fn tool_call_without_string_name_is_invalid_params() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["wechat_mass_send"]}"#,
        ] {
            let m = single(text);
            assert!(
                matches!(
                    m.kind,
                    MessageKind::Invalid {
                        code: INVALID_PARAMS,
                        ..
                    }
                ),
                "{text}: {m:?}"
            );
            assert_eq!(m.id, Some(json!(1)));
        }
    }

    #[test]
    fn non_json_rpc_objects_are_invalid_requests() {
        for text in [
            r#"{"id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            r#"{"jsonrpc":"2.0"}"#,
        ] {
            let m = single(text);
            assert!(
                matches!(
                    m.kind,
                    MessageKind::Invalid {
                        code: INVALID_REQUEST,
                        ..
                    }
                ),
                "{text}: {m:?}"
            );
        }
    }

    #[test]
    fn whole_body_errors() {
        assert_eq!(parse_body(b"not json").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse_body(b"").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse_body(b"[]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(
            parse_body(b"\"tools/call\"").unwrap_err().code,
            INVALID_REQUEST
        );
        // A byte-order mark is not JSON; refusing it avoids a parser differential with upstreams.
        assert_eq!(parse_body(b"\xef\xbb\xbf{}").unwrap_err().code, PARSE_ERROR);
    }

    #[test]
    fn batches_classify_every_element() {
        let body = parse_body(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},5,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}]"#,
        )
        .unwrap();
        let ms = body.messages();
        assert_eq!(ms.len(), 3);
        assert!(matches!(ms[1].kind, MessageKind::Invalid { .. }));
        assert_eq!(ms[2].kind, MessageKind::ToolCall { name: "t".into() });
    }

    #[test]
    fn parser_differentials_are_refused() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"b"}}"#,
        ] {
            assert_eq!(
                parse_body(text.as_bytes()).unwrap_err().code,
                PARSE_ERROR,
                "{text}"
            );
        }
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","NAME":"b"}}"#,
        ] {
            let m = single(text);
            assert!(
                matches!(
                    m.kind,
                    MessageKind::Invalid {
                        code: INVALID_REQUEST,
                        ..
                    }
                ),
                "{text}: {m:?}"
            );
        }
        // Case-different keys deeper in the arguments are the tool's business.
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"id":1,"ID":2}}}"#,
        );
        assert_eq!(m.kind, MessageKind::ToolCall { name: "a".into() });
    }

    #[test]
    fn oversized_batches_are_refused_whole() {
        let one = r#"{"jsonrpc":"2.0","method":"notifications/x"}"#;
        let ok = format!("[{}]", vec![one; MAX_BATCH_LEN].join(","));
        assert!(parse_body(ok.as_bytes()).is_ok());
        let too_many = format!("[{}]", vec![one; MAX_BATCH_LEN + 1].join(","));
        let error = parse_body(too_many.as_bytes()).unwrap_err();
        assert_eq!(error.code, INVALID_REQUEST);
        assert!(error.problem.contains("exceeds"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse_body(deep.as_bytes()).unwrap_err().code, PARSE_ERROR);
    }
}
