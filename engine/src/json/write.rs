//! JSON text written straight into a `String`, for the documents the request path writes: the
//! audit record on every request, and the JSON-RPC error of a refused call. serde's derived
//! `Serialize` measured about 10 µs per request in Envoy for the record, several times what its
//! phase timer showed: its code is large and cold on every request; building refusals as `Value`s
//! doubled the engine's time for a denied call. The output is byte for byte what
//! `serde_json::to_string` writes for the same values (tested).

/// Append `text` as a JSON string, escaped as serde_json escapes it.
pub fn push_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut clean_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `at` is on a character boundary.
        out.push_str(text.get(clean_from..at).unwrap_or_default());
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(byte & 0x0f), 16).unwrap_or('0'));
        } else {
            out.push_str(short);
        }
        clean_from = at + 1;
    }
    out.push_str(text.get(clean_from..).unwrap_or_default());
    out.push('"');
}

/// Append `n` in decimal.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            // `n % 10` is below 10: the cast cannot truncate.
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for digit in digits.get(start..).unwrap_or_default() {
        out.push(char::from(*digit));
    }
}

/// Append `text` as a JSON string, or `null`.
pub fn push_opt_str(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.push_str("null"),
    }
}

/// Append `"name":` (after a comma unless `first`). `name` must need no escaping.
pub fn push_key(out: &mut String, name: &str, first: bool) {
    if !first {
        out.push(',');
    }
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    fn written(write: impl Fn(&mut String)) -> String {
        let mut out = "x".to_owned();
        write(&mut out);
        out.split_off(1)
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_char: String = (0u32..0x300).filter_map(char::from_u32).collect();
        every_char.push_str("\u{2028}\u{fffd}\u{1f600}\"\\/");
        for text in [
            "",
            "plain",
            "\"",
            "\\",
            "a\"b\\c\nd",
            "\u{0}\u{1f}\u{7f}",
            "\u{8}\u{c}\t\r\n",
            "tail\u{1}",
            "\u{1}head",
            "ünïcödé 漢字",
            every_char.as_str(),
        ] {
            assert_eq!(
                written(|out| push_str(out, text)),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn numbers_and_keys_are_written_as_serde_json_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(written(|out| push_u64(out, n)), n.to_string());
        }
        assert_eq!(written(|out| push_opt_str(out, None)), "null");
        assert_eq!(written(|out| push_opt_str(out, Some("a"))), "\"a\"");
        assert_eq!(written(|out| push_key(out, "k", true)), "\"k\":");
        assert_eq!(written(|out| push_key(out, "k", false)), ",\"k\":");
    }
}
