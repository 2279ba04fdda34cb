//! The Streamable HTTP transport (MCP 2025-03-26 and later): every message is a POST to the one
//! endpoint; a request's answer is the POST's response, as JSON or as an SSE stream that
//! carries it (possibly after notifications and requests of the server's own).

use std::io::BufRead;

use serde_json::Value;
use ureq::http::Response;
use ureq::Body;

use super::http::{self, Http};
use super::session::{is_answer_to, Transport};
use super::sse::EventReader;

pub struct StreamableHttp {
    http: Http,
    url: String,
    /// `Mcp-Session-Id` the server gave, sent back on every later request.
    session_id: Option<String>,
    protocol_version: Option<String>,
}

impl StreamableHttp {
    pub fn new(http: Http, url: &str) -> StreamableHttp {
        StreamableHttp {
            http,
            url: url.to_owned(),
            session_id: None,
            protocol_version: None,
        }
    }

    fn post(&mut self, message: &Value) -> Result<Response<Body>, String> {
        let mut headers = vec![("accept", "application/json, text/event-stream")];
        if let Some(id) = &self.session_id {
            headers.push(("mcp-session-id", id));
        }
        if let Some(version) = &self.protocol_version {
            headers.push(("mcp-protocol-version", version));
        }
        let response = self.http.post(&self.url, &headers, &message.to_string())?;
        if let Some(id) = http::header(&response, "mcp-session-id") {
            self.session_id = Some(id);
        }
        Ok(response)
    }
}

impl Transport for StreamableHttp {
    fn request(&mut self, request: &Value) -> Result<Value, String> {
        let method = request["method"].as_str().unwrap_or("request").to_owned();
        let id = request["id"].as_u64().unwrap_or_default();
        let response = self.post(request)?;
        if response.status().as_u16() == 202 {
            return Err(format!(
                "{method}: the server accepted the request (202) without answering it"
            ));
        }
        match http::media_type(&response).as_str() {
            "application/json" => answer_in_json(&http::read_text(response)?, id),
            "text/event-stream" => answer_in_stream(EventReader::new(http::stream(response)), id),
            other => Err(format!(
                "an answer of type {other:?}, neither JSON nor an event stream"
            )),
        }
        .map_err(|e| format!("{method}: {e}"))
    }

    fn notify(&mut self, notification: &Value) -> Result<(), String> {
        self.post(notification).map(drop)
    }

    fn negotiated(&mut self, protocol_version: &str) {
        self.protocol_version = Some(protocol_version.to_owned());
    }

    /// DELETE the session so that the server can free it now; a server may refuse (405) or
    /// have ended it already, which changes nothing for the pins.
    fn close(&mut self) {
        let Some(session_id) = self.session_id.take() else {
            return;
        };
        let mut headers = vec![("mcp-session-id", session_id.as_str())];
        if let Some(version) = &self.protocol_version {
            headers.push(("mcp-protocol-version", version));
        }
        let _ignored = self.http.delete(&self.url, &headers);
    }
}

/// The answer with `id` in a JSON body: one message, or a batch holding it.
fn answer_in_json(body: &str, id: u64) -> Result<Value, String> {
    let message: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let found = match message {
        Value::Array(batch) => batch.into_iter().find(|m| is_answer_to(m, id)),
        single => Some(single).filter(|m| is_answer_to(m, id)),
    };
    found.ok_or_else(|| format!("the answer does not answer request {id}"))
}

/// Read events until the answer with `id`; the stream is dropped then (the server ends it
/// after the answer anyway).
fn answer_in_stream(mut events: EventReader<impl BufRead>, id: u64) -> Result<Value, String> {
    while let Some(event) = events.next_event()? {
        if event.kind != "message" || event.data.is_empty() {
            continue;
        }
        let message: Value = serde_json::from_str(&event.data)
            .map_err(|e| format!("an event that is not JSON: {e}"))?;
        if is_answer_to(&message, id) {
            return Ok(message);
        }
    }
    Err("the event stream ended before the answer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::fake_server::{chunk, respond, serve, start_chunked};
    use crate::pin::session::list_tools;
    use serde_json::json;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// A Streamable HTTP server: initialize answered as JSON with a session id, tools/list in
    /// two pages, each as an SSE stream sent in chunks (one event split across two) and never
    /// ended, DELETE refused.
    fn two_page_server(request: &crate::pin::fake_server::Recorded, stream: &mut TcpStream) {
        let message = request.json();
        match (request.method.as_str(), message["method"].as_str()) {
            ("POST", Some("initialize")) => {
                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                    "protocolVersion": "2025-03-26", "capabilities": {},
                    "serverInfo": {"name": "fake", "version": "1"}}});
                let headers = "content-type: application/json\r\nmcp-session-id: s-1\r\n";
                respond(stream, "200 OK", headers, &answer.to_string());
            }
            ("POST", Some("notifications/initialized")) => respond(stream, "202 Accepted", "", ""),
            ("POST", Some("tools/list")) => {
                let page = match message["params"]["cursor"].as_str() {
                    None => json!({"tools": [{"name": "a", "annotations": {"readOnlyHint": true}}],
                                   "nextCursor": "c2"}),
                    Some(_) => json!({"tools": [{"name": "b"}]}),
                };
                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": page});
                let event = format!("event: message\ndata: {answer}\n\n");
                let (first, rest) = event.split_at(event.len() / 2);
                start_chunked(stream, "text/event-stream");
                chunk(stream, ": ping\n\n");
                chunk(stream, first);
                chunk(stream, rest);
            }
            ("DELETE", _) => respond(stream, "405 Method Not Allowed", "", ""),
            _ => respond(stream, "400 Bad Request", "", ""),
        }
    }

    #[test]
    fn a_session_reads_answers_off_streams_that_stay_open_and_sends_its_headers_back() {
        let server = serve(two_page_server);
        let http = Http::new(
            vec![("x-agent-id".to_owned(), "pinner".to_owned())],
            Duration::from_secs(5),
        );
        let started = Instant::now();
        let mut transport = StreamableHttp::new(http, &format!("{}/mcp", server.base));
        let tools = list_tools(&mut transport).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "waited on an open stream"
        );
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(tools[0]["annotations"], json!({"readOnlyHint": true}));

        let requests = server.requests.lock().unwrap().clone();
        let methods: Vec<(&str, &str)> = requests
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            methods,
            [
                ("POST", "/mcp"),
                ("POST", "/mcp"),
                ("POST", "/mcp"),
                ("POST", "/mcp"),
                ("DELETE", "/mcp")
            ]
        );
        for (index, request) in requests.iter().enumerate() {
            assert_eq!(request.header("x-agent-id"), Some("pinner"), "{request:?}");
            let (session, version) = match index {
                0 => (None, None),
                _ => (Some("s-1"), Some("2025-03-26")),
            };
            assert_eq!(request.header("mcp-session-id"), session, "{request:?}");
            assert_eq!(
                request.header("mcp-protocol-version"),
                version,
                "{request:?}"
            );
            if request.method == "POST" {
                assert_eq!(
                    request.header("accept"),
                    Some("application/json, text/event-stream")
                );
                assert_eq!(request.header("content-type"), Some("application/json"));
            }
        }
        assert_eq!(requests[3].json()["params"], json!({"cursor": "c2"}));
    }

    #[test]
    fn an_answer_that_never_comes_ends_at_the_timeout() {
        let server = serve(|_, stream| {
            start_chunked(stream, "text/event-stream");
            chunk(stream, ": ping\n\n");
        });
        let http = Http::new(Vec::new(), Duration::from_millis(300));
        let started = Instant::now();
        let mut transport = StreamableHttp::new(http, &format!("{}/mcp", server.base));
        let error = list_tools(&mut transport).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{error}");
        assert!(error.starts_with("initialize: "), "{error}");
    }

    #[test]
    fn an_http_error_quotes_the_status_and_body() {
        let server = serve(|_, stream| {
            respond(stream, "401 Unauthorized", "", "missing bearer token");
        });
        let http = Http::new(Vec::new(), Duration::from_secs(5));
        let url = format!("{}/mcp", server.base);
        let error = list_tools(&mut StreamableHttp::new(http, &url)).unwrap_err();
        assert_eq!(
            error,
            format!("POST {url}: HTTP 401 Unauthorized: missing bearer token")
        );
    }

    #[test]
    fn finds_the_answer_in_a_json_body_or_batch() {
        let answer = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}});
        assert_eq!(answer_in_json(&answer.to_string(), 2), Ok(answer.clone()));
        let batch = json!([{"jsonrpc": "2.0", "method": "notifications/message"}, answer]);
        assert_eq!(answer_in_json(&batch.to_string(), 2), Ok(answer));
        assert!(answer_in_json(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, 2).is_err());
        assert!(answer_in_json("<html>", 2).is_err());
    }

    #[test]
    fn finds_the_answer_on_a_stream_after_the_servers_own_messages() {
        let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n\n\
                      : keep-alive\n\n\
                      data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                      data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[]}}\n\n";
        let answer = answer_in_stream(EventReader::new(stream.as_bytes()), 2).unwrap();
        assert_eq!(answer["result"], json!({"tools": []}));
        let cut = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert!(answer_in_stream(EventReader::new(cut.as_bytes()), 2).is_err());
    }
}
