//! Which sessions' clients take URL-mode elicitation (MCP 2025-11-25): a call they must have
//! approved is answered with the specification's URL-elicitation-required error, so that the
//! client opens the approval page itself. Clients declare it once, in `initialize`; the session
//! id comes in that request's answer (`Mcp-Session-Id`), so the filter remembers the pair in the
//! counter store, shared by every worker. Only the shape of an answer depends on it, never a
//! decision, so a client that lies gains nothing.
//!
//! The store holds one session per bucket (`BUCKETS` of them, picked by a salted hash): a
//! session whose bucket was taken over since is forgotten and gets the plain answer, which
//! every client understands.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::counters::{CasStore, StoreError, CREATE_CAS};
use crate::policy::Policy;

/// Buckets of remembered sessions per filter: the bound on the store keys this can use.
pub const BUCKETS: u64 = 4096;

/// The first protocol version with URL-mode elicitation. Versions are dates: they compare as
/// text.
const URL_MODE_SINCE: &str = "2025-11-25";

/// Whether `body` is an `initialize` request whose client takes URL-mode elicitation: it asks
/// for protocol 2025-11-25 or later and declares `capabilities.elicitation.url`.
pub fn declares_url_mode(body: &[u8]) -> bool {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if message.get("method").and_then(Value::as_str) != Some("initialize") {
        return false;
    }
    let Some(params) = message.get("params") else {
        return false;
    };
    let recent = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .is_some_and(|version| version >= URL_MODE_SINCE);
    let url = params
        .get("capabilities")
        .and_then(|c| c.get("elicitation"))
        .and_then(|e| e.get("url"))
        .is_some_and(Value::is_object);
    recent && url
}

/// Whether `body` is a request whose own client capabilities (MCP 2026-07-28:
/// `params._meta["io.modelcontextprotocol/clientCapabilities"]`) declare URL-mode elicitation.
pub fn requests_url_mode(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|message| {
        message
            .get("params")
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
            .and_then(|c| c.get("elicitation"))
            .and_then(|e| e.get("url"))
            .is_some_and(Value::is_object)
    })
}

/// Where `session` is remembered: its bucket's key and the session's fingerprint.
fn place(policy: &Policy, namespace: &str, session: &str) -> (String, String) {
    let mut hasher = Sha256::new();
    hasher.update(policy.counter_salt.to_le_bytes());
    hasher.update(session.as_bytes());
    let digest = hasher.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let bucket = u64::from_le_bytes(word) % BUCKETS;
    let fingerprint = crate::hex::hex(digest.get(8..24).unwrap_or_default());
    let key = format!(
        "mcp-policy/elicitation/v1/{}:{namespace}/{bucket}",
        namespace.len()
    );
    (key, fingerprint)
}

/// Remember that `session`'s client takes URL-mode elicitation.
pub fn remember(
    policy: &Policy,
    store: &mut dyn CasStore,
    namespace: &str,
    session: &str,
) -> Result<(), StoreError> {
    let (key, fingerprint) = place(policy, namespace, session);
    let cas = match store.get(&key)? {
        Some((held, _)) if held == fingerprint.as_bytes() => return Ok(()),
        Some((_, cas)) => cas,
        None => CREATE_CAS,
    };
    // Losing a race to another session's write only forgets one of the two: a plain answer.
    store.set(&key, fingerprint.as_bytes(), cas)?;
    Ok(())
}

/// Whether `session`'s client declared URL-mode elicitation (as far as the store remembers).
pub fn remembered(
    policy: &Policy,
    store: &mut dyn CasStore,
    namespace: &str,
    session: &str,
) -> bool {
    let (key, fingerprint) = place(policy, namespace, session);
    matches!(store.get(&key), Ok(Some((held, _))) if held == fingerprint.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::{test, MemoryStore};

    #[test]
    fn only_an_initialize_of_2025_11_25_or_later_with_url_mode_declares_it() {
        let initialize = |version: &str, capabilities: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{capabilities},"clientInfo":{{"name":"c","version":"1"}}}}}}"#
            )
        };
        assert!(declares_url_mode(
            initialize("2025-11-25", r#"{"elicitation":{"url":{}}}"#).as_bytes()
        ));
        assert!(declares_url_mode(
            initialize("2026-07-28", r#"{"elicitation":{"form":{},"url":{}}}"#).as_bytes()
        ));
        for (version, capabilities) in [
            ("2025-06-18", r#"{"elicitation":{"url":{}}}"#),
            ("2025-11-25", r#"{"elicitation":{}}"#),
            ("2025-11-25", r#"{"elicitation":{"url":true}}"#),
            ("2025-11-25", r#"{}"#),
        ] {
            assert!(
                !declares_url_mode(initialize(version, capabilities).as_bytes()),
                "{version} {capabilities}"
            );
        }
        assert!(!declares_url_mode(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        ));
        assert!(!declares_url_mode(b"not json"));
    }

    #[test]
    fn sessions_are_remembered_per_filter_and_forgotten_when_their_bucket_is_taken() {
        let policy = load_policy(br#"{"version":"1"}"#).unwrap();
        let mut store = MemoryStore::default();
        assert!(!remembered(&policy, &mut store, "ns", "s-1"));
        remember(&policy, &mut store, "ns", "s-1").unwrap();
        assert!(remembered(&policy, &mut store, "ns", "s-1"));
        assert!(!remembered(&policy, &mut store, "other", "s-1"));
        assert!(!remembered(&policy, &mut store, "ns", "s-2"));
        // Fill every bucket with other sessions: s-1 is forgotten (the plain answer), never
        // mistaken for another.
        for n in 0..(BUCKETS * 8) {
            remember(&policy, &mut store, "ns", &format!("other-{n}")).unwrap();
        }
        assert!(!remembered(&policy, &mut store, "ns", "s-1"));
    }
}
