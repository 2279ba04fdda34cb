use super::*;
use crate::test_support::test;

const TRUE_POSITIVES: &str = include_str!("../corpus/true_positives.txt");
const FALSE_POSITIVES: &str = include_str!("../corpus/false_positives.txt");

/// One corpus line: its label, its text (markers removed) and the ranges marked.
struct Case {
    line: usize,
    label: String,
    text: String,
    marked: Vec<(usize, usize)>,
}

fn cases(corpus: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (n, line) in corpus.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (label, json) = line
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("line {}: no text", n + 1));
        let written: String = serde_json::from_str(json.trim())
            .unwrap_or_else(|e| panic!("line {}: not a JSON string: {e}", n + 1));
        let mut text = String::new();
        let mut marked = Vec::new();
        let mut open = None;
        for c in written.chars() {
            match c {
                '⟦' => open = Some(text.len()),
                '⟧' => marked.push((open.take().expect("⟧ without ⟦"), text.len())),
                c => text.push(c),
            }
        }
        assert!(open.is_none(), "line {}: ⟦ without ⟧", n + 1);
        cases.push(Case {
            line: n + 1,
            label: label.to_owned(),
            text,
            marked,
        });
    }
    cases
}

fn ranges(findings: &[Finding], detector: &str) -> Vec<(usize, usize)> {
    findings
        .iter()
        .filter(|f| f.detector == detector)
        .map(|f| (f.start, f.end))
        .collect()
}

#[test]
fn corpus() {
    let positives = cases(TRUE_POSITIVES);
    let negatives = cases(FALSE_POSITIVES);
    assert!(positives.len() >= 40, "{} true positives", positives.len());
    assert!(negatives.len() >= 40, "{} false positives", negatives.len());
    let all = Detectors::all();
    let mut failures = Vec::new();

    // Every detector at once: exactly the marked ranges, by the line's detector.
    for case in &positives {
        assert!(
            BUILTIN_NAMES.contains(&case.label.as_str()),
            "true_positives.txt line {}: no detector {:?}",
            case.line,
            case.label
        );
        let found = all.find(&case.text);
        let expected: Vec<Finding> = case
            .marked
            .iter()
            .map(|&(start, end)| Finding {
                detector: BUILTIN_NAMES
                    .iter()
                    .find(|n| **n == case.label)
                    .copied()
                    .unwrap_or_default(),
                start,
                end,
            })
            .collect();
        if found != expected {
            failures.push(format!(
                "true_positives.txt line {}: expected {expected:?}, found {found:?}",
                case.line
            ));
        }
    }
    for case in &negatives {
        let found = all.find(&case.text);
        if !found.is_empty() {
            failures.push(format!(
                "false_positives.txt line {} ({}): found {found:?}",
                case.line, case.label
            ));
        }
    }

    // Each detector alone, over every line: precision and recall.
    println!(
        "{:<16} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "detector", "tp", "fp", "fn", "precision", "recall"
    );
    for name in BUILTIN_NAMES {
        let alone = Detectors::new(&[name], &[]).unwrap();
        let (mut tp, mut fp, mut missed) = (0usize, 0usize, 0usize);
        for case in positives.iter().chain(&negatives) {
            let found = ranges(&alone.find(&case.text), name);
            let expected: &[(usize, usize)] = if case.label == name {
                &case.marked
            } else {
                &[]
            };
            tp += found.iter().filter(|r| expected.contains(r)).count();
            let wrong = found.iter().filter(|r| !expected.contains(r)).count();
            let not_found = expected.iter().filter(|r| !found.contains(r)).count();
            if wrong > 0 {
                failures.push(format!(
                    "{name} alone, line {} ({}): found {found:?}, expected {expected:?}",
                    case.line, case.label
                ));
            }
            fp += wrong;
            missed += not_found;
        }
        let ratio = |n: usize, d: usize| if d == 0 { 1.0 } else { n as f64 / d as f64 };
        println!(
            "{name:<16} {tp:>4} {fp:>4} {missed:>4} {:>9.3} {:>7.3}",
            ratio(tp, tp + fp),
            ratio(tp, tp + missed)
        );
    }
    println!(
        "{} true-positive lines, {} false-positive lines",
        positives.len(),
        negatives.len()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn find_one(detectors: &Detectors, text: &str) -> Vec<(String, String)> {
    detectors
        .find(text)
        .iter()
        .map(|f| (f.detector.to_owned(), text[f.start..f.end].to_owned()))
        .collect()
}

/// What `name` alone finds in `text`, as strings.
fn matches(name: &str, text: &str) -> Vec<String> {
    let detectors = Detectors::new(&[name], &[]).unwrap();
    find_one(&detectors, text)
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn aws_access_keys_stand_alone_and_are_base32() {
    let key = "AKIAIOSFODNN7EXAMPLE";
    assert_eq!(matches("aws_access_key", key), [key]);
    assert_eq!(matches("aws_access_key", &format!("\"{key}\"")), [key]);
    assert_eq!(matches("aws_access_key", &format!("x={key};")), [key]);
    assert_eq!(matches("aws_access_key", &format!("é{key}é")), [key]);
    for text in [
        format!("X{key}"),
        format!("{key}X"),
        format!("_{key}"),
        format!("{key}_"),
        "AKIAIOSFODNN7EXAMP1E".to_owned(), // 1 is not base32
        "AKIAIOSFODNN8EXAMPLE".to_owned(),
        "AKIAIOSFODNN0EXAMPLE".to_owned(),
        "AKIAIOSFODNN9EXAMPLE".to_owned(),
        "AKIAIOSFODNn7EXAMPLE".to_owned(),
        "ABIAIOSFODNN7EXAMPLE".to_owned(),
        "AKIA".to_owned(),
        "AKIAIOSFODNN7EXAMPL".to_owned(),
    ] {
        assert!(matches("aws_access_key", &text).is_empty(), "{text}");
    }
}

#[test]
fn github_tokens_have_exact_lengths() {
    let body = "A".repeat(36);
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        let token = format!("{prefix}{body}");
        assert_eq!(
            matches("github_token", &format!("t {token}.")),
            [token.as_str()]
        );
        assert!(matches("github_token", &format!("{token}a")).is_empty());
        assert!(matches("github_token", &format!("{token}_")).is_empty());
        assert!(matches("github_token", &format!("a{token}")).is_empty());
        assert!(matches("github_token", &token[..token.len() - 1]).is_empty());
    }
    for not in ["gha_", "ghP_", "gp_"] {
        assert!(matches("github_token", &format!("{not}{body}")).is_empty());
    }
    assert!(matches(
        "github_token",
        &format!("ghp_{}-{}", &body[..18], &body[..17])
    )
    .is_empty());
    let fine = format!("github_pat_{}_{}", "1".repeat(22), "b".repeat(59));
    assert_eq!(matches("github_token", &fine), [fine.as_str()]);
    assert!(matches("github_token", &format!("{fine}x")).is_empty());
    assert!(matches("github_token", &fine[..fine.len() - 1]).is_empty());
}

#[test]
fn slack_tokens_have_a_shape() {
    let bot = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
    assert_eq!(matches("slack_token", bot), [bot]);
    assert_eq!(matches("slack_token", &format!("({bot})")), [bot]);
    // A trailing dash is punctuation, not part of the token.
    assert_eq!(matches("slack_token", &format!("{bot}- next")), [bot]);
    for text in [
        "xoxb-your-token-here-please",
        "xoxb-1234567890--1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-abc-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-1234567890-1234567890123-Ab",
        "xoxb-12345",
        "xoxc-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "axoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx_",
    ] {
        assert!(matches("slack_token", text).is_empty(), "{text}");
    }
}

const BODY: &str = "VEhJUyBJUyBBIEZBS0UgUFJJVkFURSBLRVkgRk9SIFRIRSBERVRFQ1RPUiBDT1JQ\n\
                    VVMsIE5PVCBBIFJFQUwgT05FLiBUSElTIElTIEEgRkFLRSBQUklWQVRFIEtFWSBG";

#[test]
fn private_keys_with_line_breaks_and_escapes() {
    let key = format!("-----BEGIN RSA PRIVATE KEY-----\n{BODY}\n-----END RSA PRIVATE KEY-----");
    assert_eq!(matches("private_key", &format!("x{key}y")), [key.as_str()]);
    // As a JSON string's text holds it when the key was escaped twice: `\n` as two bytes.
    let escaped = key.replace('\n', "\\n");
    assert_eq!(
        matches("private_key", &format!("\"{escaped}\\n\"")),
        [escaped]
    );
    let crlf = key.replace('\n', "\r\n");
    assert_eq!(matches("private_key", &crlf), [crlf.as_str()]);
    // Cut off: the body up to its last base64 character.
    let cut = format!("-----BEGIN PRIVATE KEY-----\n{BODY}");
    assert_eq!(matches("private_key", &format!("{cut}\n\"}}")), [cut]);
    // Too little body, or not a private key.
    let short =
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
    for text in [
        short.to_owned(),
        key.replace("PRIVATE", "PUBLIC"),
        key.replace("RSA PRIVATE KEY", "CERTIFICATE"),
        key.replace("-----BEGIN", "----BEGIN"),
        key.replace("BEGIN RSA", "BEGINRSA"),
        "-----BEGIN PRIVATE KEY-----".to_owned(),
    ] {
        assert!(matches("private_key", &text).is_empty(), "{text}");
    }
    // A body that is not base64 ends the candidate.
    let broken =
        format!("-----BEGIN PRIVATE KEY-----\nnot {{ base64 }}\n{BODY}\n-----END PRIVATE KEY-----");
    assert!(matches("private_key", &broken).is_empty());
}

#[test]
fn jwts_have_a_json_header_with_alg() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZw";
    assert_eq!(matches("jwt", jwt), [jwt]);
    assert_eq!(matches("jwt", &format!("Bearer {jwt}.")), [jwt]);
    assert_eq!(matches("jwt", &format!("a={jwt}&b")), [jwt]);
    let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
    assert_eq!(matches("jwt", &format!("{none} ")), [none]);
    for text in [
        format!("x{jwt}"),
        format!("{jwt}.more"),
        jwt.replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJ0eXAiOiJKV1QifQ"),
        jwt.replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJub3QganNvbg"),
        jwt.replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJhbGciOjI1Nn0"),
        // Duplicate keys: not JSON the engine accepts.
        jwt.replace(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "eyJhbGciOiJIUzI1NiIsImFsZyI6IkhTMjU2In0",
        ),
        jwt.split('.').take(2).collect::<Vec<_>>().join("."),
        format!("{}.", jwt.split('.').take(2).collect::<Vec<_>>().join(".")),
        "eyJhbGciOiJIUzI1NiJ9..c2ln".to_owned(),
        // A segment whose length no base64 has.
        jwt.replace("c2lnbmF0dXJlLXNpZw", "c2lnbmF0dXJlLXNpZwab1"),
    ] {
        assert!(matches("jwt", &text).is_empty(), "{text}");
    }
}

#[test]
fn emails_are_a_pragmatic_subset() {
    for (text, found) in [
        ("a@example.com", "a@example.com"),
        (
            "(a.b-c_d+e%f@ex-ample.example.travel).",
            "a.b-c_d+e%f@ex-ample.example.travel",
        ),
        ("to: x@example.com.", "x@example.com"),
        ("..x@example.com", "x@example.com"),
        ("é x@example.com é", "x@example.com"),
        ("<x@example.xn--p1ai>", "x@example.xn--p1ai"),
    ] {
        assert_eq!(matches("email", text), [found], "{text}");
    }
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_label = format!("a@{}.com", "b".repeat(64));
    for text in [
        "a@example",
        "a@example.c",
        "a@example.c0m",
        "a@1.2.3",
        "a@example..com",
        "a@-example.com",
        "a@example-.com",
        "a.@example.com",
        "a..b@example.com",
        "@example.com",
        "a@",
        "a@.com",
        "logo@2x.png",
        "logo@2x.PNG",
        "a@example.com_x",
        "a@example.com@b",
        long_local.as_str(),
        long_label.as_str(),
    ] {
        assert!(matches("email", text).is_empty(), "{text}");
    }
}

#[test]
fn payment_cards_need_luhn_an_issuer_and_a_layout() {
    for (text, found) in [
        ("4111111111111111", "4111111111111111"),
        ("4111 1111 1111 1111", "4111 1111 1111 1111"),
        ("4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("[4111111111111111]", "4111111111111111"),
        ("4111111111111111 2024", "4111111111111111"),
        ("4111111111111111.", "4111111111111111"),
        ("3782 822463 10005", "3782 822463 10005"),
        ("4000 0000 0000 0000 006", "4000 0000 0000 0000 006"),
        ("a 4111111111111111, b", "4111111111111111"),
    ] {
        assert_eq!(matches("payment_card", text), [found], "{text}");
    }
    for text in [
        "4111111111111112",         // Luhn
        "1234567812345670",         // no issuer
        "41111111111111111",        // 17 digits: not a Visa length
        "411111111111111111111",    // too long
        "4111  1111 1111 1111",     // double space
        "4111 1111-1111 1111",      // mixed separators
        "41 1111 1111 1111 11",     // layout
        "4111111111111111x",        // in a word
        "x4111111111111111",        // in a word
        "4111111111111111.25",      // a decimal
        "12.4111111111111111",      // a decimal
        "1-4111111111111111",       // a dashed id
        "4111111111111111-2",       // a dashed id
        "+4111111111111111",        // a phone number
        "1111 4111 1111 1111 1111", // a chain
        "4111 1111 1111 1111 1",    // a chain
    ] {
        assert!(matches("payment_card", text).is_empty(), "{text}");
    }
    // An unseparated number followed by a spaced one is two numbers.
    assert_eq!(
        matches("payment_card", "5555555555554444 5555"),
        ["5555555555554444"]
    );
    // Issuer lengths: Amex is 15, Mastercard 16.
    assert!(matches("payment_card", "3782822463100051").is_empty());
    assert!(matches("payment_card", "555555555555444").is_empty());
}

#[test]
fn ibans_need_their_country_length_and_mod_97() {
    for (text, found) in [
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
        (
            "(GB82 WEST 1234 5698 7654 32).",
            "GB82 WEST 1234 5698 7654 32",
        ),
        ("BE68 5390 0754 7034 x", "BE68 5390 0754 7034"),
        ("NO9386011117947", "NO9386011117947"),
    ] {
        assert_eq!(matches("iban", text), [found], "{text}");
    }
    for text in [
        "GB82WEST12345698765433",
        "GB28WEST12345698765432",
        "GB82WEST1234569876543",
        "GB82WEST123456987654321",
        "GB82WEST12345698765432X",
        "XGB82WEST12345698765432",
        "GB82  WEST 1234 5698 7654 32",
        "GB82 WEST1234 5698 7654 32",
        "GB82-WEST-1234-5698-7654-32",
        "gb82west12345698765432",
        "ZZ82WEST12345698765432",
    ] {
        assert!(matches("iban", text).is_empty(), "{text}");
    }
}

#[test]
fn mod_97_and_luhn() {
    assert!(mod97(b"WEST12345698765432GB82".iter()));
    assert!(!mod97(b"WEST12345698765432GB83".iter()));
    assert!(luhn(&[0]));
    assert!(luhn(&[1, 8]));
    assert!(!luhn(&[1, 9]));
}

#[test]
fn findings_are_leftmost_then_longest_and_never_overlap() {
    let all = Detectors::all();
    // The AWS key is the address's local part: the longer match, the address, wins.
    assert_eq!(
        find_one(&all, "AKIAIOSFODNN7EXAMPLE@example.com"),
        [("email".into(), "AKIAIOSFODNN7EXAMPLE@example.com".into())]
    );
    let text = "a@example.com 4111111111111111 AKIAIOSFODNN7EXAMPLE GB82WEST12345698765432";
    let names: Vec<_> = all.find(text).iter().map(|f| f.detector).collect();
    assert_eq!(names, ["email", "payment_card", "aws_access_key", "iban"]);
    // A custom detector overlapping a built-in one at the same start and end: the built-in
    // one is listed first.
    let custom = Detectors::new(
        &BUILTIN_NAMES,
        &[CustomSpec {
            name: "visa",
            regex: r"\b4[0-9]{15}\b",
        }],
    )
    .unwrap();
    assert_eq!(
        find_one(&custom, "4111111111111111"),
        [("payment_card".into(), "4111111111111111".into())]
    );
    // A longer custom match at the same start wins.
    let custom = Detectors::new(
        &BUILTIN_NAMES,
        &[CustomSpec {
            name: "card_line",
            regex: r"card 4[0-9]{15} exp [0-9/]+",
        }],
    )
    .unwrap();
    assert_eq!(
        find_one(&custom, "card 4111111111111111 exp 12/30"),
        [("card_line".into(), "card 4111111111111111 exp 12/30".into())]
    );
    let findings = custom.find("x card 4111111111111111 exp 12/30 y 4111111111111111");
    for pair in findings.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{findings:?}");
    }
}

#[test]
fn settling_overlaps_is_a_sort_then_leftmost_first() {
    // Every detector alone, and two custom regexes overlapping the built-ins and each other;
    // then the reference: all their matches sorted (start, longer first, detector), taking each
    // that starts after the last one taken.
    let customs = [
        CustomSpec {
            name: "digits",
            regex: r"[0-9]{4}",
        },
        CustomSpec {
            name: "at_word",
            regex: r"[a-z]+@",
        },
    ];
    let together = Detectors::new(&BUILTIN_NAMES, &customs).unwrap();
    let mut alone: Vec<Detectors> = BUILTIN_NAMES
        .iter()
        .map(|name| Detectors::new(&[name], &[]).unwrap())
        .collect();
    alone.extend(
        customs
            .iter()
            .map(|c| Detectors::new(&[], std::slice::from_ref(c)).unwrap()),
    );
    let names = together.names();
    let mut texts: Vec<String> = cases(TRUE_POSITIVES)
        .into_iter()
        .chain(cases(FALSE_POSITIVES))
        .map(|c| c.text)
        .collect();
    texts.push(texts.concat());
    texts.push("a.4111111111111111@example.com 4111 1111 1111 1111 bob@example.com".to_owned());
    for text in &texts {
        let mut all: Vec<(usize, std::cmp::Reverse<usize>, usize)> = alone
            .iter()
            .enumerate()
            .flat_map(|(d, detectors)| {
                detectors
                    .find(text)
                    .into_iter()
                    .map(move |f| (f.start, std::cmp::Reverse(f.end), d))
            })
            .collect();
        all.sort();
        let mut covered = 0;
        let expected: Vec<Finding> = all
            .into_iter()
            .filter(|&(start, end, _)| {
                let keep = start >= covered;
                if keep {
                    covered = end.0;
                }
                keep
            })
            .map(|(start, end, d)| Finding {
                detector: names[d],
                start,
                end: end.0,
            })
            .collect();
        assert_eq!(together.find(text), expected, "{text:?}");
    }
}

#[test]
fn redaction_names_each_detector_and_counts() {
    let all = Detectors::all();
    let text =
        "key AKIAIOSFODNN7EXAMPLE, mail a@example.com and b@example.com; card 4111 1111 1111 1111.";
    let redacted = all.redact(text);
    assert_eq!(
        redacted.text,
        "key [redacted:aws_access_key], mail [redacted:email] and [redacted:email]; \
         card [redacted:payment_card]."
    );
    assert_eq!(
        redacted.counts,
        [("aws_access_key", 1), ("email", 2), ("payment_card", 1)]
    );
    // Nothing found: the text is borrowed, not copied.
    let clean = all.redact("nothing to see");
    assert!(matches!(clean.text, Cow::Borrowed("nothing to see")));
    assert!(clean.counts.is_empty());
    // A match at either end, and the whole text.
    assert_eq!(
        all.redact("AKIAIOSFODNN7EXAMPLE").text,
        "[redacted:aws_access_key]"
    );
    assert_eq!(
        all.redact("é AKIAIOSFODNN7EXAMPLE é").text,
        "é [redacted:aws_access_key] é"
    );
    let custom = Detectors::new(
        &[],
        &[CustomSpec {
            name: "ticket",
            regex: r"TICKET-[0-9]+",
        }],
    )
    .unwrap();
    let redacted = custom.redact("see TICKET-42, TICKET-7");
    assert_eq!(redacted.text, "see [redacted:ticket], [redacted:ticket]");
    assert_eq!(redacted.counts, [("ticket", 2)]);
}

#[test]
fn a_subset_runs_only_what_it_names() {
    let text = "AKIAIOSFODNN7EXAMPLE a@example.com";
    let email = Detectors::new(&["email"], &[]).unwrap();
    assert_eq!(email.names(), ["email"]);
    assert_eq!(
        find_one(&email, text),
        [("email".into(), "a@example.com".into())]
    );
    let none = Detectors::new(&[], &[]).unwrap();
    assert!(none.names().is_empty());
    assert!(none.find(text).is_empty());
    assert_eq!(Detectors::all().names(), BUILTIN_NAMES);
    let both = Detectors::new(
        &["iban", "jwt"],
        &[CustomSpec {
            name: "x",
            regex: "x",
        }],
    )
    .unwrap();
    assert_eq!(both.names(), ["jwt", "iban", "x"]);
}

#[test]
fn bad_detectors_are_refused_with_their_index() {
    let custom = |name, regex| CustomSpec { name, regex };
    let err = Detectors::new(&["email", "ssn"], &[]).unwrap_err();
    assert!(matches!(err, DetectorError::Builtin { index: 1, .. }));
    assert!(
        err.to_string().starts_with("unknown detector \"ssn\""),
        "{err}"
    );
    let err = Detectors::new(&["email", "email"], &[]).unwrap_err();
    assert_eq!(err.to_string(), "detector \"email\" is listed twice");

    let err = Detectors::new(&[], &[custom("ok", "a"), custom("bad", "(unclosed")]).unwrap_err();
    assert!(matches!(err, DetectorError::Regex { index: 1, .. }));
    assert!(
        err.to_string().starts_with("invalid regex \"(unclosed\": "),
        "{err}"
    );
    let err = Detectors::new(&[], &[custom("empty", "a*")]).unwrap_err();
    assert_eq!(err.to_string(), "regex \"a*\" matches the empty string");
    assert!(matches!(err, DetectorError::Regex { index: 0, .. }));

    let long = "a".repeat(65);
    for name in ["", "Upper", "1st", "with-dash", "é", &long] {
        let err = Detectors::new(&[], &[custom(name, "a")]).unwrap_err();
        assert!(
            matches!(err, DetectorError::Name { index: 0, .. }),
            "{name}"
        );
    }
    let err = Detectors::new(&[], &[custom("email", "a")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "detector name \"email\" is a built-in detector's"
    );
    let err = Detectors::new(&[], &[custom("x", "a"), custom("x", "b")]).unwrap_err();
    assert!(matches!(err, DetectorError::Name { index: 1, .. }));
    assert_eq!(err.to_string(), "detector name \"x\" is used twice");
    assert!(Detectors::new(&[], &[custom("a_1", "a")]).is_ok());
}

#[test]
fn custom_regexes_are_ascii_and_skip_empty_matches() {
    let detectors = Detectors::new(
        &[],
        &[CustomSpec {
            name: "word_edge",
            regex: r"\bid-[0-9]+\b|\b",
        }],
    )
    .unwrap();
    let found = find_one(&detectors, "é id-42 x");
    assert_eq!(found, [("word_edge".into(), "id-42".into())]);
}

#[test]
fn a_literal_prefix_is_found_only_where_the_syntax_shows_one() {
    for (pattern, prefix) in [
        ("TICKET-[0-9]+", Some("TICKET-")),
        (r"\bsk_live_[A-Za-z0-9]{24}\b", Some("sk_live_")),
        ("INT-[0-9]{6}", Some("INT-")),
        ("ab+c", Some("a")),
        ("abc?", Some("ab")),
        ("a{2}b", None),
        ("a*b", None),
        ("x-(?i)abc", Some("x-")),
        ("(?i)ticket-[0-9]+", None),
        ("[A-Z]{3}-[0-9]{6}", None),
        ("TICKET-1|BUG-2", None),
        (r"\d{4}", None),
        ("^abc", None),
        (".abc", None),
    ] {
        assert_eq!(required_prefix(pattern).as_deref(), prefix, "{pattern}");
    }
}

#[test]
fn a_prefix_finds_what_the_whole_regex_finds() {
    let texts = [
        "TICKET-1 TICKET-22 xTICKET-333 TICKET- TICKET-4444_ TICKET-TICKET-5",
        "aab abbbc ac abc abcabc a",
        "é TICKET-12 日本 TICKET-7é",
        "",
        "TICKET",
    ];
    let patterns = [
        "TICKET-[0-9]+",
        r"\bTICKET-[0-9]+\b",
        "TICKET-[0-9]*",
        "ab+c",
        "abc?",
        "a[bc]+",
        r"TICKET-\d+é",
        "x-(?i)abc",
    ];
    for pattern in patterns {
        let regex = regex_lite::Regex::new(pattern).unwrap();
        let detectors = Detectors::new(
            &[],
            &[CustomSpec {
                name: "custom",
                regex: pattern,
            }],
        )
        .unwrap();
        assert!(detectors.custom[0].prefix.is_some(), "{pattern}");
        for text in texts {
            let expected: Vec<(usize, usize)> = regex
                .find_iter(text)
                .map(|m| (m.start(), m.end()))
                .collect();
            let found: Vec<(usize, usize)> = detectors
                .find(text)
                .iter()
                .map(|f| (f.start, f.end))
                .collect();
            assert_eq!(found, expected, "{pattern} in {text:?}");
        }
    }
}

#[test]
fn findings_never_print_what_they_found() {
    let secrets = [
        "AKIAIOSFODNN7EXAMPLE",
        "4111 1111 1111 1111",
        "alice@example.com",
        "GB82WEST12345698765432",
        "ghp_EXAMPLE0token0for0tests0000000000000",
    ];
    let custom = Detectors::new(
        &BUILTIN_NAMES,
        &[CustomSpec {
            name: "internal",
            regex: "INT-[0-9]{6}",
        }],
    )
    .unwrap();
    let text = format!("{} INT-123456", secrets.join(" and "));
    let findings = custom.find(&text);
    assert_eq!(findings.len(), secrets.len() + 1);
    let redacted = custom.redact(&text);
    let printed = format!(
        "{findings:?} {findings:#?} {} {redacted:?} {}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        redacted.text
    );
    for secret in secrets.iter().chain(&["INT-123456", "123456"]) {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    assert_eq!(findings[0].to_string(), "aws_access_key at bytes 0..20");
}

#[test]
fn scanning_survives_any_bytes() {
    let all = Detectors::all();
    // Truncated candidates at the very end of the text, and multi-byte characters around them.
    for text in [
        "",
        "A",
        "AKIA",
        "gh",
        "ghp_",
        "xox",
        "xoxb-",
        "-",
        "-----BEGIN ",
        "-----BEGIN RSA PRIVATE KEY-----",
        "eyJ",
        "eyJ.",
        "eyJ..",
        "@",
        "a@",
        "@b",
        "4",
        "4111 ",
        "4111-",
        "GB",
        "GB8",
        "GB82",
        "GB82 ",
        "€4111111111111111€",
        "日本 a@example.com 語",
        "\u{0}AKIAIOSFODNN7EXAMPLE\u{0}",
    ] {
        let _ = all.find(text);
        let redacted = all.redact(text);
        assert!(redacted.text.len() <= text.len().max(64));
    }
    // Every prefix of a text full of candidates.
    let text = format!(
        "{} -----BEGIN PRIVATE KEY-----\n{BODY}\n-----END PRIVATE KEY----- eyJhbGciOiJub25lIn0.eyJ9.",
        TRUE_POSITIVES.lines().take(20).collect::<Vec<_>>().join(" ")
    );
    for end in (0..=text.len()).filter(|&e| text.is_char_boundary(e)) {
        for f in all.find(&text[..end]) {
            assert!(f.start < f.end && f.end <= end);
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
    }
}

/// Ten kilobytes of each kind of text a tool returns.
fn samples() -> Vec<(&'static str, String)> {
    let fill = |unit: &str| {
        let mut text = String::new();
        while text.len() < 10 * 1024 {
            text.push_str(unit);
        }
        text.truncate(10 * 1024);
        text
    };
    let prose = "The deployment finished at 12:04 and 3 of 5 replicas report healthy; the \
                 on-call engineer, Dana, checked the dashboards, restarted the web-7 node and \
                 filed ticket 48213 for the follow-up. Nothing else needs attention today. ";
    let json = r#"{"id":"550e8400-e29b-41d4-a716-446655440000","name":"report-2024-01-15.csv","size":48213,"modified":"2024-01-15T10:30:00Z","owner":"svc-reports","tags":["finance","Q1"],"sha":"9fceb02d0ae598e95dc970b74767f19372d61af8"},"#;
    let code = "fn main() {\n    let total: u64 = items.iter().map(|i| i.price * i.qty).sum();\n    println!(\"{total}\");\n    // TODO: handle errors, see https://example.com/docs#errors\n}\n";
    let base64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg";
    let numbers = "2024-01-15,48213,1701234567890,3.14159,415-555-0132,99.95,1234 5678,\n";
    let upper = "INFO ABCD EFGH AB12 CD34 GB82 WEST REQUEST OK DE12 3456 STATUS 200 ";
    let secrets = "user a@example.com key AKIAIOSFODNN7EXAMPLE card 4111 1111 1111 1111 iban GB82 WEST 1234 5698 7654 32 jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl and some ordinary words in between them ";
    vec![
        ("prose", fill(prose)),
        ("json listing", fill(json)),
        ("source code", fill(code)),
        ("base64", fill(base64)),
        ("numbers", fill(numbers)),
        ("uppercase", fill(upper)),
        ("dense secrets", fill(secrets)),
    ]
}

/// Microseconds per 10 KB of each sample, best of 20 rounds of 100, as a table; `now` reads a
/// clock in microseconds.
fn speed_report(now: &dyn Fn() -> f64) -> String {
    use std::fmt::Write;
    let all = Detectors::all();
    let custom = Detectors::new(
        &[],
        &[CustomSpec {
            name: "ticket",
            regex: r"\bTICKET-[0-9]{4,8}\b",
        }],
    )
    .unwrap();
    let unprefixed = Detectors::new(
        &[],
        &[CustomSpec {
            name: "ticket",
            regex: r"\b[A-Z]{6}-[0-9]{4,8}\b",
        }],
    )
    .unwrap();
    let time = |f: &dyn Fn() -> usize| {
        let mut best = f64::MAX;
        for _ in 0..20 {
            let start = now();
            let mut n = 0;
            for _ in 0..100 {
                n += f();
            }
            std::hint::black_box(n);
            best = best.min((now() - start) / 100.0);
        }
        best
    };
    // Compiled and warmed up before the clock starts (V8 tiers code up as it runs).
    for (_, text) in samples() {
        for _ in 0..50 {
            std::hint::black_box(all.find(&text));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>19} {:>14} {:>16} {:>18}",
        "µs per 10 KB", "find, all built-ins", "redact, all", "custom, prefix", "custom, no prefix"
    );
    for (name, text) in samples() {
        let find = time(&|| all.find(std::hint::black_box(&text)).len());
        let redact = time(&|| all.redact(std::hint::black_box(&text)).counts.len());
        let regex = time(&|| custom.find(std::hint::black_box(&text)).len());
        let whole = time(&|| unprefixed.find(std::hint::black_box(&text)).len());
        let _ = writeln!(
            out,
            "{name:<14} {find:>19.1} {redact:>14.1} {regex:>16.1} {whole:>18.1}"
        );
    }
    let _ = write!(out, "\neach alone     ");
    for detector in BUILTIN_NAMES {
        let _ = write!(out, " {detector:>14}");
    }
    let _ = writeln!(out);
    for (name, text) in samples() {
        let _ = write!(out, "{name:<14} ");
        for detector in BUILTIN_NAMES {
            let alone = Detectors::new(&[detector], &[]).unwrap();
            let alone = time(&|| alone.find(std::hint::black_box(&text)).len());
            let _ = write!(out, " {alone:>14.1}");
        }
        let _ = writeln!(out);
    }
    out
}

/// `cargo test --release -p mcp-policy-engine --lib guard::detectors -- --ignored --nocapture`
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore]
fn speed() {
    let start = std::time::Instant::now();
    println!("{}", speed_report(&|| start.elapsed().as_secs_f64() * 1e6));
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance)]
    fn now() -> f64;
}

/// In the test runner's V8 (Envoy's Wasm runtime is V8 too):
/// `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test --release
/// -p mcp-policy-engine --target wasm32-unknown-unknown --lib guard::detectors -- --include-ignored`
#[cfg(target_arch = "wasm32")]
#[test]
#[ignore]
fn speed() {
    wasm_bindgen_test::console_log!("{}", speed_report(&|| now() * 1e3));
}
