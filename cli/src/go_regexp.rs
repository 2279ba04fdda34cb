//! A `regex` condition as Intercept runs it (Go's `regexp`, `MatchString`: unanchored) written
//! for the filter's engine, `regex-lite`, so that both match exactly the same texts — or refused,
//! naming the construct.
//!
//! The pattern is parsed as Go's `regexp/syntax` parses it (Perl flags) and written back in a
//! form `regex-lite` cannot read another way: every character class, Perl class (`\d`) and POSIX
//! class becomes the explicit set Go means, `(?i)` included (so `[[`, `&&`, `--`, `~~`, `[--a]`,
//! Go's `\s` without `\v`, the Kelvin sign `(?i)k` matches all come out right); text Go takes
//! literally is escaped (`\Q…\E`, a `{` that starts no repetition such as `a{,2}` or `a{01}`,
//! `\<`, which `regex-lite` reads as a word boundary); octal and hex escapes become the
//! characters they stand for; group names and redundant flags are dropped (a match does not
//! depend on them, and `regex-lite` refuses some names Go accepts). Refused: Unicode classes
//! (`\p{…}`: `regex-lite` has no Unicode tables), and under `(?i)` a non-ASCII character that
//! has case (Go folds it with Unicode's tables, `regex-lite` folds ASCII letters only). A pattern
//! Go itself refuses is refused too.

mod classes;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fmt::Write as _;

use classes::CharSet;

/// Why a pattern cannot be imported: `construct` as written, at `at` (its first character,
/// counted from 1).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub at: usize,
    pub construct: String,
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at character {}: {}",
            self.construct, self.at, self.reason
        )
    }
}

const NOT_GO: &str = "not valid in Go's regexp (Intercept refuses the policy too)";
const UNICODE_CLASS: &str =
    "a Unicode class; the filter's regular expressions have no Unicode tables";
const FOLDED_CASE: &str = "under (?i) Go matches this character in every case Unicode gives it; \
     the filter folds ASCII letters only";
/// Go's `maxRepeat`: no counted repetition, nor product of nested ones, above it.
const MAX_REPEAT: u64 = 1000;
/// A class that matches nothing (what a surrogate code point matches in a text).
const NOTHING: &str = r"[^\x00-\x{10FFFF}]";

/// `pattern` (Go syntax) for `regex-lite`, with the same matches.
pub fn translate(pattern: &str) -> Result<String, Refusal> {
    let mut translator = Translator {
        chars: pattern.chars().collect(),
        ..Translator::default()
    };
    translator.run()?;
    Ok(translator.out)
}

/// The concatenation being parsed, since the last `(` or `|`. Weights are what Go limits in
/// nested counted repetitions: the largest product of counts along a path (1: none).
#[derive(Clone, Copy, Default)]
struct Concat {
    /// The weight of the operand a repetition would apply to; `None` if there is none yet.
    last: Option<u64>,
    /// The largest weight among the operands before it.
    earlier: u64,
}

impl Concat {
    fn weight(&self) -> u64 {
        self.earlier.max(self.last.unwrap_or(1))
    }

    fn push(&mut self, weight: u64) {
        self.earlier = self.weight();
        self.last = Some(weight);
    }
}

/// An open group: where it opened, and what to restore when it closes.
struct Group {
    opened_at: usize,
    fold: bool,
    outer: Concat,
    outer_branches: u64,
}

#[derive(Default)]
struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    /// Whether `(?i)` is in effect. The other flags (`m`, `s`, `U`) are written as Go reads them
    /// and mean the same to `regex-lite`, in the same scopes.
    fold: bool,
    concat: Concat,
    /// The largest weight among the finished branches of the current group.
    branches: u64,
    groups: Vec<Group>,
    /// Whether the previous token was a repetition (Go refuses `a**`).
    after_repeat: bool,
}

impl Translator {
    fn run(&mut self) -> Result<(), Refusal> {
        while let Some(c) = self.peek(0) {
            let start = self.pos;
            let repeated = match c {
                '(' => self.open_group().map(|()| false)?,
                ')' => self.close_group().map(|()| false)?,
                '|' => {
                    self.bump(1);
                    self.branches = self.branches.max(self.concat.weight());
                    self.concat = Concat::default();
                    self.out.push('|');
                    false
                }
                '^' | '$' | '.' => {
                    self.bump(1);
                    self.out.push(c);
                    self.concat.push(1);
                    false
                }
                '[' => self.class().map(|()| false)?,
                '*' | '+' | '?' => {
                    self.bump(1);
                    let bounds = match c {
                        '+' => (1, None),
                        '?' => (0, Some(1)),
                        _ => (0, None),
                    };
                    self.repeat(start, c.to_string(), bounds, false)?;
                    true
                }
                '{' => self.brace(start)?,
                '\\' => self.escape().map(|()| false)?,
                _ => {
                    self.bump(1);
                    self.literal(u32::from(c), start)?;
                    false
                }
            };
            self.after_repeat = repeated;
        }
        match self.groups.last() {
            None => Ok(()),
            Some(group) => Err(Refusal {
                at: group.opened_at + 1,
                construct: self.text(group.opened_at, group.opened_at + 1),
                reason: format!("{NOT_GO}: missing closing )"),
            }),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chars.len());
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars
            .get(from..to.min(self.chars.len()))
            .map_or_else(String::new, |chars| chars.iter().collect())
    }

    fn not_go(&self, start: usize, why: &str) -> Refusal {
        Refusal {
            at: start + 1,
            construct: self.text(start, self.pos.max(start + 1)),
            reason: format!("{NOT_GO}: {why}"),
        }
    }

    fn refuse(&self, start: usize, end: usize, reason: &str) -> Refusal {
        Refusal {
            at: start + 1,
            construct: self.text(start, end),
            reason: reason.to_owned(),
        }
    }

    // Groups and flags.

    fn open_group(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        if self.peek(1) != Some('?') {
            self.bump(1);
            self.push_group(start, "(");
            return Ok(());
        }
        let name_at = match (self.peek(2), self.peek(3)) {
            (Some('P'), Some('<')) if self.pos + 4 < self.chars.len() => Some(4),
            (Some('<'), _) if self.pos + 3 < self.chars.len() => Some(3),
            _ => None,
        };
        match name_at {
            Some(offset) => self.named_group(start, offset),
            None => self.flag_group(start),
        }
    }

    /// `(?P<name>` or `(?<name>`: a capture whose name no match depends on, written `(`.
    fn named_group(&mut self, start: usize, offset: usize) -> Result<(), Refusal> {
        let rest = self.chars.get(start..).unwrap_or_default();
        let Some(end) = rest.iter().position(|&c| c == '>') else {
            self.pos = self.chars.len();
            return Err(self.not_go(start, "invalid named capture"));
        };
        let name = self.text(start + offset, start + end);
        self.pos = start + end + 1;
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(self.not_go(start, "invalid named capture"));
        }
        self.push_group(start, "(");
        Ok(())
    }

    /// `(?flags)` or `(?flags:`, with Go's rules; written with each flag it names once.
    fn flag_group(&mut self, start: usize) -> Result<(), Refusal> {
        self.bump(2);
        let mut fold = self.fold;
        let (mut on, mut off) = (String::new(), String::new());
        let mut negated = false;
        let mut saw_flag = false;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.not_go(start, "missing closing )"));
            };
            self.bump(1);
            match c {
                'i' | 'm' | 's' | 'U' => {
                    if c == 'i' {
                        fold = !negated;
                    }
                    on.retain(|f| f != c);
                    off.retain(|f| f != c);
                    if negated { &mut off } else { &mut on }.push(c);
                    saw_flag = true;
                }
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                }
                ':' | ')' if !negated || saw_flag => {
                    let mut written = String::from("(?");
                    written.push_str(&on);
                    if !off.is_empty() {
                        written.push('-');
                        written.push_str(&off);
                    }
                    if c == ':' {
                        written.push(':');
                        self.push_group(start, &written);
                    } else if written.len() > 2 {
                        written.push(')');
                        self.out.push_str(&written);
                    }
                    self.fold = fold;
                    return Ok(());
                }
                _ => return Err(self.not_go(start, "invalid or unsupported Perl syntax")),
            }
        }
    }

    fn push_group(&mut self, opened_at: usize, written: &str) {
        self.groups.push(Group {
            opened_at,
            fold: self.fold,
            outer: self.concat,
            outer_branches: self.branches,
        });
        self.concat = Concat::default();
        self.branches = 1;
        self.out.push_str(written);
    }

    fn close_group(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        self.bump(1);
        let Some(group) = self.groups.pop() else {
            return Err(self.not_go(start, "unexpected )"));
        };
        let weight = self.branches.max(self.concat.weight());
        self.fold = group.fold;
        self.concat = group.outer;
        self.branches = group.outer_branches;
        self.concat.push(weight);
        self.out.push(')');
        Ok(())
    }

    // Repetitions.

    /// `{`: a counted repetition if Go reads one there, else a literal `{`. Whether it repeated.
    fn brace(&mut self, start: usize) -> Result<bool, Refusal> {
        let Some((min, max, length)) = self.counted() else {
            self.bump(1);
            self.literal(u32::from('{'), start)?;
            return Ok(false);
        };
        self.bump(length);
        if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || min > max) {
            return Err(self.not_go(start, "invalid repeat count"));
        }
        let written = match max {
            Some(max) if max == min => format!("{{{min}}}"),
            Some(max) => format!("{{{min},{max}}}"),
            None => format!("{{{min},}}"),
        };
        self.repeat(start, written, (min, max), true)?;
        Ok(true)
    }

    /// Go's `parseRepeat` at `{`: `{n}`, `{n,}` or `{n,m}`, digits without leading zeros; its
    /// bounds (`None`: unbounded) and length in characters.
    fn counted(&self) -> Option<(u64, Option<u64>, usize)> {
        let mut at = 1;
        let min = self.number(&mut at)?;
        let max = match self.peek(at)? {
            ',' if self.peek(at + 1)? == '}' => {
                at += 1;
                None
            }
            ',' => {
                at += 1;
                Some(self.number(&mut at)?)
            }
            _ => Some(min),
        };
        (self.peek(at)? == '}').then_some((min, max, at + 1))
    }

    fn number(&self, at: &mut usize) -> Option<u64> {
        let first = self.peek(*at)?.to_digit(10)?;
        if first == 0 && self.peek(*at + 1).is_some_and(|c| c.is_ascii_digit()) {
            return None;
        }
        let mut value = u64::from(first);
        *at += 1;
        while let Some(digit) = self.peek(*at).and_then(|c| c.to_digit(10)) {
            value = value.saturating_mul(10).saturating_add(u64::from(digit));
            *at += 1;
        }
        Some(value)
    }

    /// Apply a repetition (already consumed, written as `written`) to the last operand, with
    /// Go's checks; a `?` right after it makes it lazy.
    fn repeat(
        &mut self,
        start: usize,
        mut written: String,
        (min, max): (u64, Option<u64>),
        counted: bool,
    ) -> Result<(), Refusal> {
        if self.peek(0) == Some('?') {
            self.bump(1);
            written.push('?');
        }
        if self.after_repeat {
            return Err(self.not_go(start, "invalid nested repetition operator"));
        }
        let Some(weight) = self.concat.last else {
            return Err(self.not_go(start, "missing argument to repetition operator"));
        };
        let count = max.unwrap_or(min);
        let weight = match counted {
            true if count == 0 => 1,
            true => count.saturating_mul(weight),
            false => weight,
        };
        if counted && (min >= 2 || max.is_some_and(|m| m >= 2)) && weight > MAX_REPEAT {
            return Err(self.not_go(start, "invalid repeat count"));
        }
        self.concat.last = Some(weight);
        self.out.push_str(&written);
        Ok(())
    }

    // Escapes and literals.

    fn escape(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        let written = match self.peek(1) {
            Some(c @ ('A' | 'z' | 'b' | 'B')) => Some(c),
            _ => None,
        };
        if let Some(c) = written {
            self.bump(2);
            self.out.push('\\');
            self.out.push(c);
            self.concat.push(1);
            return Ok(());
        }
        match self.peek(1) {
            Some('C') => {
                self.bump(2);
                Err(self.not_go(start, "invalid escape sequence"))
            }
            Some('Q') => self.quoted(),
            Some('p' | 'P') => Err(self.unicode_class(start)),
            Some(letter) if classes::perl_group(letter).is_some() => {
                self.bump(2);
                let set = self.group_set(letter_group(letter), start)?;
                push_set(&mut self.out, &set);
                self.concat.push(1);
                Ok(())
            }
            _ => {
                let c = self.escaped_char()?;
                self.literal(c, start)
            }
        }
    }

    /// `\Q…\E` (or to the end): each character literally.
    fn quoted(&mut self) -> Result<(), Refusal> {
        self.bump(2);
        while let Some(c) = self.peek(0) {
            if c == '\\' && self.peek(1) == Some('E') {
                self.bump(2);
                return Ok(());
            }
            let at = self.pos;
            self.bump(1);
            self.literal(u32::from(c), at)?;
        }
        Ok(())
    }

    /// Go's `parseEscape` at `\`: the character it stands for (a code point: Go accepts
    /// surrogates, which no text holds).
    fn escaped_char(&mut self) -> Result<u32, Refusal> {
        let start = self.pos;
        self.bump(1);
        let Some(c) = self.peek(0) else {
            return Err(self.not_go(start, "trailing backslash at end of expression"));
        };
        self.bump(1);
        let simple = match c {
            'a' => Some(0x07),
            'f' => Some(0x0C),
            'n' => Some(0x0A),
            'r' => Some(0x0D),
            't' => Some(0x09),
            'v' => Some(0x0B),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Some(u32::from(c)),
            _ => None,
        };
        if let Some(code) = simple {
            return Ok(code);
        }
        match c {
            '0'..='7' => self.octal(c, start),
            'x' => self.hex(start),
            _ => Err(self.not_go(start, "invalid escape sequence")),
        }
    }

    /// `\0`, or `\1`–`\7` followed by an octal digit: up to three digits in all.
    fn octal(&mut self, first: char, start: usize) -> Result<u32, Refusal> {
        let is_octal = |c: Option<char>| c.is_some_and(|c| ('0'..='7').contains(&c));
        if first != '0' && !is_octal(self.peek(0)) {
            return Err(self.not_go(start, "invalid escape sequence"));
        }
        let mut value = first.to_digit(8).unwrap_or(0);
        for _ in 1..3 {
            match self.peek(0).and_then(|c| c.to_digit(8)) {
                Some(digit) => {
                    value = value * 8 + digit;
                    self.bump(1);
                }
                None => break,
            }
        }
        Ok(value)
    }

    /// `\xHH` or `\x{H…}` (at most 0x10FFFF).
    fn hex(&mut self, start: usize) -> Result<u32, Refusal> {
        let invalid = |t: &mut Self| Err(t.not_go(start, "invalid escape sequence"));
        if self.peek(0) != Some('{') {
            let digits = (self.peek(0), self.peek(1));
            self.bump(2);
            return match digits {
                (Some(high), Some(low)) => match (high.to_digit(16), low.to_digit(16)) {
                    (Some(high), Some(low)) => Ok(high * 16 + low),
                    _ => invalid(self),
                },
                _ => invalid(self),
            };
        }
        self.bump(1);
        let mut value: u32 = 0;
        let mut digits = 0;
        loop {
            let Some(c) = self.peek(0) else {
                return invalid(self);
            };
            self.bump(1);
            if c == '}' {
                break;
            }
            let Some(digit) = c.to_digit(16) else {
                return invalid(self);
            };
            value = value * 16 + digit;
            if value > classes::MAX {
                return invalid(self);
            }
            digits += 1;
        }
        if digits == 0 {
            return invalid(self);
        }
        Ok(value)
    }

    /// A literal character, matched in every case Go's `(?i)` gives it.
    fn literal(&mut self, code: u32, start: usize) -> Result<(), Refusal> {
        self.concat.push(1);
        let Some(c) = char::from_u32(code) else {
            self.out.push_str(NOTHING);
            return Ok(());
        };
        if !self.fold {
            push_literal(&mut self.out, c);
            return Ok(());
        }
        let folded = classes::folded_range(code, code)
            .map_err(|_| self.refuse(start, self.pos, FOLDED_CASE))?;
        // `regex-lite` folds an ASCII letter itself; only the orbits Go extends with the Kelvin
        // sign and the long s need writing out.
        if folded.ranges().iter().any(|&(_, hi)| hi >= 0x80)
            && folded != CharSet::of(&[(code, code)])
        {
            push_set(&mut self.out, &folded);
        } else {
            push_literal(&mut self.out, c);
        }
        Ok(())
    }

    fn unicode_class(&mut self, start: usize) -> Refusal {
        self.bump(2);
        if self.peek(0) == Some('{') {
            while let Some(c) = self.peek(0) {
                self.bump(1);
                if c == '}' {
                    break;
                }
            }
        } else {
            self.bump(1);
        }
        self.refuse(start, self.pos, UNICODE_CLASS)
    }

    // Classes.

    /// `[…]` as Go's `parseClass` reads it, written as the explicit set it means.
    fn class(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        self.bump(1);
        let negated = self.peek(0) == Some('^');
        if negated {
            self.bump(1);
        }
        let mut set = CharSet::default();
        let mut first = true;
        loop {
            match self.peek(0) {
                None => return Err(self.not_go(start, "missing closing ]")),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            let item = self.class_item(start)?;
            set.add(&item);
        }
        self.bump(1);
        if negated {
            set = set.complement();
        }
        push_set(&mut self.out, &set);
        self.concat.push(1);
        Ok(())
    }

    /// One item of a class: a POSIX class, a Perl class, a character or a range.
    fn class_item(&mut self, class_start: usize) -> Result<CharSet, Refusal> {
        let start = self.pos;
        if self.peek(0) == Some('[') && self.peek(1) == Some(':') {
            if let Some(set) = self.posix_class()? {
                return Ok(set);
            }
        }
        if self.peek(0) == Some('\\') {
            match self.peek(1) {
                Some('p' | 'P') => return Err(self.unicode_class(start)),
                Some(letter) if classes::perl_group(letter).is_some() => {
                    self.bump(2);
                    return self.group_set(letter_group(letter), start);
                }
                _ => {}
            }
        }
        let lo = self.class_char(class_start)?;
        let mut hi = lo;
        if self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c != ']') {
            self.bump(1);
            hi = self.class_char(class_start)?;
            if hi < lo {
                return Err(self.not_go(start, "invalid character class range"));
            }
        }
        if !self.fold {
            return Ok(CharSet::of(&[(lo, hi)]));
        }
        classes::folded_range(lo, hi).map_err(|_| self.refuse(start, self.pos, FOLDED_CASE))
    }

    /// `[:name:]` where Go finds one: its `:]` is searched in the rest of the whole pattern.
    fn posix_class(&mut self) -> Result<Option<CharSet>, Refusal> {
        let start = self.pos;
        let rest = self.chars.get(start + 2..).unwrap_or_default();
        let Some(end) = rest.windows(2).position(|pair| pair == [':', ']']) else {
            return Ok(None);
        };
        let name = self.text(start + 2, start + 2 + end);
        self.pos = start + 2 + end + 2;
        match classes::posix_group(&name) {
            Some(group) => self.group_set(group, start).map(Some),
            None => Err(self.not_go(start, "invalid character class range")),
        }
    }

    /// A Perl or POSIX group as Go adds it to a class: folded under `(?i)`, then negated.
    fn group_set(
        &self,
        (group, negated): (&[(u32, u32)], bool),
        start: usize,
    ) -> Result<CharSet, Refusal> {
        let mut set = CharSet::of(group);
        if self.fold {
            set = classes::folded(&set).map_err(|_| self.refuse(start, self.pos, FOLDED_CASE))?;
        }
        Ok(if negated { set.complement() } else { set })
    }

    /// A character in a class: itself, or an escape.
    fn class_char(&mut self, class_start: usize) -> Result<u32, Refusal> {
        match self.peek(0) {
            None => Err(self.not_go(class_start, "missing closing ]")),
            Some('\\') => self.escaped_char(),
            Some(c) => {
                self.bump(1);
                Ok(u32::from(c))
            }
        }
    }
}

fn letter_group(letter: char) -> (&'static [(u32, u32)], bool) {
    classes::perl_group(letter).unwrap_or((&[], false))
}

/// A character outside a class, escaped where `regex-lite` would read it as syntax.
fn push_literal(out: &mut String, c: char) {
    match c {
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
            out.push('\\');
            out.push(c);
        }
        _ => push_plain(out, c),
    }
}

/// A character inside a class, escaped where `regex-lite` would read it as syntax (`&&`, `--`,
/// `~~` and a nested `[` included); beyond ASCII as its code, so that look-alikes (the Kelvin
/// sign) stay readable.
fn push_class_char(out: &mut String, c: char) {
    match c {
        '\\' | ']' | '[' | '^' | '-' | '&' | '~' => {
            out.push('\\');
            out.push(c);
        }
        c if !c.is_ascii() => {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
        _ => push_plain(out, c),
    }
}

/// A character that is no syntax: control characters and non-space blanks as escapes.
fn push_plain(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str(r"\t"),
        '\n' => out.push_str(r"\n"),
        '\r' => out.push_str(r"\r"),
        c if c.is_control() || (c.is_whitespace() && c != ' ') => {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// `set` as one `regex-lite` class (or `\d`, `\w`, `.`): negated when it holds the last code
/// point, which is how Go's negated classes come out.
fn push_set(out: &mut String, set: &CharSet) {
    let set = set.without_surrogates();
    let complement = set.complement().without_surrogates();
    let named = [
        (CharSet::of(classes::DIGIT), 'd'),
        (CharSet::of(classes::WORD), 'w'),
    ];
    for (group, letter) in &named {
        if set == *group {
            out.push('\\');
            out.push(*letter);
            return;
        }
        if complement == *group {
            out.push('\\');
            out.push(letter.to_ascii_uppercase());
            return;
        }
    }
    if complement.is_empty() {
        out.push_str("(?s:.)");
        return;
    }
    if set.is_empty() {
        out.push_str(NOTHING);
        return;
    }
    let negated = set.contains(classes::MAX);
    let written = if negated { &complement } else { &set };
    out.push('[');
    if negated {
        out.push('^');
    }
    for &(lo, hi) in written.ranges() {
        let (Some(lo_char), Some(hi_char)) = (char::from_u32(lo), char::from_u32(hi)) else {
            continue;
        };
        push_class_char(out, lo_char);
        if hi > lo + 1 {
            out.push('-');
        }
        if hi > lo {
            push_class_char(out, hi_char);
        }
    }
    out.push(']');
}
