//! A request body read in one pass: the whole text is checked exactly as `strict::validate`
//! checks it (JSON syntax as serde_json accepts it, duplicate keys refused at any depth), and on
//! the way the members of the message (and of its `params`) are noted as spans of the text.
//! Nothing else is built. This replaces a validation pass followed by two or three passes of
//! serde_json over the same bytes, and keeps the request path's code small: in Envoy the filter
//! runs with cold caches, so less code touched per request is time saved.
//!
//! Agreement with serde_json is tested on a corpus of edge cases here and by the `strict_json`
//! fuzz target, which checks that this and `strict::validate` accept the same inputs.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use super::plain;

/// serde_json refuses a 128th level of nesting.
const MAX_DEPTH: usize = 127;
/// Below this many keys an object's keys are compared as a list; past it, a set.
const LINEAR_SCAN_KEYS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(String);

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object whose members were noted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Object<'a> {
    pub members: Vec<Member<'a>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// With escapes decoded.
    pub key: Cow<'a, str>,
    /// The value's text exactly as sent.
    pub value: &'a str,
    /// The value's own members, when it is an object and members were noted this deep.
    pub object: Option<Object<'a>>,
}

impl<'a> Object<'a> {
    pub fn get(&self, name: &str) -> Option<&Member<'a>> {
        self.members.iter().find(|m| m.key == name)
    }
}

/// What the body is, with the members of its message(s) and their members noted.
#[derive(Debug, PartialEq, Eq)]
pub enum Document<'a> {
    Object(Object<'a>),
    /// Each element's text, and its members when it is an object.
    Array(Vec<(&'a str, Option<Object<'a>>)>),
    /// Any other JSON value; its first character.
    Other(u8),
}

/// Check `text` whole and note the members of the top object (or of each object in the top
/// array) and of their object members.
pub fn scan(text: &str) -> Result<Document<'_>, ScanError> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    scanner.skip_whitespace();
    let document = match scanner.peek() {
        Some(b'{') => Document::Object(scanner.object(2)?),
        Some(b'[') => Document::Array(scanner.array(2)?),
        Some(first) => {
            scanner.value(0)?;
            Document::Other(first)
        }
        None => return Err(scanner.error("EOF while parsing a value")),
    };
    scanner.skip_whitespace();
    if scanner.pos != scanner.bytes.len() {
        return Err(scanner.error("trailing characters"));
    }
    Ok(document)
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &str) -> ScanError {
        ScanError(format!("{what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else if self.peek().is_none() {
            Err(self.error("EOF while parsing"))
        } else {
            Err(self.error(what))
        }
    }

    fn span(&self, start: usize) -> &'a str {
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// One value at the cursor; its members noted `capture` levels deep. Returns its text.
    fn value(&mut self, capture: usize) -> Result<(&'a str, Option<Object<'a>>), ScanError> {
        let start = self.pos;
        let object = match self.peek() {
            Some(b'{') => Some(self.object(capture)?),
            Some(b'[') => {
                self.array(0)?;
                None
            }
            Some(b'"') => {
                self.string(false)?;
                None
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                None
            }
            Some(_) => return Err(self.error("expected value")),
            None => return Err(self.error("EOF while parsing a value")),
        };
        let object = if capture > 0 { object } else { None };
        Ok((self.span(start), object))
    }

    fn literal(&mut self, word: &[u8]) -> Result<Option<Object<'a>>, ScanError> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(None)
        } else {
            Err(self.error("expected ident"))
        }
    }

    fn enter(&mut self) -> Result<(), ScanError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.pos += 1;
        Ok(())
    }

    /// The elements of an array; each noted `capture` levels deep (0: none kept).
    #[allow(clippy::type_complexity)]
    fn array(&mut self, capture: usize) -> Result<Vec<(&'a str, Option<Object<'a>>)>, ScanError> {
        self.enter()?;
        let mut elements = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(elements);
        }
        loop {
            self.skip_whitespace();
            let element = self.value(capture)?;
            if capture > 0 {
                elements.push(element);
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(elements);
                }
                Some(_) => return Err(self.error("expected `,` or `]`")),
                None => return Err(self.error("EOF while parsing a list")),
            }
        }
    }

    /// An object, duplicate keys refused; members noted if `capture` > 0, their values'
    /// members if `capture` > 1.
    fn object(&mut self, capture: usize) -> Result<Object<'a>, ScanError> {
        self.enter()?;
        let mut object = Object::default();
        let mut few: Vec<Cow<'a, str>> = Vec::new();
        let mut many: BTreeSet<Cow<'a, str>> = BTreeSet::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(object);
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                Some(_) => return Err(self.error("key must be a string")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            let key = self.string(true)?;
            let duplicate = if many.is_empty() && few.len() < LINEAR_SCAN_KEYS {
                few.contains(&key)
            } else {
                many.extend(few.drain(..));
                many.contains(&key)
            };
            if duplicate {
                return Err(ScanError(format!("duplicate key {key:?} in an object")));
            }
            self.skip_whitespace();
            self.expect(b':', "expected `:`")?;
            self.skip_whitespace();
            let (value, members) = self.value(capture.saturating_sub(1))?;
            if capture > 0 {
                object.members.push(Member {
                    key: key.clone(),
                    value,
                    object: members,
                });
            }
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(object);
                }
                Some(_) => return Err(self.error("expected `,` or `}`")),
                None => return Err(self.error("EOF while parsing an object")),
            }
        }
    }

    /// A string at the cursor (`"` included): control characters refused, escapes checked,
    /// \u surrogates paired, as serde_json reads strings. Decoded when `decode` (keys);
    /// otherwise the empty string is returned.
    fn string(&mut self, decode: bool) -> Result<Cow<'a, str>, ScanError> {
        self.pos += 1;
        let start = self.pos;
        let mut decoded: Option<String> = None;
        let mut plain_from = start;
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            match byte {
                b'"' => {
                    let tail = self.text.get(plain_from..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Ok(match decoded {
                        Some(mut text) => {
                            text.push_str(tail);
                            Cow::Owned(text)
                        }
                        None if decode => {
                            Cow::Borrowed(self.text.get(start..self.pos - 1).unwrap_or_default())
                        }
                        None => Cow::Borrowed(""),
                    });
                }
                b'\\' => {
                    let plain = self.text.get(plain_from..self.pos).unwrap_or_default();
                    self.pos += 1;
                    let character = self.escape()?;
                    if decode {
                        let text = decoded.get_or_insert_with(String::new);
                        text.push_str(plain);
                        text.push(character);
                    }
                    plain_from = self.pos;
                }
                0x00..=0x1f => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                _ => {
                    self.pos += 1 + self.bytes.get(self.pos + 1..).map_or(0, plain::plain_run);
                }
            }
        }
    }

    /// The escape after a backslash, decoded.
    fn escape(&mut self) -> Result<char, ScanError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xDC00..=0xDFFF => {
                        return Err(self.error("lone leading surrogate in hex escape"))
                    }
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("unexpected end of hex escape"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error("lone leading surrogate in hex escape"));
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code)
                            .ok_or_else(|| self.error("invalid unicode code point"))?
                    }
                    code => char::from_u32(code)
                        .ok_or_else(|| self.error("invalid unicode code point"))?,
                }
            }
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, ScanError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error("invalid escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// A number: the longest run of number characters, read by serde_json itself (grammar and
    /// range, e.g. `1e999` is refused), so that both agree exactly. Numbers are rare in MCP
    /// messages (ids, a few arguments); strings are what this scanner is fast at.
    fn number(&mut self) -> Result<(), ScanError> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.pos += 1;
        }
        match serde_json::from_str::<f64>(self.span(start)) {
            Ok(_) => Ok(()),
            Err(e) => Err(ScanError(format!("{e} (number at byte {start})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::strict;
    use crate::test_support::test;

    /// Inputs on every edge serde_json has: the scanner must accept exactly what
    /// `strict::validate` accepts.
    fn corpus() -> Vec<String> {
        let mut corpus: Vec<String> = [
            r#"{}"#,
            r#"[]"#,
            r#"  {"a":1}  "#,
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"b":{"c":1,"c":1}}]}"#,
            r#"{"na\u006de":1,"name":2}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            "\u{feff}{}",
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\ud800\n"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\uD83D\uDE00"}"#,
            r#"{"a":"\u00e9\u0000"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"nl\nx\"}",
            "{\"a\":\"\u{7f}\"}",
            r#"[1,]"#,
            r#"[,1]"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{1:1}"#,
            "",
            " ",
            "nul",
            "null",
            "true",
            "false",
            "tru",
            "nulll",
            r#""s""#,
            "1",
            "-1",
            "-",
            "01",
            "1.",
            "1.5",
            ".5",
            "1e5",
            "1E+5",
            "1e-5",
            "1e",
            "1e+",
            "-0",
            "-01",
            "1.5e308",
            "1e309",
            "1e999",
            "-1e999",
            "1e-999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "[1 2]",
            "[1,2]",
            "[1-2]",
            "[1e5e5]",
            "[--1]",
            "[+1]",
            "[1.2.3]",
            "[0x10]",
            "[Infinity]",
            "[NaN]",
            r#"{"a":[1,{"b":null}]}"#,
            r#"  [ {"jsonrpc":"2.0"} , 5 , "x" ]  "#,
            r#"{"a":"\u005f","\u005f":true,"_b":null}"#,
            r#"{"a":{"b":1},"b":{"a":1},"c":[{"c":1},{"c":2}]}"#,
            "{\"a\":1}\n",
            "{\"a\":1}\u{a0}",
            r#"{"\"":1,"\\":2,"\/":3,"/":4}"#,
            r#"{"é":1,"\u00e9":2}"#,
            "[\"\u{1F600}\"]",
            "{\"a\":1}\0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for depth in [126, 127, 128, 129] {
            corpus.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            corpus.push(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)));
            corpus.push(format!(
                "[{}{}]",
                "{\"a\":[".repeat(depth / 2),
                "]}".repeat(depth / 2)
            ));
        }
        let keys = |n: usize, last: &str| {
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
            format!("{{{},\"{last}\":0}}", members.join(","))
        };
        // Every special byte at every offset of strings shorter and longer than each stride
        // `plain::plain_run` checks at once (8, 16, 32 and 64 bytes).
        for len in (0..20).chain([31, 32, 33, 47, 48, 63, 64, 65, 66, 79, 80, 127, 128, 129]) {
            for at in 0..len {
                for special in [
                    "\"", "\\", "\\n", "\\u00e9", "\n", "\u{1}", "\u{1f}", "é", "\u{7f}",
                ] {
                    let mut text = "x".repeat(len);
                    text.replace_range(at..at + 1, special);
                    corpus.push(format!("{{\"k\":\"{text}\",\"{text}\":1}}"));
                }
            }
        }
        corpus.push(keys(20, "k3"));
        corpus.push(keys(20, "k19x"));
        // Objects inside objects share one buffer of keys: each must see only its own.
        corpus.push(r#"{"a":{"a":1,"b":2},"b":{"b":{"b":1}},"c":1}"#.to_owned());
        corpus.push(r#"{"a":{"x":1},"a":2}"#.to_owned());
        corpus.push(r#"{"a":{"x":1,"y":{"z":1}},"x":1,"y":2,"z":3}"#.to_owned());
        corpus.push(r#"{"a":{"x":1},"b":{"x":1},"x":{"a":1},"a":0}"#.to_owned());
        corpus.push(r#"[{"a":1},{"a":1,"b":{"a":1}},{"b":1,"b":2}]"#.to_owned());
        for (inner, last) in [(3, "k3"), (3, "k19x"), (20, "k3"), (20, "k19x")] {
            let outer: Vec<String> = (0..18).map(|i| format!("\"k{i}\":0")).collect();
            let nested = keys(inner, "k0x").replacen("\"k0x\":0", r#""k0x":{"k0":2}"#, 1);
            corpus.push(format!(
                "{{{},\"k18\":{nested},\"{last}\":0}}",
                outer.join(",")
            ));
            corpus.push(format!("{{\"k0\":{nested},\"{last}\":0}}"));
        }
        corpus.push(keys(15, "k3"));
        corpus.push(keys(16, "k15"));
        corpus
    }

    #[test]
    fn accepts_exactly_what_strict_json_validate_accepts() {
        for text in corpus() {
            let ours = scan(&text);
            let reference = strict::validate(text.as_bytes());
            assert_eq!(
                ours.is_ok(),
                reference.is_ok(),
                "{text:?}: scan {ours:?}, validate {reference:?}"
            );
        }
    }

    #[test]
    fn notes_the_members_of_the_message_and_of_its_object_members() {
        let text = r#" {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"s\u0065nd","arguments":{"to":["a"],"n":{"deep":1}}}} "#;
        let Ok(Document::Object(message)) = scan(text) else {
            panic!("not an object")
        };
        let keys: Vec<&str> = message.members.iter().map(|m| m.key.as_ref()).collect();
        assert_eq!(keys, ["jsonrpc", "id", "method", "params"]);
        assert_eq!(message.get("id").map(|m| m.value), Some("7"));
        let params = message
            .get("params")
            .and_then(|m| m.object.as_ref())
            .unwrap();
        assert_eq!(params.get("name").map(|m| m.value), Some(r#""s\u0065nd""#));
        let arguments = params.get("arguments").unwrap();
        assert_eq!(arguments.value, r#"{"to":["a"],"n":{"deep":1}}"#);
        assert!(arguments.object.is_none(), "noted two levels deep only");
    }

    #[test]
    fn batches_note_each_element() {
        let Ok(Document::Array(elements)) = scan(r#"[{"id":1,"params":{"name":"a"}}, 5, "x"]"#)
        else {
            panic!("not an array")
        };
        assert_eq!(elements.len(), 3);
        let first = elements[0].1.as_ref().unwrap();
        let params = first.get("params").and_then(|m| m.object.as_ref()).unwrap();
        assert_eq!(params.get("name").map(|m| m.value), Some(r#""a""#));
        assert_eq!((elements[1].0, elements[1].1.is_none()), ("5", true));
        assert_eq!(scan("5"), Ok(Document::Other(b'5')));
    }

    #[test]
    fn keys_are_decoded_and_duplicates_named() {
        let Ok(Document::Object(object)) = scan(r#"{"na\u006de":1,"\ud83d\ude00":2}"#) else {
            panic!("not an object")
        };
        assert_eq!(object.members[0].key, "name");
        assert_eq!(object.members[1].key, "\u{1F600}");
        let error = scan(r#"{"params":{"name":1,"na\u006de":2}}"#).unwrap_err();
        assert!(
            error.to_string().contains("duplicate key \"name\""),
            "{error}"
        );
    }
}
