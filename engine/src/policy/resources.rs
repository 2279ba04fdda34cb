//! How entries of the `resources` block match URIs: exactly, by prefix or by glob. Entries are
//! tried in order and the first that matches decides (as Envoy matches routes).

/// How an entry matches URIs (compared as the client sent them, after JSON unescaping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPattern {
    /// `uri`: this URI exactly.
    Exact(String),
    /// `prefix`: every URI starting with it.
    Prefix(String),
    /// `glob`: `*` any run of characters but `/`, `**` any run, `?` one character but `/`.
    Glob(Glob),
}

impl UriPattern {
    pub fn matches(&self, uri: &str) -> bool {
        match self {
            UriPattern::Exact(exact) => uri == exact,
            UriPattern::Prefix(prefix) => uri.starts_with(prefix.as_str()),
            UriPattern::Glob(glob) => glob.matches(uri),
        }
    }
}

/// One element of a glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Char(char),
    /// `?`
    One,
    /// `*`
    Segment,
    /// `**`
    Any,
}

/// A glob, read once at load into its pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pieces: Vec<Piece>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut pieces = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            pieces.push(match c {
                '*' if chars.next_if_eq(&'*').is_some() => Piece::Any,
                '*' => Piece::Segment,
                '?' => Piece::One,
                other => Piece::Char(other),
            });
        }
        Glob { pieces }
    }

    /// Whether `text` matches, in time proportional to its length times the glob's: the set of
    /// pieces the text so far can end at is carried character by character (no backtracking,
    /// so no pattern makes a long URI cost more).
    pub fn matches(&self, text: &str) -> bool {
        let mut at = vec![false; self.pieces.len() + 1];
        if let Some(start) = at.first_mut() {
            *start = true;
        }
        self.close(&mut at);
        for c in text.chars() {
            let mut next = vec![false; at.len()];
            for (index, piece) in self.pieces.iter().enumerate() {
                if !at.get(index).copied().unwrap_or(false) {
                    continue;
                }
                let (stay, advance) = match *piece {
                    Piece::Char(expected) => (false, expected == c),
                    Piece::One => (false, c != '/'),
                    Piece::Segment => (c != '/', false),
                    Piece::Any => (true, false),
                };
                for (target, taken) in [(index, stay), (index + 1, advance)] {
                    if let (true, Some(slot)) = (taken, next.get_mut(target)) {
                        *slot = true;
                    }
                }
            }
            self.close(&mut next);
            if !next.contains(&true) {
                return false;
            }
            at = next;
        }
        at.last().copied().unwrap_or(false)
    }

    /// A star may match nothing: being before it is being after it too.
    fn close(&self, at: &mut [bool]) {
        for (index, piece) in self.pieces.iter().enumerate() {
            if matches!(piece, Piece::Segment | Piece::Any) && at.get(index) == Some(&true) {
                if let Some(after) = at.get_mut(index + 1) {
                    *after = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    fn glob(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).matches(text)
    }

    #[test]
    fn exact_and_prefix_compare_text_as_it_is() {
        let exact = UriPattern::Exact("wechat://account/profile".into());
        assert!(exact.matches("wechat://account/profile"));
        for other in [
            "wechat://account/profile/",
            "wechat://account/Profile",
            "wechat://account/profil",
            "",
        ] {
            assert!(!exact.matches(other), "{other:?}");
        }
        let prefix = UriPattern::Prefix("wechat://followers/".into());
        assert!(prefix.matches("wechat://followers/"));
        assert!(prefix.matches("wechat://followers/o1/tags"));
        assert!(!prefix.matches("wechat://followers"));
        assert!(!prefix.matches("WECHAT://followers/o1"));
    }

    #[test]
    fn a_star_stays_within_a_segment_and_two_cross_them() {
        assert!(glob("wechat://internal/*", "wechat://internal/api-keys"));
        assert!(glob("wechat://internal/*", "wechat://internal/"));
        assert!(!glob("wechat://internal/*", "wechat://internal/a/b"));
        assert!(glob("wechat://internal/**", "wechat://internal/a/b"));
        assert!(glob("wechat://internal/**", "wechat://internal/"));
        assert!(!glob("wechat://internal/**", "wechat://internal"));
        assert!(glob("file:///**/*.log", "file:///var/log/app.log"));
        assert!(glob("file:///**/*.log", "file:///var/log/nested/app.log"));
        // `**` may match nothing, slashes on either side included.
        assert!(glob("a/**/b", "a//b"));
        assert!(!glob("a/**/b", "a/b"));
        assert!(glob("a**b", "ab"));
        assert!(glob("*", ""));
        assert!(!glob("*", "/"));
        assert!(glob("**", "/"));
        assert!(glob("***", "a/b"), "a third star is a second run");
    }

    #[test]
    fn a_question_mark_is_one_character_but_a_slash() {
        assert!(glob("db://t?", "db://t1"));
        assert!(glob("db://t?", "db://té"), "one character, not one byte");
        assert!(!glob("db://t?", "db://t"));
        assert!(!glob("db://t?", "db://t12"));
        assert!(!glob("db://t?x", "db://t/x"));
    }

    #[test]
    fn nothing_else_is_special() {
        for (pattern, text) in [
            ("a[bc]", "a[bc]"),
            ("{x}", "{x}"),
            ("a\\*", "a\\anything"),
            ("a.b", "a.b"),
            ("^$+", "^$+"),
        ] {
            assert!(glob(pattern, text), "{pattern} {text}");
        }
        assert!(!glob("a[bc]", "ab"));
        assert!(!glob("a.b", "axb"));
        // A template is matched as text, braces included.
        assert!(glob("stock://*/earnings", "stock://{symbol}/earnings"));
    }

    #[test]
    fn long_uris_cost_no_backtracking() {
        let text = format!("{}b", "a".repeat(20_000));
        assert!(!glob("*a*a*a*a*a*a*a*a*c", &text));
        assert!(glob("**a**a**a**b", &text));
    }
}
