//! An MCP client session over any transport: the handshake, then every page of `tools/list`.

use serde_json::{json, Map, Value};

/// Protocol version asked for in `initialize`; the server answers with the one it speaks.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// A server that keeps giving a `nextCursor` after this many pages is not going to stop.
pub const MAX_PAGES: usize = 1000;

/// How JSON-RPC messages reach the server and answers come back.
pub trait Transport {
    /// Send `request` (it has an `id`) and return the server's answer to it, result or error.
    fn request(&mut self, request: &Value) -> Result<Value, String>;
    /// Send a notification (no answer).
    fn notify(&mut self, notification: &Value) -> Result<(), String>;
    /// The protocol version `initialize` settled on, for transports that send it on every
    /// later request.
    fn negotiated(&mut self, _protocol_version: &str) {}
    /// End the session; failures are not the caller's concern.
    fn close(&mut self) {}
}

/// Whether `message` is the answer (not a request or notification) with this `id`.
pub fn is_answer_to(message: &Value, id: u64) -> bool {
    message.get("method").is_none() && message.get("id").and_then(Value::as_u64) == Some(id)
}

/// Initialize, list every tool, close: the tools as the server listed them, page after page.
pub fn list_tools(transport: &mut impl Transport) -> Result<Vec<Map<String, Value>>, String> {
    let mut client = Client {
        transport,
        next_id: 1,
    };
    let listed = client.handshake().and_then(|()| {
        all_pages(|cursor| {
            let params = cursor.map_or_else(|| json!({}), |c| json!({ "cursor": c }));
            client.call("tools/list", params)
        })
    });
    client.transport.close();
    listed
}

struct Client<'a, T: Transport> {
    transport: &'a mut T,
    next_id: u64,
}

impl<T: Transport> Client<'_, T> {
    fn handshake(&mut self) -> Result<(), String> {
        let result = self.call(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "mcp-policy-pin", "version": env!("CARGO_PKG_VERSION")},
            }),
        )?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or("initialize: the result has no protocolVersion")?;
        self.transport.negotiated(version);
        self.transport
            .notify(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    }

    /// A request's result, or its JSON-RPC error as a message.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.transport.request(&request)?;
        result_of(method, answer)
    }
}

fn result_of(method: &str, mut answer: Value) -> Result<Value, String> {
    if let Some(error) = answer.get("error") {
        let code = error.get("code").map_or("?".to_owned(), Value::to_string);
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(format!(
            "{method}: the server answered error {code}: {message}"
        ));
    }
    match answer.get_mut("result") {
        Some(result) if result.is_object() => Ok(result.take()),
        _ => Err(format!(
            "{method}: the answer has no result object: {answer}"
        )),
    }
}

/// Every tool of every page: `fetch` gets the cursor of the page to ask for (`None` first) and
/// returns that page's `tools/list` result.
pub fn all_pages(
    mut fetch: impl FnMut(Option<&str>) -> Result<Value, String>,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(cursor.as_deref())?;
        tools.extend(page_tools(&page)?);
        cursor = match page.get("nextCursor") {
            None | Some(Value::Null) => return Ok(tools),
            Some(Value::String(next)) => Some(next.clone()),
            Some(other) => return Err(format!("tools/list: nextCursor is not a string: {other}")),
        };
    }
    Err(format!(
        "tools/list: the server still had a nextCursor after {MAX_PAGES} pages"
    ))
}

fn page_tools(page: &Value) -> Result<Vec<Map<String, Value>>, String> {
    let listed = page
        .get("tools")
        .and_then(Value::as_array)
        .ok_or("tools/list: the result has no tools array")?;
    listed
        .iter()
        .map(|tool| match tool {
            Value::Object(tool) => Ok(tool.clone()),
            other => Err(format!("tools/list: a tool that is not an object: {other}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tools: &[Map<String, Value>]) -> Vec<&str> {
        tools.iter().map(|t| t["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn follows_cursors_until_a_page_has_none() {
        let mut asked = Vec::new();
        let tools = all_pages(|cursor| {
            asked.push(cursor.map(str::to_owned));
            Ok(match cursor {
                None => json!({"tools": [{"name": "a"}, {"name": "b"}], "nextCursor": "2"}),
                Some("2") => json!({"tools": [], "nextCursor": "3"}),
                Some(_) => json!({"tools": [{"name": "c"}], "nextCursor": null}),
            })
        })
        .unwrap();
        assert_eq!(names(&tools), ["a", "b", "c"]);
        assert_eq!(asked, [None, Some("2".to_owned()), Some("3".to_owned())]);
    }

    #[test]
    fn a_server_that_never_stops_paging_is_an_error() {
        let mut pages = 0;
        let error = all_pages(|_| {
            pages += 1;
            Ok(json!({"tools": [{"name": format!("t{pages}")}], "nextCursor": "again"}))
        })
        .unwrap_err();
        assert_eq!(pages, MAX_PAGES);
        assert!(error.contains("after 1000 pages"), "{error}");
    }

    #[test]
    fn malformed_pages_are_errors() {
        for page in [
            json!({}),
            json!({"tools": {}}),
            json!({"tools": ["a"]}),
            json!({"tools": [], "nextCursor": 2}),
        ] {
            assert!(all_pages(|_| Ok(page.clone())).is_err(), "{page}");
        }
        let failing = all_pages(|_| Err("HTTP 500".to_owned()));
        assert_eq!(failing, Err("HTTP 500".to_owned()));
    }

    /// Answers from a script, recording what was sent.
    struct Scripted {
        answers: Vec<Value>,
        sent: Vec<Value>,
        version: Option<String>,
        closed: bool,
    }

    impl Transport for Scripted {
        fn request(&mut self, request: &Value) -> Result<Value, String> {
            self.sent.push(request.clone());
            let mut answer = self.answers.remove(0);
            answer["id"] = request["id"].clone();
            Ok(answer)
        }
        fn notify(&mut self, notification: &Value) -> Result<(), String> {
            self.sent.push(notification.clone());
            Ok(())
        }
        fn negotiated(&mut self, version: &str) {
            self.version = Some(version.to_owned());
        }
        fn close(&mut self) {
            self.closed = true;
        }
    }

    fn scripted(answers: Vec<Value>) -> Scripted {
        Scripted {
            answers,
            sent: Vec::new(),
            version: None,
            closed: false,
        }
    }

    #[test]
    fn a_session_initializes_lists_every_page_and_closes() {
        let mut transport = scripted(vec![
            json!({"jsonrpc": "2.0", "result": {"protocolVersion": "2025-03-26"}}),
            json!({"jsonrpc": "2.0", "result": {"tools": [{"name": "a"}], "nextCursor": "p2"}}),
            json!({"jsonrpc": "2.0", "result": {"tools": [{"name": "b"}]}}),
        ]);
        let tools = list_tools(&mut transport).unwrap();
        assert_eq!(names(&tools), ["a", "b"]);
        assert_eq!(transport.version.as_deref(), Some("2025-03-26"));
        assert!(transport.closed);
        let methods: Vec<&str> = transport
            .sent
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(
            methods,
            [
                "initialize",
                "notifications/initialized",
                "tools/list",
                "tools/list"
            ]
        );
        assert_eq!(transport.sent[1].get("id"), None);
        assert_eq!(transport.sent[2]["params"], json!({}));
        assert_eq!(transport.sent[3]["params"], json!({"cursor": "p2"}));
        assert_eq!(
            [
                &transport.sent[0]["id"],
                &transport.sent[2]["id"],
                &transport.sent[3]["id"]
            ],
            [1, 2, 3]
        );
    }

    #[test]
    fn a_json_rpc_error_is_reported_and_the_session_still_closed() {
        let mut transport = scripted(vec![
            json!({"jsonrpc": "2.0", "result": {"protocolVersion": "2025-06-18"}}),
            json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}),
        ]);
        let error = list_tools(&mut transport).unwrap_err();
        assert_eq!(
            error,
            "tools/list: the server answered error -32601: Method not found"
        );
        assert!(transport.closed);
    }

    #[test]
    fn answers_are_told_from_requests_with_the_same_id() {
        assert!(is_answer_to(&json!({"id": 3, "result": {}}), 3));
        assert!(!is_answer_to(&json!({"id": 3, "method": "ping"}), 3));
        assert!(!is_answer_to(&json!({"id": "3", "result": {}}), 3));
        assert!(!is_answer_to(
            &json!({"method": "notifications/progress"}),
            3
        ));
    }
}
