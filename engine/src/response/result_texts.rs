//! Where, in an answer's own text, the strings a result guard reads are: `result.content[].text`,
//! `result.content[].resource.text`, and every string of `result.structuredContent`. A redaction
//! rewrites those strings and leaves every other byte of the message as the server sent it.
//!
//! One pass over the text, strings skipped a word at a time: a guarded answer is read once,
//! not once per level of nesting. Members are read in order with duplicates kept: a client may
//! take either of two members of one name, so both are read. Below `structuredContent` there is
//! no depth limit (it is walked with a stack, not recursion), so nesting cannot hide a string.

use std::borrow::Cow;
use std::ops::Range;

use crate::json::plain;

/// One message of an answer: where it is, its id and the strings its result gives an agent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub span: Range<usize>,
    /// The id's value, as sent.
    pub id: Option<Range<usize>>,
    pub has_result: bool,
    pub texts: Vec<Text>,
}

/// A string token an agent reads (quotes included).
#[derive(Debug, PartialEq, Eq)]
pub struct Text {
    pub span: Range<usize>,
    /// Whether it holds a backslash escape: if not, its bytes are its text.
    pub escaped: bool,
}

/// The messages of `answer` (one, or each object of a batch); `None` when it is not JSON.
pub fn read(answer: &str) -> Option<Vec<Message>> {
    let mut reader = Reader {
        text: answer,
        bytes: answer.as_bytes(),
        pos: 0,
        messages: Vec::new(),
    };
    reader.whitespace();
    let top = if reader.peek()? == b'[' {
        Place::Batch
    } else {
        Place::Message
    };
    reader.value(top)?;
    reader.whitespace();
    (reader.pos == reader.bytes.len()).then_some(reader.messages)
}

/// What a value is, by where it sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Batch,
    Message,
    Result,
    Content,
    Item,
    Resource,
    /// A `text` an agent reads.
    Read,
    /// `structuredContent`: every string in it is read.
    Structured,
    Skip,
}

impl Place {
    fn member(self, key: &str) -> Place {
        match (self, key) {
            (Place::Message, "result") => Place::Result,
            (Place::Result, "content") => Place::Content,
            (Place::Result, "structuredContent") => Place::Structured,
            (Place::Item, "text") | (Place::Resource, "text") => Place::Read,
            (Place::Item, "resource") => Place::Resource,
            _ => Place::Skip,
        }
    }

    fn element(self) -> Place {
        match self {
            Place::Batch => Place::Message,
            Place::Content => Place::Item,
            _ => Place::Skip,
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    messages: Vec<Message>,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn value(&mut self, place: Place) -> Option<()> {
        self.whitespace();
        match (place, self.peek()?) {
            (Place::Structured, _) => self.subtree(true),
            (Place::Read, b'"') => self.text(),
            (Place::Message | Place::Result | Place::Item | Place::Resource, b'{') => {
                self.object(place)
            }
            (Place::Batch | Place::Content, b'[') => self.array(place),
            _ => self.subtree(false),
        }
    }

    fn object(&mut self, place: Place) -> Option<()> {
        let start = self.pos;
        if place == Place::Message {
            self.messages.push(Message::default());
        }
        self.pos += 1;
        if self.eat(b'}').is_none() {
            loop {
                self.whitespace();
                let key = self.key()?;
                self.eat(b':')?;
                self.whitespace();
                let value_start = self.pos;
                let child = place.member(&key);
                self.value(child)?;
                if place == Place::Message {
                    let message = self.messages.last_mut()?;
                    match child {
                        Place::Result => message.has_result = true,
                        _ if key == "id" => message.id = Some(value_start..self.pos),
                        _ => {}
                    }
                }
                if self.eat(b',').is_none() {
                    self.eat(b'}')?;
                    break;
                }
            }
        }
        if place == Place::Message {
            self.messages.last_mut()?.span = start..self.pos;
        }
        Some(())
    }

    fn array(&mut self, place: Place) -> Option<()> {
        self.pos += 1;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(place.element())?;
            if self.eat(b',').is_none() {
                return self.eat(b']');
            }
        }
    }

    /// A string token at the cursor; whether it holds an escape.
    fn string(&mut self) -> Option<bool> {
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos += self.bytes.get(self.pos..).map_or(0, plain::plain_run);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                // The escaped byte is skipped with it: `\"` does not end the string.
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                _ => return None,
            }
        }
    }

    fn key(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        let escaped = self.string()?;
        let text: &'a str = self.text;
        let token = text.get(start..self.pos)?;
        match escaped {
            false => token.get(1..token.len() - 1).map(Cow::Borrowed),
            true => serde_json::from_str(token).ok().map(Cow::Owned),
        }
    }

    /// A string an agent reads, noted on the message being read.
    fn text(&mut self) -> Option<()> {
        let start = self.pos;
        let escaped = self.string()?;
        if let Some(message) = self.messages.last_mut() {
            message.texts.push(Text {
                span: start..self.pos,
                escaped,
            });
        }
        Some(())
    }

    /// A number, `true`, `false` or `null`.
    fn scalar(&mut self) -> Option<()> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'a'..=b'z' | b'+' | b'-' | b'.' | b'E') = self.peek() {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }

    /// A whole value, its string values noted when `read`; with a stack rather than
    /// recursion, so any depth is read.
    fn subtree(&mut self, read: bool) -> Option<()> {
        let mut closers: Vec<u8> = Vec::new();
        loop {
            self.whitespace();
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    let closer = if open == b'{' { b'}' } else { b']' };
                    self.pos += 1;
                    if self.eat(closer).is_none() {
                        closers.push(closer);
                        if closer == b'}' {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b'"' if read => self.text()?,
                b'"' => self.string().map(drop)?,
                _ => self.scalar()?,
            }
            // After a value: close what it ends, then the next element or member.
            loop {
                let Some(&closer) = closers.last() else {
                    return Some(());
                };
                self.whitespace();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if closer == b'}' {
                            self.member_key()?;
                        }
                        break;
                    }
                    byte if byte == closer => {
                        self.pos += 1;
                        closers.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    fn member_key(&mut self) -> Option<()> {
        self.whitespace();
        self.string()?;
        self.eat(b':')
    }
}

/// A range of an answer's text and what it becomes.
pub type Edit = (Range<usize>, String);

/// `text` with each range replaced by its string (ranges in order, not overlapping).
pub fn splice(text: &str, replacements: &[Edit]) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (range, new) in replacements {
        out.push_str(text.get(copied..range.start)?);
        out.push_str(new);
        copied = range.end;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    fn tokens(answer: &str) -> Vec<&str> {
        read(answer)
            .unwrap()
            .into_iter()
            .flat_map(|m| m.texts)
            .map(|t| answer.get(t.span).unwrap())
            .collect()
    }

    #[test]
    fn the_texts_an_agent_reads_are_found_where_they_were_sent() {
        let message = r#"{"jsonrpc":"2.0","id":1, "result" : {"content":[{"type":"text","text":"a"},
            {"type":"resource","resource":{"uri":"x://y","text":"b\u0041"}},{"type":"image","data":"c"}],
            "structuredContent":{"k":["d",{"e":"f"}],"n":-1.5e3,"t":"g","u":[true,null,{}]},"text":"not read"}}"#;
        assert_eq!(
            tokens(message),
            [r#""a""#, r#""b\u0041""#, r#""d""#, r#""f""#, r#""g""#]
        );
        let read = read(message).unwrap();
        assert_eq!(read.len(), 1);
        let texts: Vec<bool> = read[0].texts.iter().map(|t| t.escaped).collect();
        assert_eq!(texts, [false, true, false, false, false]);
        assert_eq!(message.get(read[0].id.clone().unwrap()), Some("1"));
        assert_eq!(read[0].span, 0..message.len());
        assert!(read[0].has_result);
    }

    #[test]
    fn duplicates_escaped_keys_and_any_depth_are_read() {
        let message = r#"{"id":1,"result":{"content":[{"text":"one","t\u0065xt":"two"}]},"result":{"content":[{"text":"three"}]}}"#;
        assert_eq!(tokens(message), [r#""one""#, r#""two""#, r#""three""#]);
        let deep = format!(
            r#"{{"id":1,"result":{{"structuredContent":{}"deep"{}}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        assert_eq!(tokens(&deep), [r#""deep""#]);
        let quoted = r#"{"id":1,"result":{"content":[{"text":"say \"hi\\\"","x":"\\"}]}}"#;
        assert_eq!(tokens(quoted), [r#""say \"hi\\\"""#]);
    }

    #[test]
    fn a_batch_is_read_message_by_message() {
        let batch = r#"[ {"id":1,"error":{"code":1,"message":"m"}} ,{"id":"b","result":{"content":[{"text":"x"}]}}, 3]"#;
        let read = read(batch).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            batch.get(read[0].span.clone()),
            Some(r#"{"id":1,"error":{"code":1,"message":"m"}}"#)
        );
        assert!(!read[0].has_result && read[0].texts.is_empty());
        assert_eq!(batch.get(read[1].id.clone().unwrap()), Some(r#""b""#));
    }

    #[test]
    fn what_is_not_json_is_not_read() {
        for text in [
            "not json",
            r#"{"id":1,"result":{"content":[{"text":"a"}]}"#,
            r#"{"id":1} x"#,
            r#"{"id":1,"result":{"structuredContent":{"a" "b"}}}"#,
            r#"{"id":1,"result":{"content":[{"text":"a
"}]}}"#,
            "",
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }

    #[test]
    fn splicing_replaces_only_the_ranges() {
        let text = "0123456789";
        let out = splice(text, &[(1..3, "ab".into()), (5..6, String::new())]);
        assert_eq!(out.as_deref(), Some("0ab346789"));
    }
}
