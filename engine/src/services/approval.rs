//! Require approval: a human approves the exact call (server, tool, arguments, caller) before it
//! reaches the server. The filter asks the approval service with a digest of the call; the
//! service holds the question until a human decides or the hold time ends.

use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::hex::hex;
use crate::json::strict;
use crate::policy::identity::Identity;
use crate::policy::Policy;
use crate::protocol::approval_check::{CheckAnswer, CheckRequest, CheckStatus};
use crate::protocol::jsonrpc::Id;
use crate::reply::Refusal;

/// One call waiting for a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalQuery {
    /// SHA-256 (hex) of server, tool, canonical arguments and caller: what an approval is for.
    pub digest: String,
    pub tool: String,
    /// The call's JSON-RPC id, for the refusal.
    pub id: Option<Id>,
    /// The call's arguments as sent, for the audit record.
    pub arguments: Option<String>,
    /// Body of the POST to the approval service.
    pub request: String,
    /// The policy element that asks for approval (JSON path), for the audit record.
    pub rule: String,
}

/// What the re-evaluation of an approved call is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approved<'a> {
    pub digest: &'a str,
    /// Who approved, and which approval, for the audit record.
    pub note: &'a str,
}

/// The question for `tool` called with `arguments` (raw JSON, or none) by `identity`.
/// Arguments are canonical (keys sorted, no whitespace) so that the same call always has the same
/// digest, and any change to them needs a new approval.
pub fn query(
    policy: &Policy,
    namespace: &str,
    identity: Option<&Identity>,
    tool: &str,
    id: Option<Id>,
    arguments: Option<&str>,
    rule: &str,
) -> Result<ApprovalQuery, String> {
    let canonical: Value = match arguments {
        Some(text) => {
            if let Some(number) = inexact_number(text) {
                return Err(format!(
                    "the arguments hold the integer {number}, beyond 64 bits: a person could not be shown exactly the value the server reads"
                ));
            }
            strict::from_slice(text.as_bytes()).map_err(|e| e.to_string())?
        }
        None => Value::Null,
    };
    let canonical_text = canonical.to_string();
    let caller: [&str; 2] = match identity {
        Some(identity) => [&identity.source, &identity.value],
        None => ["anonymous", ""],
    };
    let mut hasher = Sha256::new();
    let numbers = arguments.map(exact_numbers).unwrap_or_default();
    for part in [
        namespace,
        tool,
        &canonical_text,
        caller[0],
        caller[1],
        &numbers,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hex(&hasher.finalize());
    let settings = policy.approval.as_ref();
    let request = CheckRequest {
        arguments: canonical,
        digest: digest.clone(),
        hold_ms: settings.map_or(0, |s| s.hold_seconds * 1000),
        identity: identity.map(Identity::display),
        server: namespace.to_owned(),
        tool: tool.to_owned(),
        valid_for_s: settings.map_or(0, |s| s.valid_seconds),
    };
    let request = request.to_json();
    Ok(ApprovalQuery {
        digest,
        tool: tool.to_owned(),
        id,
        arguments: arguments.map(str::to_owned),
        request,
        rule: rule.to_owned(),
    })
}

/// The first integer in the JSON text `text` beyond 64 bits (`100000000000000000001`): the
/// canonical arguments (what a person is shown) would round it.
fn inexact_number(text: &str) -> Option<&str> {
    number_tokens(text).find(|token| {
        !token.contains(['.', 'e', 'E'])
            && token.parse::<i64>().is_err()
            && token.parse::<u64>().is_err()
    })
}

/// Every number of the JSON text `text`, in order, by exact decimal value: what the digest
/// holds besides the canonical arguments, whose numbers are doubles. Two calls whose numbers
/// differ beyond a double's precision (`0.10000000000000001`) then need two approvals.
fn exact_numbers(text: &str) -> String {
    let mut out = String::new();
    for token in number_tokens(text) {
        let (negative, digits, exponent) = decimal(token);
        let _ = write!(
            out,
            "{}{}e{exponent},",
            if negative { "-" } else { "" },
            if digits.is_empty() { "0" } else { &digits }
        );
    }
    out
}

/// The number tokens of a JSON text (outside strings).
fn number_tokens(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut in_string = false;
    std::iter::from_fn(move || {
        while let Some(&byte) = bytes.get(at) {
            if in_string {
                match byte {
                    b'\\' => at += 2,
                    b'"' => {
                        in_string = false;
                        at += 1;
                    }
                    _ => at += 1,
                }
                continue;
            }
            match byte {
                b'"' => {
                    in_string = true;
                    at += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = at;
                    while bytes.get(at).is_some_and(|b| {
                        matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    }) {
                        at += 1;
                    }
                    return text.get(start..at);
                }
                _ => at += 1,
            }
        }
        None
    })
}

/// A decimal number's value as (negative, significant digits, exponent of the last digit):
/// `1e2`, `100` and `100.0` are all (false, "1", 2).
fn decimal(token: &str) -> (bool, String, i64) {
    let (negative, unsigned) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            unsigned.get(..at).unwrap_or_default(),
            unsigned
                .get(at + 1..)
                .and_then(|e| e.trim_start_matches('+').parse::<i64>().ok())
                .unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let mut exponent = exponent.saturating_sub(fraction.len() as i64);
    let trimmed_end = digits.trim_end_matches('0');
    exponent = exponent.saturating_add((digits.len() - trimmed_end.len()) as i64);
    let significant = trimmed_end.trim_start_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, significant.to_owned(), exponent)
}

/// How the service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Approved: who approved and which approval (for the audit record).
    Approved {
        note: String,
    },
    Refused(Refusal),
}

/// Read the service's answer (`Err`: no answer at all). Anything but a clear "approved" refuses:
/// the call only ever runs on a positive decision.
pub fn read_answer(tool: &str, answer: Result<(u16, Vec<u8>), String>) -> Answer {
    let unavailable = |problem: String| {
        Answer::Refused(Refusal::ApprovalUnavailable {
            tool: tool.to_owned(),
            problem,
        })
    };
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(problem) => return unavailable(problem),
    };
    if status != 200 {
        return unavailable(format!("approval service answered HTTP {status}"));
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return unavailable("approval service answered something that is not JSON".to_owned());
    };
    let unusable = || {
        unavailable(format!(
            "approval service answered without a usable status: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    };
    let Some(answer) = CheckAnswer::read(&value) else {
        return unusable();
    };
    if answer.id.is_empty() {
        return unusable();
    }
    let id = answer.id;
    match answer.status {
        CheckStatus::Approved => Answer::Approved {
            note: format!(
                "approved by {} (approval {id})",
                answer.approver.unwrap_or_default()
            ),
        },
        CheckStatus::Denied => Answer::Refused(Refusal::ApprovalDenied {
            tool: tool.to_owned(),
            approval_id: id,
            approver: answer.approver.unwrap_or_default(),
            reason: answer.reason.unwrap_or_default(),
        }),
        CheckStatus::Pending => Answer::Refused(Refusal::ApprovalPending {
            tool: tool.to_owned(),
            approval_id: id,
            approve_url: answer.approve_url.unwrap_or_default(),
            answer: crate::reply::PendingAnswer::Plain,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::request::evaluate::{evaluate, RequestMeta, Step};
    #[allow(unused_imports)]
    use crate::request::outcome::*;
    #[allow(unused_imports)]
    use crate::test_support::done;
    use crate::test_support::{test, MemoryStore};

    const POLICY: &str = r#"{"version":"1","default":"deny",
        "approval":{"cluster":"approvals","hold_seconds":20,"valid_seconds":600},
        "tools":{"wechat_mass_send":{"action":"require_approval",
                   "limits":[{"counter":"sends","window":"hour","max":1,"scope":"global"}]},
                 "wechat_get_followers":{}}}"#;

    fn call(tool: &str, arguments: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        )
    }

    fn ask(
        policy: &Policy,
        body: &str,
        identity: &Identity,
        approved: Option<Approved>,
        store: &mut MemoryStore,
    ) -> Step {
        let meta = RequestMeta {
            namespace: "wechat",
            identity: Some(identity),
            now: 1_795_342_542,
            approved,
            ..Default::default()
        };
        evaluate(policy, body.as_bytes(), &meta, store)
    }

    fn query_of(step: Step) -> ApprovalQuery {
        match step {
            Step::AwaitApproval(query) => *query,
            other => panic!("expected to ask for approval, got {other:?}"),
        }
    }

    #[test]
    fn a_call_needing_approval_is_held_before_any_counter_moves() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let alice = Identity::new("alice");
        let query = query_of(ask(
            &policy,
            &call("wechat_mass_send", r#"{"to":"all","text":"hi"}"#),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!((store.gets, store.sets), (0, 0));
        assert_eq!(query.tool, "wechat_mass_send");
        assert_eq!(query.id, Some(Value::from(5).into()));
        let request: Value = serde_json::from_str(&query.request).unwrap();
        assert_eq!(request["digest"], query.digest.as_str());
        assert_eq!(request["server"], "wechat");
        assert_eq!(request["identity"], "alice");
        assert_eq!(
            request["arguments"],
            serde_json::json!({"text":"hi","to":"all"})
        );
        assert_eq!(
            (request["hold_ms"].as_u64(), request["valid_for_s"].as_u64()),
            (Some(20_000), Some(600))
        );
        // Other tools are not held.
        let other = done(ask(
            &policy,
            &call("wechat_get_followers", "{}"),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!(other.verdict, Verdict::Forward);
    }

    #[test]
    fn the_request_body_is_the_json_map_of_the_call() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let alice = Identity::new("alice");
        for (identity, arguments) in [
            (
                Some(&alice),
                Some(r#"{ "to" : "all", "n" : [1, 2.5e3, -0.0], "t" : "\u00e9\"" }"#),
            ),
            (None, None),
        ] {
            let query = query(
                &policy,
                "wechat",
                identity,
                "wechat_mass_send",
                None,
                arguments,
                "tools.wechat_mass_send.action",
            )
            .unwrap();
            let canonical: Value =
                arguments.map_or(Value::Null, |a| serde_json::from_str(a).unwrap());
            let as_map = serde_json::json!({
                "digest": query.digest,
                "server": "wechat",
                "tool": "wechat_mass_send",
                "identity": identity.map(Identity::display),
                "arguments": canonical,
                "hold_ms": 20_000,
                "valid_for_s": 600,
            })
            .to_string();
            assert_eq!(query.request, as_map);
        }
    }

    #[test]
    fn the_digest_binds_the_exact_call_and_caller() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let (alice, bob) = (Identity::new("alice"), Identity::new("bob"));
        let digest = |args: &str, who: &Identity, store: &mut MemoryStore| {
            query_of(ask(
                &policy,
                &call("wechat_mass_send", args),
                who,
                None,
                store,
            ))
            .digest
        };
        let base = digest(r#"{"to":"all","text":"hi"}"#, &alice, &mut store);
        assert_eq!(base.len(), 64);
        // Key order and whitespace are not part of the call.
        assert_eq!(
            digest(r#"{ "text" : "hi", "to" : "all" }"#, &alice, &mut store),
            base
        );
        assert_ne!(
            digest(r#"{"to":"all","text":"hi!"}"#, &alice, &mut store),
            base
        );
        assert_ne!(
            digest(r#"{"to":"all","text":"hi"}"#, &bob, &mut store),
            base
        );
    }

    #[test]
    fn an_approved_call_goes_on_to_its_limits_and_only_that_call() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let alice = Identity::new("alice");
        let body = call("wechat_mass_send", r#"{"to":"all"}"#);
        let query = query_of(ask(&policy, &body, &alice, None, &mut store));
        let approved = Approved {
            digest: &query.digest,
            note: "approved by carol (approval a1)",
        };
        let outcome = done(ask(&policy, &body, &alice, Some(approved), &mut store));
        assert_eq!(outcome.verdict, Verdict::Forward);
        assert_eq!(outcome.calls[0].decision, "allowed");
        assert_eq!(outcome.calls[0].detail, "approved by carol (approval a1)");
        // Limits still apply to approved calls (max 1 per hour).
        let again = done(ask(&policy, &body, &alice, Some(approved), &mut store));
        assert_eq!(again.calls[0].decision, "rate_limited");
        // An approval of one call does not cover another.
        let changed = call("wechat_mass_send", r#"{"to":"someone else"}"#);
        assert!(matches!(
            ask(&policy, &changed, &alice, Some(approved), &mut store),
            Step::AwaitApproval(_)
        ));
    }

    #[test]
    fn batches_and_shadow_mode() {
        let policy = load_policy(POLICY.as_bytes()).unwrap();
        let mut store = MemoryStore::default();
        let alice = Identity::new("alice");
        let batch = format!("[{}]", call("wechat_mass_send", "{}"));
        let outcome = done(ask(&policy, &batch, &alice, None, &mut store));
        let Verdict::Reply(reply) = &outcome.verdict else {
            panic!("expected a refusal")
        };
        assert!(
            reply.body.contains("not in a JSON-RPC batch"),
            "{}",
            reply.body
        );

        let shadow = load_policy(
            POLICY
                .replace(r#""default":"deny","#, r#""default":"deny","shadow":true,"#)
                .as_bytes(),
        )
        .unwrap();
        let outcome = done(ask(
            &shadow,
            &call("wechat_mass_send", "{}"),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!(outcome.verdict, Verdict::Forward);
        assert_eq!(outcome.calls[0].decision, "would_deny");
    }

    #[test]
    fn only_a_clear_yes_lets_the_call_through() {
        let approved = read_answer(
            "t",
            Ok((
                200,
                br#"{"status":"approved","id":"a1","approver":"carol"}"#.to_vec(),
            )),
        );
        assert_eq!(
            approved,
            Answer::Approved {
                note: "approved by carol (approval a1)".into()
            }
        );
        let denied = read_answer(
            "t",
            Ok((
                200,
                br#"{"status":"denied","id":"a2","approver":"dan","reason":"not today"}"#.to_vec(),
            )),
        );
        let Answer::Refused(refusal) = denied else {
            panic!("denied")
        };
        let error = refusal.error_object();
        assert_eq!(error["data"]["decision"], "approval_denied");
        assert!(error["message"]
            .as_str()
            .unwrap()
            .contains("dan denied this call (approval a2): not today"));
        let pending = read_answer(
            "t",
            Ok((
                200,
                br#"{"status":"pending","id":"a3","approve_url":"http://approvals/#a3"}"#.to_vec(),
            )),
        );
        let Answer::Refused(refusal) = pending else {
            panic!("pending")
        };
        let error = refusal.error_object();
        assert_eq!(error["code"], crate::reply::APPROVAL_PENDING);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("http://approvals/#a3")
                && message.contains("a3")
                && message.contains("Retry the same call"),
            "{message}"
        );
        for answer in [
            Err("no answer".to_owned()),
            Ok((500, b"{}".to_vec())),
            Ok((200, b"not json".to_vec())),
            Ok((200, br#"{"status":"approved"}"#.to_vec())),
            Ok((200, br#"{"status":"maybe","id":"x"}"#.to_vec())),
        ] {
            let Answer::Refused(refusal) = read_answer("t", answer) else {
                panic!("must refuse")
            };
            assert_eq!(refusal.decision(), "error");
        }
    }

    #[test]
    fn approval_settings_are_validated() {
        let error_of = |text: &str| load_policy(text.as_bytes()).unwrap_err().to_string();
        assert!(
            error_of(r#"{"version":"1","tools":{"t":{"action":"require_approval"}}}"#).starts_with(
                "tools.t.action: \"require_approval\" needs the policy's \"approval\" settings"
            )
        );
        assert!(
            error_of(r#"{"version":"1","approval":{}}"#).starts_with("approval.cluster: required")
        );
        assert!(
            error_of(r#"{"version":"1","approval":{"cluster":"a","hold_seconds":601}}"#)
                .starts_with("approval.hold_seconds: at most 600")
        );
        assert!(
            error_of(r#"{"version":"1","approval":{"cluster":"a","ttl":1}}"#)
                .starts_with("approval.ttl: unknown field")
        );
        assert!(error_of(r#"{"version":"1","approval":{"cluster":"a"},"grants":{"g":{"identities":["a"],"tools":{"t":{"action":"require_approval"}}}}}"#)
            .starts_with("grants.g.tools.t.action: expected one of \"allow\", \"deny\""));
        let ok = load_policy(br#"{"version":"1","approval":{"cluster":"a"}}"#).unwrap();
        let settings = ok.approval.unwrap();
        assert_eq!((settings.hold_seconds, settings.valid_seconds), (30, 3600));
    }
    #[test]
    fn numbers_are_approved_by_exact_value() {
        // The canonical arguments hold doubles: two calls differing beyond a double's precision
        // would share one digest while an exact server runs different calls.
        let policy = load_policy(
            br#"{"version":"1","approval":{"cluster":"approvals"},"tools":{"t":{"action":"require_approval"}}}"#,
        )
        .unwrap();
        let digest = |arguments: &str| {
            query(
                &policy,
                "s",
                None,
                "t",
                None,
                Some(arguments),
                "tools.t.action",
            )
            .map(|q| q.digest)
        };
        let same = |a: &str, b: &str| digest(a).unwrap() == digest(b).unwrap();
        assert!(!same(r#"{"a":0.1}"#, r#"{"a":0.10000000000000001}"#));
        assert!(!same(
            r#"{"a":9007199254740993}"#,
            r#"{"a":9007199254740992}"#
        ));
        assert!(!same(
            r#"{"a":0.9719863718547629}"#,
            r#"{"a":0.9719863718547628}"#
        ));
        assert!(same(r#"{"a":1,"s":"2"}"#, r#"{ "a" : 1 , "s" : "2" }"#));
        // An integer beyond 64 bits would be shown rounded: it cannot be approved.
        for beyond in [
            r#"{"amount":100000000000000000001}"#,
            r#"{"n":[-18446744073709551617]}"#,
        ] {
            let problem = digest(beyond).unwrap_err();
            assert!(problem.contains("beyond 64 bits"), "{problem}");
        }
        assert!(digest(r#"{"u":18446744073709551615,"s":"100000000000000000001"}"#).is_ok());
        assert_eq!(decimal("100.0"), decimal("1e2"));
        assert_eq!(decimal("-0.0025"), (true, "25".to_owned(), -4));
    }

    #[test]
    fn a_rule_can_ask_for_approval_of_the_calls_it_matches() {
        let policy = load_policy(
            br#"{"version":"1","default":"deny","approval":{"cluster":"approvals"},
                "tools":{"wechat_mass_send":{"rules":[
                    {"name":"big sends need a human","action":"require_approval",
                     "conditions":[{"path":"args.recipients","op":"gt","value":100}]}]}}}"#,
        )
        .unwrap();
        let mut store = MemoryStore::default();
        let alice = Identity::new("alice");
        let small = done(ask(
            &policy,
            &call("wechat_mass_send", r#"{"recipients":5}"#),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!(small.verdict, Verdict::Forward);
        let big = query_of(ask(
            &policy,
            &call("wechat_mass_send", r#"{"recipients":5000}"#),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!(big.rule, "tools.wechat_mass_send.rules[0]");
        let approved = Approved {
            digest: &big.digest,
            note: "approved by carol (approval a9)",
        };
        let outcome = done(ask(
            &policy,
            &call("wechat_mass_send", r#"{"recipients":5000}"#),
            &alice,
            Some(approved),
            &mut store,
        ));
        assert_eq!(outcome.verdict, Verdict::Forward);
        // What a lenient server reads as a big send waits too: a text it converts to a number,
        // a key it matches ignoring case (neither may go through unasked).
        for sneaky in [
            r#"{"recipients":"5000"}"#,
            r#"{"Recipients":5000}"#,
            r#"{"recipients":" 5e3 "}"#,
        ] {
            let held = ask(
                &policy,
                &call("wechat_mass_send", sneaky),
                &alice,
                None,
                &mut store,
            );
            assert!(
                matches!(held, Step::AwaitApproval(_)),
                "{sneaky}: {:?}",
                held
            );
        }
        // A value no server reads as a number is judged as sent: a list is not over 100.
        let list = done(ask(
            &policy,
            &call("wechat_mass_send", r#"{"recipients":["o1","o2"]}"#),
            &alice,
            None,
            &mut store,
        ));
        assert_eq!(list.verdict, Verdict::Forward);
        // Approval rules need the settings too, and keep no counter.
        let error_of = |text: &str| load_policy(text.as_bytes()).unwrap_err().to_string();
        assert!(error_of(r#"{"version":"1","tools":{"t":{"rules":[{"name":"r","action":"require_approval","conditions":[{"path":"args.x","op":"exists","value":true}]}]}}}"#)
            .starts_with("tools.t.rules[0].action: \"require_approval\" needs the policy's \"approval\" settings"));
        assert!(error_of(r#"{"version":"1","approval":{"cluster":"a"},"tools":{"t":{"rules":[{"name":"r","action":"require_approval","rate_limit":"5/minute"}]}}}"#)
            .starts_with("tools.t.rules[0].rate_limit: a require_approval rule selects calls"));
        assert!(error_of(r#"{"version":"1","approval":{"cluster":"a"},"tools":{"t":{"rules":[{"name":"r","action":"require_approval","conditions":[{"path":"args.x","op":"exists","value":true}],"state":{"counter":"c","window":"hour"}}]}}}"#)
            .starts_with("tools.t.rules[0].state: a require_approval rule selects calls"));
    }
}
