//! Detectors of secrets and personal data in text, built to be precise: each looks for one
//! well-defined shape and checks what can be checked (a checksum, a decoded header, a word
//! boundary), so that what it finds is almost always what it names. They run on a string's
//! decoded text (a JSON string's escapes already undone), and a match is never returned or
//! printed in clear: a [`Finding`] is a detector's name and a byte range, and [`Redacted`] holds
//! the text with each match replaced by `[redacted:<name>]`.
//!
//! # The built-in detectors
//!
//! A *word* below is a run of ASCII letters, digits and `_`; "on word boundaries" means the byte
//! before and the byte after the match are not word bytes (or are the text's ends).
//!
//! | name | finds | why it is precise |
//! |---|---|---|
//! | `aws_access_key` | AWS access key ids: `AKIA` (long-term) or `ASIA` (temporary) and 16 characters of `A–Z`, `2–7`, as one word | The ids are base32: a digit 0, 1, 8 or 9 rules a candidate out; exactly 20 characters, on word boundaries. |
//! | `github_token` | GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and 36 letters or digits; `github_pat_` and 82 letters, digits or `_` (fine-grained) | The prefixes are GitHub's own, and the length is exact: the token is the whole word. |
//! | `slack_token` | Slack tokens: `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`, then dash-separated segments of letters and digits | At least 15 characters after the prefix, holding a digit; no empty segment; the last segment at least 8 characters; with several segments the first is all digits (the team id), as in every token Slack issues. `xoxb-your-token-here` is not one. |
//! | `private_key` | PEM private keys: `-----BEGIN <label>-----` … `-----END <label>-----`, where the label ends in `PRIVATE KEY` (`RSA`, `EC`, `DSA`, `OPENSSH`, `ENCRYPTED`, none) or is `PGP PRIVATE KEY BLOCK` | The body between must be base64 (with line breaks, real or as `\n` escapes left in the text, and the `Proc-Type:`/`DEK-Info:` headers) and at least 64 base64 characters long: a sentence naming the markers is not a key. A key cut off before its END line (truncated output) is found up to where its body stops, with the same 64-character minimum. Public keys and certificates are not private keys. |
//! | `jwt` | JSON Web Tokens: three base64url segments separated by `.`, the first starting `eyJ` | The first segment must decode to a JSON object with an `alg` member (checked with the engine's own JSON scanner); the signature may be empty only when `alg` is `none`; a fourth segment rules the candidate out. |
//! | `email` | E-mail addresses: a local part of letters, digits and `. _ % + -` (at most 64 bytes, no leading, trailing or doubled `.`), `@`, a domain of at least two labels | Labels of letters, digits and inner `-`, at most 63 bytes; the top-level label all letters (or `xn--` punycode), at least two; the whole at most 254 bytes. `lodash@4.17.21`, `icon@2x.png` (file extensions are not top-level domains), `user@localhost` and `user at example dot com` are not addresses. |
//! | `payment_card` | Payment card numbers: 13–19 digits, unseparated or in groups separated by single spaces or single dashes (one kind per number: 4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4) | A valid Luhn check digit, and a length allowed for the issuer's prefix: Visa (4), Mastercard (51–55, 2221–2720), American Express (34, 37), Discover (6011, 644–649, 65), JCB (3528–3589), Diners Club (300–305, 36, 38, 39), UnionPay (62). The number must stand alone: not inside a word, a decimal (`.`/`,` then digits), a dashed id, or a longer chain of digit groups. |
//! | `iban` | International Bank Account Numbers: a country code, two check digits and the country's BBAN, all uppercase, unseparated or in groups of four separated by single spaces | The length must be the SWIFT IBAN registry's for that country (79 countries: Europe, the Middle East, Brazil and the others that issue IBANs widely; a country not listed is not found), and the mod-97 checksum must hold (a random candidate passes one time in 97), on word boundaries. |
//!
//! # Custom detectors
//!
//! A policy may add its own: a name (`[a-z][a-z0-9_]*`, at most 64 bytes, not a built-in's) and
//! a regex, compiled once by [`Detectors::new`] with `regex-lite` (the `.wasm` already links it
//! for the rules' `regex` operator; it has no Unicode tables, so `\w`, `\d` and `\b` are ASCII).
//! A regex that matches the empty string is refused.
//!
//! `regex-lite` has no literal optimisations: a regex run over a text costs about 23 µs per KB
//! natively (40 µs in the `.wasm`), ten times all the built-ins together. So when a pattern
//! starts with a literal (`TICKET-[0-9]+`, `\bsk_live_[A-Za-z0-9]{24}`: no alternation, no
//! leading group, class or flag), the text is searched for that literal and the regex runs only
//! from where it occurs: a text without it costs next to nothing. A pattern without one
//! (`[A-Z]{3}-[0-9]{6}`) pays the full price on every text.
//!
//! # Overlaps
//!
//! [`Detectors::find`] returns non-overlapping findings in text order: of overlapping matches
//! the leftmost wins; at the same start, the longer; at the same extent, the detector listed
//! first ([`BUILTIN_NAMES`] order, then the custom ones in order).
//!
//! # Cost
//!
//! The built-ins share one pass over the text, 32 bytes at a time as bit masks computed in
//! vectors: it stops only at the first byte of a word that may start a match (`A` for
//! `AKIA`/`ASIA`, `B` after `-----` for `-----BEGIN`, `g` for `gh…_`, `x` for `xox`, `e` for
//! `eyJ`, a digit from 2 to 6 for a card, two capitals and two digits for an IBAN) and at `@`
//! (e-mail). Checksums, base64 decoding and JSON scanning run only on candidates that pass those
//! prefilters. The ignored `speed` test measures it (about 3–9 µs per 10 KB of ordinary text,
//! natively; see the test's table).

use std::borrow::Cow;
use std::fmt;

use crate::json::scan::{scan, Document};

/// The built-in detectors' names: the words metrics and audit records use. Their order is the
/// order of precedence between two matches over exactly the same bytes.
pub const BUILTIN_NAMES: [&str; 8] = [
    "aws_access_key",
    "github_token",
    "slack_token",
    "private_key",
    "jwt",
    "email",
    "payment_card",
    "iban",
];

// Indexes into `BUILTIN_NAMES`, and bits of `Detectors::builtins`.
const AWS: usize = 0;
const GITHUB: usize = 1;
const SLACK: usize = 2;
const PRIVATE_KEY: usize = 3;
const JWT: usize = 4;
const EMAIL: usize = 5;
const CARD: usize = 6;
const IBAN: usize = 7;

/// A custom detector as a policy writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomSpec<'a> {
    pub name: &'a str,
    pub regex: &'a str,
}

/// What one detector found: its name and the bytes `start..end` of the text searched (never the
/// text itself, so printing a finding never prints a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Finding<'d> {
    pub detector: &'d str,
    pub start: usize,
    pub end: usize,
}

impl fmt::Display for Finding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at bytes {}..{}", self.detector, self.start, self.end)
    }
}

/// A text with every finding replaced by `[redacted:<detector>]`, and how many matches of each
/// detector were replaced (detectors in precedence order, only those that found something).
/// `text` is borrowed when nothing was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'t, 'd> {
    pub text: Cow<'t, str>,
    pub counts: Vec<(&'d str, usize)>,
}

/// Why a set of detectors could not be built. Each names the entry at fault by its index in the
/// list given to [`Detectors::new`], so that a loader can prefix the JSON path; the message
/// says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorError {
    /// `builtins[index]` is not a built-in detector's name, or is listed twice.
    Builtin { index: usize, message: String },
    /// `custom[index].name` is not a valid name, is a built-in's, or is taken.
    Name { index: usize, message: String },
    /// `custom[index].regex` does not compile, or matches the empty string.
    Regex { index: usize, message: String },
}

impl fmt::Display for DetectorError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Builtin { message, .. }
            | Self::Name { message, .. }
            | Self::Regex { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for DetectorError {}

#[derive(Debug, Clone)]
struct Custom {
    name: String,
    regex: regex_lite::Regex,
    /// The literal every match starts with, when the pattern shows one: the regex runs only
    /// from where it occurs.
    prefix: Option<String>,
}

impl Custom {
    fn find(&self, text: &str, detector: usize, hits: &mut Vec<Hit>) {
        let hit = |m: regex_lite::Match| {
            (!m.is_empty()).then(|| Hit {
                start: m.start(),
                end: m.end(),
                detector,
            })
        };
        let Some(prefix) = &self.prefix else {
            hits.extend(self.regex.find_iter(text).filter_map(hit));
            return;
        };
        let mut from = 0;
        while let Some(offset) = text.get(from..).and_then(|rest| rest.find(prefix.as_str())) {
            // The leftmost match from here starts at this occurrence or a later one.
            let Some(m) = self.regex.find_at(text, from + offset) else {
                return;
            };
            from = m.end().max(from + offset + 1);
            hits.extend(hit(m));
        }
    }
}

/// The literal every match of `pattern` starts with, when its syntax shows one: its first plain
/// characters (after a leading `\b`) up to the first one with a meaning, less the last if a
/// quantifier follows it. None for a pattern with an alternation anywhere (a match might start
/// with another branch), and when the pattern starts with anything else (a group, a class, a
/// flag such as `(?i)`, an escape).
fn required_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let rest = pattern.strip_prefix("\\b").unwrap_or(pattern);
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_:=/@#%,;!<>&~'\" ".contains(c);
    let len = rest.find(|c: char| !plain(c)).unwrap_or(rest.len());
    let (literal, after) = rest.split_at_checked(len)?;
    let literal = match after.chars().next() {
        Some('*' | '+' | '?' | '{') => literal.get(..literal.len().saturating_sub(1))?,
        _ => literal,
    };
    (!literal.is_empty()).then(|| literal.to_owned())
}

/// A set of detectors, built once (at policy load) and used for every text.
#[derive(Debug, Clone, Default)]
pub struct Detectors {
    /// Bit `i` set: `BUILTIN_NAMES[i]` runs.
    builtins: u16,
    custom: Vec<Custom>,
}

/// A match before overlaps are settled: `detector` indexes the built-ins, then the custom ones.
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    detector: usize,
}

impl Detectors {
    /// Every built-in detector, and no custom one.
    pub fn all() -> Self {
        Self {
            builtins: (1 << BUILTIN_NAMES.len()) - 1,
            custom: Vec::new(),
        }
    }

    /// The built-in detectors named in `builtins` (all of them: `&BUILTIN_NAMES`) and the
    /// custom ones, each regex compiled here.
    #[cold]
    #[inline(never)]
    pub fn new(builtins: &[&str], custom: &[CustomSpec]) -> Result<Self, DetectorError> {
        let mut mask = 0u16;
        for (index, name) in builtins.iter().enumerate() {
            let Some(bit) = BUILTIN_NAMES.iter().position(|n| n == name) else {
                return Err(DetectorError::Builtin {
                    index,
                    message: format!(
                        "unknown detector {name:?}; the built-in detectors are {}",
                        BUILTIN_NAMES.join(", ")
                    ),
                });
            };
            if mask & (1 << bit) != 0 {
                return Err(DetectorError::Builtin {
                    index,
                    message: format!("detector {name:?} is listed twice"),
                });
            }
            mask |= 1 << bit;
        }
        let mut compiled: Vec<Custom> = Vec::with_capacity(custom.len());
        for (index, spec) in custom.iter().enumerate() {
            let name = spec.name;
            let name_error = |message: String| DetectorError::Name { index, message };
            if !valid_name(name) {
                return Err(name_error(format!(
                    "detector name {name:?} must be 1 to 64 lowercase letters, digits or \
                     underscores, starting with a letter"
                )));
            }
            if BUILTIN_NAMES.contains(&name) {
                return Err(name_error(format!(
                    "detector name {name:?} is a built-in detector's"
                )));
            }
            if compiled.iter().any(|c| c.name == name) {
                return Err(name_error(format!("detector name {name:?} is used twice")));
            }
            let pattern = spec.regex;
            let regex = regex_lite::Regex::new(pattern).map_err(|e| DetectorError::Regex {
                index,
                message: format!("invalid regex {pattern:?}: {e}"),
            })?;
            if regex.is_match("") {
                return Err(DetectorError::Regex {
                    index,
                    message: format!("regex {pattern:?} matches the empty string"),
                });
            }
            compiled.push(Custom {
                name: name.to_owned(),
                regex,
                prefix: required_prefix(pattern),
            });
        }
        Ok(Self {
            builtins: mask,
            custom: compiled,
        })
    }

    /// The names of the detectors that run, in precedence order.
    pub fn names(&self) -> Vec<&str> {
        (0..BUILTIN_NAMES.len() + self.custom.len())
            .filter(|&d| d >= BUILTIN_NAMES.len() || self.runs(d))
            .map(|d| self.name(d))
            .collect()
    }

    /// Everything found in `text`: byte ranges, in order, not overlapping.
    pub fn find(&self, text: &str) -> Vec<Finding<'_>> {
        self.hits(text)
            .into_iter()
            .map(|hit| Finding {
                detector: self.name(hit.detector),
                start: hit.start,
                end: hit.end,
            })
            .collect()
    }

    /// `text` with every finding replaced by `[redacted:<detector>]`.
    pub fn redact<'t>(&self, text: &'t str) -> Redacted<'t, '_> {
        let hits = self.hits(text);
        if hits.is_empty() {
            return Redacted {
                text: Cow::Borrowed(text),
                counts: Vec::new(),
            };
        }
        let mut out = String::with_capacity(text.len());
        let mut counts = vec![0usize; BUILTIN_NAMES.len() + self.custom.len()];
        let mut copied = 0;
        for hit in &hits {
            out.push_str(text.get(copied..hit.start).unwrap_or_default());
            out.push_str("[redacted:");
            out.push_str(self.name(hit.detector));
            out.push(']');
            copied = hit.end;
            if let Some(count) = counts.get_mut(hit.detector) {
                *count += 1;
            }
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        Redacted {
            text: Cow::Owned(out),
            counts: counts
                .into_iter()
                .enumerate()
                .filter(|&(_, n)| n > 0)
                .map(|(d, n)| (self.name(d), n))
                .collect(),
        }
    }

    fn runs(&self, builtin: usize) -> bool {
        self.builtins & (1 << builtin) != 0
    }

    fn name(&self, detector: usize) -> &str {
        match BUILTIN_NAMES.get(detector) {
            Some(name) => name,
            None => detector
                .checked_sub(BUILTIN_NAMES.len())
                .and_then(|c| self.custom.get(c))
                .map_or("", |c| &c.name),
        }
    }

    /// Every match, overlaps settled.
    fn hits(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.builtins != 0 {
            self.scan_builtins(text.as_bytes(), &mut hits);
        }
        for (c, custom) in self.custom.iter().enumerate() {
            let mut found = Vec::new();
            custom.find(text, BUILTIN_NAMES.len() + c, &mut found);
            if !found.is_empty() {
                hits = merge(hits, found);
            }
        }
        let mut covered = 0;
        hits.retain(|hit| {
            let keep = hit.start >= covered;
            if keep {
                covered = hit.end;
            }
            keep
        });
        hits
    }

    /// The built-ins' one pass: stop at each word's first byte that may start a match, and at
    /// `@`. The text is read 32 bytes at a time, as a bit mask of those bytes.
    fn scan_builtins(&self, bytes: &[u8], hits: &mut Vec<Hit>) {
        let mut base = 0;
        while base < bytes.len() {
            let prev_word = base
                .checked_sub(1)
                .and_then(|p| bytes.get(p))
                .is_some_and(|&b| is_word(b));
            let mut mask = match bytes.get(base..).and_then(<[u8]>::first_chunk::<BLOCK>) {
                Some(block) => attention(block, prev_word),
                None => {
                    let mut block = [0u8; BLOCK];
                    let rest = bytes.get(base..).unwrap_or_default();
                    block
                        .iter_mut()
                        .zip(rest)
                        .for_each(|(to, &from)| *to = from);
                    attention(&block, prev_word)
                }
            };
            let mut next = base + BLOCK;
            while mask != 0 {
                let at = base + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let Some(&byte) = bytes.get(at) else { break };
                if let Some(hit) = self.match_at(bytes, at, byte) {
                    insert(hits, hit);
                    if hit.end >= next {
                        next = hit.end;
                        break;
                    }
                    // Go on in this block after the match.
                    let done = hit.end - base;
                    mask &= u32::MAX.checked_shl(done as u32).unwrap_or(0);
                    // A word starting right after the match: the mask saw the match's last
                    // byte before it, as this pass did.
                }
            }
            base = next;
        }
    }

    /// The built-in match starting at `at` (at `byte`), or around it: an e-mail address around
    /// its `@`, a private key from the dashes before its `BEGIN`.
    fn match_at(&self, bytes: &[u8], at: usize, byte: u8) -> Option<Hit> {
        let found = |detector: usize, end: Option<usize>| {
            end.map(|end| Hit {
                start: at,
                end,
                detector,
            })
        };
        match byte {
            b'0'..=b'9' if self.runs(CARD) => found(CARD, payment_card(bytes, at)),
            b'A'..=b'Z' => {
                if byte == b'A' && self.runs(AWS) {
                    if let Some(end) = aws_access_key(bytes, at) {
                        return found(AWS, Some(end));
                    }
                }
                if byte == b'B' && self.runs(PRIVATE_KEY) {
                    let key = at.checked_sub(5).and_then(|start| {
                        private_key(bytes, start).map(|end| Hit {
                            start,
                            end,
                            detector: PRIVATE_KEY,
                        })
                    });
                    if key.is_some() {
                        return key;
                    }
                }
                if self.runs(IBAN) {
                    return found(IBAN, iban(bytes, at));
                }
                None
            }
            b'g' if self.runs(GITHUB) => found(GITHUB, github_token(bytes, at)),
            b'x' if self.runs(SLACK) => found(SLACK, slack_token(bytes, at)),
            b'e' if self.runs(JWT) => found(JWT, jwt(bytes, at)),
            b'@' if self.runs(EMAIL) => email(bytes, at).map(|(start, end)| Hit {
                start,
                end,
                detector: EMAIL,
            }),
            _ => None,
        }
    }
}

/// How many bytes the one pass looks at together.
const BLOCK: usize = 32;

/// The bytes of `block` a match may start at (bit `i` for byte `i`): the first byte of a word
/// when it is a digit, a capital (`B` for `-----BEGIN`), `e`, `g` or `x`; and every `@`. `prev_word`: the byte
/// before the block is part of a word. Each byte's flags are computed lane by lane, without
/// branches, so that the compiler does it in vectors (SSE2 natively, SIMD128 in the `.wasm`);
/// [`bits`] packs them.
#[inline(always)]
fn attention(block: &[u8; BLOCK], prev_word: bool) -> u32 {
    let mut word = [0u8; BLOCK];
    let mut starter = [0u8; BLOCK];
    let mut at_sign = [0u8; BLOCK];
    for (((w, s), a), &b) in word
        .iter_mut()
        .zip(starter.iter_mut())
        .zip(at_sign.iter_mut())
        .zip(block)
    {
        let digit = b.wrapping_sub(b'0') < 10;
        let upper = b.wrapping_sub(b'A') < 26;
        let lower = b.wrapping_sub(b'a') < 26;
        *w = u8::from(digit | upper | lower | (b == b'_'));
        *s = u8::from(digit | upper | (b == b'e') | (b == b'g') | (b == b'x'));
        *a = u8::from(b == b'@');
    }
    let word = bits(&word);
    let word_start = word & !((word << 1) | u32::from(prev_word));
    (bits(&starter) & word_start) | bits(&at_sign)
}

/// Bit `i` set for each `flags[i]` that is 1 (every flag is 0 or 1).
#[inline(always)]
fn bits(flags: &[u8; BLOCK]) -> u32 {
    // Eight 0/1 bytes times this gather byte `i` into bit 56 + `i`, with no carries.
    const GATHER: u64 = 0x0102_0408_1020_4080;
    flags
        .chunks_exact(8)
        .filter_map(<[u8]>::first_chunk::<8>)
        .enumerate()
        .fold(0, |mask, (i, eight)| {
            let packed = (u64::from_le_bytes(*eight).wrapping_mul(GATHER) >> 56) as u32;
            mask | (packed << (8 * i))
        })
}

/// The order findings come in: by start, then the longer first, then by detector.
fn order(hit: &Hit) -> (usize, std::cmp::Reverse<usize>, usize) {
    (hit.start, std::cmp::Reverse(hit.end), hit.detector)
}

/// `hit` into `hits`, kept in [`order`]. The one pass finds matches nearly in order (an e-mail
/// address or a key starts a little before where it is found), so this looks back only a step
/// or two; and it is far smaller in the `.wasm` than a general sort.
fn insert(hits: &mut Vec<Hit>, hit: Hit) {
    let mut at = hits.len();
    while at > 0
        && hits
            .get(at - 1)
            .is_some_and(|prev| order(prev) > order(&hit))
    {
        at -= 1;
    }
    hits.insert(at, hit);
}

/// Two lists in [`order`], as one.
fn merge(a: Vec<Hit>, b: Vec<Hit>) -> Vec<Hit> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for hit in a {
        while let Some(first) = b.next_if(|first| order(first) < order(&hit)) {
            merged.push(first);
        }
        merged.push(hit);
    }
    merged.extend(b);
    merged
}

/// A custom detector's name: usable as a metric label and in a redaction marker.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_digit_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(u8::is_ascii_digit)
}

// ----- Tokens that are one word -----------------------------------------------------------

/// The word starting at `start`, when it is `len` bytes long.
fn word_of(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    let end = start + len;
    let word = bytes.get(start..end)?;
    (word.iter().all(|&b| is_word(b)) && !bytes.get(end).is_some_and(|&b| is_word(b)))
        .then_some(word)
}

/// `AKIA`/`ASIA` and 16 base32 characters, the whole word; returns the end.
fn aws_access_key(bytes: &[u8], start: usize) -> Option<usize> {
    let head = bytes.get(start..start + 4)?;
    if head != b"AKIA" && head != b"ASIA" {
        return None;
    }
    let word = word_of(bytes, start, 20)?;
    word.iter()
        .skip(4)
        .all(|&b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        .then_some(start + 20)
}

/// `gh[pousr]_` and 36 letters or digits, or `github_pat_` and 82 word bytes: the whole word;
/// returns the end.
fn github_token(bytes: &[u8], start: usize) -> Option<usize> {
    let rest = bytes.get(start..)?;
    if rest.starts_with(b"github_pat_") {
        return word_of(bytes, start, 11 + 82).map(|_| start + 11 + 82);
    }
    if !matches!(
        rest,
        [b'g', b'h', b'p' | b'o' | b'u' | b's' | b'r', b'_', ..]
    ) {
        return None;
    }
    let word = word_of(bytes, start, 40)?;
    word.iter()
        .skip(4)
        .all(u8::is_ascii_alphanumeric)
        .then_some(start + 40)
}

// ----- Slack ---------------------------------------------------------------------------------

/// `xox[abeprs]-` and dash-separated segments of letters and digits; returns the end.
fn slack_token(bytes: &[u8], start: usize) -> Option<usize> {
    let rest = bytes.get(start..)?;
    if !matches!(
        rest,
        [
            b'x',
            b'o',
            b'x',
            b'a' | b'b' | b'e' | b'p' | b'r' | b's',
            b'-',
            ..
        ]
    ) {
        return None;
    }
    let body_start = start + 5;
    let mut end = bytes
        .get(body_start..)?
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-'))
        .map_or(bytes.len(), |n| body_start + n);
    if bytes.get(end).is_some_and(|&b| is_word(b)) {
        return None;
    }
    while end > body_start && bytes.get(end - 1) == Some(&b'-') {
        end -= 1;
    }
    let body = bytes.get(body_start..end)?;
    if body.len() < 15 || !body.iter().any(u8::is_ascii_digit) {
        return None;
    }
    let mut segments = body.split(|&b| b == b'-');
    let first = segments.next()?;
    let mut count = 1;
    let mut last = first;
    for segment in segments {
        count += 1;
        last = segment;
        if segment.is_empty() {
            return None;
        }
    }
    let first_ok = count == 1 || (!first.is_empty() && first.iter().all(u8::is_ascii_digit));
    (first_ok && last.len() >= 8).then_some(end)
}

// ----- PEM private keys ------------------------------------------------------------------------

/// The fewest base64 characters a key's body holds (a real one holds hundreds).
const MIN_KEY_BODY: usize = 64;
/// How far a key's body is followed (a 4096-bit RSA key is about 3.3 KB, a PGP key block more).
const MAX_KEY_BODY: usize = 64 * 1024;

/// `-----<word> <label>-----` at `at` with a private key's label; returns where it ends.
fn pem_line(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let rest = bytes
        .get(at..)?
        .strip_prefix(b"-----")?
        .strip_prefix(word)?;
    let rest = rest.strip_prefix(b" ")?;
    let label_len = rest
        .iter()
        .take(48)
        .position(|&b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '))?;
    let label = rest.get(..label_len)?;
    let private = label.ends_with(b"PRIVATE KEY") || label == b"PGP PRIVATE KEY BLOCK";
    let after = rest.get(label_len..)?;
    (private && after.starts_with(b"-----")).then(|| at + 5 + word.len() + 1 + label_len + 5)
}

/// A private key's BEGIN line at `at`, its body and its END line; returns the end.
fn private_key(bytes: &[u8], at: usize) -> Option<usize> {
    let body_start = pem_line(bytes, at, b"BEGIN")?;
    let mut base64 = 0;
    let mut pos = body_start;
    let limit = body_start.saturating_add(MAX_KEY_BODY);
    while let Some(&b) = bytes.get(pos) {
        if pos >= limit {
            break;
        }
        match b {
            b'-' => {
                if let Some(end) = pem_line(bytes, pos, b"END") {
                    return (base64 >= MIN_KEY_BODY).then_some(end);
                }
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => base64 += 1,
            b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b':' | b',' | b'.' | b'(' | b')' => {}
            _ => break,
        }
        pos += 1;
    }
    // Cut off before its END line: the body, up to its last base64 character.
    if base64 < MIN_KEY_BODY {
        return None;
    }
    while pos > body_start
        && bytes
            .get(pos - 1)
            .is_some_and(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
    {
        pos -= 1;
    }
    Some(pos)
}

// ----- JWT ------------------------------------------------------------------------------------

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

fn base64url_run(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| !is_base64url(b)))
        .map_or(bytes.len(), |n| from + n)
}

/// The longest JWT header decoded (real ones are under 200 characters).
const MAX_JWT_HEADER: usize = 2048;

/// `eyJ…` `.` payload `.` signature at `start`; returns the end.
fn jwt(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes.get(start..)?.starts_with(b"eyJ") {
        return None;
    }
    let header_end = base64url_run(bytes, start);
    if bytes.get(header_end) != Some(&b'.') {
        return None;
    }
    let payload_start = header_end + 1;
    let payload_end = base64url_run(bytes, payload_start);
    if payload_end == payload_start || bytes.get(payload_end) != Some(&b'.') {
        return None;
    }
    let signature_start = payload_end + 1;
    let end = base64url_run(bytes, signature_start);
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(|&b| is_base64url(b)) {
        return None;
    }
    let valid_length = |len: usize| len % 4 != 1;
    let header = bytes.get(start..header_end)?;
    if header.len() > MAX_JWT_HEADER
        || !valid_length(header.len())
        || !valid_length(payload_end - payload_start)
        || !valid_length(end - signature_start)
    {
        return None;
    }
    let unsecured = header_alg_is_none(header)?;
    (end > signature_start || unsecured).then_some(end)
}

/// A JWT header's `alg`: `Some(true)` for `none`, `Some(false)` for another, `None` when the
/// header is not base64url of a JSON object with a string `alg`.
fn header_alg_is_none(header: &[u8]) -> Option<bool> {
    let decoded = decode_base64url(header)?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let Ok(Document::Object(object)) = scan(text) else {
        return None;
    };
    let alg = object.get("alg")?.value;
    alg.starts_with('"').then(|| alg == "\"none\"")
}

fn decode_base64url(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for &b in text {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

// ----- E-mail ---------------------------------------------------------------------------------

fn is_local(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-'
}

/// File extensions that follow `@` in file names (`icon@2x.png`) and are no top-level domain.
const NOT_TLDS: [&str; 20] = [
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "pdf", "css", "js",
    "json", "html", "htm", "txt", "xml", "yml", "yaml",
];

/// The address around the `@` at `at`: its start and end.
fn email(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let before = bytes.get(..at)?;
    let local_len = before
        .iter()
        .rev()
        .take(65)
        .take_while(|&&b| is_local(b))
        .count();
    if local_len > 64 {
        return None;
    }
    let mut start = at - local_len;
    while start < at && bytes.get(start) == Some(&b'.') {
        start += 1;
    }
    let local = bytes.get(start..at)?;
    if local.is_empty() || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    let domain_start = at + 1;
    let mut end = bytes
        .get(domain_start..)?
        .iter()
        .take(256)
        .position(|&b| !is_domain(b))
        .map_or(bytes.len().min(domain_start + 256), |n| domain_start + n);
    if bytes.get(end).is_some_and(|&b| is_word(b) || b == b'@') {
        return None;
    }
    while end > domain_start && bytes.get(end - 1) == Some(&b'.') {
        end -= 1;
    }
    let domain = bytes.get(domain_start..end)?;
    if end - start > 254 || !valid_domain(domain) {
        return None;
    }
    Some((start, end))
}

fn valid_domain(domain: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with(b"-")
            && !label.ends_with(b"-");
        if !valid {
            return false;
        }
        labels += 1;
        last = label;
    }
    let tld_shape = (last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic))
        || (last.len() > 4 && last.starts_with(b"xn--"));
    labels >= 2
        && tld_shape
        && !NOT_TLDS
            .iter()
            .any(|ext| ext.as_bytes().eq_ignore_ascii_case(last))
}

// ----- Payment cards --------------------------------------------------------------------------

/// The most digit groups a card number is written in (4-4-4-4-3).
const MAX_GROUPS: usize = 5;

/// A card number starting at `start` (a word's first byte, a digit); returns the end.
fn payment_card(bytes: &[u8], start: usize) -> Option<usize> {
    // No issuer's numbers start with 0, 1, 7, 8 or 9; and in every layout (one run, groups of
    // four, 4-6-x), these bytes are digits.
    if !matches!(bytes.get(start), Some(b'2'..=b'6'))
        || ![1, 2, 3, 5, 6, 7, 8, 10, 12]
            .iter()
            .all(|&offset| is_digit_at(bytes, start + offset))
    {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut count = 0;
    let mut groups = [0usize; MAX_GROUPS];
    let mut group_count = 0;
    let mut separator = None;
    let mut pos = start;
    loop {
        let group_start = pos;
        while let Some(&b) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
            *digits.get_mut(count)? = b - b'0';
            count += 1;
            pos += 1;
        }
        let group_len = pos - group_start;
        *groups.get_mut(group_count)? = group_len;
        group_count += 1;
        match bytes.get(pos) {
            Some(&sep @ (b' ' | b'-'))
                if is_digit_at(bytes, pos + 1)
                    && group_len <= 6
                    && separator.is_none_or(|s| s == sep) =>
            {
                separator = Some(sep);
                pos += 1;
            }
            _ => break,
        }
    }
    if count < 13 {
        return None;
    }
    // Standing alone: not inside a word, a decimal number, a dashed id or a chain of groups.
    if bytes.get(pos).is_some_and(|&b| is_word(b)) {
        return None;
    }
    let continues = |sep: u8| match sep {
        b'.' | b',' | b'-' => true,
        b' ' => separator == Some(b' '),
        _ => false,
    };
    if bytes.get(pos).is_some_and(|&b| continues(b)) && is_digit_at(bytes, pos + 1) {
        return None;
    }
    let before = start.checked_sub(1).and_then(|p| bytes.get(p));
    if before == Some(&b'+') {
        return None;
    }
    if before.is_some_and(|&b| continues(b))
        && start.checked_sub(2).is_some_and(|p| is_digit_at(bytes, p))
    {
        return None;
    }
    let digits = digits.get(..count)?;
    let groups = groups.get(..group_count)?;
    (card_layout(groups) && issued(digits) && luhn(digits)).then_some(pos)
}

/// How the digits are grouped: one run, groups of four (the last one to four), 4-6-5 or 4-6-4.
fn card_layout(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&g| g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Whether an issuer uses this prefix, with this many digits.
fn issued(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let len = digits.len();
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    match digits.first() {
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(5) => (51..=55).contains(&p2) && len == 16,
        Some(2) => (2221..=2720).contains(&p4) && len == 16,
        Some(3) => {
            ((p2 == 34 || p2 == 37) && len == 15)
                || ((3528..=3589).contains(&p4) && (16..=19).contains(&len))
                || (((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39))
                    && (14..=19).contains(&len))
        }
        Some(6) => {
            (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

// ----- IBAN -----------------------------------------------------------------------------------

/// An IBAN's length in a country of the SWIFT IBAN registry (those that issue them widely).
fn iban_length(country: [u8; 2]) -> Option<usize> {
    Some(match &country {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    })
}

/// The longest IBAN of any country.
const MAX_IBAN: usize = 34;

/// An IBAN starting at `start` (a word's first byte, a capital); returns the end.
fn iban(bytes: &[u8], start: usize) -> Option<usize> {
    let [c0, c1, d0, d1] = *bytes.get(start..)?.first_chunk::<4>()?;
    if !(c1.is_ascii_uppercase() && d0.is_ascii_digit() && d1.is_ascii_digit()) {
        return None;
    }
    let len = iban_length([c0, c1])?;
    let spaced = bytes.get(start + 4) == Some(&b' ');
    let mut chars = [0u8; MAX_IBAN];
    let mut count = 0;
    let mut pos = start;
    let mut group = 0;
    while count < len {
        match bytes.get(pos) {
            Some(&b) if b.is_ascii_uppercase() || b.is_ascii_digit() => {
                if spaced && group == 4 {
                    return None;
                }
                *chars.get_mut(count)? = b;
                count += 1;
                group += 1;
                pos += 1;
            }
            Some(b' ')
                if spaced
                    && group == 4
                    && bytes
                        .get(pos + 1)
                        .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
            {
                group = 0;
                pos += 1;
            }
            _ => return None,
        }
    }
    if bytes.get(pos).is_some_and(|&b| is_word(b)) {
        return None;
    }
    let chars = chars.get(..len)?;
    mod97(chars.iter().skip(4).chain(chars.iter().take(4))).then_some(pos)
}

/// The IBAN check: letters as 10–35, the whole number modulo 97 is 1.
fn mod97<'a>(chars: impl Iterator<Item = &'a u8>) -> bool {
    // Reduced only when large: one division every seven characters or so, not one each.
    let remainder = chars.fold(0u64, |r, &c| {
        let r = if r >= 1 << 48 { r % 97 } else { r };
        if c.is_ascii_digit() {
            r * 10 + u64::from(c - b'0')
        } else {
            r * 100 + u64::from(c - b'A') + 10
        }
    });
    remainder % 97 == 1
}

#[cfg(test)]
mod tests;
