//! Where a caller's count of a counter lives in the counter store.

use sha2::{Digest, Sha256};

use crate::counters::Slot;
use crate::json::write;
use crate::policy::caller::Caller;
use crate::policy::{CounterKeys, CounterSpec, Policy, Scope};

/// Where this caller's count of one counter lives: the counter's key (`CounterKeys`) and, for a
/// scoped counter, one of its `policy.counter_buckets` buckets, picked by the caller's
/// fingerprint (a salted SHA-256 of its scope value, so secret identities never appear and
/// nobody can aim at a chosen caller's bucket).
pub fn counter_slot(
    policy: &Policy,
    namespace: &str,
    spec: &CounterSpec,
    caller: &Caller,
    session: Option<&str>,
) -> Slot {
    // The keys built when the filter configured, unless asked about another namespace.
    let built;
    let keys = if policy.counter_namespace == namespace && !spec.keys.bucket_prefix.is_empty() {
        &spec.keys
    } else {
        built = CounterKeys::new(namespace, spec, policy.counter_buckets.max(1));
        &built
    };
    let identity = caller.identity;
    let mut hasher = Sha256::new();
    hasher.update(policy.counter_salt.to_le_bytes());
    let mut scope_value = |parts: &[&str]| {
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    };
    match (spec.scope, caller.grant, identity, session) {
        (Scope::Global, ..) => {
            return Slot {
                key: keys.global.clone(),
                owner: 1,
            };
        }
        (Scope::Grant, Some(grant), ..) => scope_value(&["grant", &grant.name]),
        // No grant held (or none defined): the identity is its own grant.
        (Scope::Grant, None, Some(identity), _) => {
            scope_value(&["grant-of-identity", &identity.source, &identity.value])
        }
        (Scope::Grant, None, None, _) => scope_value(&["grant-anonymous"]),
        (Scope::Identity, _, Some(identity), _) => {
            scope_value(&["identity", &identity.source, &identity.value])
        }
        (Scope::Identity, _, None, _) => scope_value(&["identity-anonymous"]),
        (Scope::Session, .., Some(session)) => scope_value(&["session", session]),
        (Scope::Session, .., None) => scope_value(&["session-none"]),
    }
    let digest = hasher.finalize();
    let word = |at: usize| {
        let mut raw = [0u8; 8];
        if let Some(bytes) = digest.get(at..at + 8) {
            raw.copy_from_slice(bytes);
        }
        u64::from_le_bytes(raw)
    };
    let mut key = String::with_capacity(keys.bucket_prefix.len() + 20);
    key.push_str(&keys.bucket_prefix);
    write::push_u64(&mut key, word(8) % policy.counter_buckets.max(1));
    // 0 is the overflow entry's owner; a fingerprint of 0 (one chance in 2^64) becomes 1.
    Slot {
        key: key.as_str().into(),
        owner: word(0).max(1),
    }
}
