//! The legacy HTTP+SSE transport (MCP 2024-11-05): a GET opens an event stream whose first
//! event (`endpoint`) names where to POST messages; the POSTs are only acknowledged (202) and
//! every answer arrives as a `message` event on the stream.

use std::io::BufRead;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use serde_json::Value;

use super::http::{self, Http};
use super::session::{is_answer_to, Transport};
use super::sse::{Event, EventReader};

pub struct LegacySse {
    http: Http,
    /// Absolute URL of the message endpoint the stream named.
    endpoint: String,
    /// The stream's events, read on their own thread: the stream stays open while the POSTs
    /// are made, and a wait on it must end at a deadline.
    events: Receiver<Result<Event, String>>,
}

impl LegacySse {
    /// Open the stream and wait for the endpoint it names.
    pub fn connect(http: Http, url: &str) -> Result<LegacySse, String> {
        let response = http.get_stream(url)?;
        let media_type = http::media_type(&response);
        if media_type != "text/event-stream" {
            return Err(format!(
                "GET {url}: expected an event stream, got {media_type:?}"
            ));
        }
        let (sender, events) = channel();
        let stream = EventReader::new(http::stream(response));
        std::thread::spawn(move || forward_events(stream, &sender));
        let mut transport = LegacySse {
            http,
            endpoint: String::new(),
            events,
        };
        let first = transport
            .next_event(Instant::now() + transport.http.timeout())
            .map_err(|e| format!("GET {url}: waiting for the endpoint event: {e}"))?;
        if first.kind != "endpoint" {
            return Err(format!(
                "GET {url}: the first event is {:?}, not \"endpoint\"",
                first.kind
            ));
        }
        transport.endpoint = http::resolve_same_origin(url, first.data.trim())?;
        Ok(transport)
    }

    fn post(&self, message: &Value) -> Result<(), String> {
        self.http
            .post(&self.endpoint, &[], &message.to_string())
            .map(drop)
    }

    fn next_event(&self, deadline: Instant) -> Result<Event, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(wait) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "no event on the stream within {:?}",
                self.http.timeout()
            )),
            Err(RecvTimeoutError::Disconnected) => Err("the event stream ended".to_owned()),
        }
    }
}

/// Every event of `stream` to `sender`, then the reason it stopped; ends early when nobody
/// listens any more.
fn forward_events(mut stream: EventReader<impl BufRead>, sender: &Sender<Result<Event, String>>) {
    loop {
        let next = match stream.next_event() {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err("the event stream ended".to_owned()),
            Err(e) => Err(e),
        };
        let last = next.is_err();
        if sender.send(next).is_err() || last {
            return;
        }
    }
}

impl Transport for LegacySse {
    fn request(&mut self, request: &Value) -> Result<Value, String> {
        let method = request["method"].as_str().unwrap_or("request").to_owned();
        let id = request["id"].as_u64().unwrap_or_default();
        self.post(request)?;
        let deadline = Instant::now() + self.http.timeout();
        loop {
            let event = self
                .next_event(deadline)
                .map_err(|e| format!("{method}: waiting for the answer: {e}"))?;
            if event.kind != "message" {
                continue;
            }
            let message: Value = serde_json::from_str(&event.data)
                .map_err(|e| format!("{method}: an event that is not JSON: {e}"))?;
            if is_answer_to(&message, id) {
                return Ok(message);
            }
        }
    }

    fn notify(&mut self, notification: &Value) -> Result<(), String> {
        self.post(notification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::fake_server::{chunk, respond, serve, start_chunked, Recorded};
    use crate::pin::session::list_tools;
    use serde_json::json;
    use std::net::TcpStream;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A legacy server: the GET stream names a relative endpoint and stays open; every POST is
    /// answered 202 and its answer, after a notification, goes to the stream.
    fn legacy_server(
        stream_slot: &Mutex<Option<TcpStream>>,
        request: &Recorded,
        stream: &mut TcpStream,
    ) {
        if request.method == "GET" {
            start_chunked(stream, "text/event-stream; charset=utf-8");
            chunk(
                stream,
                "event: endpoint\r\ndata: messages?session_id=7\r\n\r\n",
            );
            *stream_slot.lock().unwrap() = Some(stream.try_clone().unwrap());
            return;
        }
        respond(stream, "202 Accepted", "", "Accepted");
        let message = request.json();
        let Some(id) = message.get("id") else {
            return;
        };
        let result = match message["method"].as_str() {
            Some("initialize") => json!({"protocolVersion": "2024-11-05", "capabilities": {},
                                         "serverInfo": {"name": "legacy", "version": "1"}}),
            _ => json!({"tools": [{"name": "a", "description": "A."}]}),
        };
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let mut slot = stream_slot.lock().unwrap();
        let events = slot.as_mut().unwrap();
        chunk(
            events,
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n",
        );
        chunk(events, &format!("event: message\ndata: {answer}\n\n"));
    }

    #[test]
    fn posts_go_to_the_named_endpoint_and_answers_come_on_the_stream() {
        let slot = Arc::new(Mutex::new(None));
        let server_slot = Arc::clone(&slot);
        let server = serve(move |request, stream| legacy_server(&server_slot, request, stream));
        let http = Http::new(
            vec![("authorization".to_owned(), "Bearer t".to_owned())],
            Duration::from_secs(5),
        );
        let mut transport = LegacySse::connect(http, &format!("{}/api/sse", server.base)).unwrap();
        let tools = list_tools(&mut transport).unwrap();
        assert_eq!(
            tools,
            [json!({"name": "a", "description": "A."})
                .as_object()
                .unwrap()
                .clone()]
        );

        let requests = server.requests.lock().unwrap().clone();
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, "/api/sse");
        assert_eq!(requests[0].header("accept"), Some("text/event-stream"));
        let posts: Vec<(&str, String)> = requests[1..]
            .iter()
            .map(|r| {
                (
                    r.path.as_str(),
                    r.json()["method"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            posts,
            [
                ("/api/messages?session_id=7", "initialize".to_owned()),
                (
                    "/api/messages?session_id=7",
                    "notifications/initialized".to_owned()
                ),
                ("/api/messages?session_id=7", "tools/list".to_owned()),
            ]
        );
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some("Bearer t"),
                "{request:?}"
            );
        }
    }

    #[test]
    fn a_stream_that_names_no_endpoint_is_an_error() {
        let server = serve(|_, stream| {
            start_chunked(stream, "text/event-stream");
            chunk(stream, "event: message\ndata: {}\n\n");
        });
        let http = Http::new(Vec::new(), Duration::from_secs(5));
        let error = LegacySse::connect(http, &format!("{}/sse", server.base))
            .err()
            .unwrap();
        assert!(error.contains("not \"endpoint\""), "{error}");
    }
}
