//! One POSTed body in, one step out: envelope → plan each call (`plan`) → charge counters
//! (`charge`) → done (forward it untouched, or answer it ourselves) or waiting for a service.

use super::charge::Charging;
pub use super::meta::RequestMeta;
use super::outcome::Outcome;
use super::plan::Plan;
use super::remote::AwaitingServices;
use super::slot::counter_slot;
use crate::counters::CasStore;
use crate::policy::caller::Caller;
use crate::policy::{Policy, RefusalMode};
use crate::protocol::header_value;
use crate::protocol::jsonrpc::{parse_body, Body, Message, MessageKind, PROMPTS_GET};
use crate::reply::{self, Refusal, Reply};
use crate::services::approval::ApprovalQuery;
use crate::services::rate_limit::{self, RemoteCharge};

/// Where a request stands after the engine has looked at it: finished, or waiting for an
/// answer the host fetches and hands back (`AwaitingServices::resume`, or `evaluate` again with
/// `RequestMeta::approved` / `Outcome::approval_refused`).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Done(Outcome),
    /// Some counters are kept by rate-limit services: send `queries`, then resume.
    AwaitServices(Box<AwaitingServices>),
    /// The call needs a human's approval: ask the approval service about it.
    AwaitApproval(Box<ApprovalQuery>),
}

impl Step {
    /// The outcome, if the request is finished.
    pub fn done(self) -> Option<Outcome> {
        match self {
            Step::Done(outcome) => Some(outcome),
            Step::AwaitServices(_) | Step::AwaitApproval(_) => None,
        }
    }
}

/// Decide `body`: envelope → plan each call → charge counters → step.
pub fn evaluate(
    policy: &Policy,
    body: &[u8],
    meta: &RequestMeta,
    store: &mut dyn CasStore,
) -> Step {
    let refusal_mode = if meta.legacy_sse {
        RefusalMode::Http
    } else {
        policy.refusal_mode
    };
    let body = match envelope(policy, body, meta, refusal_mode) {
        Ok(body) => body,
        Err(reply) => return Step::Done(Outcome::reply(reply, Vec::new())),
    };
    let caller = Caller::new(policy, meta.identity);
    let mut plan = Plan::make(policy, &caller, meta, store, body);
    if plan.refuses() {
        return Step::Done(plan.refuse(refusal_mode));
    }
    if let Some(query) = plan.approval.take() {
        return Step::AwaitApproval(Box::new(query));
    }
    charge_counters(policy, &caller, meta, store, plan, refusal_mode)
}

/// The body as JSON-RPC, if its size, syntax and `Mcp-*` headers let it be read; else the
/// reply refusing it.
fn envelope<'b>(
    policy: &Policy,
    body: &'b [u8],
    meta: &RequestMeta,
    refusal_mode: RefusalMode,
) -> Result<Body<'b>, Reply> {
    if body.len() as u64 > policy.max_body_bytes {
        return Err(reply::too_large(policy.max_body_bytes));
    }
    let body = parse_body(body).map_err(|e| {
        let refusal = Refusal::Invalid {
            code: e.code,
            problem: e.problem,
        };
        reply::single(None, &refusal, refusal_mode)
    })?;
    if let Err(problem) = headers_agree(policy, &body, meta) {
        let id = match &body {
            Body::Single(m) => m.id.as_ref(),
            Body::Batch(_) => None,
        };
        let refusal = Refusal::HeaderMismatch { problem };
        return Err(reply::single(id, &refusal, refusal_mode));
    }
    Ok(body)
}

/// The second pass: charge every counter the allowed calls use, all or nothing. Counters kept
/// by a rate-limit service are asked for last (the host sends the queries): what is taken
/// locally can be given back if a service refuses, what a service counted cannot.
fn charge_counters(
    policy: &Policy,
    caller: &Caller,
    meta: &RequestMeta,
    store: &mut dyn CasStore,
    mut plan: Plan,
    refusal_mode: RefusalMode,
) -> Step {
    let totals = std::mem::take(&mut plan.totals);
    let mut charging = Charging::new(plan, refusal_mode, meta.now, totals.len());
    let mut remote: Vec<(usize, RemoteCharge)> = Vec::new();
    for total in totals {
        let Some(spec) = policy.counter(total.counter) else {
            // Not for a loaded policy; if it ever happens, refuse rather than skip a limit.
            return Step::Done(charging.undefined(store, total.counter));
        };
        let charge = RemoteCharge {
            id: total.counter,
            cost: total.amount,
            reason: total.reason,
            slot: counter_slot(policy, meta.namespace, spec, caller, meta.session),
        };
        match spec.service {
            Some(service) => remote.push((service, charge)),
            None => {
                if let Err(refused) = charging.take_locally(policy, store, charge) {
                    return Step::Done(*refused);
                }
            }
        }
    }
    if remote.is_empty() {
        return Step::Done(charging.forward());
    }
    let queries = rate_limit::queries(policy, meta.namespace, meta.session, caller, remote);
    Step::AwaitServices(Box::new(AwaitingServices { queries, charging }))
}

/// MCP 2026-07-28 clients repeat the method (and the tool, resource or prompt name) in headers,
/// which proxies and servers may route on. If they disagree with the body, something is trying
/// to make us and the server see different requests: refuse.
fn headers_agree(policy: &Policy, body: &Body, meta: &RequestMeta) -> Result<(), String> {
    if meta.mcp_method.is_none() && meta.mcp_name.is_none() {
        return Ok(());
    }
    let message: &Message = match body {
        Body::Single(m) => m,
        Body::Batch(_) => {
            return Err("Mcp-Method/Mcp-Name headers cannot describe a JSON-RPC batch".to_owned())
        }
    };
    if matches!(message.kind, MessageKind::Invalid { .. }) {
        // Refused anyway, with its own, more precise error.
        return Ok(());
    }
    if let Some(header) = meta.mcp_method {
        match message.method() {
            Some(method) if method == header => {}
            Some(method) => {
                return Err(format!(
                    "Mcp-Method header is \"{header}\" but the body's method is \"{method}\""
                ))
            }
            None => {
                return Err(format!(
                    "Mcp-Method header is \"{header}\" but the body has no method"
                ))
            }
        }
    }
    // A name that is not plain printable ASCII comes encoded (`=?base64?…?=`): compared as the
    // server compares it, decoded; one that does not decode matches nothing.
    if let (Some(header), Some((what, name))) = (meta.mcp_name, decided_name(policy, message)) {
        let decoded = header_value::decode(header).map_err(|e| format!("Mcp-Name header {e}"))?;
        if decoded != name {
            let shown = if decoded == header {
                format!("\"{header}\"")
            } else {
                format!("{header:?} (decoded: {decoded:?})")
            };
            return Err(format!(
                "Mcp-Name header is {shown} but the body {what} \"{name}\""
            ));
        }
    }
    Ok(())
}

/// The name the policy decides `message` by, and what the body does with it: what `Mcp-Name`
/// must repeat. (A resource request decided by the `methods` block is decided by its method.)
fn decided_name<'m>(policy: &Policy, message: &'m Message) -> Option<(&'static str, &'m str)> {
    match &message.kind {
        MessageKind::ToolCall { name } => Some(("calls tool", name)),
        MessageKind::Named {
            method,
            name: Ok(name),
        } if method == PROMPTS_GET => policy
            .targets
            .prompts
            .is_some()
            .then_some(("gets prompt", name)),
        MessageKind::Named { name: Ok(uri), .. } => policy
            .targets
            .resources
            .is_some()
            .then_some(("names resource", uri)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    use crate::protocol::jsonrpc::INVALID_REQUEST;
    use crate::protocol::jsonrpc::{self, Id};
    use crate::reply::Reply;
    use crate::reply::{
        BATCH_REFUSED, CANNOT_ENFORCE, HEADER_MISMATCH, POLICY_DENIED, RATE_LIMITED,
    };
    #[allow(unused_imports)]
    use crate::request::evaluate::{evaluate, RequestMeta, Step};
    use crate::request::outcome::*;
    use crate::target::Target;
    #[allow(unused_imports)]
    use crate::test_support::done;
    use crate::test_support::{test, MemoryStore};
    use serde_json::{json, Value};

    const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
        "wechat_mass_send":{"limits":[{"counter":"sends","window":"minute","max":3,"scope":"grant"}]},
        "wechat_mass_preview":{"limits":[{"counter":"sends","window":"minute","max":3,"scope":"grant"},
                                         {"counter":"previews","window":10,"max":5,"scope":"session"}]},
        "wechat_get_followers":{},
        "wechat_everyone":{"limits":[{"counter":"all","window":"hour","max":2,"scope":"global"}]},
        "wechat_mass_delete":{"action":"deny","reason":"deleting sent messages needs a human"}}}"#;

    const NOW: u64 = 1_795_342_542; // 42 s into a minute

    /// Test identities live for the whole test run.
    fn who(name: &str) -> Option<&'static Identity> {
        Some(Box::leak(Box::new(Identity::new(name))))
    }

    fn call(id: u64, tool: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        )
    }

    struct Harness {
        policy: Policy,
        store: MemoryStore,
    }

    impl Harness {
        fn new(policy: &str) -> Self {
            let mut policy = load_policy(policy.as_bytes()).unwrap();
            // As the filter does when it configures, for its plugin name.
            policy.prepare_counter_keys("wechat");
            Harness {
                policy,
                store: MemoryStore::default(),
            }
        }

        fn run(&mut self, body: &str, meta: RequestMeta) -> Outcome {
            done(evaluate(
                &self.policy,
                body.as_bytes(),
                &meta,
                &mut self.store,
            ))
        }

        /// What `agent` (in `session`) has used of `counter` on the "wechat" server.
        fn used(&self, counter: &str, agent: &str, session: Option<&str>) -> Option<u64> {
            let spec = self.policy.counters.iter().find(|c| c.name == counter)?;
            let caller = Caller::new(&self.policy, who(agent));
            let slot = counter_slot(&self.policy, "wechat", spec, &caller, session);
            self.store.count(&slot)
        }

        fn as_agent(&mut self, agent: &str, body: &str) -> Outcome {
            self.run(
                body,
                RequestMeta {
                    namespace: "wechat",
                    identity: who(agent),
                    now: NOW,
                    ..Default::default()
                },
            )
        }
    }

    fn reply_of(outcome: &Outcome) -> (Reply, Value) {
        match &outcome.verdict {
            Verdict::Reply(reply) => (reply.clone(), serde_json::from_str(&reply.body).unwrap()),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
        reply
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn allowed_call_is_forwarded() {
        let mut h = Harness::new(POLICY);
        let out = h.as_agent("a", &call(1, "wechat_mass_send"));
        assert_eq!(out.verdict, Verdict::Forward);
        assert_eq!(
            out.calls,
            vec![CallRecord {
                target: Target::Tool("wechat_mass_send".into()),
                decision: Decision::Allowed,
                detail: String::new(),
                rule: "tools.wechat_mass_send".into(),
                id: Some(json!(1).into()),
                // No audit record reads them (the policy asks for neither hash nor arguments).
                arguments: None,
                class: None,
                detections: Vec::new(),
            }]
        );
    }

    #[test]
    fn an_allowed_call_costs_at_most_two_shared_data_operations_per_limit() {
        // One read and one compare-and-swap write per counter; an unlimited tool costs none.
        let mut h = Harness::new(POLICY);
        for n in 1..=3 {
            let (gets, sets) = (h.store.gets, h.store.sets);
            let out = h.as_agent("a", &call(n, "wechat_mass_send"));
            assert_eq!(out.verdict, Verdict::Forward);
            assert_eq!(
                (h.store.gets - gets, h.store.sets - sets),
                (1, 1),
                "call {n}"
            );
        }
        let (gets, sets) = (h.store.gets, h.store.sets);
        h.as_agent("a", &call(9, "wechat_get_followers"));
        assert_eq!((h.store.gets, h.store.sets), (gets, sets));
        // Two limits (one per grant, one per session): two of each.
        let (gets, sets) = (h.store.gets, h.store.sets);
        let out = h.as_agent("b", &call(10, "wechat_mass_preview"));
        assert_eq!(out.verdict, Verdict::Forward);
        assert_eq!((h.store.gets - gets, h.store.sets - sets), (2, 2));
    }

    #[test]
    fn denied_call_gets_a_jsonrpc_error_the_agent_can_read() {
        let mut h = Harness::new(POLICY);
        let out = h.as_agent("a", &call(7, "wechat_mass_delete"));
        let (reply, body) = reply_of(&out);
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert_eq!(
            body,
            json!({"jsonrpc":"2.0","id":7,"error":{"code":POLICY_DENIED,
                "message":"Tool \"wechat_mass_delete\" is not allowed by policy: deleting sent messages needs a human",
                "data":{"tool":"wechat_mass_delete","decision":"denied","reason":"deleting sent messages needs a human"}}})
        );
    }

    #[test]
    fn unlisted_tool_is_denied_under_default_deny() {
        let mut h = Harness::new(POLICY);
        let (_, body) = reply_of(&h.as_agent("a", &call(1, "wechat_get_user_info")));
        assert_eq!(
            body["error"]["data"]["reason"],
            "the policy denies every tool it does not list (default: deny)"
        );
        assert_eq!(body["id"], 1);
    }

    #[test]
    fn string_ids_are_echoed() {
        let mut h = Harness::new(POLICY);
        let body =
            r#"{"jsonrpc":"2.0","id":"req-9","method":"tools/call","params":{"name":"nope"}}"#;
        assert_eq!(reply_of(&h.as_agent("a", body)).1["id"], "req-9");
    }

    #[test]
    fn rate_limit_counts_per_grant_and_says_when_to_retry() {
        let mut h = Harness::new(POLICY);
        for _ in 0..3 {
            assert_eq!(
                h.as_agent("a", &call(1, "wechat_mass_send")).verdict,
                Verdict::Forward
            );
        }
        let out = h.as_agent("a", &call(4, "wechat_mass_send"));
        let (reply, body) = reply_of(&out);
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "retry-after"), Some("18"));
        assert_eq!(body["id"], 4);
        assert_eq!(body["error"]["code"], RATE_LIMITED);
        assert_eq!(
            body["error"]["data"],
            json!({"tool":"wechat_mass_send","decision":"rate_limited","counter":"sends","limit":3,
                   "window_seconds":60,"scope":"grant","used":3,"needed":1,"retry_after_seconds":18,"reason":null})
        );
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry in 18 s"));
        assert_eq!(out.calls[0].decision.as_str(), "rate_limited");
        // Another agent has its own budget.
        assert_eq!(
            h.as_agent("b", &call(1, "wechat_mass_send")).verdict,
            Verdict::Forward
        );
    }

    #[test]
    fn callers_without_identity_share_the_anonymous_counter() {
        let mut h = Harness::new(POLICY);
        let meta = RequestMeta {
            namespace: "wechat",
            now: NOW,
            ..Default::default()
        };
        for _ in 0..3 {
            assert_eq!(
                h.run(&call(1, "wechat_mass_send"), meta).verdict,
                Verdict::Forward
            );
        }
        assert!(matches!(
            h.run(&call(1, "wechat_mass_send"), meta).verdict,
            Verdict::Reply(_)
        ));
        // A caller literally named "anonymous" is not the anonymous bucket.
        assert_eq!(
            h.as_agent("anonymous", &call(1, "wechat_mass_send"))
                .verdict,
            Verdict::Forward
        );
    }

    #[test]
    fn a_shared_counter_is_one_budget_across_tools() {
        let mut h = Harness::new(POLICY);
        h.as_agent("a", &call(1, "wechat_mass_send"));
        h.as_agent("a", &call(2, "wechat_mass_preview"));
        h.as_agent("a", &call(3, "wechat_mass_send"));
        let (_, body) = reply_of(&h.as_agent("a", &call(4, "wechat_mass_preview")));
        assert_eq!(body["error"]["data"]["counter"], "sends");
    }

    #[test]
    fn session_scope_counts_per_session_id() {
        let mut h = Harness::new(POLICY);
        let in_session = |s| RequestMeta {
            namespace: "wechat",
            identity: who("a"),
            session: Some(s),
            now: NOW,
            ..Default::default()
        };
        // "previews" allows 5 per 10 s per session; "sends" (3/min per grant) runs out first for
        // agent a, so use a fresh agent per call to isolate the session counter.
        let mut forwarded = 0;
        for i in 0..7 {
            let meta = RequestMeta {
                identity: who(["a", "b", "c"][i % 3]),
                ..in_session("s1")
            };
            if h.run(&call(1, "wechat_mass_preview"), meta).verdict == Verdict::Forward {
                forwarded += 1;
            }
        }
        assert_eq!(forwarded, 5);
        assert_eq!(h.used("previews", "a", Some("s1")), Some(5));
        assert_eq!(
            h.used("previews", "b", Some("s1")),
            Some(5),
            "any agent, same session"
        );
        assert_eq!(h.used("previews", "a", Some("s2")).unwrap_or(0), 0);
        let other_session = RequestMeta {
            identity: who("d"),
            ..in_session("s2")
        };
        assert_eq!(
            h.run(&call(1, "wechat_mass_preview"), other_session)
                .verdict,
            Verdict::Forward
        );
    }

    #[test]
    fn global_scope_is_shared_by_everyone() {
        let mut h = Harness::new(POLICY);
        assert_eq!(
            h.as_agent("a", &call(1, "wechat_everyone")).verdict,
            Verdict::Forward
        );
        assert_eq!(
            h.as_agent("b", &call(1, "wechat_everyone")).verdict,
            Verdict::Forward
        );
        assert!(matches!(
            h.as_agent("c", &call(1, "wechat_everyone")).verdict,
            Verdict::Reply(_)
        ));
    }

    #[test]
    fn windows_reset_automatically() {
        let mut h = Harness::new(POLICY);
        let at = |now| RequestMeta {
            namespace: "wechat",
            identity: who("a"),
            now,
            ..Default::default()
        };
        for _ in 0..3 {
            h.run(&call(1, "wechat_mass_send"), at(NOW));
        }
        assert!(matches!(
            h.run(&call(1, "wechat_mass_send"), at(NOW + 17)).verdict,
            Verdict::Reply(_)
        ));
        assert_eq!(
            h.run(&call(1, "wechat_mass_send"), at(NOW + 18)).verdict,
            Verdict::Forward
        );
    }

    #[test]
    fn other_methods_pass_without_touching_counters() {
        let mut h = Harness::new(POLICY);
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"x://y"}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"p"}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
        ] {
            assert_eq!(h.as_agent("a", body).verdict, Verdict::Forward, "{body}");
        }
        assert_eq!((h.store.gets, h.store.sets), (0, 0));
    }

    #[test]
    fn malformed_bodies_are_400_with_id_null() {
        let mut h = Harness::new(POLICY);
        for (body, code) in [
            ("{oops", -32700),
            ("", -32700),
            ("42", -32600),
            ("[]", -32600),
            (r#"{"method":"tools/call"}"#, -32600),
        ] {
            let (reply, value) = reply_of(&h.as_agent("a", body));
            assert_eq!(reply.status, 400, "{body}");
            assert_eq!(value["id"], Value::Null);
            assert_eq!(value["error"]["code"], code, "{body}");
        }
    }

    #[test]
    fn tool_call_without_name_is_invalid_params_echoing_the_id() {
        let mut h = Harness::new(POLICY);
        let (reply, value) = reply_of(&h.as_agent(
            "a",
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#,
        ));
        assert_eq!(reply.status, 400);
        assert_eq!(value["id"], 5);
        assert_eq!(value["error"]["code"], -32602);
    }

    #[test]
    fn too_large_is_413() {
        let mut h = Harness::new(r#"{"version":"1","default":"allow","max_body_bytes":64}"#);
        let out = h.as_agent("a", &call(1, &"x".repeat(100)));
        let (reply, value) = reply_of(&out);
        assert_eq!(reply.status, 413);
        assert_eq!(value["error"]["data"]["max_body_bytes"], 64);
    }

    #[test]
    fn a_batch_that_can_never_fit_says_so_without_retry_after() {
        let mut h = Harness::new(POLICY);
        let four = format!(
            "[{}]",
            (1..=4)
                .map(|i| call(i, "wechat_mass_send"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (reply, value) = reply_of(&h.as_agent("a", &four));
        assert_eq!(header(&reply, "retry-after"), None);
        let error = &value[0]["error"];
        assert_eq!(error["data"]["retry_after_seconds"], Value::Null);
        assert_eq!(error["data"]["needed"], 4);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("it can never pass"),
            "{error}"
        );
        // Two left, three needed: says so, and when to retry.
        h.as_agent("a", &call(9, "wechat_mass_send"));
        let three = format!(
            "[{}]",
            (1..=3)
                .map(|i| call(i, "wechat_mass_send"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (reply, value) = reply_of(&h.as_agent("a", &three));
        assert_eq!(header(&reply, "retry-after"), Some("18"));
        assert!(
            value[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("this batch needs 3 and 2 are left"),
            "{value}"
        );
    }

    #[test]
    fn forwarded_calls_carry_what_they_reserved() {
        let mut h = Harness::new(POLICY);
        let batch = format!(
            "[{},{},{}]",
            call(1, "wechat_mass_send"),
            call(2, "wechat_mass_preview"),
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"wechat_mass_send"}}"#
        );
        let out = h.as_agent("a", &batch);
        assert_eq!(out.verdict, Verdict::Forward);
        let ids: Vec<Value> = out.reservations.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            vec![json!(1), json!(2)],
            "the notification has no id to be answered by"
        );
        assert_eq!(
            out.reservations[1].holds.len(),
            2,
            "preview holds sends and previews"
        );
        assert!(out
            .reservations
            .iter()
            .flat_map(|r| &r.holds)
            .all(|h| h.amount == 1));
        // Refunding call 1 gives back its unit of "sends" (3 were taken: two calls and the notification).
        let sends = out.reservations[0].holds[0].slot.clone();
        crate::counters::reservations::refund(&mut h.store, &out.reservations[0]).unwrap();
        assert_eq!(h.store.count(&sends), Some(2));
    }

    #[test]
    fn allowed_batch_consumes_every_counter_it_uses() {
        let mut h = Harness::new(POLICY);
        let batch = format!(
            "[{},{},{}]",
            call(1, "wechat_mass_send"),
            call(2, "wechat_mass_preview"),
            r#"{"jsonrpc":"2.0","method":"notifications/x"}"#
        );
        assert_eq!(h.as_agent("a", &batch).verdict, Verdict::Forward);
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let spec = policy.counters.iter().find(|c| c.name == "sends").unwrap();
        let sends = counter_slot(
            &policy,
            "wechat",
            spec,
            &Caller::new(&policy, who("a")),
            None,
        );
        assert_eq!(h.store.count(&sends), Some(2));
    }

    #[test]
    fn a_denied_element_refuses_the_whole_batch_and_consumes_nothing() {
        let mut h = Harness::new(POLICY);
        let batch = format!(
            "[{},{},{},{}]",
            call(1, "wechat_mass_send"),
            call(2, "wechat_mass_delete"),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#
        );
        let out = h.as_agent("a", &batch);
        let (reply, value) = reply_of(&out);
        assert_eq!(reply.status, 200);
        let items = value.as_array().unwrap();
        assert_eq!(
            items.len(),
            3,
            "one error per request, none for the notification: {value}"
        );
        assert_eq!(
            (items[0]["id"].clone(), items[0]["error"]["code"].clone()),
            (json!(1), json!(BATCH_REFUSED))
        );
        assert_eq!(
            (items[1]["id"].clone(), items[1]["error"]["code"].clone()),
            (json!(2), json!(POLICY_DENIED))
        );
        assert_eq!(
            (items[2]["id"].clone(), items[2]["error"]["code"].clone()),
            (json!(3), json!(BATCH_REFUSED))
        );
        assert_eq!(h.store.sets, 0, "a refused batch consumes no counter");
        let recorded: Vec<_> = out
            .calls
            .iter()
            .map(|c| (c.decision.as_str(), c.detail.as_str()))
            .collect();
        assert_eq!(recorded[0], ("batch_refused", BATCH_REFUSED_DETAIL));
        assert_eq!(recorded[1].0, "denied");
        assert_eq!(recorded.len(), 2);
    }

    #[test]
    fn a_rate_limited_element_refuses_the_batch_and_refunds_what_was_taken() {
        let mut h = Harness::new(POLICY);
        // Use up "previews" for session s (5 per 10 s), leaving "sends" with room for agent a... but
        // "sends" is charged first (lower counter id), so the refund path runs.
        let meta = |agent| RequestMeta {
            namespace: "wechat",
            identity: who(agent),
            session: Some("s"),
            now: NOW,
            ..Default::default()
        };
        for agent in ["p", "q", "r", "s", "t"] {
            assert_eq!(
                h.run(&call(1, "wechat_mass_preview"), meta(agent)).verdict,
                Verdict::Forward
            );
        }
        let batch = format!(
            "[{},{}]",
            call(1, "wechat_mass_send"),
            call(2, "wechat_mass_preview")
        );
        let out = h.run(&batch, meta("a"));
        let (reply, value) = reply_of(&out);
        assert_eq!(header(&reply, "retry-after"), Some("8"));
        assert_eq!(value[0]["error"]["code"], BATCH_REFUSED);
        assert_eq!(value[1]["error"]["code"], RATE_LIMITED);
        assert_eq!(value[1]["error"]["data"]["counter"], "previews");
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let spec = policy.counters.iter().find(|c| c.name == "sends").unwrap();
        let sends_a = counter_slot(
            &policy,
            "wechat",
            spec,
            &Caller::new(&policy, who("a")),
            None,
        );
        assert_eq!(h.store.count(&sends_a), Some(0), "refunded");
        assert_eq!(
            out.calls.iter().map(|c| c.decision).collect::<Vec<_>>(),
            vec!["batch_refused", "rate_limited"],
            "the innocent call was not forwarded either, and is recorded as the client is told"
        );
    }

    #[test]
    fn a_one_element_batch_is_decided_like_a_single_call() {
        let mut h = Harness::new(POLICY);
        let (_, value) =
            reply_of(&h.as_agent("a", &format!("[{}]", call(9, "wechat_mass_delete"))));
        assert_eq!(
            value,
            json!([{"jsonrpc":"2.0","id":9,"error":value[0]["error"].clone()}])
        );
        assert_eq!(value[0]["error"]["code"], POLICY_DENIED);
    }

    #[test]
    fn invalid_element_in_a_batch_refuses_it_with_400() {
        let mut h = Harness::new(POLICY);
        let batch = format!("[{},5]", call(1, "wechat_mass_send"));
        let (reply, value) = reply_of(&h.as_agent("a", &batch));
        assert_eq!(reply.status, 400);
        assert_eq!(
            value[1],
            json!({"jsonrpc":"2.0","id":null,"error":value[1]["error"].clone()})
        );
        assert_eq!(value[1]["error"]["code"], -32600);
    }

    #[test]
    fn a_batch_whose_request_ids_repeat_is_refused_and_charges_nothing() {
        // Answers are matched to calls by id: were it forwarded, the error answering `no/such`
        // would refund the tool call next to it, which ran.
        let mut h = Harness::new(POLICY);
        for (first, second) in [("1", "1"), ("1", "1.0"), ("1", "1e0"), (r#""a""#, r#""a""#)] {
            let batch = format!(
                r#"[{{"jsonrpc":"2.0","id":{first},"method":"no/such"}},{{"jsonrpc":"2.0","id":{second},"method":"tools/call","params":{{"name":"wechat_everyone","arguments":{{}}}}}}]"#
            );
            let (reply, value) = reply_of(&h.as_agent("a", &batch));
            assert_eq!(reply.status, 400, "{batch}");
            assert_eq!(value[1]["error"]["code"], INVALID_REQUEST, "{value}");
            assert!(
                value[1]["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("repeats an earlier request's id"),
                "{value}"
            );
        }
        assert_eq!(h.store.sets, 0, "a refused batch consumes no counter");
        // A string and a number are different ids; notifications have none.
        let batch = format!(
            r#"[{{"jsonrpc":"2.0","id":"1","method":"ping"}},{},{{"jsonrpc":"2.0","method":"notifications/initialized"}},{{"jsonrpc":"2.0","method":"notifications/initialized"}}]"#,
            call(1, "wechat_everyone")
        );
        assert_eq!(h.as_agent("a", &batch).verdict, Verdict::Forward);
    }

    #[test]
    fn denied_notification_still_gets_an_answer() {
        let mut h = Harness::new(POLICY);
        let (_, value) = reply_of(&h.as_agent(
            "a",
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"wechat_mass_delete"}}"#,
        ));
        assert_eq!(value["id"], Value::Null);
        assert_eq!(value["error"]["code"], POLICY_DENIED);
    }

    #[test]
    fn rules_read_arguments_as_the_server_will() {
        let mut h = Harness::new(
            r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"rules":[
                {"name":"types","conditions":[{"path":"args.msg_type","op":"in","value":["text"]}]}]}}}"#,
        );
        let send = |arguments: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"wechat_mass_send","arguments":{arguments}}}}}"#
            )
        };
        assert_eq!(
            h.as_agent("a", &send(r#"{"msg_type":"text"}"#)).verdict,
            Verdict::Forward
        );
        // serde_json's Value would read the string as the arguments; the server reads an object
        // with one odd key and no msg_type (found by the body_parser fuzz target).
        let magic = send(r#"{"$serde_json::private::RawValue":"{\"msg_type\":\"text\"}"}"#);
        let (_, value) = reply_of(&h.as_agent("a", &magic));
        assert_eq!(value["error"]["code"], POLICY_DENIED, "{value}");
        // A Go server folds case and reads the last of msg_type / MSG_TYPE.
        for folded in [
            r#"{"msg_type":"text","MSG_TYPE":"image"}"#,
            r#"{"msg_type":"text","nested":{"a":1,"A":2}}"#,
            r#"{"msg_type":"text","list":[{"k":1,"K":2}]}"#,
        ] {
            let (reply, value) = reply_of(&h.as_agent("a", &send(folded)));
            assert_eq!(
                (reply.status, value["error"]["code"].clone()),
                (400, json!(INVALID_REQUEST)),
                "{folded}: {value}"
            );
        }
    }

    #[test]
    fn legacy_sse_posts_are_refused_with_http_statuses() {
        let mut h = Harness::new(POLICY);
        let legacy = |agent| RequestMeta {
            namespace: "wechat",
            identity: who(agent),
            legacy_sse: true,
            now: NOW,
            ..Default::default()
        };
        let (reply, value) = reply_of(&h.run(&call(4, "wechat_mass_delete"), legacy("a")));
        assert_eq!((reply.status, value["id"].clone()), (403, json!(4)));
        assert_eq!(value["error"]["code"], POLICY_DENIED);
        for _ in 0..2 {
            h.run(&call(1, "wechat_everyone"), legacy("a"));
        }
        let (reply, _) = reply_of(&h.run(&call(1, "wechat_everyone"), legacy("a")));
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply_of(&h.as_agent("a", &call(4, "wechat_mass_delete")))
                .0
                .status,
            200,
            "Streamable HTTP keeps the policy's jsonrpc mode"
        );
    }

    #[test]
    fn http_refusal_mode_uses_403_429_503() {
        let policy = POLICY.replacen(
            r#""default":"deny""#,
            r#""default":"deny","refusal_mode":"http""#,
            1,
        );
        let mut h = Harness::new(&policy);
        assert_eq!(
            reply_of(&h.as_agent("a", &call(1, "wechat_mass_delete")))
                .0
                .status,
            403
        );
        for _ in 0..2 {
            h.as_agent("a", &call(1, "wechat_everyone"));
        }
        let out = h.as_agent("a", &call(1, "wechat_everyone"));
        let (reply, value) = reply_of(&out);
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "x-envoy-ratelimited"), Some("true"));
        assert_eq!(value["error"]["code"], RATE_LIMITED);
        h.store.fail = true;
        assert_eq!(
            reply_of(&h.as_agent("a", &call(1, "wechat_mass_send")))
                .0
                .status,
            503
        );
    }

    #[test]
    fn counter_store_failure_fails_closed_and_is_reported() {
        let mut h = Harness::new(
            r#"{"version":"1","tools":{"wechat_get_followers":{},
                "wechat_mass_send":{"limits":[{"counter":"c","window":60,"max":1000000,"scope":"global"}]}}}"#,
        );
        h.store.interfere_times = usize::MAX;
        let out = h.as_agent("a", &call(3, "wechat_mass_send"));
        let (reply, value) = reply_of(&out);
        assert_eq!(reply.status, 200);
        assert_eq!(value["error"]["code"], CANNOT_ENFORCE);
        assert_eq!(value["error"]["data"]["decision"], "error");
        assert!(
            out.problem
                .as_deref()
                .unwrap()
                .contains("compare-and-swap gave up"),
            "{:?}",
            out.problem
        );
        // Tools without limits never touch the store, so they still work.
        assert_eq!(
            h.as_agent("a", &call(1, "wechat_get_followers")).verdict,
            Verdict::Forward
        );
    }

    #[test]
    fn failure_mode_open_lets_calls_through_uncounted_and_reports_it() {
        let policy = POLICY.replacen(
            r#""default":"deny""#,
            r#""default":"deny","failure_mode":"open""#,
            1,
        );
        let mut h = Harness::new(&policy);
        h.store.fail = true;
        let out = h.as_agent("a", &call(3, "wechat_mass_send"));
        assert_eq!(out.verdict, Verdict::Forward);
        assert!(
            out.problem
                .as_deref()
                .unwrap()
                .contains("failure_mode open"),
            "{:?}",
            out.problem
        );
        // Policy decisions themselves still apply.
        assert!(matches!(
            h.as_agent("a", &call(4, "wechat_mass_delete")).verdict,
            Verdict::Reply(_)
        ));
        let invalid = load_policy(br#"{"version":"1","failure_mode":"ajar"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            invalid.starts_with("failure_mode: expected one of \"closed\", \"open\""),
            "{invalid}"
        );
    }

    #[test]
    fn a_rule_that_cannot_read_its_counter_follows_the_failure_mode() {
        // Not the policy's refusal but the filter's failure to enforce it: not -32003 "denied by
        // rule", whatever failure_mode says.
        let rules = |mode: &str| {
            load_policy(
                format!(
                    r#"{{"version":"1","default":"allow","failure_mode":"{mode}","tools":{{"send":{{"rules":[
                        {{"name":"five a minute","rate_limit":"5/minute"}}]}}}}}}"#
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let body = call(1, "send");
        let meta = RequestMeta {
            namespace: "wechat",
            now: NOW,
            ..Default::default()
        };
        let mut store = MemoryStore::default();
        store.fail = true;
        let closed = done(evaluate(
            &rules("closed"),
            body.as_bytes(),
            &meta,
            &mut store,
        ));
        let (_, value) = reply_of(&closed);
        assert_eq!(value["error"]["code"], CANNOT_ENFORCE, "{value}");
        assert_eq!(closed.calls[0].decision.as_str(), "error");
        let open = done(evaluate(&rules("open"), body.as_bytes(), &meta, &mut store));
        assert_eq!(open.verdict, Verdict::Forward);
        // Only a refusal that rests on the unreadable counter says so: another rule's denial
        // stays the policy's, in either mode, also after a shadow rule failed to read.
        for (mode, first) in [
            (
                "open",
                r#"{"name":"five a minute","rate_limit":"5/minute"}"#,
            ),
            (
                "closed",
                r#"{"name":"trial","shadow":true,"rate_limit":"5/minute"}"#,
            ),
        ] {
            let policy = load_policy(
                format!(
                    r#"{{"version":"1","default":"allow","failure_mode":"{mode}","tools":{{"send":{{"rules":[{first},
                        {{"name":"x is 1","conditions":[{{"path":"args.x","op":"eq","value":1}}],"on_deny":"x must be 1"}}]}}}}}}"#
                )
                .as_bytes(),
            )
            .unwrap();
            let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send","arguments":{"x":2}}}"#;
            let (_, value) = reply_of(&done(evaluate(&policy, body.as_bytes(), &meta, &mut store)));
            assert_eq!(value["error"]["code"], POLICY_DENIED, "{mode}: {value}");
        }
        // An approval rule that cannot read its counter asks a person rather than let through.
        let asking = load_policy(
            br#"{"version":"1","default":"allow","approval":{"cluster":"approvals"},"tools":{
                "send":{"rules":[{"name":"many failures","action":"require_approval",
                    "conditions":[{"path":"state.login.fails","op":"gt","value":3}]}]},
                "login":{"rules":[{"name":"count","conditions":[{"path":"state.login.fails","op":"lte","value":100}],
                    "state":{"counter":"fails","window":"hour"}}]}}}"#,
        )
        .unwrap();
        let out = evaluate(&asking, body.as_bytes(), &meta, &mut store);
        assert!(matches!(out, Step::AwaitApproval(_)), "{out:?}");
    }

    #[test]
    fn mcp_headers_must_agree_with_the_body() {
        let mut h = Harness::new(POLICY);
        let with = |method, name| RequestMeta {
            namespace: "wechat",
            identity: who("a"),
            mcp_method: method,
            mcp_name: name,
            now: NOW,
            ..Default::default()
        };
        let allowed = call(1, "wechat_get_followers");
        assert_eq!(
            h.run(
                &allowed,
                with(Some("tools/call"), Some("wechat_get_followers"))
            )
            .verdict,
            Verdict::Forward
        );
        for meta in [
            with(Some("tools/call"), Some("wechat_mass_delete")),
            with(Some("tools/list"), None),
            with(None, Some("something_else")),
        ] {
            let out = h.run(&allowed, meta);
            let (reply, value) = reply_of(&out);
            assert_eq!(reply.status, 400);
            assert_eq!(value["error"]["code"], HEADER_MISMATCH);
            assert_eq!(value["id"], 1);
        }
        // Header claims an allowed tool while the body calls a denied one: decided from the body.
        let out = h.run(
            &call(2, "wechat_mass_delete"),
            with(Some("tools/call"), Some("wechat_get_followers")),
        );
        assert_eq!(reply_of(&out).1["error"]["code"], HEADER_MISMATCH);
        let batch = format!("[{allowed}]");
        assert_eq!(
            reply_of(&h.run(&batch, with(Some("tools/call"), None)))
                .0
                .status,
            400
        );
    }

    #[test]
    fn an_encoded_mcp_name_is_decoded_before_it_is_compared() {
        let mut h = Harness::new(
            r#"{"version":"1","default":"deny","tools":{"发送通知":{},"wechat_get_followers":{},
                "wechat_mass_delete":{"action":"deny","reason":"no"}}}"#,
        );
        let with = |method, name| RequestMeta {
            namespace: "wechat",
            identity: who("a"),
            mcp_method: Some(method),
            mcp_name: Some(name),
            now: NOW,
            ..Default::default()
        };
        // "发送通知" and "wechat_get_followers", as MCP 2026-07-28 clients encode them (a name
        // that is plain ASCII needs no encoding, but servers decode whatever is encoded).
        let unicode = "=?base64?5Y+R6YCB6YCa55+l?=";
        let ascii = "=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnM=?=";
        assert_eq!(
            h.run(&call(1, "发送通知"), with("tools/call", unicode))
                .verdict,
            Verdict::Forward
        );
        assert_eq!(
            h.run(&call(2, "wechat_get_followers"), with("tools/call", ascii))
                .verdict,
            Verdict::Forward
        );
        for (body, method, name) in [
            // Decodes to another name than the body's: an allowed one, or a denied one.
            (call(3, "wechat_mass_delete"), "tools/call", ascii),
            (call(3, "wechat_get_followers"), "tools/call", unicode),
            // Does not decode: unpadded, not canonical, not UTF-8.
            (
                call(3, "发送通知"),
                "tools/call",
                "=?base64?5Y+R6YCB6YCa55+l==?=",
            ),
            (
                call(3, "wechat_get_followers"),
                "tools/call",
                "=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnM?=",
            ),
            (
                call(3, "wechat_get_followers"),
                "tools/call",
                "=?base64?//79?=",
            ),
            // The markers are lower case; the raw name is not its own encoding.
            (
                call(3, "发送通知"),
                "tools/call",
                "=?BASE64?5Y+R6YCB6YCa55+l?=",
            ),
            (
                call(3, "=?base64?5Y+R6YCB6YCa55+l?="),
                "tools/call",
                unicode,
            ),
            // Mcp-Method has no encoded form.
            (
                call(3, "wechat_get_followers"),
                "=?base64?dG9vbHMvY2FsbA==?=",
                "wechat_get_followers",
            ),
        ] {
            let out = h.run(&body, with(method, name));
            let (reply, value) = reply_of(&out);
            assert_eq!(
                (
                    reply.status,
                    value["error"]["code"].clone(),
                    value["id"].clone()
                ),
                (400, json!(HEADER_MISMATCH), json!(3)),
                "{method} {name} {body}"
            );
            assert!(out.calls.is_empty(), "{:?}", out.calls);
        }
        let out = h.run(&call(4, "wechat_mass_delete"), with("tools/call", ascii));
        assert_eq!(
            reply_of(&out).1["error"]["message"],
            "Header mismatch: Mcp-Name header is \"=?base64?d2VjaGF0X2dldF9mb2xsb3dlcnM=?=\" \
             (decoded: \"wechat_get_followers\") but the body calls tool \"wechat_mass_delete\""
        );
    }

    #[test]
    fn refusals_and_records_echo_the_id_exactly_as_sent() {
        let mut h = Harness::new(POLICY);
        let texts = [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "18446744073709551616",
            "1.0",
            "-0",
            "1e3",
            "2.5E-7",
            r#""a\u0062\"c\/""#,
            r#""\ud83d\ude00""#,
            "null",
        ];
        let written = |reply: &Reply, id: &str| reply.body.contains(&format!(r#","id":{id},"#));
        for id in texts {
            let denied = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"wechat_mass_delete"}}}}"#
            );
            let out = h.as_agent("a", &denied);
            let (reply, _) = reply_of(&out);
            assert!(written(&reply, id), "{id}: {}", reply.body);
            assert_eq!(out.calls[0].id.as_ref().map(Id::as_json), Some(id));
            // In a batch, next to an allowed call refused with it.
            let batch = format!(r#"[{denied},{}]"#, call(5, "wechat_get_followers"));
            let (reply, _) = reply_of(&h.as_agent("a", &batch));
            assert!(written(&reply, id), "{id}: {}", reply.body);
            // A malformed message, and headers that disagree with the body.
            let invalid = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":7}}"#);
            let (reply, _) = reply_of(&h.as_agent("a", &invalid));
            assert!(written(&reply, id), "{id}: {}", reply.body);
            let meta = RequestMeta {
                namespace: "wechat",
                mcp_method: Some("tools/list"),
                now: NOW,
                ..Default::default()
            };
            let (reply, _) = reply_of(&h.run(&denied, meta));
            assert!(written(&reply, id), "{id}: {}", reply.body);
        }
        // The id a server echoes (serde_json reads a 30-digit integer as a double, as a
        // JavaScript server does) still settles the call's reservation and finds its listing.
        let big = "123456789012345678901234567890";
        let allowed = format!(
            r#"{{"jsonrpc":"2.0","id":{big},"method":"tools/call","params":{{"name":"wechat_mass_send","arguments":{{}}}}}}"#
        );
        let mut out = h.as_agent("b", &allowed);
        assert_eq!(out.verdict, Verdict::Forward);
        let answer: Value = serde_json::from_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{big},"error":{{"code":-32000,"message":"boom"}}}}"#
        ))
        .unwrap();
        assert!(
            crate::counters::reservations::settle(&mut out.reservations, &answer).is_some(),
            "refunded"
        );
        let list = format!(r#"{{"jsonrpc":"2.0","id":{big},"method":"tools/list"}}"#);
        let out = h.as_agent("b", &list);
        assert!(jsonrpc::same_id(&out.listings[0].id, &answer["id"]));
    }

    #[test]
    fn counters_of_different_servers_never_mix() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let spec = policy.counters.iter().find(|c| c.name == "sends").unwrap();
        let caller = Caller::new(&policy, who("a"));
        let slot = |namespace| counter_slot(&policy, namespace, spec, &caller, None);
        assert_ne!(slot("wechat").key, slot("notify").key);
        assert!(
            slot("wechat")
                .key
                .starts_with("mcp-policy/v2/6:wechat/5:sends/60s/8192x/b"),
            "{:?}",
            slot("wechat")
        );
    }

    #[test]
    fn counter_keys_built_at_configure_are_the_keys_a_call_would_build() {
        let mut policy = load_policy(GRANTED.as_bytes()).unwrap();
        policy.counter_salt = 0x5eed;
        let as_loaded = policy.clone();
        policy.prepare_counter_keys("wechat");
        let mut global = load_policy(POLICY.as_bytes()).unwrap();
        global.prepare_counter_keys("wechat");
        let everyone = global.counters.iter().find(|c| c.name == "all").unwrap();
        assert_eq!(
            &*everyone.keys.global,
            "mcp-policy/v2/6:wechat/3:all/3600s/global"
        );
        fn caller_of<'p>(p: &'p Policy, agent: &str) -> Caller<'p> {
            Caller::new(p, who(agent))
        }
        for (id, spec) in policy.counters.iter().enumerate() {
            assert!(spec
                .keys
                .bucket_prefix
                .starts_with("mcp-policy/v2/6:wechat/"));
            for agent in ["mkt-1", "sup-7", "stranger"] {
                for session in [None, Some("s-1")] {
                    let caller = caller_of(&policy, agent);
                    let loaded_caller = caller_of(&as_loaded, agent);
                    let prepared = counter_slot(&policy, "wechat", spec, &caller, session);
                    let built = counter_slot(
                        &as_loaded,
                        "wechat",
                        &as_loaded.counters[id],
                        &loaded_caller,
                        session,
                    );
                    assert_eq!(prepared, built, "{} for {agent}", spec.name);
                    // Asked about another server's counters, the keys are that server's.
                    let other = counter_slot(&policy, "notify", spec, &caller, session);
                    assert!(
                        other.key.starts_with("mcp-policy/v2/6:notify/"),
                        "{other:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn counter_keys_stay_bounded_however_many_callers_come() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","counter_slots":64,"tools":{"t":{"limits":[
                {"counter":"c","window":"minute","max":5,"scope":"session"}]}}}"#,
        )
        .unwrap();
        let spec = &policy.counters[0];
        let caller = Caller::new(&policy, None);
        let mut keys = std::collections::BTreeSet::new();
        let mut owners = std::collections::BTreeSet::new();
        for i in 0..10_000 {
            let session = format!("session-{i}");
            let slot = counter_slot(&policy, "s", spec, &caller, Some(&session));
            keys.insert(slot.key);
            owners.insert(slot.owner);
        }
        assert_eq!(keys.len(), 8, "64 slots are 8 buckets of 8");
        assert_eq!(
            owners.len(),
            10_000,
            "every caller keeps its own fingerprint"
        );
        // The salt moves callers between buckets: nobody outside can aim at one.
        let mut salted = policy.clone();
        salted.counter_salt = 0x5eed;
        let bucket_of = |p: &Policy, s: &str| counter_slot(p, "s", spec, &caller, Some(s)).key;
        assert!((0..50).any(|i| {
            let s = format!("session-{i}");
            bucket_of(&policy, &s) != bucket_of(&salted, &s)
        }));
    }

    const GRANTED: &str = r#"{"version":"1","default":"deny",
        "tools":{"wechat_mass_send":{}},
        "grants":{
            "marketing":{"identities":["mkt-1","mkt-2"],
                "tools":{"wechat_mass_send":{"limits":[{"counter":"per_grant","window":"hour","max":3,"scope":"grant"},
                                                      {"counter":"per_identity","window":"hour","max":2,"scope":"identity"}]}}},
            "support":{"identities":["sup-*"],
                "limits":[{"counter":"support_calls","window":"hour","max":1,"scope":"grant"}]}}}"#;

    #[test]
    fn grant_scope_is_shared_by_the_grants_identities_and_identity_scope_is_not() {
        let mut h = Harness::new(GRANTED);
        let forwarded = |h: &mut Harness, agent: &str| {
            h.as_agent(agent, &call(1, "wechat_mass_send")).verdict == Verdict::Forward
        };
        assert!(forwarded(&mut h, "mkt-1"));
        assert!(forwarded(&mut h, "mkt-1"));
        // mkt-1 used its 2 (identity scope); mkt-2 still has its own 2, but the grant has 1 left.
        let (_, body) = reply_of(&h.as_agent("mkt-1", &call(1, "wechat_mass_send")));
        assert_eq!(body["error"]["data"]["counter"], "per_identity");
        assert!(forwarded(&mut h, "mkt-2"));
        let (_, body) = reply_of(&h.as_agent("mkt-2", &call(1, "wechat_mass_send")));
        assert_eq!(body["error"]["data"]["counter"], "per_grant");
        // Grant-level limits apply to every call of the grant; keys name the grant.
        assert!(forwarded(&mut h, "sup-1"));
        let (_, body) = reply_of(&h.as_agent("sup-2", &call(1, "wechat_mass_send")));
        assert_eq!(body["error"]["data"]["counter"], "support_calls");
        for (counter, agent, used) in [
            ("per_grant", "mkt-1", 3),
            ("per_grant", "mkt-2", 3),
            ("per_identity", "mkt-1", 2),
            ("per_identity", "mkt-2", 1),
            ("support_calls", "sup-1", 1),
            ("support_calls", "sup-9", 1),
        ] {
            assert_eq!(
                h.used(counter, agent, None),
                Some(used),
                "{counter} of {agent}"
            );
        }
    }

    #[test]
    fn an_identity_without_grant_is_told_which_grant_it_lacks() {
        let mut h = Harness::new(GRANTED);
        let (_, body) = reply_of(&h.as_agent("stranger", &call(5, "wechat_mass_send")));
        assert_eq!(body["error"]["code"], POLICY_DENIED);
        assert_eq!(
            body["error"]["data"]["reason"],
            "identity \"stranger\" holds no grant on this server (grants: marketing, support)"
        );
        assert_eq!(h.store.sets, 0);
    }
}

#[cfg(test)]
mod shadow_tests {
    use super::*;
    use crate::load::load_policy;
    use crate::request::outcome::*;
    use crate::test_support::done;
    use crate::test_support::{test, MemoryStore};

    fn run(policy: &Policy, store: &mut MemoryStore, tool: &str, args: &str) -> Outcome {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        );
        done(evaluate(
            policy,
            body.as_bytes(),
            &RequestMeta {
                namespace: "s",
                now: 1_000_000_000,
                ..Default::default()
            },
            store,
        ))
    }

    #[test]
    fn a_shadow_policy_reports_what_it_would_deny_and_forwards_everything() {
        let policy = load_policy(
            br#"{"version":"1","default":"deny","shadow":true,"tools":{
            "limited":{"limits":[{"counter":"c","window":"hour","max":1,"scope":"global"}]}}}"#,
        )
        .unwrap();
        let mut store = MemoryStore::default();
        let out = run(&policy, &mut store, "unlisted", "{}");
        assert_eq!(out.verdict, Verdict::Forward);
        assert_eq!(out.calls[0].decision.as_str(), "would_deny");
        assert!(
            out.calls[0].detail.contains("(default)"),
            "{}",
            out.calls[0].detail
        );
        assert_eq!(
            run(&policy, &mut store, "limited", "{}").calls[0].decision,
            "allowed"
        );
        let over = run(&policy, &mut store, "limited", "{}");
        assert_eq!(over.verdict, Verdict::Forward);
        assert_eq!(
            (
                over.calls[0].decision.as_str(),
                over.calls[0].detail.as_str()
            ),
            ("would_deny", "rate limited: counter c is used up")
        );
    }

    #[test]
    fn shadow_tools_and_rules_only_report_while_the_rest_is_enforced() {
        let policy = load_policy(br#"{"version":"1","default":"allow","tools":{
            "new_rule":{"rules":[
                {"name":"trial","shadow":true,"conditions":[{"path":"args.n","op":"lte","value":5}],"on_deny":"n too big"},
                {"name":"enforced","conditions":[{"path":"args.n","op":"gte","value":0}],"on_deny":"n negative"}]},
            "trial_tool":{"shadow":true,"action":"deny","reason":"about to be removed"}}}"#)
        .unwrap();
        let mut store = MemoryStore::default();
        let out = run(&policy, &mut store, "new_rule", r#"{"n":9}"#);
        assert_eq!(out.verdict, Verdict::Forward);
        assert_eq!(out.calls[0].decision.as_str(), "would_deny");
        assert!(out.calls[0]
            .detail
            .starts_with("n too big (tools.new_rule.rules[0])"));
        // A later, enforced rule still denies.
        assert!(matches!(
            run(&policy, &mut store, "new_rule", r#"{"n":-1}"#).verdict,
            Verdict::Reply(_)
        ));
        let trial = run(&policy, &mut store, "trial_tool", "{}");
        assert_eq!(
            (trial.verdict, trial.calls[0].decision.as_str()),
            (Verdict::Forward, "would_deny")
        );
    }

    #[test]
    fn a_shadow_rule_counts_but_never_refuses() {
        // Its counter runs out, or its amount is missing: reported, never enforced (found in
        // review: the rule's counter was enforced like any other).
        let policy = load_policy(
            br#"{"version":"1","default":"allow","tools":{"t":{"rules":[
                {"name":"trial","shadow":true,"rate_limit":"2/minute"},
                {"name":"weighted","shadow":true,"state":{"counter":"w","window":"hour","increment_from":"args.n"},
                 "conditions":[{"path":"state.t.w","op":"lt","value":100}]}]}}}"#,
        )
        .unwrap();
        let mut store = MemoryStore::default();
        let missing = run(&policy, &mut store, "t", "{}");
        assert_eq!(
            (missing.verdict, missing.calls[0].decision.as_str()),
            (Verdict::Forward, "would_deny"),
            "{}",
            missing.calls[0].detail
        );
        assert!(
            missing.calls[0].detail.contains("args.n"),
            "{}",
            missing.calls[0].detail
        );
        let second = run(&policy, &mut store, "t", r#"{"n":1}"#);
        assert_eq!(
            (second.verdict, second.calls[0].decision.as_str()),
            (Verdict::Forward, "allowed")
        );
        let third = run(&policy, &mut store, "t", r#"{"n":1}"#);
        assert_eq!(
            (third.verdict, third.calls[0].decision.as_str()),
            (Verdict::Forward, "would_deny"),
            "{}",
            third.calls[0].detail
        );
        assert!(
            third.calls[0].detail.contains("t._rate_minute"),
            "{}",
            third.calls[0].detail
        );
    }

    #[test]
    fn a_hidden_tool_in_shadow_mode_is_reported_not_refused() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","hide":["old","trial"],"tools":{"trial":{"shadow":true}}}"#,
        )
        .unwrap();
        let mut store = MemoryStore::default();
        let trial = run(&policy, &mut store, "trial", "{}");
        assert_eq!(
            (trial.verdict, trial.calls[0].decision.as_str()),
            (Verdict::Forward, "would_deny")
        );
        assert!(
            trial.calls[0].detail.contains("hidden by policy"),
            "{}",
            trial.calls[0].detail
        );
        assert!(matches!(
            run(&policy, &mut store, "old", "{}").verdict,
            Verdict::Reply(_)
        ));
        let everywhere =
            load_policy(br#"{"version":"1","default":"allow","shadow":true,"hide":["old"]}"#)
                .unwrap();
        let old = run(&everywhere, &mut store, "old", "{}");
        assert_eq!(
            (old.verdict, old.calls[0].decision.as_str()),
            (Verdict::Forward, "would_deny")
        );
    }

    #[test]
    fn shadow_flags_must_be_booleans() {
        for (text, path) in [
            (
                r#"{"version":"1","shadow":"yes"}"#,
                "shadow: expected true or false",
            ),
            (
                r#"{"version":"1","tools":{"t":{"shadow":1}}}"#,
                "tools.t.shadow: expected true or false",
            ),
            (
                r#"{"version":"1","tools":{"t":{"rules":[{"name":"r","shadow":0,"conditions":[{"path":"args.x","op":"exists","value":true}]}]}}}"#,
                "tools.t.rules[0].shadow: expected true or false",
            ),
        ] {
            let got = load_policy(text.as_bytes()).unwrap_err().to_string();
            assert!(got.starts_with(path), "{got}");
        }
    }
}
