//! `mcp-policy import FILE.yaml`: a PolicyLayer Intercept policy (YAML) as this filter's JSON
//! policy, same meanings. The rule language is the same on both sides; what changes:
//! - Intercept's `default` is `allow` when omitted (ours is `deny`), so it is written out;
//! - Intercept ignores unknown keys; they are dropped here with a warning (our loader would
//!   refuse them);
//! - `version: 1` (an unquoted YAML number) becomes `"1"`; `increment: 0` means 1 in Intercept;
//! - where the two rule languages differ (`differences`): Go regular expressions are translated
//!   or refused, null comparisons and negative increments refused, `increment` beside
//!   `increment_from` dropped, and the deliberate differences reported.
//!
//! The result is validated with the filter's own loader before it is returned.

mod differences;

use serde_json::{Map, Value};

use mcp_policy_engine::load_policy;

#[derive(Debug)]
pub struct Imported {
    pub policy: Value,
    pub warnings: Vec<String>,
}

const TOP: &[&str] = &["version", "description", "default", "hide", "tools"];
const RULE: &[&str] = &[
    "name",
    "action",
    "on_deny",
    "conditions",
    "rate_limit",
    "state",
];
const CONDITION: &[&str] = &["path", "op", "value"];
const STATE: &[&str] = &["counter", "window", "increment", "increment_from"];

fn keep_known(
    object: &Map<String, Value>,
    known: &[&str],
    path: &str,
    warnings: &mut Vec<String>,
) -> Map<String, Value> {
    let mut kept = Map::new();
    for (key, value) in object {
        if known.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        } else {
            warnings.push(format!(
                "{path}.{key}: ignored (Intercept ignores unknown keys too)"
            ));
        }
    }
    kept
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{path}: expected a mapping"))
}

pub fn import(yaml: &str) -> Result<Imported, String> {
    let document: Value =
        serde_norway::from_str(yaml).map_err(|e| format!("not valid YAML: {e}"))?;
    let mut warnings = Vec::new();
    let mut top = keep_known(
        object(&document, "(document)")?,
        TOP,
        "(document)",
        &mut warnings,
    );

    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {
            top.insert("version".into(), Value::String("1".into()));
        }
        _ => {}
    }
    top.entry("default")
        .or_insert_with(|| Value::String("allow".into()));

    if let Some(tools) = top.get("tools").cloned() {
        let mut converted = Map::new();
        for (tool, entry) in object(&tools, "tools")? {
            let path = format!("tools.{tool}");
            let entry = match entry {
                Value::Null => Map::new(),
                other => keep_known(object(other, &path)?, &["rules"], &path, &mut warnings),
            };
            let rules = match entry.get("rules") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(rules)) => rules
                    .iter()
                    .enumerate()
                    .map(|(i, rule)| {
                        convert_rule(rule, &format!("{path}.rules[{i}]"), &mut warnings)
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("{path}.rules: expected a list")),
            };
            let mut out = Map::new();
            out.insert("rules".into(), Value::Array(rules));
            converted.insert(tool.clone(), Value::Object(out));
        }
        top.insert("tools".into(), Value::Object(converted));
    }

    let policy = Value::Object(top);
    load_policy(policy.to_string().as_bytes())
        .map_err(|e| format!("the converted policy is invalid: {e}"))?;
    Ok(Imported { policy, warnings })
}

fn convert_rule(rule: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Value, String> {
    let mut rule = keep_known(object(rule, path)?, RULE, path, warnings);
    if let Some(Value::Array(conditions)) = rule.get("conditions").cloned() {
        let kept: Vec<Value> = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let condition_path = format!("{path}.conditions[{i}]");
                let mut condition = keep_known(
                    object(c, &condition_path)?,
                    CONDITION,
                    &condition_path,
                    warnings,
                );
                differences::convert_condition(&mut condition, &condition_path, warnings)?;
                Ok(Value::Object(condition))
            })
            .collect::<Result<_, String>>()?;
        rule.insert("conditions".into(), Value::Array(kept));
    }
    if let Some(state) = rule.get("state").cloned() {
        let state_path = format!("{path}.state");
        let mut state = keep_known(object(&state, &state_path)?, STATE, &state_path, warnings);
        differences::convert_state(&mut state, &state_path, warnings)?;
        rule.insert("state".into(), Value::Object(state));
    }
    Ok(Value::Object(rule))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mcp_policy_engine::policy_from_value;
    use mcp_policy_engine::testing::MemoryStore;
    use mcp_policy_engine::Policy;
    use mcp_policy_engine::Verdict;
    use mcp_policy_engine::{evaluate, RequestMeta, Step};
    use serde_json::json;

    const NOON: u64 = 1_795_348_800; // 2026-11-22T12:00:00Z

    /// An imported policy deciding calls as the filter does.
    pub(crate) struct Proxy {
        policy: Policy,
        store: MemoryStore,
        now: u64,
    }

    impl Proxy {
        fn from_fixture(name: &str) -> Proxy {
            let path = format!(
                "{}/../tests/fixtures/intercept/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            Proxy::from_yaml(&std::fs::read_to_string(path).unwrap())
        }

        pub(crate) fn from_yaml(yaml: &str) -> Proxy {
            let imported = import(yaml).unwrap();
            Proxy {
                policy: policy_from_value(&imported.policy).unwrap(),
                store: MemoryStore::default(),
                now: NOON,
            }
        }

        /// None when forwarded, else the agent-facing error message.
        pub(crate) fn call(&mut self, tool: &str, arguments: Value) -> Option<String> {
            let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments}}).to_string();
            let meta = RequestMeta {
                namespace: "stripe",
                now: self.now,
                ..Default::default()
            };
            let outcome = match evaluate(&self.policy, body.as_bytes(), &meta, &mut self.store) {
                Step::Done(outcome) => outcome,
                // These policies ask no service and no human: waiting for one is a regression.
                other => panic!("{tool}: unexpected {other:?}"),
            };
            match outcome.verdict {
                Verdict::Forward => None,
                Verdict::Reply(reply) => {
                    let v: Value = serde_json::from_str(&reply.body).unwrap();
                    Some(v["error"]["message"].as_str().unwrap().to_owned())
                }
            }
        }

        pub(crate) fn denied_with(&mut self, tool: &str, arguments: Value, expected: &str) {
            let got = self
                .call(tool, arguments)
                .unwrap_or_else(|| panic!("{tool} was allowed"));
            assert!(
                got.contains(expected),
                "{tool}: {got:?} does not say {expected:?}"
            );
        }
    }

    fn usd(amount: Value) -> Value {
        json!({"amount": amount, "currency": "usd"})
    }

    #[test]
    fn the_documented_stripe_policy_behaves_as_intercept() {
        let mut p = Proxy::from_fixture("stripe.yaml");
        assert_eq!(p.call("create_charge", usd(json!(50000))), None, "S1");
        p.denied_with(
            "create_charge",
            usd(json!(50001)),
            "Single charge cannot exceed $500.00",
        );
        p.denied_with(
            "create_charge",
            json!({"amount": 5000, "currency": "gbp"}),
            "Only USD and EUR charges are permitted",
        );
        p.denied_with(
            "create_charge",
            json!({"amount": 5000, "currency": "USD"}),
            "Only USD and EUR",
        );
        p.denied_with(
            "create_charge",
            json!({"currency": "usd"}),
            "Single charge cannot exceed",
        );
        p.denied_with(
            "create_charge",
            usd(json!("5000")),
            "Single charge cannot exceed",
        );
        // S7/S8: twenty 500.00 charges fill the daily cap exactly; one more cent does not fit.
        for _ in 1..20 {
            assert_eq!(p.call("create_charge", usd(json!(50000))), None);
        }
        p.denied_with(
            "create_charge",
            usd(json!(1)),
            "Daily spending cap of $10,000.00 reached",
        );
        // S10: a new UTC day starts from zero.
        p.now += 12 * 3600;
        assert_eq!(
            p.call("create_charge", usd(json!(100.9))),
            None,
            "S13: a fraction is charged rounded up (Intercept truncates)"
        );
        // Intercept would let a negative charge lower the spend; refused here.
        p.denied_with(
            "create_charge",
            usd(json!(-50000)),
            "must be a number of at least 0",
        );
        // R1-R3: 10 refunds of at most 100.00 a day.
        p.denied_with(
            "create_refund",
            json!({"amount": 10001}),
            "Refunds over $100.00 require manual processing",
        );
        for _ in 0..10 {
            assert_eq!(p.call("create_refund", json!({"amount": 10000})), None);
        }
        p.denied_with(
            "create_refund",
            json!({"amount": 1}),
            "Daily refund limit (10) reached",
        );
        p.denied_with(
            "delete_customer",
            json!({"id": "cus_1"}),
            "Customer deletion is not permitted via AI agents",
        );
    }

    #[test]
    fn the_stripe_global_rule_counts_every_allowed_call() {
        let mut p = Proxy::from_fixture("stripe.yaml");
        p.now = NOON + 5; // well inside one minute
        for _ in 0..60 {
            assert_eq!(
                p.call("list_customers", json!({})),
                None,
                "G2: unlisted tools are allowed (default allow)"
            );
        }
        p.denied_with(
            "list_customers",
            json!({}),
            "Rate limit: maximum 60 tool calls per minute",
        );
        p.denied_with(
            "create_charge",
            usd(json!(10)),
            "maximum 60 tool calls per minute",
        );
        // Denied calls consumed nothing: the spend counter is untouched.
        p.now += 60;
        assert_eq!(p.call("create_charge", usd(json!(10))), None);
    }

    #[test]
    fn the_documented_github_policy_behaves_as_intercept() {
        let mut p = Proxy::from_fixture("github.yaml");
        p.now = NOON + 5;
        p.denied_with("transfer_repository", json!({}), "hidden by policy");
        p.denied_with("list_webhooks", json!({}), "hidden by policy");
        p.denied_with(
            "delete_repository",
            json!({"repo": "x"}),
            "Repository deletion is not permitted via AI agents",
        );
        for _ in 0..5 {
            assert_eq!(p.call("create_issue", json!({"title": "t"})), None);
        }
        p.denied_with(
            "create_issue",
            json!({"title": "t"}),
            "Hourly limit of 5 new issues reached",
        );
        for _ in 0..3 {
            assert_eq!(p.call("create_pull_request", json!({})), None);
        }
        p.denied_with(
            "create_pull_request",
            json!({}),
            "Hourly limit of 3 new pull requests reached",
        );
        // 5 + 3 allowed so far count toward the global 60 per minute.
        for _ in 0..52 {
            assert_eq!(p.call("get_me", json!({})), None);
        }
        p.denied_with(
            "get_me",
            json!({}),
            "Rate limit of 60 per minute reached. Try again later.",
        );
    }

    #[test]
    fn the_readme_stripe_quick_start_and_default_deny_examples() {
        let mut p = Proxy::from_fixture("stripe-readme.yaml");
        p.denied_with("delete_invoice", json!({}), "hidden by policy");
        for _ in 0..10 {
            assert_eq!(
                p.call("create_refund", json!({"amount": 999_999})),
                None,
                "no amount cap here"
            );
        }
        p.denied_with(
            "create_refund",
            json!({}),
            "Daily refund limit (10) reached",
        );

        let mut p = Proxy::from_fixture("default-deny.yaml");
        assert_eq!(p.call("read_file", json!({"path": "/x"})), None);
        p.denied_with("write_file", json!({}), "does not list (default: deny)");
        for _ in 0..5 {
            assert_eq!(p.call("create_issue", json!({})), None);
        }
        p.denied_with(
            "create_issue",
            json!({}),
            "Rate limit of 5 per hour reached. Try again later.",
        );
    }

    #[test]
    fn intercept_conveniences_are_normalised_and_unknown_keys_reported() {
        let imported = import(
            "version: 1\ntools:\n  t:\n    rules:\n      - name: r\n        onDeny: typo\n        rate_limit: 2/minute\n        state_note: x\n",
        )
        .unwrap();
        assert_eq!(imported.policy["version"], "1");
        assert_eq!(imported.policy["default"], "allow");
        assert_eq!(imported.warnings.len(), 2, "{:?}", imported.warnings);
        assert!(imported.warnings[0].starts_with("tools.t.rules[0].onDeny: ignored"));
        assert!(import("tools: [")
            .unwrap_err()
            .starts_with("not valid YAML"));
        let bad = import("version: \"1\"\ntools:\n  t:\n    rules:\n      - name: r\n        conditions:\n          - {path: \"args.x\", op: \"regex\", value: \"(\"}\n");
        assert_eq!(
            bad.unwrap_err(),
            "tools.t.rules[0].conditions[0].value: cannot import the regex \"(\": ( at character 1: \
             not valid in Go's regexp (Intercept refuses the policy too): missing closing )"
        );
    }
}
