//! MCP 2026-07-28 header values in their encoded form. A value that is not plain printable ASCII
//! (a tool name in another script, edge whitespace, control characters, or one that looks like
//! the encoding itself) travels as `=?base64?{standard Base64 of its UTF-8}?=`, and servers
//! decode it before comparing it with the body. The specification allows this for `Mcp-Name` and
//! `Mcp-Param-{Name}` only (`Mcp-Method` is compared as sent). The markers are case-sensitive;
//! a value not wrapped in both of them is the value itself. The payload is read as the SDKs read
//! it: the standard alphabet, padded, and canonical (the unused low bits zero, so one header text
//! stands for one value); a payload that does not decode, or decodes to something that is not
//! UTF-8, is an error, never a value.

use std::borrow::Cow;

const PREFIX: &str = "=?base64?";
const SUFFIX: &str = "?=";

/// The value a header carries: `header` itself, or what its Base64 payload decodes to.
pub fn decode(header: &str) -> Result<Cow<'_, str>, String> {
    let Some(payload) = header
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    else {
        return Ok(Cow::Borrowed(header));
    };
    let bytes = base64(payload).ok_or_else(|| {
        format!(
            "{header:?} is not in the encoded form: its payload is not canonical, padded Base64"
        )
    })?;
    String::from_utf8(bytes)
        .map(Cow::Owned)
        .map_err(|_| format!("{header:?} decodes to bytes that are not UTF-8"))
}

/// The value of one character of the standard Base64 alphabet.
fn sextet(byte: u8) -> Option<u32> {
    let value = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// Standard Base64 with padding (RFC 4648 §4), canonical only: `None` for any other text.
fn base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let groups = bytes.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (index, group) in bytes.chunks_exact(4).enumerate() {
        let padding = group.iter().rev().take_while(|b| **b == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != groups) {
            return None;
        }
        let mut bits: u32 = 0;
        for byte in group.get(..4 - padding)? {
            bits = bits << 6 | sextet(*byte)?;
        }
        bits <<= 6 * padding;
        // The bits below the last whole byte must be zero: another text for the same bytes is
        // not what any encoder writes.
        if bits & ((1 << (8 * padding)) - 1) != 0 {
            return None;
        }
        out.extend_from_slice(bits.to_be_bytes().get(1..4 - padding)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn plain_values_are_themselves() {
        for value in [
            "wechat_get_followers",
            "",
            "=?base64?",
            "=?base64?=",
            "=?BASE64?d2VjaGF0?=",
            "x=?base64?d2VjaGF0?=",
            "=?base64?d2VjaGF0?= ",
            "?=",
        ] {
            assert_eq!(decode(value).unwrap(), value, "{value:?}");
        }
    }

    #[test]
    fn encoded_values_are_decoded() {
        for (header, value) in [
            // The specification's examples.
            ("=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界"),
            ("=?base64?IHBhZGRlZCA=?=", " padded "),
            ("=?base64?bGluZTEKbGluZTI=?=", "line1\nline2"),
            ("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?="),
            ("=?base64??=", ""),
            ("=?base64?5Y+R6YCB6YCa55+l?=", "发送通知"),
            (
                "=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnM=?=",
                "wechat_get_followers",
            ),
        ] {
            assert_eq!(decode(header).unwrap(), value, "{header}");
        }
    }

    #[test]
    fn payloads_that_do_not_decode_are_errors() {
        for header in [
            // Unpadded, over-padded, padding inside, wrong length.
            "=?base64?SGk?=",
            "=?base64?SGk==?=",
            "=?base64?S===?=",
            "=?base64?====?=",
            "=?base64?SG=k?=",
            "=?base64?SGk=SGk=?=",
            "=?base64?SGVsbG8?=",
            // Non-canonical: the same bytes with stray low bits.
            "=?base64?SGl=?=",
            "=?base64?SR==?=",
            // URL-safe alphabet, whitespace, other characters.
            "=?base64?-_-_?=",
            "=?base64?SGVs bG8=?=",
            "=?base64?%%%%?=",
            // Valid Base64 of bytes that are not UTF-8.
            "=?base64?//79?=",
            "=?base64?gA==?=",
        ] {
            assert!(decode(header).is_err(), "{header}");
        }
    }

    #[test]
    fn base64_round_trips_every_byte_and_length() {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let encode = |bytes: &[u8]| {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let mut group = [0u8; 3];
                group[..chunk.len()].copy_from_slice(chunk);
                let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        };
        let all: Vec<u8> = (0..=255).collect();
        for length in 0..=all.len() {
            let bytes = &all[..length];
            assert_eq!(base64(&encode(bytes)).as_deref(), Some(bytes), "{length}");
        }
        assert_eq!(
            encode(b"Hello, \xe4\xb8\x96\xe7\x95\x8c"),
            "SGVsbG8sIOS4lueVjA=="
        );
    }
}
