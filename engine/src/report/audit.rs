//! The audit record of one request: who called which tools (or read which resources, got which
//! prompts, called which other methods the policy decides), what was decided and by which rule,
//! the counters involved, and, if the policy says `"audit": {"hash_arguments": true}`, a SHA-256
//! of each tool call's arguments (the arguments themselves only with `"include_arguments":
//! true`). The filter hands it to Envoy as filter state, so it leaves through the operator's own
//! access log.

use serde_json::value::RawValue;

use crate::json::write::{push_key, push_opt_str, push_str, push_u64};
use crate::policy::identity::{push_sha256_tag, Identity};
use crate::policy::Policy;
use crate::request::outcome::Detection;
use crate::request::outcome::{CallRecord, Outcome, Verdict};
use crate::response::tools_list::Drift;
use crate::target::Target;

pub struct AuditContext<'a> {
    /// Unix time, seconds.
    pub time: u64,
    pub request_id: Option<&'a str>,
    /// The filter instance (MCP server).
    pub server: &'a str,
    pub identity: Option<&'a Identity>,
    pub session: Option<&'a str>,
}

/// `None` for requests without a decision to record (nothing decided, nothing refused).
///
/// Members, in this order: `time`, `request_id`, `server`, `identity`, `identity_source`,
/// `session`, `outcome`, `status`, `calls` (`id`, then `tool` for a tool call, or `method` and
/// `resource` or `prompt` when there is one, then `decision`, `rule`, and when they have one
/// `class`, `reason`, `arguments_sha256`, `arguments`), `counters` (`counter`, `value`, `limit`,
/// `window_start`). Written by hand (`json_write`): see there why.
pub fn record(policy: &Policy, context: &AuditContext, outcome: &Outcome) -> Option<String> {
    let refused = match &outcome.verdict {
        Verdict::Reply(reply) => Some(reply.status),
        // Not decided yet: recorded once the rate-limit services have answered.
        Verdict::Forward => None,
    };
    if outcome.calls.is_empty() && refused.is_none() {
        return None;
    }
    let mut out = String::with_capacity(320 + 200 * outcome.calls.len());
    push_context(&mut out, context);
    push_key(&mut out, "outcome", false);
    push_str(
        &mut out,
        if refused.is_some() {
            "refused"
        } else {
            "forwarded"
        },
    );
    push_key(&mut out, "status", false);
    match refused {
        Some(status) => push_u64(&mut out, u64::from(status)),
        None => out.push_str("null"),
    }
    push_key(&mut out, "calls", false);
    out.push('[');
    for (index, call) in outcome.calls.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('{');
        // The id exactly as the client wrote it, as the refusal echoes it.
        push_key(&mut out, "id", true);
        out.push_str(call.id.as_ref().map_or("null", |id| id.as_json()));
        push_target(&mut out, &call.target);
        push_key(&mut out, "decision", false);
        push_str(&mut out, call.decision.as_str());
        push_key(&mut out, "rule", false);
        push_str(&mut out, &call.rule);
        if let Some(class) = call.class {
            push_key(&mut out, "class", false);
            push_str(&mut out, class.as_str());
        }
        if !call.detections.is_empty() {
            push_detections(&mut out, &call.detections);
        }
        if !call.detail.is_empty() {
            push_key(&mut out, "reason", false);
            push_str(&mut out, &call.detail);
        }
        if matches!(call.target, Target::Tool(_)) {
            push_arguments(&mut out, policy, call);
        }
        out.push('}');
    }
    out.push(']');
    push_key(&mut out, "counters", false);
    out.push('[');
    for (index, counter) in outcome.counters.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('{');
        push_key(&mut out, "counter", true);
        push_str(&mut out, &counter.counter);
        push_key(&mut out, "value", false);
        push_u64(&mut out, counter.value);
        push_key(&mut out, "limit", false);
        push_u64(&mut out, counter.max);
        push_key(&mut out, "window_start", false);
        push_u64(&mut out, counter.window_start);
        out.push('}');
    }
    out.push_str("]}");
    Some(out)
}

/// What the call was about: `"tool"` for a tool call; else `"method"`, and the resource or
/// prompt it names.
fn push_target(out: &mut String, target: &Target) {
    if let Target::Tool(name) = target {
        push_key(out, "tool", false);
        push_str(out, name);
        return;
    }
    push_key(out, "method", false);
    push_str(out, target.method());
    if matches!(target, Target::Resource { .. } | Target::Prompt(_)) {
        push_key(out, target.member(), false);
        push_str(out, target.name());
    }
}

/// A tool call's arguments, hashed or whole, as the policy's `audit` asks.
fn push_arguments(out: &mut String, policy: &Policy, call: &CallRecord) {
    // Raw JSON as the client sent it (validated when the body was read).
    let arguments = call.arguments.as_deref().unwrap_or("null");
    if policy.audit_hash {
        // Of the text as sent: what the server received, byte for byte.
        push_key(out, "arguments_sha256", false);
        // Hex digits: nothing to escape.
        out.push('"');
        push_sha256_tag(out, arguments);
        out.push('"');
    }
    if policy.audit_arguments {
        if let Ok(raw) = serde_json::from_str::<&RawValue>(arguments) {
            push_key(out, "arguments", false);
            out.push_str(raw.get());
        }
    }
}

/// `"detections": [{"detector", "count", "direction", "action"}]`: names and counts, never what
/// matched.
fn push_detections(out: &mut String, detections: &[Detection]) {
    push_key(out, "detections", false);
    out.push('[');
    for (index, found) in detections.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('{');
        push_key(out, "detector", true);
        push_str(out, &found.detector);
        push_key(out, "count", false);
        push_u64(out, found.count);
        push_key(out, "direction", false);
        push_str(out, found.direction.as_str());
        push_key(out, "action", false);
        push_str(out, found.action.as_str());
        out.push('}');
    }
    out.push(']');
}

/// `{` and the members every record starts with: `time` … `session`.
fn push_context(out: &mut String, context: &AuditContext) {
    out.push('{');
    push_key(out, "time", true);
    push_u64(out, context.time);
    push_key(out, "request_id", false);
    push_opt_str(out, context.request_id);
    push_key(out, "server", false);
    push_str(out, context.server);
    push_key(out, "identity", false);
    push_opt_str(out, context.identity.map(Identity::shown));
    push_key(out, "identity_source", false);
    push_opt_str(out, context.identity.map(|i| i.source.as_str()));
    push_key(out, "session", false);
    push_opt_str(out, context.session);
}

/// The record of a forwarded `tools/list` whose answer listed tools that differ from their
/// pins: the members every record has (no calls, no counters), then `drift` (`tool`,
/// `pinned_sha256` (`null`: no pin), `seen_sha256`, `action`: `dropped` or `reported`).
pub fn drift_record(context: &AuditContext, drifts: &[Drift]) -> String {
    let mut out = String::with_capacity(320 + 200 * drifts.len());
    push_context(&mut out, context);
    push_key(&mut out, "outcome", false);
    push_str(&mut out, "forwarded");
    push_key(&mut out, "status", false);
    out.push_str("null,\"calls\":[],\"counters\":[]");
    push_key(&mut out, "drift", false);
    out.push('[');
    for (index, drift) in drifts.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('{');
        push_key(&mut out, "tool", true);
        push_str(&mut out, &drift.tool);
        push_key(&mut out, "pinned_sha256", false);
        push_opt_str(&mut out, drift.pinned.as_deref());
        push_key(&mut out, "seen_sha256", false);
        push_str(&mut out, &drift.seen);
        push_key(&mut out, "action", false);
        push_str(&mut out, if drift.dropped { "dropped" } else { "reported" });
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::policy::identity::sha256_tag;
    use crate::request::evaluate::{evaluate, RequestMeta};
    #[allow(unused_imports)]
    use crate::request::outcome::*;
    #[allow(unused_imports)]
    use crate::test_support::done;
    use crate::test_support::{test, MemoryStore};
    use serde_json::{json, Value};

    fn audit(policy_text: &str, body: &str, identity: Option<&Identity>) -> Value {
        let policy = load_policy(policy_text.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let meta = RequestMeta {
            namespace: "wechat",
            identity,
            now: 1_000,
            ..Default::default()
        };
        let outcome = done(evaluate(&policy, body.as_bytes(), &meta, &mut store));
        let context = AuditContext {
            time: 1_000,
            request_id: Some("req-1"),
            server: "wechat",
            identity,
            session: Some("s-1"),
        };
        serde_json::from_str(&record(&policy, &context, &outcome).unwrap()).unwrap()
    }

    /// The record as serde's derived `Serialize` wrote it before `record` wrote it by hand: the
    /// text must not change (operators parse it, and may compare it byte for byte). Except call
    /// ids, which are the client's own JSON text (`1.0`, a 30-digit integer) as refusals echo
    /// them, not serde_json's rewriting of the value it reads.
    mod serde_reference {
        use crate::policy::identity::sha256_tag;
        use serde::Serialize;
        use serde_json::value::RawValue;

        use super::super::*;

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
            id: &'a RawValue,
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

        pub fn record(policy: &Policy, context: &AuditContext, outcome: &Outcome) -> String {
            let refused = match &outcome.verdict {
                Verdict::Reply(reply) => Some(reply.status),
                _ => None,
            };
            let calls = outcome
                .calls
                .iter()
                .map(|call| {
                    let arguments = call.arguments.as_deref().unwrap_or("null");
                    CallEntry {
                        id: serde_json::from_str(
                            call.id.as_ref().map_or("null", |id| id.as_json()),
                        )
                        .unwrap(),
                        tool: call.target.name(),
                        decision: call.decision.as_str(),
                        rule: &call.rule,
                        reason: &call.detail,
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
            serde_json::to_string(&Record {
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
            })
            .unwrap()
        }
    }

    #[test]
    fn the_record_is_byte_for_byte_what_serde_wrote() {
        let limited = r#"{"version":"1","default":"deny","audit":{"hash_arguments":true},"tools":{"send":{"limits":[{"counter":"sends","window":60,"max":2,"scope":"global"},{"counter":"per\"key\u0001\u007f/","window":"hour","max":9,"scope":"session"}]},"drop":{"action":"deny","reason":"no \"drops\"\n ever \u007f/"}}}"#;
        let with_arguments = r#"{"version":"1","default":"allow","audit":{"include_arguments":true,"hash_arguments":true}}"#;
        let arguments_only =
            r#"{"version":"1","default":"allow","audit":{"include_arguments":true}}"#;
        let by_default = r#"{"version":"1","default":"allow"}"#;
        let key = Identity {
            value: sha256_tag("sk-1"),
            secret: true,
            source: "header:x-api-key".into(),
        };
        let plain = Identity {
            value: "agent \"7\"\u{1}é\u{7f}/".into(),
            secret: false,
            source: "header:x-agent".into(),
        };
        let bodies = [
            CALL,
            r#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"send","arguments":{"to":"o1"}}}"#,
            r#"{"jsonrpc":"2.0","id":-3,"method":"tools/call","params":{"name":"send"}}"#,
            r#"{"jsonrpc":"2.0","id":2.5,"method":"tools/call","params":{"name":"drop","arguments": {"x" : [1, 2]} }}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send","arguments":{}}},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"send","arguments":{"a":"\u00e9\n"}}}]"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"unlisted","arguments":{}}}"#,
            r#"[{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send","arguments":{}}},{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"drop","arguments":{}}}]"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"send","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1e3,"method":"tools/call","params":{"name":"send","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":-0,"method":"tools/call","params":{"name":"send","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"send","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"tools/call","params":{"name":"send","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#,
            "{not json",
        ];
        let mut compared = 0;
        let mut decisions = std::collections::BTreeSet::new();
        for policy_text in [limited, with_arguments, arguments_only, by_default] {
            let policy = load_policy(policy_text.as_bytes()).unwrap();
            for identity in [None, Some(&key), Some(&plain)] {
                for (request_id, session) in [(Some("req-1"), Some("s\t1")), (None, None)] {
                    let mut store = MemoryStore::default();
                    for body in bodies {
                        let meta = RequestMeta {
                            namespace: "wechat",
                            identity,
                            session,
                            now: 1_000,
                            ..Default::default()
                        };
                        let outcome = done(evaluate(&policy, body.as_bytes(), &meta, &mut store));
                        let context = AuditContext {
                            time: 1_000,
                            request_id,
                            server: "we\"chat",
                            identity,
                            session,
                        };
                        let Some(written) = record(&policy, &context, &outcome) else {
                            continue;
                        };
                        assert_eq!(
                            written,
                            serde_reference::record(&policy, &context, &outcome),
                            "{policy_text} {body}"
                        );
                        compared += 1;
                        decisions.extend(outcome.calls.iter().map(|c| c.decision.as_str()));
                    }
                }
            }
        }
        assert!(compared >= 100, "{compared} records compared");
        assert_eq!(
            decisions.into_iter().collect::<Vec<_>>(),
            ["allowed", "batch_refused", "denied", "rate_limited"]
        );
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"send","arguments":{"to":"o1","text":"secret plan"}}}"#;

    #[test]
    fn records_the_decision_rule_counters_and_a_hash_of_the_arguments() {
        let policy = r#"{"version":"1","default":"deny","audit":{"hash_arguments":true},"tools":{"send":{"limits":[{"counter":"sends","window":60,"max":5,"scope":"global"}]}}}"#;
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
        for unhashed in [
            r#"{"version":"1","default":"allow","audit":{"hash_arguments":false}}"#,
            r#"{"version":"1","default":"allow"}"#,
        ] {
            let record = audit(unhashed, CALL, None);
            assert_eq!(record["calls"][0]["decision"], "allowed");
            assert!(
                record["calls"][0].get("arguments_sha256").is_none(),
                "no hash unless asked: {unhashed}"
            );
        }
        let invalid = audit(policy, "{not json", None);
        assert_eq!(
            (invalid["status"].clone(), invalid["calls"].clone()),
            (json!(400), json!([]))
        );
    }

    /// A decided call keeps a copy of its arguments (which may be most of the body) only when
    /// its audit record reads them, hashed or whole; a refused call, or one in a batch, alike.
    #[test]
    fn arguments_are_kept_only_for_an_audit_record_that_reads_them() {
        let arguments = r#"{"to":"o1","text":"secret plan"}"#;
        let single = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"send","arguments":{arguments}}}}}"#
        );
        let denied = single.replace("\"send\"", "\"drop\"");
        let batch = format!("[{single},{}]", denied.replace("\"id\":1", "\"id\":2"));
        for (audit, kept) in [
            (r#"{}"#, false),
            (r#"{"hash_arguments":true}"#, true),
            (r#"{"include_arguments":true,"hash_arguments":false}"#, true),
            (r#"{"hash_arguments":false}"#, false),
        ] {
            let policy = load_policy(
                format!(r#"{{"version":"1","default":"allow","tools":{{"drop":{{"action":"deny"}}}},"audit":{audit}}}"#)
                    .as_bytes(),
            )
            .unwrap();
            for body in [&single, &denied, &batch] {
                let meta = RequestMeta {
                    namespace: "wechat",
                    now: 1_000,
                    ..Default::default()
                };
                let outcome = done(evaluate(
                    &policy,
                    body.as_bytes(),
                    &meta,
                    &mut MemoryStore::default(),
                ));
                assert!(!outcome.calls.is_empty(), "{body}");
                for call in &outcome.calls {
                    assert_eq!(
                        call.arguments.as_deref(),
                        kept.then_some(arguments),
                        "{audit} {body}"
                    );
                }
            }
        }
    }

    #[test]
    fn resources_prompts_and_methods_are_recorded_by_method_and_name() {
        let policy = r#"{"version":"1","default":"deny","audit":{"hash_arguments":true,"include_arguments":true},
            "resources":[{"glob":"wechat://internal/**","action":"deny","reason":"internal \"data\""},{"glob":"**"}],
            "prompts":{"draft":{}},
            "methods":{"logging/setLevel":{}}}"#;
        let record = |body: &str| {
            let policy = load_policy(policy.as_bytes()).unwrap();
            let meta = RequestMeta {
                namespace: "wechat",
                now: 1_000,
                ..Default::default()
            };
            let outcome = done(evaluate(
                &policy,
                body.as_bytes(),
                &meta,
                &mut MemoryStore::default(),
            ));
            let context = AuditContext {
                time: 1_000,
                request_id: None,
                server: "wechat",
                identity: None,
                session: None,
            };
            let written = record(&policy, &context, &outcome).unwrap();
            let calls = written.find(r#""calls":["#).unwrap() + r#""calls":["#.len();
            let end = written.find(r#"],"counters""#).unwrap();
            written[calls..end].to_owned()
        };
        assert_eq!(
            record(
                r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"wechat://internal/keys"}}"#
            ),
            r#"{"id":7,"method":"resources/read","resource":"wechat://internal/keys","decision":"denied","rule":"resources[0].action","reason":"internal \"data\""}"#
        );
        assert_eq!(
            record(
                r#"{"jsonrpc":"2.0","id":"s","method":"resources/subscribe","params":{"uri":"wechat://a"}}"#
            ),
            r#"{"id":"s","method":"resources/subscribe","resource":"wechat://a","decision":"allowed","rule":"resources[1]"}"#
        );
        assert_eq!(
            record(
                r#"{"jsonrpc":"2.0","id":1.0,"method":"prompts/get","params":{"name":"draft","arguments":{"secret":"x"}}}"#
            ),
            r#"{"id":1.0,"method":"prompts/get","prompt":"draft","decision":"allowed","rule":"prompts.draft"}"#
        );
        assert_eq!(
            record(r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{}}"#),
            r#"{"id":2,"method":"completion/complete","decision":"denied","rule":"default","reason":"the policy denies every method it does not list (default: deny)"}"#
        );
        assert_eq!(
            record(r#"{"jsonrpc":"2.0","method":"logging/setLevel","params":{"level":"debug"}}"#),
            r#"{"id":null,"method":"logging/setLevel","decision":"allowed","rule":"methods[\"logging/setLevel\"]"}"#
        );
        // Tool calls beside them are recorded as ever.
        assert_eq!(
            record(
                r#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{}}},{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"draft"}}]"#
            ),
            r#"{"id":3,"tool":"t","decision":"denied","rule":"default","reason":"the policy denies every tool it does not list (default: deny)","arguments_sha256":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","arguments":{}},{"id":4,"method":"prompts/get","prompt":"draft","decision":"batch_refused","rule":"prompts.draft","reason":"not forwarded: another request in this batch was refused"}"#
        );
    }

    #[test]
    fn call_ids_are_recorded_exactly_as_sent() {
        let policy = load_policy(br#"{"version":"1","default":"allow"}"#).unwrap();
        let context = AuditContext {
            time: 1_000,
            request_id: None,
            server: "wechat",
            identity: None,
            session: None,
        };
        for id in [
            "123456789012345678901234567890",
            "1.0",
            "1e3",
            "-0",
            r#""a\u0062\/""#,
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"send"}}}}"#
            );
            let meta = RequestMeta {
                namespace: "wechat",
                now: 1_000,
                ..Default::default()
            };
            let outcome = done(evaluate(
                &policy,
                body.as_bytes(),
                &meta,
                &mut MemoryStore::default(),
            ));
            let written = record(&policy, &context, &outcome).unwrap();
            assert!(
                written.contains(&format!(r#""calls":[{{"id":{id},"tool":"send""#)),
                "{written}"
            );
        }
    }
}
