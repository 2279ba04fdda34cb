//! Where, in an answer's own text, the strings a result guard reads are: `result.content[].text`,
//! `result.content[].resource.text`, and every string of `result.structuredContent`. A redaction
//! rewrites those strings and leaves every other byte of the message as the server sent it.
//!
//! Members are read in order with duplicates kept: a client may take either of two members of
//! one name, so both are read.

use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// serde_json's own nesting limit: nothing deeper is a message it reads.
const MAX_DEPTH: usize = 128;

/// An object's members in order, duplicates included, each value as the text it was sent as.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'de>, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The members of the object `text`; none when it is not an object.
fn members(text: &str) -> Vec<(String, &RawValue)> {
    serde_json::from_str::<Members>(text)
        .map(|m| m.0)
        .unwrap_or_default()
}

/// The elements of the array `text`; none when it is not an array.
fn elements(text: &str) -> Vec<&RawValue> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The members named `name`, in order.
fn named<'m, 'a>(
    members: &'m [(String, &'a RawValue)],
    name: &'m str,
) -> impl Iterator<Item = &'a RawValue> + 'm {
    members
        .iter()
        .filter(move |(key, _)| key == name)
        .map(|(_, value)| *value)
}

/// Where `inner`, a slice of `outer`, starts in it.
fn offset(outer: &str, inner: &str) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start + inner.len() <= outer.len()).then_some(start)
}

/// The id and the results of the message `text`, each as sent.
pub struct Answer<'a> {
    pub id: Option<&'a RawValue>,
    results: Vec<&'a RawValue>,
}

pub fn answer(text: &str) -> Answer<'_> {
    let members = members(text);
    Answer {
        id: named(&members, "id").last(),
        results: named(&members, "result").collect(),
    }
}

impl Answer<'_> {
    pub fn has_result(&self) -> bool {
        !self.results.is_empty()
    }

    /// The spans, in `message` (the text this answer was read from), of the string tokens
    /// (quotes included) its result gives an agent to read, in text order.
    pub fn text_spans(&self, message: &str) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut add = |token: &RawValue| {
            let text = token.get();
            if text.starts_with('"') {
                if let Some(start) = offset(message, text) {
                    spans.push(start..start + text.len());
                }
            }
        };
        for result in &self.results {
            let result = members(result.get());
            for content in named(&result, "content") {
                for item in elements(content.get()) {
                    let item = members(item.get());
                    named(&item, "text").for_each(&mut add);
                    for resource in named(&item, "resource") {
                        named(&members(resource.get()), "text").for_each(&mut add);
                    }
                }
            }
            for structured in named(&result, "structuredContent") {
                strings(structured, MAX_DEPTH, &mut add);
            }
        }
        spans.sort_unstable_by_key(|span| span.start);
        spans.dedup();
        spans
    }
}

/// The spans, in `batch`, of its elements; none when it is not an array.
pub fn element_spans(batch: &str) -> Vec<Range<usize>> {
    elements(batch)
        .into_iter()
        .filter_map(|element| {
            let start = offset(batch, element.get())?;
            Some(start..start + element.get().len())
        })
        .collect()
}

/// Every string value inside `value` (object keys are not text an agent is given to read).
fn strings(value: &RawValue, depth: usize, add: &mut dyn FnMut(&RawValue)) {
    let Some(depth) = depth.checked_sub(1) else {
        return;
    };
    match value.get().as_bytes().first() {
        Some(b'"') => add(value),
        Some(b'[') => {
            for element in elements(value.get()) {
                strings(element, depth, add);
            }
        }
        Some(b'{') => {
            for (_, member) in members(value.get()) {
                strings(member, depth, add);
            }
        }
        _ => {}
    }
}

/// `message` with the string token at each span replaced by what `replace` returns for it
/// (`None`: left as is); `None` when nothing was replaced.
pub fn replace_spans(
    message: &str,
    spans: &[Range<usize>],
    replace: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<String> {
    let mut out = String::new();
    let (mut copied, mut changed) = (0, false);
    for span in spans {
        let (Some(token), Some(before)) = (message.get(span.clone()), message.get(copied..span.start))
        else {
            continue;
        };
        if let Some(new) = replace(token) {
            out.push_str(before);
            out.push_str(&new);
            copied = span.end;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(message.get(copied..).unwrap_or_default());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    fn tokens(message: &str) -> Vec<&str> {
        answer(message)
            .text_spans(message)
            .into_iter()
            .map(|s| message.get(s).unwrap())
            .collect()
    }

    #[test]
    fn the_texts_an_agent_reads_are_found_where_they_were_sent() {
        let message = r#"{"jsonrpc":"2.0","id":1, "result" : {"content":[{"type":"text","text":"a"},
            {"type":"resource","resource":{"uri":"x://y","text":"b\u0041"}},{"type":"image","data":"c"}],
            "structuredContent":{"k":["d",{"e":"f"}],"n":1,"t":"g"},"text":"not read"}}"#;
        assert_eq!(
            tokens(message),
            [r#""a""#, r#""b\u0041""#, r#""d""#, r#""f""#, r#""g""#]
        );
    }

    #[test]
    fn duplicate_members_are_all_read() {
        let message = r#"{"id":1,"result":{"content":[{"text":"one","text":"two"}]},"result":{"content":[{"text":"three"}]}}"#;
        assert_eq!(tokens(message), [r#""one""#, r#""two""#, r#""three""#]);
    }

    #[test]
    fn other_messages_have_no_texts() {
        for message in [
            r#"{"id":1,"error":{"code":1,"message":"m"}}"#,
            r#"{"id":1,"result":{"content":"not a list"}}"#,
            r#"[{"id":1}]"#,
            "not json",
        ] {
            assert!(tokens(message).is_empty(), "{message}");
        }
    }

    #[test]
    fn a_batch_is_read_element_by_element() {
        let batch = r#"[ {"id":1} ,{"id":2}]"#;
        let elements: Vec<&str> = element_spans(batch)
            .into_iter()
            .map(|s| batch.get(s).unwrap())
            .collect();
        assert_eq!(elements, [r#"{"id":1}"#, r#"{"id":2}"#]);
        assert!(element_spans(r#"{"id":1}"#).is_empty());
    }

    #[test]
    fn only_the_replaced_tokens_change() {
        let message = r#"{ "id" : 7, "result":{"content":[{"text":"a"},{"text":"b"}]} }"#;
        let spans = answer(message).text_spans(message);
        let out = replace_spans(message, &spans, &mut |token| {
            (token == r#""b""#).then(|| r#""B""#.to_owned())
        });
        assert_eq!(
            out.as_deref(),
            Some(r#"{ "id" : 7, "result":{"content":[{"text":"a"},{"text":"B"}]} }"#)
        );
        assert_eq!(replace_spans(message, &spans, &mut |_| None), None);
        let id = answer(message).id.map(RawValue::get);
        assert_eq!(id, Some("7"));
    }
}
