use super::*;

/// Texts, and whether Go's `MatchString` matches each.
type Texts = &'static [(&'static str, bool)];

/// Go patterns, what they become, and texts with whether Go matches them (from Go's
/// `regexp/syntax` documentation and parser).
const TRANSLATED: &[(&str, &str, Texts)] = &[
    // Unchanged: what both read the same way.
    (r"^feat/", r"^feat/", &[("feat/x", true), ("main", false)]),
    (r"fix", r"fix", &[("a-fix-b", true)]),
    // From Intercept's engine tests.
    (
        r"^[^@]+@[^@]+\.[^@]+$",
        r"^[^@]+@[^@]+\.[^@]+$",
        &[("user@example.com", true), ("not-an-email", false)],
    ),
    (
        r"(?i)^main$",
        r"(?i)^main$",
        &[("MAIN", true), ("mains", false)],
    ),
    (
        r"^\d{4}-\d{2}$",
        r"^\d{4}-\d{2}$",
        &[("2024-05", true), ("٢٠٢٤-05", false)],
    ),
    (r"(?m)^a$", r"(?m)^a$", &[("b\na\nc", true)]),
    (r"(?s)a.b", r"(?s)a.b", &[("a\nb", true)]),
    (r"a.b", r"a.b", &[("a\nb", false), ("a\rb", true)]),
    (
        r"x*?y|z{2,3}?",
        r"x*?y|z{2,3}?",
        &[("zz", true), ("z", false)],
    ),
    (r"(?U)a+", r"(?U)a+", &[("aaa", true)]),
    (r"a|", r"a|", &[("", true)]),
    (r"()", r"()", &[("x", true)]),
    (
        r"\bgo\b",
        r"\bgo\b",
        &[("let's go!", true), ("gopher", false)],
    ),
    // Quoted text, escapes and braces Go takes literally.
    (r"^\Q1+1\E$", r"^1\+1$", &[("1+1", true), ("11", false)]),
    (r"a\Qb*", r"ab\*", &[("ab*", true), ("abbb", false)]),
    (r"^a{,2}$", r"^a\{,2\}$", &[("a{,2}", true), ("aa", false)]),
    (r"^a{01}$", r"^a\{01\}$", &[("a{01}", true), ("a", false)]),
    (r"^x{$", r"^x\{$", &[("x{", true)]),
    (r"^\101\0$", r"^A\x{0}$", &[("A\0", true)]),
    (r"^\x41\x{42}$", r"^AB$", &[("AB", true)]),
    (r"^\<a\>$", r"^<a>$", &[("<a>", true), ("a", false)]),
    (r"^\b{start}$", r"^\b\{start\}$", &[("{start}", false)]),
    (r"\_\#\&", r"_#&", &[("_#&", true)]),
    (
        r"^\x{D800}?$",
        r"^[^\x00-\x{10FFFF}]?$",
        &[("", true), ("\u{FFFD}", false)],
    ),
    // Classes, written as the set Go means.
    (r"^[[]$", r"^[\[]$", &[("[", true)]),
    (r"^[a&&b]$", r"^[\&ab]$", &[("&", true), ("a", true)]),
    (r"^[a~~b]$", r"^[ab\~]$", &[("~", true)]),
    (
        r"^[--a]$",
        r"^[\--a]$",
        &[("A", true), ("0", true), ("b", false)],
    ),
    (r"^[a-]$", r"^[\-a]$", &[("-", true)]),
    (r"^[]a]$", r"^[\]a]$", &[("]", true)]),
    (r"^[^]a]$", r"^[^\]a]$", &[("]", false), ("b", true)]),
    (
        r"^[\d-z]$",
        r"^[\-0-9z]$",
        &[("-", true), ("5", true), ("y", false)],
    ),
    (r"^[^\n]$", r"^[^\n]$", &[("\n", false), ("\r", true)]),
    (
        r"^\s$",
        r"^[\t\n\x{C}\r ]$",
        &[(" ", true), ("\x0B", false)],
    ),
    (
        r"^\S$",
        r"^[^\t\n\x{C}\r ]$",
        &[("\x0B", true), (" ", false)],
    ),
    (r"^[[:space:]]$", r"^[\t-\r ]$", &[("\x0B", true)]),
    (r"^[[:word:]]+$", r"^\w+$", &[("a_1", true)]),
    (r"^[[:^digit:]]$", r"^\D$", &[("x", true), ("1", false)]),
    (r"^[[:alpha:][:digit:]]$", r"^[0-9A-Za-z]$", &[("x", true)]),
    (r"^[\x00-\x{10FFFF}]$", r"^(?s:.)$", &[("\n", true)]),
    (r"^[é]$", r"^[\x{E9}]$", &[("é", true)]),
    (r"^é$", r"^é$", &[("é", true), ("É", false)]),
    // Groups: names dropped, flags written once.
    (
        r"(?P<first>a)(?<second>b)(?P<1x>c)",
        r"(a)(b)(c)",
        &[("abc", true)],
    ),
    (
        r"(?i-i)a(?)b(?ii)c",
        r"(?-i)ab(?i)c",
        &[("abC", true), ("Abc", false)],
    ),
    (r"(?i:a)b", r"(?i:a)b", &[("Ab", true), ("AB", false)]),
    (
        r"a(?i)b|c",
        r"a(?i)b|c",
        &[("C", true), ("aB", true), ("AB", false)],
    ),
    (r"(a(?i)b)c", r"(a(?i)b)c", &[("aBc", true), ("aBC", false)]),
    // (?i): Go folds k and s with the Kelvin sign and the long s.
    (
        r"(?i)k",
        r"(?i)[Kk\x{212A}]",
        &[("\u{212A}", true), ("K", true)],
    ),
    (r"(?i)\Qs\E", r"(?i)[Ss\x{17F}]", &[("\u{17F}", true)]),
    (r"(?i)\x{212A}", r"(?i)[Kk\x{212A}]", &[("k", true)]),
    (
        r"(?i)^[a-z]+$",
        r"(?i)^[A-Za-z\x{17F}\x{212A}]+$",
        &[("\u{17F}\u{212A}", true), ("Zz", true), ("é", false)],
    ),
    (
        r"(?i)[^k]",
        r"(?i)[^Kk\x{212A}]",
        &[("\u{212A}", false), ("x", true)],
    ),
    (
        r"(?i)^\W$",
        r"(?i)^[^0-9A-Z_a-z\x{17F}\x{212A}]$",
        &[("\u{17F}", false), ("-", true)],
    ),
    (
        r"(?i)^[X-c]$",
        r"(?i)^[A-CX-cx-z]$",
        &[("x", true), ("C", true), ("_", true)],
    ),
    (r"(?i)^€$", r"(?i)^€$", &[("€", true)]),
    (r"(?i)^[\x00-\x{10FFFF}]$", r"(?i)^(?s:.)$", &[("é", true)]),
];

#[test]
fn go_patterns_become_regex_lite_patterns_with_the_same_matches() {
    for (go, expected, texts) in TRANSLATED {
        let translated = translate(go).unwrap_or_else(|e| panic!("{go}: {e}"));
        assert_eq!(translated, *expected, "{go}");
        let regex = regex_lite::Regex::new(&translated)
            .unwrap_or_else(|e| panic!("{go} -> {translated}: {e}"));
        for (text, matches) in *texts {
            assert_eq!(regex.is_match(text), *matches, "{go} on {text:?}");
        }
    }
}

#[test]
fn what_would_match_differently_is_refused_with_its_place() {
    let refused = [
        (r"^\p{L}+$", r"\p{L}", 2, UNICODE_CLASS),
        (r"\pN", r"\pN", 1, UNICODE_CLASS),
        (r"[a\P{Greek}]", r"\P{Greek}", 3, UNICODE_CLASS),
        (r"(?i)^zürich$", "ü", 7, FOLDED_CASE),
        (r"(?i)[à-ÿ]", "à-ÿ", 6, FOLDED_CASE),
        (r"(?i)\xE9", r"\xE9", 5, FOLDED_CASE),
        (
            r"(?i)[\x{80}-\x{10FFFF}]",
            r"\x{80}-\x{10FFFF}",
            6,
            FOLDED_CASE,
        ),
    ];
    for (go, construct, at, reason) in refused {
        let refusal = translate(go).expect_err(go);
        assert_eq!(
            (
                refusal.construct.as_str(),
                refusal.at,
                refusal.reason.as_str()
            ),
            (construct, at, reason),
            "{go}"
        );
    }
    assert_eq!(
        translate(r"(?i)^zürich$").unwrap_err().to_string(),
        format!("ü at character 7: {FOLDED_CASE}")
    );
}

#[test]
fn what_go_refuses_is_refused() {
    let invalid = [
        (r"a**", "invalid nested repetition operator"),
        (r"a+?*", "invalid nested repetition operator"),
        (r"x{2}{3}", "invalid nested repetition operator"),
        (r"*a", "missing argument to repetition operator"),
        (r"a|*", "missing argument to repetition operator"),
        (r"(?i)*", "missing argument to repetition operator"),
        (r"x{1001}", "invalid repeat count"),
        (r"x{2,1}", "invalid repeat count"),
        (r"(a{10}){101}", "invalid repeat count"),
        (r"((a{2}){2}){251}", "invalid repeat count"),
        (r"(a", "missing closing )"),
        (r"a)", "unexpected )"),
        (r"[a", "missing closing ]"),
        (r"[z-a]", "invalid character class range"),
        (r"[[:foo:]]", "invalid character class range"),
        (r"\8", "invalid escape sequence"),
        (r"\1", "invalid escape sequence"),
        (r"\e", "invalid escape sequence"),
        (r"\C", "invalid escape sequence"),
        (r"\E", "invalid escape sequence"),
        (r"\x{110000}", "invalid escape sequence"),
        (r"\x{}", "invalid escape sequence"),
        (r"\xZ1", "invalid escape sequence"),
        (r"[\b]", "invalid escape sequence"),
        ("a\\", "trailing backslash at end of expression"),
        (r"(?P<a-b>x)", "invalid named capture"),
        (r"(?<>x)", "invalid named capture"),
        (r"(?=x)", "invalid or unsupported Perl syntax"),
        (r"(?x)a", "invalid or unsupported Perl syntax"),
        (r"(?i-)a", "invalid or unsupported Perl syntax"),
        (r"(?--i)a", "invalid or unsupported Perl syntax"),
    ];
    for (go, why) in invalid {
        let refusal = translate(go).expect_err(go);
        assert_eq!(refusal.reason, format!("{NOT_GO}: {why}"), "{go}");
    }
    for valid in [
        r"(a{10}){100}",
        r"(a{0}){1000}",
        r"(a*){1000}",
        r"^*$*",
        r"(?)",
    ] {
        assert!(translate(valid).is_ok(), "{valid}");
    }
}
