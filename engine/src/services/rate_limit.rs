//! Counters kept by a rate-limit service (`envoy.service.ratelimit.v3`), so that every Envoy
//! shares one budget: what to ask, and how to read what they answer.

use sha2::{Digest, Sha256};

use crate::counters::Slot;
use crate::hex::hex;
use crate::policy::caller::Caller;
use crate::policy::{CounterId, CounterSpec, Policy, Scope};
use crate::protocol::ratelimit::{
    decode_response, encode_request, Code, Descriptor, Response, Unit,
};

/// A counter one request charges, with where this Envoy keeps it (used for local counters, and
/// for service-kept ones when their service fails with `failure_mode: local`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCharge {
    pub id: CounterId,
    pub cost: u64,
    pub reason: Option<String>,
    pub slot: Slot,
}

/// What one rate-limit service is asked for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceQuery {
    /// Index into `Policy::rate_limit_services`.
    pub service: usize,
    /// Serialized `RateLimitRequest`.
    pub request: Vec<u8>,
    /// One per descriptor, in the same order.
    pub(crate) charges: Vec<RemoteCharge>,
}

impl ServiceQuery {
    /// How many descriptors the request carries (a usable answer has one status for each).
    pub fn descriptors(&self) -> usize {
        self.charges.len()
    }
}

/// One query per service the request's counters use, each carrying one descriptor per counter.
pub fn queries(
    policy: &Policy,
    namespace: &str,
    session: Option<&str>,
    caller: &Caller,
    charges: Vec<(usize, RemoteCharge)>,
) -> Vec<ServiceQuery> {
    let mut queries: Vec<(usize, Vec<Descriptor>, Vec<RemoteCharge>)> = Vec::new();
    for (service, charge) in charges {
        let Some(spec) = policy.counter(charge.id) else {
            continue;
        };
        let descriptor = descriptor(namespace, spec, caller, session, charge.cost);
        match queries.iter_mut().find(|(s, _, _)| *s == service) {
            Some((_, descriptors, list)) => {
                descriptors.push(descriptor);
                list.push(charge);
            }
            None => queries.push((service, vec![descriptor], vec![charge])),
        }
    }
    queries
        .into_iter()
        .filter_map(|(service, descriptors, charges)| {
            let settings = policy.rate_limit_services.get(service)?;
            Some(ServiceQuery {
                service,
                request: encode_request(&settings.domain, &descriptors),
                charges,
            })
        })
        .collect()
}

/// The descriptor of one counter for one caller. Entries name the filter instance, the counter
/// and whose budget it is; not the tool, since a counter may be shared by several tools. Session
/// ids and identities are sent as SHA-256 digests: a session id is a credential, and the service
/// (and its Redis) need only tell callers apart. Unlike shared-data fingerprints they are not
/// salted: every Envoy must name the same caller the same way.
pub fn descriptor(
    namespace: &str,
    spec: &CounterSpec,
    caller: &Caller,
    session: Option<&str>,
    hits: u64,
) -> Descriptor {
    let digest = |parts: &[&str]| {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex(hasher.finalize().get(..16).unwrap_or_default())
    };
    let whose = match (spec.scope, caller.grant, caller.identity, session) {
        (Scope::Global, ..) => ("mcp_scope", "global".to_owned()),
        (Scope::Grant, Some(grant), ..) => ("mcp_grant", grant.name.clone()),
        // No grant held (or none defined): the identity is its own grant.
        (Scope::Grant | Scope::Identity, _, Some(identity), _) => {
            ("mcp_identity", digest(&[&identity.source, &identity.value]))
        }
        (Scope::Grant | Scope::Identity, _, None, _) => ("mcp_identity", "anonymous".to_owned()),
        (Scope::Session, .., Some(session)) => ("mcp_session", digest(&[session])),
        (Scope::Session, .., None) => ("mcp_session", "none".to_owned()),
    };
    Descriptor {
        entries: vec![
            ("mcp_server".to_owned(), namespace.to_owned()),
            ("mcp_counter".to_owned(), spec.name.clone()),
            (whose.0.to_owned(), whose.1),
        ],
        requests_per_unit: u32::try_from(spec.max).unwrap_or(u32::MAX),
        unit: Unit::for_window(spec.window.seconds()).unwrap_or(Unit::Second),
        hits,
    }
}

/// A service's answer (or why there is none) read once: the response if it can be trusted.
pub fn read_answer(
    answer: Result<Vec<u8>, String>,
    descriptors: usize,
) -> Result<Response, String> {
    answer
        .and_then(|bytes| decode_response(&bytes))
        .and_then(|response| usable(response, descriptors))
}

/// The metric label for one answer as `read_answer` read it.
pub fn answer_label(answer: &Result<Response, String>) -> &'static str {
    match answer {
        Ok(response) if response.overall_code == Code::OverLimit => "over_limit",
        Ok(_) => "ok",
        Err(_) => "error",
    }
}

/// A response is only trusted if it says yes or no and accounts for every descriptor.
fn usable(response: Response, descriptors: usize) -> Result<Response, String> {
    if response.overall_code == Code::Unknown {
        return Err("answer has no overall code".to_owned());
    }
    if response.statuses.len() != descriptors {
        return Err(format!(
            "answer has {} descriptor statuses for {descriptors} descriptors",
            response.statuses.len()
        ));
    }
    if response.overall_code == Code::OverLimit
        && !response.statuses.iter().any(|s| s.code == Code::OverLimit)
    {
        return Err("answer is OVER_LIMIT but names no descriptor over its limit".to_owned());
    }
    if response
        .statuses
        .iter()
        .any(|s| s.code == Code::Ok && !s.limit_applied)
    {
        // OK without `current_limit`: no limit matched the descriptor, so nothing was counted.
        return Err("answer applied no limit to a descriptor (is the service configured for this domain and its descriptors?)".to_owned());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::CasStore;
    use crate::policy::ServiceFailureMode;
    use crate::request::remote::AwaitingServices;

    /// The host's part: each raw answer read once, then the request resumed with them.
    fn finish(
        policy: &Policy,
        awaiting: AwaitingServices,
        answers: Vec<Result<Vec<u8>, String>>,
        store: &mut dyn CasStore,
    ) -> Outcome {
        let answers = awaiting
            .queries
            .iter()
            .zip(answers)
            .map(|(query, answer)| read_answer(answer, query.descriptors()))
            .collect();
        awaiting.resume(policy, answers, store)
    }

    fn label(answer: &Result<Vec<u8>, String>, descriptors: usize) -> &'static str {
        answer_label(&read_answer(answer.clone(), descriptors))
    }
    use crate::load::load_policy;
    use crate::policy::identity::Identity;
    #[allow(unused_imports)]
    use crate::request::evaluate::{evaluate, RequestMeta, Step};
    #[allow(unused_imports)]
    use crate::request::outcome::*;
    #[allow(unused_imports)]
    use crate::test_support::done;
    use crate::test_support::{test, MemoryStore};
    use serde_json::Value;

    const NOW: u64 = 1_795_342_542;

    fn policy(failure_mode: &str, extra: &str) -> Policy {
        load_policy(
            format!(
                r#"{{"version":"1","default":"deny",{extra}
                "rate_limit_services":{{"shared":{{"cluster":"ratelimit","failure_mode":"{failure_mode}"}}}},
                "rate_limit_service":"shared",
                "tools":{{"send":{{"limits":[{{"counter":"sends","window":"minute","max":30,"scope":"grant"}},
                                            {{"counter":"per_session","window":"hour","max":5,"scope":"session","rate_limit_service":"local"}}]}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn call() -> &'static [u8] {
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send","arguments":{}}}"#
    }

    fn ask(policy: &Policy, store: &mut MemoryStore) -> Box<AwaitingServices> {
        let identity = Identity::new("agent-a");
        let meta = RequestMeta {
            namespace: "wechat",
            identity: Some(&identity),
            session: Some("s-1"),
            now: NOW,
            ..Default::default()
        };
        match evaluate(policy, call(), &meta, store) {
            Step::AwaitServices(awaiting) => awaiting,
            other => panic!("expected to wait for the service, got {other:?}"),
        }
    }

    /// A `RateLimitResponse` with one status per (code, remaining, reset) triple.
    fn response(overall: u8, statuses: &[(u8, u8, u8)]) -> Vec<u8> {
        let mut out = vec![0x08, overall];
        for (code, remaining, reset) in statuses {
            // current_limit { requests_per_unit: 30, unit: MINUTE }: the limit applied.
            out.extend([
                0x12, 14, 0x08, *code, 0x12, 4, 0x08, 30, 0x10, 2, 0x18, *remaining, 0x22, 2, 0x08,
                *reset,
            ]);
        }
        out
    }

    fn error_of(outcome: &Outcome) -> Value {
        match &outcome.verdict {
            Verdict::Reply(reply) => {
                serde_json::from_str::<Value>(&reply.body).unwrap()["error"].clone()
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn local_counters_are_taken_first_and_the_service_is_asked_for_the_rest() {
        let policy = policy("closed", "");
        let mut store = MemoryStore::default();
        let awaiting = ask(&policy, &mut store);
        assert_eq!(awaiting.queries.len(), 1);
        let query = &awaiting.queries[0];
        assert_eq!(query.service, 0);
        let grant_of_identity = {
            let identity = Identity::new("agent-a");
            let caller = Caller::new(&policy, Some(&identity));
            descriptor("wechat", &policy.counters[0], &caller, Some("s-1"), 1)
        };
        assert_eq!(
            grant_of_identity.entries[0],
            ("mcp_server".into(), "wechat".into())
        );
        assert_eq!(
            grant_of_identity.entries[1],
            ("mcp_counter".into(), "sends".into())
        );
        assert_eq!(grant_of_identity.entries[2].0, "mcp_identity");
        assert_eq!(
            grant_of_identity.entries[2].1.len(),
            32,
            "a digest, not the identity"
        );
        assert_eq!(
            (grant_of_identity.requests_per_unit, grant_of_identity.unit),
            (30, Unit::Minute)
        );
        assert_eq!(
            query.request,
            encode_request("mcp-policy", &[grant_of_identity])
        );
        // The local per-session counter was charged already: 2 shared-data operations.
        assert_eq!((store.gets, store.sets), (1, 1));
    }

    #[test]
    fn a_request_abandoned_while_the_service_is_asked_gives_its_local_counts_back() {
        // The client hung up before the answer: never forwarded, so nothing stays taken (found in
        // review: the local per-session unit was lost).
        let policy = policy("closed", "");
        let mut store = MemoryStore::default();
        let awaiting = ask(&policy, &mut store);
        let (slot, _, cost) = awaiting.charging.taken[0].clone();
        assert_eq!((store.count(&slot), cost), (Some(1), 1));
        assert_eq!(awaiting.abandon(&mut store), None);
        assert_eq!(store.count(&slot), Some(0));
    }

    #[test]
    fn an_ok_answer_forwards_and_records_the_services_count() {
        let policy = policy("closed", "");
        let mut store = MemoryStore::default();
        let awaiting = ask(&policy, &mut store);
        let outcome = finish(
            &policy,
            *awaiting,
            vec![Ok(response(1, &[(1, 18, 18)]))],
            &mut store,
        );
        assert_eq!(outcome.verdict, Verdict::Forward);
        assert_eq!(outcome.calls[0].decision, "allowed");
        let sends = outcome
            .counters
            .iter()
            .find(|c| c.counter == "sends")
            .unwrap();
        assert_eq!(
            (sends.value, sends.max, sends.window_start),
            (12, 30, NOW - 42)
        );
        // Only the local counter can be refunded: the protocol has no way to give hits back.
        assert_eq!(outcome.reservations[0].holds.len(), 1);
    }

    #[test]
    fn over_limit_refuses_with_the_services_reset_time_and_gives_local_counts_back() {
        let policy = policy("closed", "");
        let mut store = MemoryStore::default();
        let awaiting = ask(&policy, &mut store);
        let outcome = finish(
            &policy,
            *awaiting,
            vec![Ok(response(2, &[(2, 0, 18)]))],
            &mut store,
        );
        let error = error_of(&outcome);
        assert_eq!(error["data"]["decision"], "rate_limited");
        assert_eq!(error["data"]["counter"], "sends");
        assert_eq!(error["data"]["retry_after_seconds"], 18);
        assert_eq!(outcome.calls[0].decision, "rate_limited");
        // The per-session count taken before the service answered was given back.
        let identity = Identity::new("agent-a");
        let caller = Caller::new(&policy, Some(&identity));
        let slot = crate::request::slot::counter_slot(
            &policy,
            "wechat",
            &policy.counters[1],
            &caller,
            Some("s-1"),
        );
        assert_eq!(store.count(&slot).unwrap_or(0), 0);
    }

    #[test]
    fn no_answer_follows_the_services_failure_mode() {
        // closed: refused as "cannot enforce", local counts given back.
        let closed = policy("closed", "");
        let mut store = MemoryStore::default();
        let awaiting = ask(&closed, &mut store);
        let outcome = finish(
            &closed,
            *awaiting,
            vec![Err("gRPC status 14".into())],
            &mut store,
        );
        let error = error_of(&outcome);
        assert_eq!(error["data"]["decision"], "error");
        assert!(error["data"]["problem"]
            .as_str()
            .unwrap()
            .contains("rate-limit service \"shared\": gRPC status 14"));
        assert!(outcome.problem.unwrap().contains("fail closed"));

        // open: forwarded uncounted, reported.
        let open = policy("open", "");
        let awaiting = ask(&open, &mut store);
        let outcome = finish(&open, *awaiting, vec![Err("timeout".into())], &mut store);
        assert_eq!(outcome.verdict, Verdict::Forward);
        assert!(outcome.problem.unwrap().contains("failure_mode open"));

        // local: this Envoy counts against the same max until it is used up.
        let local = policy("local", "");
        let mut store = MemoryStore::default();
        let mut admitted = 0;
        for session in 0..40 {
            let identity = Identity::new("agent-a");
            let session = format!("s-{session}");
            let meta = RequestMeta {
                namespace: "wechat",
                identity: Some(&identity),
                session: Some(&session),
                now: NOW,
                ..Default::default()
            };
            let Step::AwaitServices(awaiting) = evaluate(&local, call(), &meta, &mut store) else {
                panic!("expected to wait for the service");
            };
            let outcome = finish(&local, *awaiting, vec![Err("timeout".into())], &mut store);
            if outcome.verdict == Verdict::Forward {
                admitted += 1;
                assert!(outcome.problem.unwrap().contains("failure_mode local"));
            } else {
                assert_eq!(error_of(&outcome)["data"]["decision"], "rate_limited");
            }
        }
        assert_eq!(admitted, 30);
    }

    #[test]
    fn answers_that_do_not_add_up_are_failures_not_verdicts() {
        let policy = policy("closed", "");
        let mut store = MemoryStore::default();
        for answer in [
            response(1, &[]),          // a status missing
            response(0, &[(1, 1, 1)]), // no overall code
            response(2, &[(1, 1, 1)]), // over limit, but no descriptor is
            vec![0x12, 40, 1],         // not protobuf
            // OK, but no limit applied (no `current_limit`): nothing was counted.
            vec![0x08, 1, 0x12, 8, 0x08, 1, 0x18, 29, 0x22, 2, 0x08, 5],
        ] {
            let answer = Ok(answer);
            assert_eq!(
                label(&answer, 1),
                "error",
                "and counted as such: {answer:?}"
            );
            let awaiting = ask(&policy, &mut store);
            let outcome = finish(&policy, *awaiting, vec![answer], &mut store);
            assert_eq!(error_of(&outcome)["data"]["decision"], "error");
        }
    }

    #[test]
    fn answers_are_labelled_as_the_decision_reads_them() {
        assert_eq!(label(&Ok(response(1, &[(1, 1, 1)])), 1), "ok");
        assert_eq!(label(&Ok(response(2, &[(2, 0, 9)])), 1), "over_limit");
        assert_eq!(label(&Ok(response(1, &[(1, 1, 1)])), 2), "error");
        assert_eq!(label(&Err("gRPC status 14".to_owned()), 1), "error");
    }

    #[test]
    fn in_shadow_mode_over_limit_is_reported_and_the_call_goes_on() {
        let policy = policy("closed", r#""shadow":true,"#);
        let mut store = MemoryStore::default();
        let awaiting = ask(&policy, &mut store);
        let outcome = finish(
            &policy,
            *awaiting,
            vec![Ok(response(2, &[(2, 0, 5)]))],
            &mut store,
        );
        assert_eq!(outcome.verdict, Verdict::Forward);
        assert_eq!(outcome.calls[0].decision, "would_deny");
    }

    #[test]
    fn over_limit_only_in_shadow_counts_nothing_so_the_others_follow_the_failure_mode() {
        // The service counts all or nothing: `y` (shadow) over its limit means `x` was not
        // charged either, so `send` must not go through as counted.
        let policy = load_policy(
            br#"{"version":"1","default":"deny",
                "rate_limit_services":{"shared":{"cluster":"ratelimit","failure_mode":"closed"}},
                "rate_limit_service":"shared",
                "tools":{"trial":{"shadow":true,"limits":[{"counter":"y","window":"minute","max":1,"scope":"global"}]},
                         "send":{"limits":[{"counter":"x","window":"minute","max":30,"scope":"global"}]}}}"#,
        )
        .unwrap();
        let mut store = MemoryStore::default();
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"trial","arguments":{}}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"send","arguments":{}}}]"#;
        let meta = RequestMeta {
            namespace: "wechat",
            now: NOW,
            ..Default::default()
        };
        let Step::AwaitServices(awaiting) = evaluate(&policy, batch, &meta, &mut store) else {
            panic!("expected to wait for the service")
        };
        let statuses: Vec<(u8, u8, u8)> = awaiting.queries[0]
            .charges
            .iter()
            .map(
                |charge| match policy.counter(charge.id).map(|c| c.name.as_str()) {
                    Some("y") => (2, 0, 5),
                    _ => (1, 29, 5),
                },
            )
            .collect();
        assert_eq!(statuses.len(), 2);
        let outcome = finish(
            &policy,
            *awaiting,
            vec![Ok(response(2, &statuses))],
            &mut store,
        );
        assert!(
            matches!(outcome.verdict, Verdict::Reply(_)),
            "{:?}",
            outcome.verdict
        );
    }

    #[test]
    fn scope_values_name_budgets_without_revealing_credentials() {
        let policy = load_policy(
            br#"{"version":"1","rate_limit_services":{"rls":{"cluster":"c"}},"rate_limit_service":"rls",
              "grants":{"ops":{"identities":["alice"]}},
              "tools":{"t":{"limits":[{"counter":"g","window":"day","max":3,"scope":"global"},
                                      {"counter":"s","window":"second","max":3,"scope":"session"},
                                      {"counter":"o","window":"hour","max":3,"scope":"grant"}]}}}"#,
        )
        .unwrap();
        let alice = Identity::new("alice");
        let caller = Caller::new(&policy, Some(&alice));
        let entry = |id: usize, session: Option<&str>| {
            descriptor("srv", &policy.counters[id], &caller, session, 1).entries[2].clone()
        };
        assert_eq!(entry(0, None), ("mcp_scope".into(), "global".into()));
        let session = entry(1, Some("secret-session-id"));
        assert_eq!(session.0, "mcp_session");
        assert!(!session.1.contains("secret"));
        assert_eq!(entry(1, None), ("mcp_session".into(), "none".into()));
        assert_eq!(entry(2, None), ("mcp_grant".into(), "ops".into()));
        let anonymous = Caller::new(&policy, None);
        assert_eq!(
            descriptor("srv", &policy.counters[2], &anonymous, None, 1).entries[2],
            ("mcp_identity".into(), "anonymous".into())
        );
    }

    #[test]
    fn service_settings_are_validated_with_their_paths() {
        let error_of = |text: &str| load_policy(text.as_bytes()).unwrap_err().to_string();
        let with = |services: &str, limit: &str| {
            format!(
                r#"{{"version":"1","rate_limit_services":{services},"tools":{{"t":{{"limits":[{limit}]}}}}}}"#
            )
        };
        let limit = r#"{"counter":"c","window":"minute","max":3,"scope":"global","rate_limit_service":"rls"}"#;
        assert!(error_of(&with(r#"{"rls":{}}"#, limit))
            .starts_with("rate_limit_services.rls.cluster: required"));
        // A shared counter is one budget: kept by one service.
        let split = error_of(
            r#"{"version":"1","rate_limit_services":{"rls":{"cluster":"c"}},"tools":{
                "a":{"limits":[{"counter":"c","window":"minute","max":3,"scope":"global","rate_limit_service":"rls"}]},
                "b":{"limits":[{"counter":"c","window":"minute","max":3,"scope":"global"}]}}}"#,
        );
        assert!(
            split.contains("same window, max, scope and rate-limit service")
                && split.ends_with(", another rate-limit service)"),
            "{split}"
        );
        assert!(error_of(&with(r#"{"local":{"cluster":"c"}}"#, limit))
            .starts_with("rate_limit_services.local: a service name must not be"));
        assert!(error_of(&with(
            r#"{"rls":{"cluster":"c","failure_mode":"maybe"}}"#,
            limit
        ))
        .starts_with(
            "rate_limit_services.rls.failure_mode: expected one of \"closed\", \"open\", \"local\""
        ));
        assert!(
            error_of(&with(r#"{"rls":{"cluster":"c","timeout_ms":0}}"#, limit))
                .starts_with("rate_limit_services.rls.timeout_ms")
        );
        assert!(
            error_of(&with(r#"{"rls":{"cluster":"c","port":1}}"#, limit))
                .starts_with("rate_limit_services.rls.port: unknown field")
        );
        assert!(error_of(&with(r#"{"other":{"cluster":"c"}}"#, limit))
            .starts_with("tools.t.limits[0].rate_limit_service: no rate-limit service named \"rls\"; expected one of \"local\", \"other\""));
        let ninety =
            r#"{"counter":"c","window":90,"max":3,"scope":"global","rate_limit_service":"rls"}"#;
        assert!(error_of(&with(r#"{"rls":{"cluster":"c"}}"#, ninety))
            .starts_with("tools.t.limits[0].window: counted by rate-limit service \"rls\", so the window must be"));
        let huge = r#"{"counter":"c","window":60,"max":5000000000,"scope":"global","rate_limit_service":"rls"}"#;
        assert!(error_of(&with(r#"{"rls":{"cluster":"c"}}"#, huge))
            .starts_with("tools.t.limits[0].max: counted by rate-limit service"));
        // A counter is counted in one place: two uses that disagree are refused.
        let split = r#"{"version":"1","rate_limit_services":{"rls":{"cluster":"c"}},"tools":{
            "a":{"limits":[{"counter":"c","window":60,"max":3,"scope":"global","rate_limit_service":"rls"}]},
            "b":{"limits":[{"counter":"c","window":60,"max":3,"scope":"global"}]}}}"#;
        assert!(error_of(split).starts_with("tools.b.limits[0]: counter \"c\" is already defined"));
        // Defaults.
        let ok = load_policy(with(r#"{"rls":{"cluster":"c"}}"#, limit).as_bytes()).unwrap();
        let service = &ok.rate_limit_services[0];
        assert_eq!(
            (
                service.domain.as_str(),
                service.timeout_ms,
                service.failure_mode
            ),
            ("mcp-policy", 200, ServiceFailureMode::Closed)
        );
    }
}
