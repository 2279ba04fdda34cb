//! JSON parsing that refuses what different parsers read differently. `serde_json::Value` keeps
//! the last of two equal keys; other parsers keep the first, and Go's `encoding/json` even matches
//! keys case-insensitively. A filter that reads one tool name while the server reads another is
//! bypassed, so objects with duplicate keys are refused outright.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A `Value` parsed with every object's keys required to be unique.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {:?} in an object",
                    key
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parse JSON, refusing duplicate keys in any object.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|Strict(v)| v)
}

/// Keys that differ only in case (as Go's `encoding/json` folds them, including `ſ` ~ `s` and
/// the Kelvin sign ~ `k`) name the same field to some servers: report the first such pair.
pub fn case_folding_collision(object: &Map<String, Value>) -> Option<(String, String)> {
    colliding_keys(object.keys().map(String::as_str))
}

/// How Go's `encoding/json` compares one character of a member name. Only ASCII member names
/// matter to MCP, and the only non-ASCII letters Go folds onto ASCII are `ſ` and the Kelvin sign;
/// a full Unicode fold would add its tables to the .wasm.
fn fold(c: char) -> char {
    match c {
        'ſ' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    }
}

/// `a` and `b` name the same member to a server that folds case as Go does.
pub fn same_folded(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(fold).eq(b.chars().map(fold))
}

/// `case_folding_collision` over any list of keys, in the order given.
pub fn colliding_keys<'k>(keys: impl Iterator<Item = &'k str>) -> Option<(String, String)> {
    // Below this many keys comparing every pair, without allocating, is cheapest; this runs on
    // every request, for the message and its params.
    const PAIRWISE_KEYS: usize = 16;
    let mut few: Vec<&str> = Vec::with_capacity(8);
    let mut keys = keys.peekable();
    while few.len() < PAIRWISE_KEYS {
        let key = keys.next()?;
        if let Some(first) = few.iter().find(|seen| same_folded(seen, key)) {
            return Some(((*first).to_owned(), key.to_owned()));
        }
        few.push(key);
    }
    keys.peek()?;
    // A map past that: params with 100,000 keys must not cost 10^10 comparisons.
    let folded = |key: &str| -> String { key.chars().map(fold).collect() };
    // Inserted one by one: collecting would sort, and each sort is kilobytes of .wasm.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for key in few {
        seen.insert(folded(key), key);
    }
    for key in keys {
        match seen.entry(folded(key)) {
            Entry::Occupied(first) => return Some(((*first.get()).to_owned(), key.to_owned())),
            Entry::Vacant(slot) => {
                slot.insert(key);
            }
        }
    }
    None
}

#[cfg(any(test, feature = "testing"))]
/// Check `bytes` exactly as `from_slice` would (syntax, duplicate keys at any depth) without
/// building anything: the request path only needs a few members, taken out afterwards.
pub fn validate(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    de::DeserializeSeed::deserialize(Check, &mut deserializer)?;
    deserializer.end()
}

#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Copy)]
struct Check;

#[cfg(any(test, feature = "testing"))]
impl<'de> de::DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

#[cfg(any(test, feature = "testing"))]
impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Most objects are small and a linear scan beats allocating a set; past a few keys a
        // sorted set keeps a hostile object of 100,000 keys from costing 10^10 comparisons.
        const LINEAR_SCAN_KEYS: usize = 16;
        let mut few: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut many: std::collections::BTreeSet<std::borrow::Cow<'de, str>> =
            std::collections::BTreeSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let duplicate = if many.is_empty() && few.len() < LINEAR_SCAN_KEYS {
                few.contains(&key)
            } else {
                many.extend(few.drain(..));
                many.contains(&key)
            };
            if duplicate {
                return Err(de::Error::custom(format!(
                    "duplicate key {:?} in an object",
                    key
                )));
            }
            map.next_value_seed(Check)?;
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it had escapes to decode.
#[cfg(any(test, feature = "testing"))]
pub struct Key;

#[cfg(any(test, feature = "testing"))]
impl<'de> de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

#[cfg(any(test, feature = "testing"))]
impl<'de> Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(from_slice(br#"{"a":1,"a":2}"#)
            .unwrap_err()
            .to_string()
            .contains("duplicate key \"a\""));
        assert!(from_slice(br#"{"x":[{"b":{"c":1,"c":1}}]}"#).is_err());
        assert!(
            from_slice(br#"{"na\u006de":1,"name":2}"#).is_err(),
            "escapes are decoded first"
        );
    }

    #[test]
    fn validate_accepts_and_refuses_what_from_slice_does() {
        for text in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":[{"b":{"c":1,"c":1}}]}"#,
            br#"{"na\u006de":1,"name":2}"#,
            br#"{"a":1"#,
            br#"{"a":1} x"#,
            b"\xef\xbb\xbf{}",
            br#"{"a":"\ud800"}"#,
            br#"[1,]"#,
            b"",
            br#"{"a":1e999}"#,
            br#"{"a":{"b":1},"b":{"a":1},"c":[{"c":1},{"c":2}]}"#,
            br#"  [ {"jsonrpc":"2.0"} , 5 , "x" ]  "#,
            br#"{"a":"\u005f","\u005f":true,"_b":null}"#,
        ] {
            assert_eq!(
                validate(text).is_ok(),
                from_slice(text).is_ok(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(validate(deep.as_bytes()).is_err() && from_slice(deep.as_bytes()).is_err());
    }

    #[test]
    fn objects_with_many_keys_are_checked_in_n_log_n() {
        let keys = |n: usize, last: &str| {
            let mut text: String = (0..n).map(|i| format!("\"k{i}\":0,")).collect();
            text.push_str(&format!("\"{last}\":0"));
            format!("{{{text}}}")
        };
        assert!(validate(keys(20, "k3").as_bytes()).is_err());
        assert!(validate(keys(20, "k19x").as_bytes()).is_ok());
        assert!(colliding_keys(["a", "b", "c", "d", "B"].into_iter()).is_some());
        // Quadratic checking would take minutes here (10^10 comparisons); this takes milliseconds.
        let huge = keys(100_000, "last");
        assert!(validate(huge.as_bytes()).is_ok());
        let names: Vec<String> = (0..100_000).map(|i| format!("k{i}")).collect();
        assert!(colliding_keys(names.iter().map(String::as_str)).is_none());
        // Collisions found both among the first keys (compared pairwise) and past them (a map).
        for (extra, first) in [("K3", "k3"), ("K19", "k19"), ("k\u{17f}1", "ks1")] {
            let mut names: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
            names.insert(5, "ks1".to_owned());
            names.push(extra.to_owned());
            assert_eq!(
                colliding_keys(names.iter().map(String::as_str)),
                Some((first.to_owned(), extra.to_owned()))
            );
        }
    }

    #[test]
    fn ordinary_json_parses_as_serde_json_does() {
        let text = br#"{"a":[1,-2,3.5,true,null,"s",{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(
            from_slice(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn case_folding_collisions() {
        let object = |text: &str| {
            from_slice(text.as_bytes())
                .unwrap()
                .as_object()
                .unwrap()
                .clone()
        };
        assert_eq!(
            case_folding_collision(&object(r#"{"name":1,"Name":2}"#)),
            Some(("Name".into(), "name".into()))
        );
        assert!(
            case_folding_collision(&object(r#"{"name":1,"nam\u017f":2}"#)).is_none(),
            "ſ folds to s only against s"
        );
        assert!(case_folding_collision(&object(r#"{"method":1,"METHOD":2}"#)).is_some());
        assert!(case_folding_collision(&object(r#"{"mask":1,"ma\u017fk":2}"#)).is_some());
        assert!(case_folding_collision(&object(r#"{"kind":1,"\u212aind":2}"#)).is_some());
        assert!(case_folding_collision(&object(r#"{"name":1,"arguments":2}"#)).is_none());
    }
}
