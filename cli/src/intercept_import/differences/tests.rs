//! Each difference between Intercept's rule language and the filter's, through an imported
//! policy: what the import writes or refuses, and what the filter then decides.

use serde_json::json;

use crate::intercept_import::import;
use crate::intercept_import::tests::Proxy;

/// A policy whose tool `t` has one rule with `body` (YAML, indented for a rule's fields).
fn rule(body: &str) -> String {
    format!(
        "version: \"1\"\ntools:\n  t:\n    rules:\n      - name: r\n        on_deny: no\n{body}"
    )
}

fn condition(path: &str, op: &str, value: &str) -> String {
    rule(&format!(
        "        conditions:\n          - {{path: \"{path}\", op: \"{op}\", value: {value}}}\n"
    ))
}

fn allowed(proxy: &mut Proxy, arguments: serde_json::Value) -> bool {
    proxy.call("t", arguments).is_none()
}

#[test]
fn go_regular_expressions_are_translated_to_the_same_matches() {
    let cases = [
        (r"'(?i)^k$'", r"(?i)^[Kk\x{212A}]$", "\u{212A}", "x"),
        (r"'^\Q1+1\E$'", r"^1\+1$", "1+1", "11"),
        (r"'^a{,2}$'", r"^a\{,2\}$", "a{,2}", "aa"),
        (r"'^\101$'", "^A$", "A", "\\101"),
        (r"'^\s$'", r"^[\t\n\x{C}\r ]$", " ", "\x0B"),
        (r"'^[[a]$'", r"^[\[a]$", "[", "b"),
    ];
    for (pattern, written, matching, other) in cases {
        let yaml = condition("args.x", "regex", pattern);
        let imported = import(&yaml).unwrap();
        assert_eq!(
            imported.policy["tools"]["t"]["rules"][0]["conditions"][0]["value"],
            written
        );
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
        let mut proxy = Proxy::from_yaml(&yaml);
        assert!(
            allowed(&mut proxy, json!({ "x": matching })),
            "{pattern} on {matching:?}"
        );
        assert!(
            !allowed(&mut proxy, json!({ "x": other })),
            "{pattern} on {other:?}"
        );
    }
}

#[test]
fn go_regular_expressions_that_would_match_differently_are_refused() {
    let refusals = [
        (
            r"'(?i)^zürich$'",
            "tools.t.rules[0].conditions[0].value: cannot import the regex \"(?i)^zürich$\": \
             ü at character 7: under (?i) Go matches this character in every case Unicode gives \
             it; the filter folds ASCII letters only",
        ),
        (
            r"'^\p{L}+$'",
            "tools.t.rules[0].conditions[0].value: cannot import the regex \"^\\\\p{L}+$\": \
             \\p{L} at character 2: a Unicode class; the filter's regular expressions have no \
             Unicode tables",
        ),
    ];
    for (pattern, message) in refusals {
        assert_eq!(
            import(&condition("args.x", "regex", pattern)).unwrap_err(),
            message
        );
    }
}

#[test]
fn a_null_argument_counts_as_absent_and_the_import_says_where_intercept_differs() {
    let yaml = condition("args.branch", "neq", "main");
    let imported = import(&yaml).unwrap();
    assert_eq!(
        imported.warnings,
        [
            "tools.t.rules[0].conditions[0]: a call whose args.branch is null passes this neq \
          condition in Intercept and is denied by the filter, which counts a null argument as \
          absent (a server may read null as its default, the very value the condition excludes)"
        ]
    );
    let mut proxy = Proxy::from_yaml(&yaml);
    assert!(allowed(&mut proxy, json!({"branch": "dev"})));
    assert!(!allowed(&mut proxy, json!({"branch": null})));
    assert!(!allowed(&mut proxy, json!({})));

    let yaml = condition("args.role", "not_in", "[admin]");
    assert_eq!(import(&yaml).unwrap().warnings.len(), 1);
    let mut proxy = Proxy::from_yaml(&yaml);
    assert!(allowed(&mut proxy, json!({"role": "viewer"})));
    assert!(!allowed(&mut proxy, json!({"role": null})));

    // Where Intercept equals a null argument, there is nothing to import it as.
    for (op, value) in [
        ("eq", "null"),
        ("neq", "~"),
        ("in", "[a, null]"),
        ("eq", "'<nil>'"),
    ] {
        let refused = import(&condition("args.x", op, value)).unwrap_err();
        assert!(
            refused.starts_with("tools.t.rules[0].conditions[0].value: compares with ")
                && refused.ends_with("the filter counts a null argument as absent and has no such comparison: use exists"),
            "{op} {value}: {refused}"
        );
    }
    // `exists` reads null as absent on both sides: nothing to say.
    assert!(import(&condition("args.x", "exists", "true"))
        .unwrap()
        .warnings
        .is_empty());
}

#[test]
fn numbers_compared_as_text_are_reported() {
    for value in ["'1000000'", "5.0", "[a, b]", "'[a b]'", "{k: v}"] {
        let warnings = import(&condition("args.x", "eq", value)).unwrap().warnings;
        assert!(
            warnings.len() == 1
                && warnings[0].contains("Intercept writes numbers, lists and mappings as Go does"),
            "{value}: {warnings:?}"
        );
    }
    for value in ["usd", "5", "true", "'a[1]'"] {
        assert!(
            import(&condition("args.x", "eq", value))
                .unwrap()
                .warnings
                .is_empty(),
            "{value}"
        );
    }
}

#[test]
fn an_amount_without_a_limit_is_still_checked() {
    let yaml = rule(
        "        conditions:\n          - {path: \"args.to\", op: \"exists\", value: true}\n        \
         state: {counter: spend, window: day, increment_from: args.amount}\n",
    );
    let mut proxy = Proxy::from_yaml(&yaml);
    assert!(allowed(&mut proxy, json!({"to": "a", "amount": 5})));
    for arguments in [
        json!({"to": "a"}),
        json!({"to": "a", "amount": "5"}),
        json!({"to": "a", "amount": null}),
    ] {
        proxy.denied_with(
            "t",
            arguments,
            "charges its counter by args.amount, which must be a number of at least 0",
        );
    }
}

#[test]
fn increment_beside_increment_from_is_dropped_as_intercept_ignores_it() {
    let yaml = rule(
        "        conditions:\n          - {path: \"state.t.units\", op: \"lte\", value: 10}\n        \
         state: {counter: units, window: day, increment: 1, increment_from: args.n}\n",
    );
    let imported = import(&yaml).unwrap();
    assert_eq!(
        imported.warnings,
        ["tools.t.rules[0].state.increment: 1 dropped: Intercept charges increment_from and ignores increment"]
    );
    assert_eq!(
        imported.policy["tools"]["t"]["rules"][0]["state"],
        json!({"counter": "units", "window": "day", "increment_from": "args.n"})
    );
    let mut proxy = Proxy::from_yaml(&yaml);
    assert!(allowed(&mut proxy, json!({"n": 6})));
    assert!(
        !allowed(&mut proxy, json!({"n": 6})),
        "6 + 6 is over 10: charged by n, not by 1"
    );

    let empty = rule(
        "        conditions:\n          - {path: \"state.t.units\", op: \"lte\", value: 10}\n        \
         state: {counter: units, window: day, increment: 4, increment_from: ''}\n",
    );
    let imported = import(&empty).unwrap();
    assert_eq!(
        imported.policy["tools"]["t"]["rules"][0]["state"]["increment"],
        4
    );
    assert!(
        imported.warnings[0].starts_with("tools.t.rules[0].state.increment_from: empty, dropped")
    );
}

#[test]
fn a_negative_increment_is_refused_unless_increment_from_decides() {
    let state = |fields: &str| {
        rule(&format!(
            "        conditions:\n          - {{path: \"state.t.units\", op: \"lte\", value: 10}}\n        \
             state: {{counter: units, window: day, {fields}}}\n"
        ))
    };
    assert_eq!(
        import(&state("increment: -2")).unwrap_err(),
        "tools.t.rules[0].state.increment: -2 would lower the counter on every call, as Intercept \
         lets it; the filter refuses a negative amount, fixed or from an argument: a call never \
         gives budget back"
    );
    let imported = import(&state("increment: -2, increment_from: args.n")).unwrap();
    assert_eq!(imported.warnings.len(), 1, "{:?}", imported.warnings);
}
