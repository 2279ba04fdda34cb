//! Sets of characters as Go's `regexp/syntax` builds them for a class: its Perl and POSIX groups,
//! and its `(?i)` closure, which this module computes exactly where every character involved is
//! ASCII or has no case, and refuses to guess otherwise.

/// The largest code point.
pub const MAX: u32 = 0x10FFFF;
const SURROGATES: (u32, u32) = (0xD800, 0xDFFF);
const LONG_S: u32 = 0x17F;
const KELVIN: u32 = 0x212A;
/// The range outside of which Go's case folding changes nothing (`minFold`, `maxFold`).
const FOLDS: (u32, u32) = (0x41, 0x1E943);

pub const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
/// Go's `\s`: no vertical tab (its `[[:space:]]` has one).
pub const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
pub const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// `\d` `\s` `\w`, and whether the escape (`\D` `\S` `\W`) negates it.
pub fn perl_group(letter: char) -> Option<(&'static [(u32, u32)], bool)> {
    let group = match letter.to_ascii_lowercase() {
        'd' => DIGIT,
        's' => PERL_SPACE,
        'w' => WORD,
        _ => return None,
    };
    Some((group, letter.is_ascii_uppercase()))
}

/// `[:name:]` (`[:^name:]` negates it) as Go defines them: ASCII only.
pub fn posix_group(name: &str) -> Option<(&'static [(u32, u32)], bool)> {
    let (name, negated) = match name.strip_prefix('^') {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    let group: &'static [(u32, u32)] = match name {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some((group, negated))
}

/// Code points as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CharSet {
    ranges: Vec<(u32, u32)>,
}

impl CharSet {
    pub fn of(ranges: &[(u32, u32)]) -> CharSet {
        let mut set = CharSet::default();
        for &(lo, hi) in ranges {
            set.add_range(lo, hi);
        }
        set
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, c: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }

    pub fn add_range(&mut self, lo: u32, hi: u32) {
        self.ranges.push((lo, hi));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(lo, hi) in &self.ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.ranges = merged;
    }

    pub fn add(&mut self, other: &CharSet) {
        for &(lo, hi) in &other.ranges {
            self.add_range(lo, hi);
        }
    }

    /// Every code point up to `MAX` not in this set.
    pub fn complement(&self) -> CharSet {
        let mut ranges = Vec::with_capacity(self.ranges.len() + 1);
        let mut next = 0;
        for &(lo, hi) in &self.ranges {
            if lo > next {
                ranges.push((next, lo - 1));
            }
            next = hi + 1;
        }
        if next <= MAX {
            ranges.push((next, MAX));
        }
        CharSet { ranges }
    }

    /// Without the surrogate code points: no text holds one, and Rust has no `char` for them.
    pub fn without_surrogates(&self) -> CharSet {
        let mut ranges = Vec::with_capacity(self.ranges.len() + 1);
        for &(lo, hi) in &self.ranges {
            if hi < SURROGATES.0 || lo > SURROGATES.1 {
                ranges.push((lo, hi));
                continue;
            }
            if lo < SURROGATES.0 {
                ranges.push((lo, SURROGATES.0 - 1));
            }
            if hi > SURROGATES.1 {
                ranges.push((SURROGATES.1 + 1, hi));
            }
        }
        CharSet { ranges }
    }
}

/// Go's `(?i)` closure of `lo..=hi` (its `appendFoldedRange`); `Err` is the first character
/// whose case Go folds with Unicode's tables, where `regex-lite` folds ASCII letters only.
pub fn folded_range(lo: u32, hi: u32) -> Result<CharSet, char> {
    let mut set = CharSet::of(&[(lo, hi)]);
    // As Go: a range covering every folding character gains nothing, one outside gains nothing.
    if (lo <= FOLDS.0 && hi >= FOLDS.1) || hi < FOLDS.0 || lo > FOLDS.1 {
        return Ok(set);
    }
    for c in lo.max(FOLDS.0)..=hi.min(FOLDS.1) {
        add_orbit(c, &mut set)?;
    }
    Ok(set)
}

/// Go's `(?i)` closure of a whole set.
pub fn folded(set: &CharSet) -> Result<CharSet, char> {
    let mut closure = CharSet::default();
    for &(lo, hi) in set.ranges() {
        closure.add(&folded_range(lo, hi)?);
    }
    Ok(closure)
}

/// The characters Go's `(?i)` matches for `c` (its simple case-folding orbit), added to `set`.
fn add_orbit(c: u32, set: &mut CharSet) -> Result<(), char> {
    let orbit: &[u32] = match c {
        0x4B | 0x6B | KELVIN => &[0x4B, 0x6B, KELVIN],
        0x53 | 0x73 | LONG_S => &[0x53, 0x73, LONG_S],
        0x41..=0x5A => &[c, c + 0x20],
        0x61..=0x7A => &[c, c - 0x20],
        _ => match char::from_u32(c) {
            Some(ch) if !ch.is_ascii() && has_case(ch) => return Err(ch),
            _ => return Ok(()),
        },
    };
    for &member in orbit {
        set.add_range(member, member);
    }
    Ok(())
}

/// Whether Unicode gives `c` another case. Rust's tables are at least as recent as Go's, so a
/// character Go folds is never missed (one it does not fold may be refused: the safe side).
fn has_case(c: char) -> bool {
    !c.to_lowercase().eq([c]) || !c.to_uppercase().eq([c])
}
