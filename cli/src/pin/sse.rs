//! Server-sent events read off a byte stream, as the WHATWG event-stream format defines them:
//! `field: value` lines, a blank line ends an event, lines starting with `:` are comments
//! (servers send them as keep-alives). Lines end in LF or CRLF; a lone CR, which the format
//! also allows, is not recognised (no MCP server is known to send it).

use std::io::{BufRead, Read};

/// Largest event accepted: a server that never ends a line or an event must not exhaust memory.
const MAX_EVENT_BYTES: u64 = 64 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, `message` when the event has none.
    pub kind: String,
    /// The `data` lines joined with `\n`.
    pub data: String,
}

/// Reads events one at a time, so that a stream that stays open can be read as it arrives.
pub struct EventReader<R> {
    reader: R,
}

impl<R: BufRead> EventReader<R> {
    pub fn new(reader: R) -> EventReader<R> {
        EventReader { reader }
    }

    /// The next event; `None` when the stream ends (an event cut off by the end is dropped, as
    /// the format says).
    pub fn next_event(&mut self) -> Result<Option<Event>, String> {
        let mut kind = String::new();
        let mut data: Option<String> = None;
        let mut budget = MAX_EVENT_BYTES;
        loop {
            let Some(line) = self.next_line(&mut budget)? else {
                return Ok(None);
            };
            if line.is_empty() {
                match data.take() {
                    Some(data) => return Ok(Some(finish(kind, data))),
                    // No data: nothing to dispatch, and the event type starts over.
                    None => kind.clear(),
                }
                continue;
            }
            let (field, value) = split_field(&line);
            match field {
                "event" => value.clone_into(&mut kind),
                "data" => match data.as_mut() {
                    None => data = Some(value.to_owned()),
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                },
                // Comments, `id`, `retry` and unknown fields change nothing here.
                _ => {}
            }
        }
    }

    /// One line without its terminator; `None` at the end of the stream.
    fn next_line(&mut self, budget: &mut u64) -> Result<Option<String>, String> {
        let mut raw = Vec::new();
        let read = (&mut self.reader)
            .take(*budget)
            .read_until(b'\n', &mut raw)
            .map_err(|e| format!("reading the event stream: {e}"))?;
        *budget = budget.saturating_sub(read as u64);
        if read == 0 {
            return Ok(None);
        }
        if raw.last() != Some(&b'\n') {
            if *budget == 0 {
                return Err(format!(
                    "an event on the stream is larger than {MAX_EVENT_BYTES} bytes"
                ));
            }
            // The stream ended inside a line: the event is incomplete.
            return Ok(None);
        }
        raw.pop();
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
        String::from_utf8(raw)
            .map(Some)
            .map_err(|_| "the event stream is not UTF-8".to_owned())
    }
}

/// `field: value` with one optional space after the colon; a line without a colon is a field
/// with an empty value; a line starting with a colon is a comment (empty field name).
fn split_field(line: &str) -> (&str, &str) {
    match line.split_once(':') {
        Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
        None => (line, ""),
    }
}

/// The event, with the type an event without one has.
fn finish(kind: String, data: String) -> Event {
    let kind = if kind.is_empty() {
        "message".to_owned()
    } else {
        kind
    };
    Event { kind, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &str) -> Vec<Event> {
        let mut reader = EventReader::new(stream.as_bytes());
        let mut out = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            out.push(event);
        }
        out
    }

    fn event(kind: &str, data: &str) -> Event {
        Event {
            kind: kind.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn reads_typed_and_untyped_events_with_either_line_ending() {
        let stream = "event: endpoint\r\ndata: /messages/?session_id=ab\r\n\r\n\
                      data: {\"id\":1}\n\n";
        assert_eq!(
            events(stream),
            vec![
                event("endpoint", "/messages/?session_id=ab"),
                event("message", "{\"id\":1}")
            ]
        );
    }

    #[test]
    fn joins_data_lines_and_skips_comments_ids_and_empty_events() {
        let stream = ": ping\n\nid: 7\nretry: 10\nevent: message\ndata: {\"a\":\ndata:1}\n\n\
                      event: lonely\n\ndata\n\n";
        assert_eq!(
            events(stream),
            vec![event("message", "{\"a\":\n1}"), event("message", "")]
        );
    }

    #[test]
    fn keeps_a_value_without_its_first_space_only() {
        assert_eq!(events("data:  two\n\n"), vec![event("message", " two")]);
        assert_eq!(events("data:x:y\n\n"), vec![event("message", "x:y")]);
    }

    #[test]
    fn an_event_cut_off_by_the_end_of_the_stream_is_dropped() {
        assert_eq!(
            events("data: whole\n\ndata: cut"),
            vec![event("message", "whole")]
        );
        assert_eq!(events("data: no blank line\n"), Vec::<Event>::new());
    }

    /// Gives its bytes once, then fails the test if read again.
    struct OpenStream(Option<&'static [u8]>);

    impl Read for OpenStream {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let bytes = self.0.take().expect("read past the event it needed");
            buf[..bytes.len()].copy_from_slice(bytes);
            Ok(bytes.len())
        }
    }

    #[test]
    fn an_event_is_returned_without_reading_further() {
        // A stream that stays open: waiting for more bytes after the event would hang.
        let stream = OpenStream(Some(b"event: endpoint\ndata: /m\n\n"));
        let mut reader = EventReader::new(std::io::BufReader::new(stream));
        assert_eq!(reader.next_event().unwrap(), Some(event("endpoint", "/m")));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut reader = EventReader::new(&b"data: \xff\n\n"[..]);
        assert!(reader.next_event().is_err());
    }
}
