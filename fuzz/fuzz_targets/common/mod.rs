//! Shared by the fuzz targets: an in-memory counter store (the engine's own is `#[cfg(test)]`)
//! and the checks every `evaluate` outcome must pass.

use std::collections::HashMap;

use mcp_policy_filter::engine::counters::{CasStore, SetOutcome, StoreError};
use mcp_policy_filter::engine::evaluate::{Outcome, Verdict};

/// Envoy shared-data semantics: CAS tokens from 1 upwards, 0 = unconditional, and any CAS is
/// accepted on an absent key. A fresh one per input keeps runs reproducible.
#[derive(Default)]
pub struct MemoryStore {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl CasStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Ok(SetOutcome::CasMismatch);
            }
        }
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.entries
            .insert(key.to_owned(), (value.to_vec(), self.next_cas));
        Ok(SetOutcome::Stored)
    }
}

/// A refusal is a JSON-RPC answer the agent must be able to read: its body is JSON.
pub fn check_reply(outcome: &Outcome) {
    if let Verdict::Reply(reply) = &outcome.verdict {
        assert!(
            serde_json::from_str::<serde_json::Value>(&reply.body).is_ok(),
            "reply body is not JSON: {:?}",
            reply.body
        );
    }
}
