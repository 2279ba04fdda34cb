//! Server-sent events (`text/event-stream`, how MCP's Streamable HTTP answers) read the way a
//! client's EventSource reads them (WHATWG HTML, "Interpreting an event stream"): a line ends in
//! CRLF, LF or CR alone; a blank line ends an event; the event's message is its `data` lines
//! joined with LF. Each complete event goes on as soon as it is complete, rewritten when the
//! observer returns a new message for it; the rest of the stream waits for its end of event.

use serde_json::Value;

/// What an observer makes of one event's message, given parsed and as its text: the message to
/// send instead, or `None` to let the event go on as it is.
pub type Rewrite<'r> = dyn FnMut(&Value, &str) -> Option<String> + 'r;

#[derive(Debug, Default)]
pub struct SseRewriter {
    pending: Vec<u8>,
}

impl SseRewriter {
    /// Feed the next chunk; returns what may be sent on now.
    pub fn feed(&mut self, chunk: &[u8], rewrite: &mut Rewrite) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let Some(end) = last_event_end(&self.pending) else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.pending.drain(..end).collect();
        rewrite_events(&complete, rewrite)
    }

    /// End of stream: an event whose end was a CR in the last chunk is complete after all, and
    /// goes out like the others; what is left (an unterminated last event, which a client
    /// discards) goes out as is.
    pub fn finish(&mut self, rewrite: &mut Rewrite) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        let end = lines(&rest, true)
            .filter(Line::is_blank)
            .map(|l| l.next)
            .last();
        match end.and_then(|end| Some((rest.get(..end)?, rest.get(end..)?))) {
            Some((events, tail)) => {
                let mut out = rewrite_events(events, rewrite);
                out.extend_from_slice(tail);
                out
            }
            None => rest,
        }
    }
}

/// One line of the stream: `data[start..content_end]` is its text, the next line starts at
/// `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    content_end: usize,
    next: usize,
}

impl Line {
    fn is_blank(&self) -> bool {
        self.start == self.content_end
    }
}

/// The line starting at `start`, if its end has arrived. A CR as the last byte may be the first
/// half of a CRLF, so that line is not complete yet, unless `data` is known to end there.
fn line_at(data: &[u8], start: usize, data_ends: bool) -> Option<Line> {
    let rest = data.get(start..)?;
    let at = rest.iter().position(|b| matches!(b, b'\n' | b'\r'))?;
    let content_end = start + at;
    let next = match (data.get(content_end), data.get(content_end + 1)) {
        (Some(b'\r'), Some(b'\n')) => content_end + 2,
        (Some(b'\r'), None) if !data_ends => return None,
        _ => content_end + 1,
    };
    Some(Line {
        start,
        content_end,
        next,
    })
}

fn lines(data: &[u8], data_ends: bool) -> impl Iterator<Item = Line> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let line = line_at(data, start, data_ends)?;
        start = line.next;
        Some(line)
    })
}

/// Index just past the last blank line (an event's end) in `data`.
fn last_event_end(data: &[u8]) -> Option<usize> {
    lines(data, false)
        .filter(Line::is_blank)
        .map(|l| l.next)
        .last()
}

/// A field line's name and value: `name: value` (one space after the colon is not part of the
/// value), `name` alone (an empty value); `None` for a comment (`: ...`).
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    match line.iter().position(|b| *b == b':') {
        Some(0) => None,
        Some(colon) => {
            let name = line.get(..colon)?;
            let value = line.get(colon + 1..)?;
            Some((name, value.strip_prefix(b" ").unwrap_or(value)))
        }
        None => Some((line, &[])),
    }
}

/// Rewrite each complete event of `events` whose message the observer replaces: the message is
/// written on the event's first `data` line and its other `data` lines dropped; every other
/// line and every line ending stays as it was.
fn rewrite_events(events: &[u8], rewrite: &mut Rewrite) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len());
    let mut event: Vec<Line> = Vec::new();
    // `events` ends with an event's end: a CR there is a whole line ending.
    for line in lines(events, true) {
        if !line.is_blank() {
            event.push(line);
            continue;
        }
        write_event(events, &event, rewrite, &mut out);
        out.extend_from_slice(events.get(line.start..line.next).unwrap_or_default());
        event.clear();
    }
    out
}

fn write_event(stream: &[u8], event: &[Line], rewrite: &mut Rewrite, out: &mut Vec<u8>) {
    let text = |l: &Line| stream.get(l.start..l.content_end).unwrap_or_default();
    let whole = |l: &Line| stream.get(l.start..l.next).unwrap_or_default();
    let is_data = |l: &Line| field(text(l)).is_some_and(|(name, _)| name == b"data");
    let data: Vec<&[u8]> = event
        .iter()
        .filter_map(|l| field(text(l)).filter(|(name, _)| *name == b"data"))
        .map(|(_, value)| value)
        .collect();
    let joined = data.join(&b'\n');
    let message = std::str::from_utf8(&joined).ok().and_then(|text| {
        let message = serde_json::from_slice::<Value>(text.as_bytes()).ok()?;
        rewrite(&message, text)
    });
    let Some(message) = message else {
        for line in event {
            out.extend_from_slice(whole(line));
        }
        return;
    };
    let mut written = false;
    for line in event {
        if !is_data(line) {
            out.extend_from_slice(whole(line));
        } else if !written {
            // The first data line's own prefix and ending, for each line of the new message.
            let prefix = field(text(line)).map_or(0, |(_, value)| text(line).len() - value.len());
            let ending = stream.get(line.content_end..line.next).unwrap_or_default();
            for part in message.split('\n') {
                out.extend_from_slice(text(line).get(..prefix).unwrap_or(b"data: "));
                out.extend_from_slice(part.as_bytes());
                out.extend_from_slice(ending);
            }
            written = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;
    use serde_json::json;

    /// Replaces any message with an `id` by `{"id":…,"seen":true}`; records every message seen.
    fn marking(seen: &mut Vec<Value>) -> impl FnMut(&Value, &str) -> Option<String> + '_ {
        move |m: &Value, _: &str| {
            seen.push(m.clone());
            m.get("id")
                .map(|id| json!({"id": id, "seen": true}).to_string())
        }
    }

    fn run_in_pieces(stream: &[u8], piece: usize) -> (Vec<u8>, Vec<Value>) {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        {
            let mut rewrite = marking(&mut seen);
            let mut sse = SseRewriter::default();
            for chunk in stream.chunks(piece) {
                out.extend(sse.feed(chunk, &mut rewrite));
            }
            out.extend(sse.finish(&mut rewrite));
        }
        (out, seen)
    }

    #[test]
    fn events_go_on_as_they_complete_and_only_then() {
        let stream = b"id: 1\nevent: message\ndata: \n\n: comment\ndata: {\"id\":7}\n\nevent: message\ndata: {\"method\":\"m\"}\n\n";
        let mut seen = Vec::new();
        let mut rewrite = marking(&mut seen);
        let mut sse = SseRewriter::default();
        let mut out = Vec::new();
        for byte in stream {
            let piece = sse.feed(std::slice::from_ref(byte), &mut rewrite);
            assert!(piece.is_empty() || piece.ends_with(b"\n\n"));
            out.extend(piece);
        }
        assert!(sse.finish(&mut rewrite).is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: 1\nevent: message\ndata: \n\n: comment\ndata: {\"id\":7,\"seen\":true}\n\nevent: message\ndata: {\"method\":\"m\"}\n\n"
        );
    }

    #[test]
    fn a_rewritten_message_keeps_its_data_lines_prefix_and_endings() {
        let stream = b"event: message\r\ndata:{\"id\":1,\r\ndata:  \"t\":\"a\"}\r\n\r\n";
        let mut rewrite = |_: &Value, text: &str| Some(text.replace('a', "b"));
        let mut sse = SseRewriter::default();
        let mut out = sse.feed(stream, &mut rewrite);
        out.extend(sse.finish(&mut rewrite));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: message\r\ndata:{\"id\":1,\r\ndata: \"t\":\"b\"}\r\n\r\n"
        );
    }

    #[test]
    fn every_line_ending_the_standard_allows_is_read() {
        for ending in ["\n", "\r\n", "\r"] {
            let stream = format!("event: message{ending}data: {{\"id\":1}}{ending}{ending}data: {{\"id\":2}}{ending}{ending}");
            for piece in [1, 2, 3, stream.len()] {
                let (out, seen) = run_in_pieces(stream.as_bytes(), piece);
                assert_eq!(
                    seen,
                    vec![json!({"id":1}), json!({"id":2})],
                    "{ending:?} {piece}"
                );
                assert_eq!(
                    out,
                    format!("event: message{ending}data: {{\"id\":1,\"seen\":true}}{ending}{ending}data: {{\"id\":2,\"seen\":true}}{ending}{ending}").into_bytes(),
                    "{ending:?} {piece}"
                );
            }
        }
        // Mixed endings, and a CR that ends one chunk with its LF in the next: one line ending.
        let (out, seen) = run_in_pieces(b"data: {\"id\":3}\r\n\ndata: {\"id\":4}\n\r\n", 15);
        assert_eq!(seen, vec![json!({"id":3}), json!({"id":4})]);
        assert_eq!(
            out,
            b"data: {\"id\":3,\"seen\":true}\r\n\ndata: {\"id\":4,\"seen\":true}\n\r\n"
        );
    }

    #[test]
    fn a_message_over_several_data_lines_is_one_message() {
        let stream =
            b"id: 9\ndata: {\"id\":\ndata:5,\ndata  \ndata\ndata: \"x\":[1]}\nretry: 10\n\n";
        let (out, seen) = run_in_pieces(stream, 4);
        // `data  ` is a field named "data  ", not data; `data` alone is an empty line of data.
        assert_eq!(seen, vec![json!({"id":5,"x":[1]})]);
        assert_eq!(
            out,
            b"id: 9\ndata: {\"id\":5,\"seen\":true}\ndata  \nretry: 10\n\n"
        );
    }

    #[test]
    fn what_is_not_a_json_message_passes_unchanged() {
        let stream: &[u8] = b"data: not json\n\ndata: {\"id\":1\n\n\xff\xfe: x\n\n: only a comment\n\nevent: ping\n\npartial";
        let (out, seen) = run_in_pieces(stream, 5);
        assert!(seen.is_empty());
        assert_eq!(out, stream);
    }
}
