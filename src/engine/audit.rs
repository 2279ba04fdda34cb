//! The audit record of one request: who called which tools, what was decided and by which rule,
//! the counters involved, and a SHA-256 of each call's arguments (the arguments themselves only
//! if the policy says `"audit": {"include_arguments": true}`). The filter hands it to Envoy as
//! filter state, so it leaves through the operator's own access log.

use serde_json::{json, Map, Value};

use super::evaluate::{Outcome, Verdict};
use super::identity::{sha256_tag, Identity};
use super::policy::Policy;

pub struct AuditContext<'a> {
    /// Unix time, seconds.
    pub time: u64,
    pub request_id: Option<&'a str>,
    /// The filter instance (MCP server).
    pub server: &'a str,
    pub identity: Option<&'a Identity>,
    pub session: Option<&'a str>,
}

/// `None` for requests without a decision to record (no tools/call, nothing refused).
pub fn record(policy: &Policy, context: &AuditContext, outcome: &Outcome) -> Option<String> {
    let refused = match &outcome.verdict {
        Verdict::Reply(reply) => Some(reply.status),
        Verdict::Forward => None,
    };
    if outcome.calls.is_empty() && refused.is_none() {
        return None;
    }
    let calls: Vec<Value> = outcome
        .calls
        .iter()
        .map(|call| {
            let mut entry = Map::new();
            entry.insert("id".into(), call.id.clone().unwrap_or(Value::Null));
            entry.insert("tool".into(), json!(call.tool));
            entry.insert("decision".into(), json!(call.decision));
            entry.insert("rule".into(), json!(call.rule));
            if !call.detail.is_empty() {
                entry.insert("reason".into(), json!(call.detail));
            }
            let arguments = call.arguments.clone().unwrap_or(Value::Null);
            // serde_json keeps object keys sorted: the hash does not depend on key order.
            entry.insert(
                "arguments_sha256".into(),
                json!(sha256_tag(&arguments.to_string())),
            );
            if policy.audit_arguments {
                entry.insert("arguments".into(), arguments);
            }
            Value::Object(entry)
        })
        .collect();
    let counters: Vec<Value> = outcome
        .counters
        .iter()
        .map(|c| json!({"counter": c.counter, "value": c.value, "limit": c.max}))
        .collect();
    let record = json!({
        "time": context.time,
        "request_id": context.request_id,
        "server": context.server,
        "identity": context.identity.map(Identity::display),
        "identity_source": context.identity.map(|i| i.source.clone()),
        "session": context.session,
        "outcome": if refused.is_some() { "refused" } else { "forwarded" },
        "status": refused,
        "calls": calls,
        "counters": counters,
    });
    Some(record.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::{evaluate, RequestMeta};
    use crate::engine::load::load_policy;
    use crate::engine::test_support::{test, MemoryStore};

    fn audit(policy_text: &str, body: &str, identity: Option<&Identity>) -> Value {
        let policy = load_policy(policy_text.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let meta = RequestMeta {
            namespace: "wechat",
            identity,
            now: 1_000,
            ..Default::default()
        };
        let outcome = evaluate(&policy, body.as_bytes(), &meta, &mut store);
        let context = AuditContext {
            time: 1_000,
            request_id: Some("req-1"),
            server: "wechat",
            identity,
            session: Some("s-1"),
        };
        serde_json::from_str(&record(&policy, &context, &outcome).unwrap()).unwrap()
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"send","arguments":{"to":"o1","text":"secret plan"}}}"#;

    #[test]
    fn records_the_decision_rule_counters_and_a_hash_of_the_arguments() {
        let policy = r#"{"version":"1","default":"deny","tools":{"send":{"limits":[{"counter":"sends","window":60,"max":5,"scope":"global"}]}}}"#;
        let key = Identity {
            value: sha256_tag("sk-1"),
            secret: true,
            source: "header:x-api-key".into(),
        };
        let record = audit(policy, CALL, Some(&key));
        assert_eq!(record["request_id"], "req-1");
        assert_eq!(record["server"], "wechat");
        assert_eq!(record["identity"], key.display());
        assert_eq!(record["identity_source"], "header:x-api-key");
        assert_eq!(record["outcome"], "forwarded");
        let call = &record["calls"][0];
        assert_eq!(
            (
                call["id"].clone(),
                call["tool"].clone(),
                call["decision"].clone(),
                call["rule"].clone()
            ),
            (
                json!(4),
                json!("send"),
                json!("allowed"),
                json!("tools.send")
            )
        );
        assert_eq!(
            call["arguments_sha256"],
            sha256_tag(r#"{"text":"secret plan","to":"o1"}"#)
        );
        assert!(
            !record.to_string().contains("secret plan"),
            "raw arguments stay out by default"
        );
        assert_eq!(
            record["counters"],
            json!([{"counter":"sends","value":1,"limit":5}])
        );
    }

    #[test]
    fn refusals_and_opted_in_arguments() {
        let policy =
            r#"{"version":"1","default":"deny","audit":{"include_arguments":true},"tools":{}}"#;
        let record = audit(policy, CALL, None);
        assert_eq!(
            (record["outcome"].clone(), record["status"].clone()),
            (json!("refused"), json!(200))
        );
        assert_eq!(record["calls"][0]["decision"], "denied");
        assert_eq!(record["calls"][0]["rule"], "default");
        assert_eq!(record["calls"][0]["arguments"]["text"], "secret plan");
        let invalid = audit(policy, "{not json", None);
        assert_eq!(
            (invalid["status"].clone(), invalid["calls"].clone()),
            (json!(400), json!([]))
        );
    }
}
