//! Guarding tool results (server → agent): the text a tool returns (`content[].text`, an
//! embedded resource's `text`, every string of `structuredContent`) is read by the call's
//! `guard.results` detectors. `redact` replaces each match by a marker naming its detector,
//! `block` replaces the whole answer by a JSON-RPC error naming the detectors, `report` only
//! records. What matched is never kept: only detector names and counts.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::decision::Decision;
use crate::guard::detectors::Detectors;
use crate::policy::guard::{Direction, GuardAction};
use crate::policy::Policy;
use crate::protocol::jsonrpc::same_id;
use crate::reply::POLICY_DENIED;
use crate::request::outcome::{Detection, Guarded};

use super::result_texts::{self, Edit, Message};

/// What guarding one stream's answers needs, and what it found.
pub struct ResultGuard<'a> {
    pub policy: &'a Policy,
    pub guarded: &'a [Guarded],
    /// (tool, what its guard found), in answer order.
    pub found: &'a mut Vec<(String, Detection)>,
}

impl ResultGuard<'_> {
    /// The answer `text` (one message or a batch) with the results of guarded calls guarded:
    /// the text to send instead, or `None` when it goes on as it is. A redacted answer differs
    /// from the server's only in the strings that held a match.
    pub fn guard_text(&mut self, text: &str) -> Option<String> {
        let mut replacements = Vec::new();
        for message in result_texts::read(text)? {
            replacements.extend(self.guard_message(text, &message));
        }
        if replacements.is_empty() {
            return None;
        }
        result_texts::splice(text, &replacements)
    }

    /// Guard every answer of a JSON body. `None` when nothing changes.
    pub fn guard_json_body(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        self.guard_text(text).map(String::into_bytes)
    }

    /// What must change in `text` for `message`, if it answers a guarded call with a result:
    /// each redacted string, or the whole message when the result is withheld.
    fn guard_message(&mut self, text: &str, message: &Message) -> Vec<Edit> {
        let Some((call, id)) = self.call(text, message) else {
            return Vec::new();
        };
        let entry = self.policy.entry(&call.tool, call.class);
        let Some((guard, rule)) = self
            .policy
            .guard(entry)
            .and_then(|g| Some((g, g.results.as_ref()?)))
        else {
            return Vec::new();
        };
        let (counts, redactions) = scan(text, message, &rule.detectors);
        if counts.is_empty() {
            return Vec::new();
        }
        for (detector, count) in &counts {
            let found = Detection {
                detector: detector.clone(),
                count: *count,
                direction: Direction::Results,
                action: rule.action,
            };
            self.found.push((call.tool.clone(), found));
        }
        match rule.action {
            // Shadow mode never changes what an agent sees.
            _ if self.policy.in_shadow(entry) => Vec::new(),
            GuardAction::Report => Vec::new(),
            GuardAction::Redact => redactions,
            GuardAction::Block => {
                let error = withheld(&id, &call.tool, &counts, &guard.path).to_string();
                vec![(message.span.clone(), error)]
            }
        }
    }

    /// The guarded call `message` answers with a result, and its id.
    fn call(&self, text: &str, message: &Message) -> Option<(Guarded, Value)> {
        if !message.has_result {
            return None;
        }
        let id: Value = serde_json::from_str(text.get(message.id.clone()?)?).ok()?;
        let call = self.guarded.iter().find(|g| same_id(&g.id, &id))?;
        Some((call.clone(), id))
    }
}

/// What `detectors` find in the texts of `message`: (detector, matches) by name, and each text
/// with its matches replaced by markers.
fn scan(text: &str, message: &Message, detectors: &Detectors) -> (Vec<(String, u64)>, Vec<Edit>) {
    let mut counts: Vec<(String, u64)> = Vec::new();
    let mut redactions = Vec::new();
    for token in &message.texts {
        let Some(plain) = text
            .get(token.span.clone())
            .and_then(|t| token_text(t, token.escaped))
        else {
            continue;
        };
        let found = detectors.redact(&plain);
        if found.counts.is_empty() {
            continue;
        }
        for (name, n) in &found.counts {
            add(&mut counts, name, *n as u64);
        }
        // The marker needs no escape: a token that had none keeps every other byte.
        let written = match token.escaped {
            false => Some(format!("\"{}\"", found.text)),
            true => serde_json::to_string(found.text.as_ref()).ok(),
        };
        if let Some(written) = written {
            redactions.push((token.span.clone(), written));
        }
    }
    counts.sort_unstable();
    (counts, redactions)
}

/// A string token's text: as sent when it holds no escape, else decoded.
fn token_text(token: &str, escaped: bool) -> Option<Cow<'_, str>> {
    if !escaped {
        return token.strip_prefix('"')?.strip_suffix('"').map(Cow::Borrowed);
    }
    serde_json::from_str::<String>(token).ok().map(Cow::Owned)
}

/// The error that replaces a blocked result: the detectors and their counts, never the text.
fn withheld(id: &Value, tool: &str, counts: &[(String, u64)], path: &str) -> Value {
    let what: Vec<String> = counts.iter().map(|(d, n)| format!("{d} ({n})")).collect();
    let reason = format!(
        "the result carries what the guard's detectors found: {}; results carrying them are withheld ({path}.results)",
        what.join(", ")
    );
    let detectors: Map<String, Value> = counts.iter().map(|(d, n)| (d.clone(), json!(n))).collect();
    json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": POLICY_DENIED,
        "message": format!("The result of tool \"{tool}\" was withheld by policy: {reason}"),
        "data": {"decision": Decision::Denied.as_str(), "tool": tool, "reason": reason, "detectors": detectors}}})
}

fn add(counts: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match counts.iter_mut().find(|(d, _)| d == name) {
        Some((_, total)) => *total += n,
        None => counts.push((name.to_owned(), n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;

    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";

    fn policy(action: &str) -> Policy {
        load_policy(
            format!(r#"{{"version":"1","default":"allow","tools":{{"t":{{"guard":{{"results":"{action}"}}}}}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn answer(id: u64) -> Value {
        json!({"jsonrpc":"2.0","id":id,"result":{
            "content":[{"type":"text","text":format!("key {KEY}, card 4111 1111 1111 1111")},
                       {"type":"resource","resource":{"uri":"x://y","text":"mail a@example.com"}}],
            "structuredContent":{"owner":{"email":"b@example.org"},"n":4111111111111111_u64}}})
    }

    fn guard(policy: &Policy, message: &Value) -> (Option<Value>, Vec<(String, Detection)>) {
        let guarded = [Guarded {
            id: json!(1),
            tool: "t".into(),
            class: None,
        }];
        let mut found = Vec::new();
        let out = ResultGuard {
            policy,
            guarded: &guarded,
            found: &mut found,
        }
        .guard_text(&message.to_string())
        .map(|text| serde_json::from_str(&text).unwrap());
        (out, found)
    }

    fn guard_text(policy: &Policy, body: &str) -> Option<String> {
        let guarded = [Guarded {
            id: json!(1),
            tool: "t".into(),
            class: None,
        }];
        let out = ResultGuard {
            policy,
            guarded: &guarded,
            found: &mut Vec::new(),
        }
        .guard_json_body(body.as_bytes())?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_redacted_answer_is_the_server_s_bytes_but_for_the_matches() {
        let body = format!(
            "{{ \"result\": {{\"isError\":false, \"content\":[{{\"type\":\"text\",\"text\":\"key {KEY} \\u00e9\"}},\n {{\"type\":\"text\",\"text\":\"mail a@example.com, 1.0\"}}]}}, \"id\": 1.0, \"jsonrpc\":\"2.0\" }}"
        );
        let out = guard_text(&policy("redact"), &body).unwrap();
        assert_eq!(
            out,
            "{ \"result\": {\"isError\":false, \"content\":[{\"type\":\"text\",\"text\":\"key [redacted:aws_access_key] é\"},\n {\"type\":\"text\",\"text\":\"mail [redacted:email], 1.0\"}]}, \"id\": 1.0, \"jsonrpc\":\"2.0\" }"
        );
        let batch = format!("[{{\"id\":2,\"result\":{{}}}} , {body}]");
        let out = guard_text(&policy("redact"), &batch).unwrap();
        assert!(
            out.starts_with("[{\"id\":2,\"result\":{}} , { \"result\""),
            "{out}"
        );
        assert!(!out.contains(KEY), "{out}");
        assert_eq!(
            guard_text(&policy("redact"), "[{\"id\":1,\"result\":{}}]"),
            None
        );
    }

    #[test]
    fn redact_replaces_each_match_and_keeps_everything_else() {
        let (out, found) = guard(&policy("redact"), &answer(1));
        let out = out.unwrap();
        let text = out.to_string();
        assert!(
            !text.contains(KEY) && !text.contains("a@example.com") && !text.contains("4111 1111"),
            "{text}"
        );
        assert!(
            text.contains("[redacted:aws_access_key]") && text.contains("[redacted:payment_card]"),
            "{text}"
        );
        assert_eq!(
            out["result"]["structuredContent"]["n"],
            json!(4111111111111111_u64),
            "numbers are not text"
        );
        assert_eq!(out["result"]["content"][1]["resource"]["uri"], "x://y");
        let names: Vec<(&str, u64)> = found
            .iter()
            .map(|(_, d)| (d.detector.as_str(), d.count))
            .collect();
        assert_eq!(
            names,
            [("aws_access_key", 1), ("email", 2), ("payment_card", 1)]
        );
    }

    #[test]
    fn block_withholds_the_result_naming_only_detectors_and_report_changes_nothing() {
        let (out, _) = guard(&policy("block"), &answer(1));
        let out = out.unwrap();
        assert_eq!(out["id"], 1);
        assert_eq!(out["error"]["code"], POLICY_DENIED);
        assert!(!out.to_string().contains(KEY));
        assert!(out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aws_access_key (1)"));
        let (out, found) = guard(&policy("report"), &answer(1));
        assert!(out.is_none() && found.len() == 3);
        // Other ids, errors and clean results pass untouched.
        assert!(guard(&policy("block"), &answer(2)).0.is_none());
        let clean =
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"fine"}]}});
        assert!(guard(&policy("block"), &clean).0.is_none());
        let error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":KEY}});
        assert!(guard(&policy("block"), &error).0.is_none());
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;
    use serde_json::json;

    const PROSE: &str = "Quarterly report, section 12: the Zurich office shipped 1,284 units on \
        2026-03-14 at 09:30; the ops room notes (ticket 4471) say the backlog fell 18% week over \
        week, and the next review is set for Thursday. ";

    fn answer(bytes: usize) -> Vec<u8> {
        let text: String = PROSE.chars().cycle().take(bytes).collect();
        json!({"jsonrpc": "2.0", "id": 1,
               "result": {"content": [{"type": "text", "text": text}], "isError": false}})
        .to_string()
        .into_bytes()
    }

    /// µs per call of guarding one answer of each size with every built-in detector, the best
    /// of 20 rounds of 100.
    fn report(now: &dyn Fn() -> f64) -> String {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","tools":{"t":{"guard":{"results":"redact"}}}}"#,
        )
        .unwrap();
        let guarded = [Guarded {
            id: json!(1),
            tool: "t".into(),
            class: None,
        }];
        let mut out = String::from("µs per guarded answer (all built-in detectors):");
        for bytes in [1024, 10240] {
            let body = answer(bytes);
            let mut found = Vec::new();
            let mut guard = ResultGuard {
                policy: &policy,
                guarded: &guarded,
                found: &mut found,
            };
            let mut best = f64::MAX;
            for _ in 0..20 {
                let start = now();
                for _ in 0..100 {
                    std::hint::black_box(guard.guard_json_body(std::hint::black_box(&body)));
                }
                best = best.min((now() - start) / 100.0);
            }
            out.push_str(&format!(" {bytes} B: {best:.1};"));
        }
        out
    }

    /// `cargo test --release -p mcp-policy-engine --lib response::results::speed -- --ignored --nocapture`
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    #[ignore]
    fn speed() {
        let start = std::time::Instant::now();
        println!("{}", report(&|| start.elapsed().as_secs_f64() * 1e6));
    }

    #[cfg(target_arch = "wasm32")]
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = performance)]
        fn now() -> f64;
    }

    /// In the test runner's V8: see `guard::detectors`' `speed` test for the command.
    #[cfg(target_arch = "wasm32")]
    #[test]
    #[ignore]
    fn speed() {
        wasm_bindgen_test::console_log!("{}", report(&|| now() * 1e3));
    }
}
