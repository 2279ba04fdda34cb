//! Envoy's header maps as proxy-wasm serializes them into the VM, read in place: one buffer, no
//! copy per header (the SDK's getters allocate two per header, and a request has a dozen).
//!
//! Layout (proxy-wasm ABI): a little-endian `u32` count N; N pairs of `u32` sizes (name, value);
//! then each name and each value in that order, every one followed by a NUL byte.

/// The pairs in `raw`, names as text; `None` if `raw` is not exactly such a map (sizes past its
/// end, a missing NUL, a name that is not UTF-8, bytes after the last pair). Envoy only hands
/// over well-formed maps whose names are HTTP tokens, so `None` means something is badly wrong.
pub fn decode(raw: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = raw.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = word(0)?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > raw.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut at = sizes_end;
    let mut take = |len: usize| -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        let text = raw.get(at..end)?;
        if raw.get(end) != Some(&0) {
            return None;
        }
        at = end + 1;
        Some(text)
    };
    for index in 0..count {
        let sizes = 4 + index * 8;
        let (name_len, value_len) = (word(sizes)?, word(sizes + 4)?);
        let name = std::str::from_utf8(take(name_len)?).ok()?;
        pairs.push((name, take(value_len)?));
    }
    (at == raw.len()).then_some(pairs)
}

/// The host's side of the layout: `pairs` serialized as `decode` reads them.
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let push_len = |out: &mut Vec<u8>, len: usize| {
        out.extend(u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    };
    push_len(&mut out, pairs.len());
    for (name, value) in pairs {
        push_len(&mut out, name.len());
        push_len(&mut out, value.len());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn reads_every_pair_in_order_values_as_raw_bytes() {
        let raw = encode(&[
            (b":method", b"POST"),
            (b"x-agent-id", b"a"),
            (b"empty", b""),
            (b"binary", b"\xff\x00\xfe"),
            (b"x-agent-id", b"b"),
        ]);
        let expected: Vec<(&str, &[u8])> = vec![
            (":method", b"POST"),
            ("x-agent-id", b"a"),
            ("empty", b""),
            ("binary", b"\xff\x00\xfe"),
            ("x-agent-id", b"b"),
        ];
        assert_eq!(decode(&raw), Some(expected));
    }

    #[test]
    fn an_empty_map_has_no_pairs() {
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn only_exactly_such_a_map_is_read() {
        let good = encode(&[(b"content-type", b"application/json"), (b"a", b"b")]);
        for len in 1..good.len() {
            assert_eq!(decode(&good[..len]), None, "truncated to {len}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None, "a byte after the last pair");
        // Every byte set to every value: refused, or read as a map that is exactly those bytes.
        for at in 0..good.len() {
            for byte in 0..=u8::MAX {
                let mut changed = good.clone();
                changed[at] = byte;
                if let Some(pairs) = decode(&changed) {
                    let pairs: Vec<(&[u8], &[u8])> =
                        pairs.iter().map(|(n, v)| (n.as_bytes(), *v)).collect();
                    assert_eq!(encode(&pairs), changed, "byte {at} set to {byte}");
                }
            }
        }
        // A huge count, sizes past the end, a missing NUL, a name that is not UTF-8.
        assert_eq!(decode(&u32::MAX.to_le_bytes()), None);
        let mut past_end = good.clone();
        past_end[4] = 200;
        assert_eq!(decode(&past_end), None);
        let mut no_nul = good.clone();
        let nul = 4 + 16 + b"content-type".len();
        no_nul[nul] = b'x';
        assert_eq!(decode(&no_nul), None);
        assert_eq!(decode(&encode(&[(b"\xff", b"v")])), None);
    }
}
