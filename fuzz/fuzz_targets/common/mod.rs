//! Shared by the fuzz targets: the checks every `evaluate` outcome must pass.

use mcp_policy_engine::{Outcome, Verdict};

/// A refusal is a JSON-RPC answer the agent must be able to read: its body is JSON.
pub fn check_reply(outcome: &Option<Outcome>) {
    if let Some(Outcome {
        verdict: Verdict::Reply(reply),
        ..
    }) = outcome
    {
        assert!(
            serde_json::from_str::<serde_json::Value>(&reply.body).is_ok(),
            "reply body is not JSON: {:?}",
            reply.body
        );
    }
}
