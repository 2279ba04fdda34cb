//! `policy_loader`: arbitrary bytes as a policy document (the filter's plugin configuration).
//!
//! Properties checked: `load_policy` never panics, whatever it is given (an operator's typo must
//! be an error naming a JSON path, never a crashed Envoy worker); and a policy that loads can
//! decide a representative `tools/call` (with arguments, identity and session) and a
//! `tools/list` without panicking, any refusal being a JSON body.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::load_policy;
use mcp_policy_engine::Identity;
use mcp_policy_engine::{evaluate, RequestMeta};

use common::check_reply;
use mcp_policy_engine::testing::MemoryStore;

const BODIES: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wechat_mass_send","arguments":{"msg_type":"text","title":"hello","openids":["o1","o2"],"amount":12.5}}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
];

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = load_policy(data) else {
        return;
    };
    let policy = policy.bind("fuzz", 0);
    let identity = Identity::new("mkt-1");
    for body in BODIES {
        let meta = RequestMeta {
            namespace: "fuzz",
            identity: Some(&identity),
            session: Some("session-1"),
            now: 1_795_342_542,
            ..Default::default()
        };
        let outcome = evaluate(&policy, body.as_bytes(), &meta, &mut MemoryStore::default()).done();
        check_reply(&outcome);
    }
});
