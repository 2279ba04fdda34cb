//! The audit record of one request: who called which tools, what was decided and by which rule,
//! the counters involved, and a SHA-256 of each call's arguments (the arguments themselves only
//! if the policy says `"audit": {"include_arguments": true}`). The filter hands it to Envoy as
//! filter state, so it leaves through the operator's own access log.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

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

#[derive(Serialize)]
struct Record<'a> {
    time: u64,
    request_id: Option<&'a str>,
    server: &'a str,
    identity: Option<String>,
    identity_source: Option<&'a str>,
    session: Option<&'a str>,
    outcome: &'static str,
    status: Option<u16>,
    calls: Vec<CallEntry<'a>>,
    counters: Vec<CounterEntry<'a>>,
}

#[derive(Serialize)]
struct CallEntry<'a> {
    id: &'a Value,
    tool: &'a str,
    decision: &'static str,
    rule: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct CounterEntry<'a> {
    counter: &'a str,
    value: u64,
    limit: u64,
    window_start: u64,
}

/// `None` for requests without a decision to record (no tools/call, nothing refused).
pub fn record(policy: &Policy, context: &AuditContext, outcome: &Outcome) -> Option<String> {
    let refused = match &outcome.verdict {
        Verdict::Reply(reply) => Some(reply.status),
        // Not decided yet: recorded once the rate-limit services have answered.
        Verdict::Forward | Verdict::AwaitServices(_) | Verdict::AwaitApproval(_) => None,
    };
    if outcome.calls.is_empty() && refused.is_none() {
        return None;
    }
    let calls = outcome
        .calls
        .iter()
        .map(|call| {
            // Raw JSON as the client sent it (validated when the body was read).
            let arguments = call.arguments.as_deref().unwrap_or("null");
            CallEntry {
                id: call.id.as_ref().unwrap_or(&Value::Null),
                tool: &call.tool,
                decision: call.decision,
                rule: &call.rule,
                reason: &call.detail,
                // Of the text as sent: what the server received, byte for byte.
                arguments_sha256: policy.audit_hash.then(|| sha256_tag(arguments)),
                arguments: policy
                    .audit_arguments
                    .then(|| serde_json::from_str::<&RawValue>(arguments).ok())
                    .flatten(),
            }
        })
        .collect();
    let counters = outcome
        .counters
        .iter()
        .map(|c| CounterEntry {
            counter: &c.counter,
            value: c.value,
            limit: c.max,
            window_start: c.window_start,
        })
        .collect();
    let record = Record {
        time: context.time,
        request_id: context.request_id,
        server: context.server,
        identity: context.identity.map(Identity::display),
        identity_source: context.identity.map(|i| i.source.as_str()),
        session: context.session,
        outcome: if refused.is_some() {
            "refused"
        } else {
            "forwarded"
        },
        status: refused,
        calls,
        counters,
    };
    serde_json::to_string(&record).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::evaluate::{evaluate, RequestMeta};
    use crate::engine::load::load_policy;
    use crate::engine::test_support::{test, MemoryStore};
    use serde_json::json;

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
            sha256_tag(r#"{"to":"o1","text":"secret plan"}"#),
            "the arguments exactly as sent"
        );
        assert!(
            !record.to_string().contains("secret plan"),
            "raw arguments stay out by default"
        );
        assert_eq!(
            record["counters"],
            json!([{"counter":"sends","value":1,"limit":5,"window_start":960}])
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
        let unhashed = r#"{"version":"1","default":"allow","audit":{"hash_arguments":false}}"#;
        let record = audit(unhashed, CALL, None);
        assert_eq!(record["calls"][0]["decision"], "allowed");
        assert!(record["calls"][0].get("arguments_sha256").is_none());
        let invalid = audit(policy, "{not json", None);
        assert_eq!(
            (invalid["status"].clone(), invalid["calls"].clone()),
            (json!(400), json!([]))
        );
    }
}
