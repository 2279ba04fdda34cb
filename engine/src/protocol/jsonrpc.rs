//! What a POSTed MCP body contains, as far as policy is concerned. Parsing is strict: anything
//! that is not clearly a JSON-RPC 2.0 message is classified as invalid and never forwarded.

use std::fmt;

use serde_json::Value;

use crate::json::scan::{self, Document, Object};
use crate::json::strict;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;

pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";
pub const RESOURCES_LIST: &str = "resources/list";
pub const RESOURCE_TEMPLATES_LIST: &str = "resources/templates/list";
pub const RESOURCES_READ: &str = "resources/read";
pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
pub const PROMPTS_LIST: &str = "prompts/list";
pub const PROMPTS_GET: &str = "prompts/get";
pub const INITIALIZE: &str = "initialize";
pub const PING: &str = "ping";
/// Every notification's method starts with it.
pub const NOTIFICATIONS: &str = "notifications/";

/// The request methods MCP defines that a client sends (protocol revisions up to 2026-07-28):
/// the only method names metrics carry, so that clients cannot create series at will.
pub const MCP_METHODS: [&str; 18] = [
    INITIALIZE,
    PING,
    TOOLS_LIST,
    TOOLS_CALL,
    RESOURCES_LIST,
    RESOURCE_TEMPLATES_LIST,
    RESOURCES_READ,
    RESOURCES_SUBSCRIBE,
    RESOURCES_UNSUBSCRIBE,
    PROMPTS_LIST,
    PROMPTS_GET,
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "server/discover",
];

/// Most messages one body may carry. MCP clients send one message per POST (batches were
/// removed after protocol 2025-03-26); a cap keeps a hostile batch from costing a worker
/// thread seconds of CPU and megabytes of error replies.
pub const MAX_BATCH_LEN: usize = 64;

/// A JSON-RPC id (a string, a number or null) as the client wrote it: its JSON text, echoed
/// verbatim in refusals and audit records (a 30-digit integer, `1.0` or `"a\u0062"` comes back
/// exactly as sent, not as serde_json would write the value it reads), and the value a server
/// reads, which is what ids are compared by ([`same_id`]).
#[derive(Debug, Clone)]
pub struct Id {
    text: Box<str>,
    value: Value,
}

impl Id {
    /// The id written as `text` (one JSON value, as the scanner delimited and checked it):
    /// `None` unless it is a string, number or null that serde_json reads.
    fn read(text: &str) -> Option<Id> {
        let value = serde_json::from_str::<Value>(text).ok()?;
        matches!(value, Value::String(_) | Value::Number(_) | Value::Null).then(|| Id {
            text: text.into(),
            value,
        })
    }

    /// The id's JSON text exactly as the client sent it.
    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// The id as a server reads it (a number as a double), to match answers against.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// The id serde_json writes for `value` (tests, and ids the filter makes up).
impl From<Value> for Id {
    fn from(value: Value) -> Id {
        Id {
            text: value.to_string().into(),
            value,
        }
    }
}

/// Two ids are equal when they name the same request to a server ([`same_id`]): `1` and `1.0`
/// are one id, though each is echoed as written.
impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        same_id(&self.value, &other.value)
    }
}

/// A JSON number is never NaN: the comparison is an equivalence.
impl Eq for Id {}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One element of the body: a request, notification or response as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// The `id` member when present (requests and responses); `None` for notifications and for
    /// invalid messages whose id could not be read.
    pub id: Option<Id>,
    pub kind: MessageKind,
    /// What rules read, as sent (raw JSON text, in the body): a tools/call's or prompts/get's
    /// `params.arguments`, a resources request's whole `params`. Parsed only for rules on
    /// arguments, copied only for a tool call's audit record, and only if it reads them.
    pub arguments: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MessageKind {
    /// `tools/call` with a string `params.name`.
    ToolCall { name: String },
    /// `resources/read` or `resources/subscribe` (named by `params.uri`), or `prompts/get` (by
    /// `params.name`): what a `resources` or `prompts` block decides. `Err` when the params do
    /// not name it with a string, which refuses the message only where the policy decides it.
    Named {
        method: String,
        name: Result<String, BodyError>,
    },
    /// Any other request or notification (initialize, ping, tools/list, notifications/*, ...).
    Other { method: String },
    /// A response the client sends back to a server-initiated request (sampling, elicitation).
    Response,
    /// Not acceptable as JSON-RPC; `code` is the JSON-RPC error code to answer with.
    Invalid { code: i64, problem: String },
}

impl Message<'_> {
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::ToolCall { .. } => Some(TOOLS_CALL),
            MessageKind::Named { method, .. } | MessageKind::Other { method } => Some(method),
            _ => None,
        }
    }

    /// A request expects an answer; notifications (no `id` member) do not.
    pub fn expects_answer(&self) -> bool {
        self.id.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    Single(Message<'a>),
    Batch(Vec<Message<'a>>),
}

impl<'a> Body<'a> {
    pub fn messages(&self) -> &[Message<'a>] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }

    /// The messages without their arguments: what a request waiting for services keeps of its
    /// body, which it outlives.
    pub fn without_arguments(self) -> Body<'static> {
        let detach = |m: Message<'a>| Message {
            id: m.id,
            kind: m.kind,
            arguments: None,
        };
        match self {
            Body::Single(m) => Body::Single(detach(m)),
            Body::Batch(ms) => Body::Batch(ms.into_iter().map(detach).collect()),
        }
    }
}

/// The body as a whole could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub code: i64,
    pub problem: String,
}

/// The body is checked whole (syntax, duplicate keys) in one pass that notes where the members
/// of the message and of its `params` are (`json_scan`); nothing else is built, and a tool
/// call's `arguments` stay raw JSON text.
pub fn parse_body(bytes: &[u8]) -> Result<Body<'_>, BodyError> {
    let parse_error = |e: &dyn std::fmt::Display| BodyError {
        code: PARSE_ERROR,
        problem: format!("body is not valid JSON: {e}"),
    };
    let text = std::str::from_utf8(bytes).map_err(|e| parse_error(&e))?;
    match scan::scan(text).map_err(|e| parse_error(&e))? {
        Document::Object(message) => Ok(Body::Single(classify(&message))),
        Document::Array(items) => {
            if items.is_empty() {
                return Err(BodyError {
                    code: INVALID_REQUEST,
                    problem: "empty JSON-RPC batch".to_owned(),
                });
            }
            if items.len() > MAX_BATCH_LEN {
                return Err(BodyError {
                    code: INVALID_REQUEST,
                    problem: format!(
                        "a JSON-RPC batch of {} messages exceeds this endpoint's limit of {MAX_BATCH_LEN}",
                        items.len()
                    ),
                });
            }
            let mut messages: Vec<Message> = items
                .iter()
                .map(|(text, object)| match object {
                    Some(message) => classify(message),
                    None => invalid(
                        None,
                        INVALID_REQUEST,
                        format!("batch element is {}, not an object", kind_of(text)),
                    ),
                })
                .collect();
            refuse_repeated_ids(&mut messages);
            Ok(Body::Batch(messages))
        }
        Document::Other(first) => Err(BodyError {
            code: INVALID_REQUEST,
            problem: format!(
                "body is {}, not a JSON-RPC object or batch",
                kind_of_char(first)
            ),
        }),
    }
}

/// Whether two JSON-RPC ids name the same request to a server. Numbers are compared as the
/// doubles a JavaScript server reads them as (`1`, `1.0` and `1e0` are one id, and so are
/// 2^53 and 2^53 + 1); strings exactly.
pub fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A request whose id an earlier request of the same batch already has is invalid: answers are
/// matched to calls by id, so with two alike an error answering one could refund the other.
fn refuse_repeated_ids(messages: &mut [Message]) {
    let mut seen: Vec<Value> = Vec::new();
    for message in messages {
        if !matches!(
            message.kind,
            MessageKind::ToolCall { .. } | MessageKind::Named { .. } | MessageKind::Other { .. }
        ) {
            continue;
        }
        let Some(id) = &message.id else {
            continue;
        };
        if seen.iter().any(|earlier| same_id(earlier, id.value())) {
            let problem = format!(
                "id {id} repeats an earlier request's id in this batch: answers could not be told apart"
            );
            message.kind = MessageKind::Invalid {
                code: INVALID_REQUEST,
                problem,
            };
            message.arguments = None;
        } else {
            seen.push(id.value().clone());
        }
    }
}

fn first_byte(text: &str) -> u8 {
    text.trim_start().bytes().next().unwrap_or(b' ')
}

/// What a (valid) JSON value is, from its first character.
fn kind_of(text: &str) -> &'static str {
    kind_of_char(first_byte(text))
}

fn kind_of_char(first: u8) -> &'static str {
    match first {
        b'n' => "null",
        b't' | b'f' => "a boolean",
        b'"' => "a string",
        b'[' => "an array",
        b'{' => "an object",
        _ => "a number",
    }
}

/// The members a JSON-RPC message and a `tools/call`'s params are read by.
const MESSAGE_MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_MEMBERS: [&str; 3] = ["name", "arguments", "_meta"];

/// Member names differing only in case (as some servers fold them), or one spelled in another
/// case than a member we read.
fn case_problem(object: &Object, members: &[&'static str]) -> Option<String> {
    if let Some((a, b)) = strict::colliding_keys(object.members.iter().map(|m| m.key.as_ref())) {
        return Some(format!("keys {a:?} and {b:?} differ only in case"));
    }
    object.members.iter().find_map(|m| {
        members
            .iter()
            .find(|name| **name != m.key.as_ref() && strict::same_folded(&m.key, name))
            .map(|name| format!("key {:?} differs only in case from {name:?}", m.key))
    })
}

fn string(text: &str) -> Option<String> {
    serde_json::from_str(text).ok()
}

fn invalid<'a>(id: Option<Id>, code: i64, problem: impl Into<String>) -> Message<'a> {
    Message {
        id,
        arguments: None,
        kind: MessageKind::Invalid {
            code,
            problem: problem.into(),
        },
    }
}

/// What one JSON-RPC message (an object already checked by the scanner) asks for.
fn classify<'a>(object: &Object<'a>) -> Message<'a> {
    let value = |name: &str| object.get(name).map(|m| m.value);
    // An id we can echo: JSON-RPC allows strings, numbers and null.
    let id = match value("id") {
        None => None,
        Some(v) if matches!(first_byte(v), b'"' | b'n' | b'-' | b'0'..=b'9') => Id::read(v),
        Some(other) => {
            return invalid(
                None,
                INVALID_REQUEST,
                format!("\"id\" is {}", kind_of(other)),
            )
        }
    };
    if value("jsonrpc").and_then(string).as_deref() != Some("2.0") {
        return invalid(id, INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"");
    }
    let params = value("params");
    let params_object = object.get("params").and_then(|p| p.object.as_ref());
    // Servers whose JSON decoding ignores case would read another member than we do: two keys
    // differing only in case, or one spelled in another case than the member we look for
    // (`METHOD` alone is `method` to them, and absent to us).
    for (scope, members) in std::iter::once((object, &MESSAGE_MEMBERS[..]))
        .chain(params_object.map(|p| (p, &PARAMS_MEMBERS[..])))
    {
        if let Some(problem) = case_problem(scope, members) {
            return invalid(id, INVALID_REQUEST, problem);
        }
    }
    let method = match value("method") {
        Some(m) if first_byte(m) == b'"' => string(m).unwrap_or_default(),
        Some(other) => {
            return invalid(
                id,
                INVALID_REQUEST,
                format!("\"method\" is {}, not a string", kind_of(other)),
            )
        }
        None if (value("result").is_some() || value("error").is_some()) && id.is_some() => {
            return Message {
                id,
                kind: MessageKind::Response,
                arguments: None,
            };
        }
        None => return invalid(id, INVALID_REQUEST, "no \"method\" (and not a response)"),
    };
    if let Some(p) = params {
        if !matches!(first_byte(p), b'{' | b'[') {
            return invalid(id, INVALID_REQUEST, format!("\"params\" is {}", kind_of(p)));
        }
    }
    let param = |name: &str| params_object.and_then(|p| p.get(name)).map(|m| m.value);
    let (kind, arguments) = match method.as_str() {
        TOOLS_CALL => match named(&method, "name", param("name")) {
            Ok(name) => (MessageKind::ToolCall { name }, param("arguments")),
            Err(e) => return invalid(id, e.code, e.problem),
        },
        RESOURCES_READ | RESOURCES_SUBSCRIBE => {
            // A server that folds case reads `URI` as the URI we did not decide on.
            let name = match params_object.and_then(|p| case_problem(p, &["uri"])) {
                Some(problem) => Err(BodyError {
                    code: INVALID_REQUEST,
                    problem,
                }),
                None => named(&method, "uri", param("uri")),
            };
            (MessageKind::Named { method, name }, params)
        }
        PROMPTS_GET => {
            let name = named(&method, "name", param("name"));
            (MessageKind::Named { method, name }, param("arguments"))
        }
        _ => (MessageKind::Other { method }, None),
    };
    Message {
        id,
        kind,
        arguments,
    }
}

/// The string a request's `params.<member>` (`value`, as sent) names what it asks for with.
fn named(method: &str, member: &str, value: Option<&str>) -> Result<String, BodyError> {
    match value {
        Some(text) if first_byte(text) == b'"' => Ok(string(text).unwrap_or_default()),
        Some(other) => Err(BodyError {
            code: INVALID_PARAMS,
            problem: format!(
                "{method} \"params.{member}\" is {}, not a string",
                kind_of(other)
            ),
        }),
        None => Err(BodyError {
            code: INVALID_PARAMS,
            problem: format!("{method} without \"params.{member}\""),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;
    use serde_json::json;

    fn single(text: &str) -> Message<'_> {
        match parse_body(text.as_bytes()) {
            Ok(Body::Single(m)) => m,
            other => panic!("expected a single message, got {other:?}"),
        }
    }

    #[test]
    fn ids_are_the_same_when_a_server_would_read_them_alike() {
        for (a, b) in [
            (json!(1), json!(1)),
            (json!(1), json!(1.0)),
            (json!(-3), json!(-3.0)),
            (
                json!(9_007_199_254_740_993_u64),
                json!(9_007_199_254_740_992_u64),
            ),
            (json!(u64::MAX), json!(18_446_744_073_709_551_615.0)),
            (json!("x"), json!("x")),
            (Value::Null, Value::Null),
        ] {
            assert!(same_id(&a, &b), "{a} {b}");
        }
        for (a, b) in [
            (json!(1), json!("1")),
            (json!(1), json!(2)),
            (json!(1.5), json!(1)),
            (json!("x"), json!("X")),
            (Value::Null, json!(0)),
        ] {
            assert!(!same_id(&a, &b), "{a} {b}");
        }
    }

    #[test]
    fn ids_keep_the_text_the_client_wrote_and_compare_as_servers_read_them() {
        let id = |text: &str| {
            single(&format!(
                r#"{{"jsonrpc":"2.0","id":{text},"method":"ping"}}"#
            ))
            .id
        };
        for (text, value) in [
            ("7", json!(7)),
            (
                "123456789012345678901234567890",
                json!(1.2345678901234568e29),
            ),
            ("-1.50", json!(-1.5)),
            ("1E+2", json!(100.0)),
            (r#""\u0061\n""#, json!("a\n")),
            ("null", Value::Null),
        ] {
            let read = id(text).unwrap();
            assert_eq!((read.as_json(), read.value()), (text, &value));
            assert_eq!(read.to_string(), text);
        }
        assert_eq!(id("1"), id("1.0"));
        assert_eq!(id(r#""ab""#), id(r#""a\u0062""#));
        assert_ne!(id("1"), id(r#""1""#));
        // Beyond a double's range: the body is refused whole (as serde_json refuses it).
        assert_eq!(
            parse_body(br#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#)
                .unwrap_err()
                .code,
            PARSE_ERROR
        );
    }

    #[test]
    fn a_repeated_request_id_makes_the_later_element_invalid() {
        let body = br#"[{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":7.0,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}},{"jsonrpc":"2.0","id":7,"result":{}}]"#;
        let Ok(Body::Batch(messages)) = parse_body(body) else {
            panic!("a batch")
        };
        assert!(matches!(messages[0].kind, MessageKind::Other { .. }));
        match &messages[1].kind {
            MessageKind::Invalid { code, problem } => {
                assert_eq!(*code, INVALID_REQUEST);
                assert!(problem.contains("repeats"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(messages[1].arguments, None);
        // A response the client sends back carries a server's id: no answer comes for it.
        assert_eq!(messages[2].kind, MessageKind::Response);
    }

    #[test]
    fn a_member_spelled_in_another_case_is_invalid() {
        for text in [
            // A response to us; a tools/call to a server that folds case.
            r#"{"jsonrpc":"2.0","id":1,"result":{},"METHOD":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","ARGUMENTS":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":{"name":"x"}}"#,
        ] {
            assert!(
                matches!(
                    single(text).kind,
                    MessageKind::Invalid {
                        code: INVALID_REQUEST,
                        ..
                    }
                ),
                "{text}"
            );
        }
        let ok = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"Name":1}}}"#,
        );
        assert!(
            matches!(ok.kind, MessageKind::ToolCall { .. }),
            "arguments are the tool's business"
        );
    }

    #[test]
    fn tool_call_is_recognised_by_method_and_name() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wechat_mass_send","arguments":{}}}"#,
        );
        assert_eq!(m.id, Some(json!(7).into()));
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
    fn resource_and_prompt_requests_name_what_they_ask_for() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"wechat:\/\/a\u0062","_meta":{}}}"#,
        );
        assert_eq!(
            m.kind,
            MessageKind::Named {
                method: RESOURCES_READ.into(),
                name: Ok("wechat://ab".into())
            }
        );
        // Rules on a resource read its whole params, as sent.
        assert_eq!(
            m.arguments,
            Some(r#"{"uri":"wechat:\/\/a\u0062","_meta":{}}"#)
        );
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"draft","arguments":{"tone":"warm"}}}"#,
        );
        assert_eq!(
            (m.kind, m.arguments),
            (
                MessageKind::Named {
                    method: PROMPTS_GET.into(),
                    name: Ok("draft".into())
                },
                Some(r#"{"tone":"warm"}"#)
            )
        );
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"a"}}"#,
        );
        assert_eq!(m.method(), Some(RESOURCES_SUBSCRIBE));
        // Unsubscribing always passes: nothing to name.
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"a"}}"#,
        );
        assert!(matches!(m.kind, MessageKind::Other { .. }));
    }

    #[test]
    fn what_a_request_does_not_name_is_an_error_kept_for_the_policy() {
        let name = |text: &str| match single(text).kind {
            MessageKind::Named { name, .. } => name.map_err(|e| (e.code, e.problem)),
            other => panic!("{other:?}"),
        };
        for (text, code, problem) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#,
                INVALID_PARAMS,
                "resources/read without \"params.uri\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read"}"#,
                INVALID_PARAMS,
                "resources/read without \"params.uri\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":["a"]}"#,
                INVALID_PARAMS,
                "resources/subscribe without \"params.uri\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":7}}"#,
                INVALID_PARAMS,
                "resources/read \"params.uri\" is a number, not a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":null}}"#,
                INVALID_PARAMS,
                "prompts/get \"params.name\" is null, not a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"a"}}"#,
                INVALID_REQUEST,
                "key \"URI\" differs only in case from \"uri\"",
            ),
        ] {
            assert_eq!(name(text), Err((code, problem.to_owned())), "{text}");
        }
        // Keys differing only in case are refused for every method, as before.
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","Uri":"b"}}"#).kind,
            MessageKind::Invalid { code: INVALID_REQUEST, .. }
        ));
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
            assert_eq!(m.id, Some(json!(1).into()));
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

    /// Long arguments are scanned many bytes at a time: a character of 2 to 4 bytes, valid or
    /// not, at every offset around those blocks' edges must be read exactly as it is alone.
    #[test]
    fn multibyte_and_invalid_utf8_at_every_offset_of_long_arguments() {
        let call = |text: &[u8]| {
            let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"t":""#.to_vec();
            let arguments_at = body.len() - r#"{"t":""#.len();
            body.extend_from_slice(text);
            body.extend_from_slice(br#""}}}"#);
            (body, arguments_at)
        };
        let valid: [&[u8]; 4] = ["é".as_bytes(), "€".as_bytes(), "😀".as_bytes(), b"\x7f"];
        let invalid: [&[u8]; 7] = [
            b"\x80",             // a lone continuation byte
            b"\xe2\x82",         // a sequence cut short
            b"\xe2\x82\"",       // cut short by the closing quote
            b"\xc0\xaf",         // overlong
            b"\xed\xa0\x80",     // a surrogate
            b"\xf4\x90\x80\x80", // past U+10FFFF
            b"\xff",
        ];
        for len in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129] {
            for at in 0..=len {
                let padded = |piece: &[u8]| {
                    let mut text = vec![b'x'; len];
                    text.splice(at..at, piece.iter().copied());
                    text
                };
                for piece in valid {
                    let text = padded(piece);
                    let (body, arguments_at) = call(&text);
                    let m = match parse_body(&body) {
                        Ok(Body::Single(m)) => m,
                        other => panic!("{piece:?} at {at} of {len}: {other:?}"),
                    };
                    let expected = body.get(arguments_at..body.len() - 2).unwrap();
                    assert_eq!(
                        m.arguments.map(str::as_bytes),
                        Some(expected),
                        "{piece:?} at {at} of {len}"
                    );
                }
                for piece in invalid {
                    let (body, _) = call(&padded(piece));
                    let error = parse_body(&body).unwrap_err();
                    assert_eq!(error.code, PARSE_ERROR, "{piece:?} at {at} of {len}");
                    assert!(
                        error.problem.contains("utf-8"),
                        "{piece:?} at {at} of {len}: {}",
                        error.problem
                    );
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse_body(deep.as_bytes()).unwrap_err().code, PARSE_ERROR);
    }
}
