//! `body_parser`: arbitrary bytes as a POSTed MCP body.
//!
//! Properties checked, against a fixed representative policy (default deny, a rate-limited tool
//! with argument rules, a denied tool, a grant, a hidden tool, a `"*"` rate limit):
//! - `parse_body` and `evaluate` never panic (nor overflow, with `--debug-assertions`);
//! - a body `parse_body` refuses is never forwarded, and every refusal's body is JSON;
//! - no bypass: when `evaluate` forwards a body, reading that body independently as a server
//!   would (a full document parse; member names matched exactly, and also case-insensitively as
//!   Go's `encoding/json` does for a message and its `params`) finds only `tools/call`s the
//!   policy allows to the caller: none for an anonymous caller (it holds no grant), and for the
//!   grant holder only its two tools, `wechat_mass_send` with `msg_type` "text" or "news".

#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::load_policy;
use mcp_policy_engine::testing::parse_body;
use mcp_policy_engine::testing::strict as strict_json;
use mcp_policy_engine::Identity;
use mcp_policy_engine::Policy;
use mcp_policy_engine::Verdict;
use mcp_policy_engine::{evaluate, RequestMeta};
use serde_json::Value;

use common::check_reply;
use mcp_policy_engine::testing::MemoryStore;

const POLICY: &str = r#"{"version":"1","default":"deny",
 "tools":{
  "wechat_mass_send":{
   "limits":[{"counter":"sends","window":"minute","max":3,"scope":"session"}],
   "rules":[
    {"name":"message types","conditions":[{"path":"args.msg_type","op":"in","value":["text","news"]}],
     "on_deny":"Only text and news mass messages are allowed"},
    {"name":"plain titles","conditions":[{"path":"args.title","op":"regex","value":"(?i)^[a-z0-9 ]{0,40}$"}]},
    {"name":"recipients per hour","on_deny":"At most 500 recipients per hour",
     "conditions":[{"path":"state.wechat_mass_send.recipients","op":"lte","value":500}],
     "state":{"counter":"recipients","window":"hour","increment_from":"args.openids","scope":"identity"}}]},
  "wechat_get_followers":{},
  "wechat_mass_delete":{"action":"deny","reason":"deleting sent messages needs a human"},
  "*":{"rules":[{"name":"global rate limit","rate_limit":"60/minute"}]}},
 "grants":{"marketing":{"identities":["mkt-*"],
  "tools":{"wechat_mass_send":{},
           "wechat_get_followers":{"limits":[{"counter":"follower_reads","window":"hour","max":100,"scope":"grant"}]}},
  "limits":[{"counter":"mkt_calls","window":"hour","max":1000,"scope":"grant"}]}},
 "hide":["wechat_admin_reset"]}"#;

/// What the grant holder may call (the grant's `tools`); an anonymous caller may call nothing.
const GRANTED_TOOLS: &[&str] = &["wechat_mass_send", "wechat_get_followers"];
const MESSAGE_TYPES: &[&str] = &["text", "news"];

const NOW: u64 = 1_795_342_542;

fn policy() -> &'static Policy {
    static POLICY_CELL: OnceLock<Policy> = OnceLock::new();
    POLICY_CELL.get_or_init(|| match load_policy(POLICY.as_bytes()) {
        // As the filter does when it configures: counter keys built for its namespace.
        Ok(policy) => policy.bind("fuzz", 0),
        Err(e) => panic!("the fuzz policy does not load: {e}"),
    })
}

fn granted() -> &'static Identity {
    static WHO: OnceLock<Identity> = OnceLock::new();
    WHO.get_or_init(|| Identity::new("mkt-1"))
}

/// Go's `encoding/json` matches member names case-insensitively (with `ſ` ~ `s`, Kelvin ~ `k`).
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            'ſ' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The member `name` of `object` as a server reads it: exactly, or folded with the last match
/// winning (Go).
fn member<'v>(object: Option<&'v Value>, name: &str, folded: bool) -> Option<&'v Value> {
    let object = object?.as_object()?;
    if folded {
        object
            .iter()
            .filter(|(k, _)| fold(k) == name)
            .last()
            .map(|(_, v)| v)
    } else {
        object.get(name)
    }
}

/// A forwarded body, read as a server would: every tools/call in it must be allowed.
fn assert_no_bypass(body: &[u8], caller: Option<&Identity>) {
    let document = match strict_json::from_slice(body) {
        Ok(document) => document,
        Err(e) => panic!("forwarded a body that strict_json refuses: {e}"),
    };
    let messages = match &document {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        other => vec![other],
    };
    for message in messages {
        for folded in [false, true] {
            if member(Some(message), "method", folded).and_then(Value::as_str) != Some("tools/call")
            {
                continue;
            }
            let params = member(Some(message), "params", folded);
            let name = member(params, "name", folded).and_then(Value::as_str);
            assert!(
                caller.is_some(),
                "forwarded a tools/call ({name:?}, folded: {folded}) of an anonymous caller"
            );
            assert!(
                name.is_some_and(|n| GRANTED_TOOLS.contains(&n)),
                "forwarded a tools/call of {name:?} (folded: {folded})"
            );
            if name == Some("wechat_mass_send") {
                let arguments = member(params, "arguments", folded);
                let msg_type = member(arguments, "msg_type", folded).and_then(Value::as_str);
                assert!(
                    msg_type.is_some_and(|t| MESSAGE_TYPES.contains(&t)),
                    "forwarded wechat_mass_send with msg_type {msg_type:?} (arguments {arguments:?})"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_body(data);
    let policy = policy();
    for (identity, session) in [(Some(granted()), Some("session-1")), (None, None)] {
        let meta = RequestMeta {
            namespace: "fuzz",
            identity,
            session,
            now: NOW,
            ..Default::default()
        };
        let outcome = evaluate(policy, data, &meta, &mut MemoryStore::default()).done();
        check_reply(&outcome);
        if outcome.is_some_and(|o| o.verdict == Verdict::Forward) {
            assert!(parsed.is_ok(), "forwarded a body parse_body refuses");
            assert_no_bypass(data, identity);
        }
    }
});
