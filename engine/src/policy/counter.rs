//! A counter the policy defines: its window, maximum, whose calls share it, where it is kept,
//! and its keys in the counter store.

use std::fmt::Write;
use std::sync::Arc;

use crate::counters::window::Window;

/// Whose calls share one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One counter for every caller.
    Global,
    /// One counter per grant, shared by every identity holding it; an identity holding no grant
    /// (or any identity, when the policy defines no grants) is its own grant.
    Grant,
    /// One counter per caller identity.
    Identity,
    /// One counter per `Mcp-Session-Id`.
    Session,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Grant => "grant",
            Scope::Identity => "identity",
            Scope::Session => "session",
        }
    }
}

/// Index into `Policy::counters`.
pub type CounterId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSpec {
    pub name: String,
    pub window: Window,
    pub max: u64,
    pub scope: Scope,
    /// Index into `Policy::rate_limit_services` when a rate-limit service counts this counter
    /// (shared by every Envoy); `None`: Envoy's shared data (this Envoy only).
    pub service: Option<usize>,
    /// Its shared-data keys, built when the filter configures (`Policy::prepare_counter_keys`).
    pub keys: CounterKeys,
}

/// A counter's shared-data keys under one filter's namespace. Built once per configuration
/// rather than formatted for every call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CounterKeys {
    /// The whole key of a `global` counter.
    pub global: Arc<str>,
    /// A scoped counter's key: this, then the number of the caller's bucket.
    pub bucket_prefix: String,
}

impl CounterKeys {
    /// The key names the filter instance, the counter and its window length, with lengths
    /// prefixing the free-form parts so that no choice of names can make two counters share a
    /// key. The window length is in it so that a policy edit changing it starts a fresh count
    /// instead of misreading one kept under the old length; the bucket count likewise, so that
    /// changing `counter_slots` starts fresh counts rather than reading callers' counts in other
    /// callers' buckets.
    pub fn new(namespace: &str, spec: &CounterSpec, buckets: u64) -> CounterKeys {
        let mut base = String::with_capacity(48 + namespace.len() + spec.name.len());
        // Writing into a String cannot fail.
        let _ = write!(
            base,
            "mcp-policy/v2/{}:{namespace}/{}:{}/{}s/",
            namespace.len(),
            spec.name.len(),
            spec.name,
            spec.window.seconds()
        );
        let global = Arc::from(format!("{base}global"));
        let _ = write!(base, "{buckets}x/b");
        CounterKeys {
            global,
            bucket_prefix: base,
        }
    }
}

/// What a call needing a rate-limit service's answer gets when the service cannot give one
/// (unreachable, timed out, answered nonsense).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceFailureMode {
    /// Refused as "cannot enforce" (the default).
    Closed,
    /// Let through uncounted, reported.
    Open,
    /// Counted in this Envoy's shared data against the same `max` instead.
    Local,
}

/// A service speaking `envoy.service.ratelimit.v3`, reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitService {
    pub name: String,
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: ServiceFailureMode,
}
