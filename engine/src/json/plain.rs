//! How far a JSON string's text runs before a byte the scanner must look at: `"`, `\` or a
//! control character (below 0x20). Arguments are mostly long plain strings, so this is where
//! the scan of a large body spends its time.
//!
//! Two ways to count, one answer, both tested against a byte-by-byte count on every target:
//! eight bytes in a `u64` (SWAR), four words per step, everywhere; and Wasm SIMD, 16 bytes in a
//! `v128`, four per step, where the build has it (the filter's `.wasm`, `.cargo/config.toml`).
//! Checking 32 or 64 bytes per branch is what makes them fast: the branch, not the arithmetic,
//! bounds a loop that finds nothing.

/// The length of the run of plain bytes `text` starts with: the index of its first `"`, `\` or
/// control character, or its length if it has none.
pub fn plain_run(text: &[u8]) -> usize {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd128::plain_run(text)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        swar::plain_run(text)
    }
}

/// A byte the scanner stops at inside a string.
fn needs_attention(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | 0x00..=0x1f)
}

/// The byte-by-byte count, for the few bytes a word does not cover.
fn plain_run_bytewise(text: &[u8]) -> usize {
    text.iter()
        .position(|&b| needs_attention(b))
        .unwrap_or(text.len())
}

pub(crate) mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;

    /// The high bit of each byte of `word` (little-endian) that needs attention. A flag above
    /// a true one may be false (a borrow), never one below it: the lowest flag is exact.
    fn attention(word: &[u8; 8]) -> u64 {
        let word = u64::from_le_bytes(*word);
        let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
        zero_byte(word ^ (ONES * u64::from(b'"')))
            | zero_byte(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
    }

    /// [`super::plain_run`], eight bytes at a time.
    pub fn plain_run(text: &[u8]) -> usize {
        let mut run = 0;
        while let Some(block) = text.get(run..).and_then(<[u8]>::first_chunk::<32>) {
            let flags = block.chunks_exact(8).fold(0, |flags, word| {
                flags | word.first_chunk::<8>().map_or(0, attention)
            });
            if flags != 0 {
                break;
            }
            run += 32;
        }
        while let Some(word) = text.get(run..).and_then(<[u8]>::first_chunk::<8>) {
            let flags = attention(word);
            if flags != 0 {
                return run + (flags.trailing_zeros() / 8) as usize;
            }
            run += 8;
        }
        run + text.get(run..).map_or(0, super::plain_run_bytewise)
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod simd128 {
    use core::arch::wasm32::{
        u8x16, u8x16_bitmask, u8x16_eq, u8x16_lt, u8x16_splat, v128, v128_any_true, v128_or,
    };

    /// A lane of all ones for each byte of `bytes` that needs attention.
    fn attention(bytes: &[u8; 16]) -> v128 {
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15] = *bytes;
        // One `v128.load` once compiled.
        let v = u8x16(
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
        );
        v128_or(
            v128_or(
                u8x16_eq(v, u8x16_splat(b'"')),
                u8x16_eq(v, u8x16_splat(b'\\')),
            ),
            u8x16_lt(v, u8x16_splat(0x20)),
        )
    }

    /// [`super::plain_run`], 16 bytes at a time.
    pub fn plain_run(text: &[u8]) -> usize {
        let mut run = 0;
        while let Some(block) = text.get(run..).and_then(<[u8]>::first_chunk::<64>) {
            let flags = block.chunks_exact(16).fold(u8x16_splat(0), |flags, lanes| {
                lanes
                    .first_chunk::<16>()
                    .map_or(flags, |lanes| v128_or(flags, attention(lanes)))
            });
            if v128_any_true(flags) {
                break;
            }
            run += 64;
        }
        while let Some(lanes) = text.get(run..).and_then(<[u8]>::first_chunk::<16>) {
            let flags = attention(lanes);
            if v128_any_true(flags) {
                return run + u8x16_bitmask(flags).trailing_zeros() as usize;
            }
            run += 16;
        }
        run + text.get(run..).map_or(0, super::swar::plain_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    /// A way of counting, by name.
    type Count = (&'static str, fn(&[u8]) -> usize);

    /// Every way of counting this build has.
    fn counts() -> Vec<Count> {
        let counts: Vec<Count> = vec![("plain_run", plain_run), ("swar", swar::plain_run)];
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let counts = [
            counts,
            vec![("simd128", simd128::plain_run as fn(&[u8]) -> usize)],
        ]
        .concat();
        counts
    }

    fn check(text: &[u8]) {
        let expected = plain_run_bytewise(text);
        for (name, count) in counts() {
            assert_eq!(count(text), expected, "{name} on {text:?}");
        }
    }

    #[test]
    fn the_simd_path_is_the_one_a_wasm_simd_build_uses() {
        let names: Vec<&str> = counts().iter().map(|(name, _)| *name).collect();
        let simd = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
        assert_eq!(names.contains(&"simd128"), simd, "{names:?}");
    }

    #[test]
    fn every_byte_that_needs_attention_at_every_offset_of_every_block() {
        // Neighbours of the bytes that need attention, and bytes a signed comparison or a
        // borrow between lanes would get wrong.
        let plain = [b'x', 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa0, 0xff];
        let attention = [b'"', b'\\', 0x00, 0x01, 0x0a, 0x1f];
        for len in 0..=140 {
            for filler in plain {
                check(&vec![filler; len]);
            }
            for at in 0..len {
                for special in attention {
                    for filler in [b'x', 0x80, 0xff] {
                        let mut text = vec![filler; len];
                        if let Some(byte) = text.get_mut(at) {
                            *byte = special;
                        }
                        check(&text);
                    }
                    // A second one further on must not move the answer.
                    for later in [at + 1, at + 8, at + 16, at + 63, len - 1] {
                        let mut text = vec![b'x'; len];
                        if let Some(byte) = text.get_mut(later) {
                            *byte = b'"';
                        }
                        if let Some(byte) = text.get_mut(at) {
                            *byte = special;
                        }
                        check(&text);
                    }
                }
            }
        }
    }

    #[test]
    fn every_start_offset_and_mixed_text() {
        // Plain bytes of every value, some attention bytes among them, read from every offset
        // (alignment must not matter).
        let text: Vec<u8> = (0..600u32)
            .map(|i| match i % 97 {
                13 => b'"',
                50 => b'\\',
                77 => 0x1f,
                _ => (0x20 + (i * 7) % 0xe0) as u8,
            })
            .collect();
        for from in 0..text.len() {
            check(text.get(from..).unwrap_or_default());
        }
        for from in 0..80 {
            let plain: Vec<u8> = (0x20..=0xffu8)
                .filter(|&b| !needs_attention(b))
                .cycle()
                .take(from + 300)
                .collect();
            check(plain.get(from..).unwrap_or_default());
        }
    }
}
