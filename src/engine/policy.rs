//! The validated, immutable policy the filter enforces. Built only by `load::load_policy`.

use std::collections::HashMap;

use super::grants::GrantTable;
use super::identity::{IdentitySource, MissingIdentity};
use super::rules::Rule;
use super::window::Window;

/// What happens to a `tools/call` whose tool the policy does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    Allow,
    Deny,
}

/// A listed tool is allowed (subject to its limits) unless its action is `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolAction {
    Allow,
    Deny,
    /// Allowed (subject to its limits) once a human approved this exact call.
    RequireApproval,
}

/// Where approvals are asked for, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Envoy cluster of the approval service (HTTP).
    pub cluster: String,
    /// How long the filter holds a call while the service waits for a human.
    pub hold_seconds: u64,
    /// How long an approval given while nobody waits stays usable.
    pub valid_seconds: u64,
}

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

/// How refusals are signalled at the HTTP level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalMode {
    /// HTTP 200 carrying a JSON-RPC error: what MCP clients surface to the model.
    JsonRpc,
    /// HTTP 403 (denied) / 429 (rate limited) / 503 (cannot enforce), same JSON-RPC body.
    Http,
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

#[derive(Debug, Clone)]
pub struct ToolRule {
    pub action: ToolAction,
    pub reason: Option<String>,
    /// Every one of these counters must have room for the call to pass.
    pub limits: Vec<CounterId>,
    /// Conditions on arguments and counters (Intercept's rule language), in order.
    pub rules: Vec<Rule>,
    /// Refusals of this tool are only reported ("would deny"), never enforced.
    pub shadow: bool,
    /// Where this entry is in the policy (`tools.send`, `grants.ops.tools.send`): the `rule` of
    /// every decision it makes, built once at load rather than per call.
    pub path: String,
}

pub const DEFAULT_IDENTITY_HEADER: &str = "x-agent-id";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Policy {
    pub default_action: DefaultAction,
    pub tools: HashMap<String, ToolRule>,
    /// Rules of the `"*"` entry: they apply to every call after the tool's own rules.
    pub wildcard_rules: Vec<Rule>,
    /// Tools denied on call and removed from tools/list; `hide_all` for `"*"`.
    pub hidden: Vec<String>,
    pub hide_all: bool,
    pub counters: Vec<CounterSpec>,
    /// Tried in order; the first present one identifies the caller.
    pub identity_sources: Vec<IdentitySource>,
    pub missing_identity: MissingIdentity,
    /// Empty when the policy defines no grants.
    pub grants: GrantTable,
    pub max_body_bytes: u64,
    pub refusal_mode: RefusalMode,
    /// The whole policy only reports what it would refuse ("would deny") and blocks nothing.
    pub shadow: bool,
    /// Audit records carry the calls' raw arguments (not only their SHA-256).
    pub audit_arguments: bool,
    /// Audit records carry a SHA-256 of each call's arguments (the default). Hashing costs
    /// about 4 ns per byte of arguments inside Envoy (Wasm SIMD): `"hash_arguments": false` saves it.
    pub audit_hash: bool,
    /// When counters cannot be consulted (shared-data errors, CAS exhaustion): refuse the call
    /// (`false`, the default) or let it through uncounted (`"failure_mode": "open"`).
    pub fail_open: bool,
    /// Buckets per scoped counter (`counter_slots` / `ENTRIES_PER_BUCKET`): the bound on the
    /// shared-data keys a counter can ever use, however many sessions and identities come.
    pub counter_buckets: u64,
    /// Mixed into callers' fingerprints so that nobody outside can pick session ids or
    /// identities that crowd a chosen caller's bucket. The filter sets it from a random value
    /// kept in shared data (the same for every worker); 0 until then.
    pub counter_salt: u64,
    /// Named in `"rate_limit_services"`; counters refer to them by index.
    pub rate_limit_services: Vec<RateLimitService>,
    /// Required when a tool's action is `require_approval`.
    pub approval: Option<ApprovalSettings>,
}

impl Policy {
    /// Whether deciding `tool` may read its arguments (it, or `"*"`, has rules).
    pub fn reads_arguments(&self, tool: &str) -> bool {
        !self.wildcard_rules.is_empty() || self.tools.get(tool).is_some_and(|t| !t.rules.is_empty())
    }

    /// Whether refusals of `tool` are only reported ("would deny"): the whole policy or the
    /// tool's entry is in shadow mode.
    pub fn in_shadow(&self, tool: &str) -> bool {
        self.shadow || self.tools.get(tool).is_some_and(|t| t.shadow)
    }

    pub fn is_hidden(&self, tool: &str) -> bool {
        self.hide_all || self.hidden.iter().any(|h| h == tool)
    }

    pub fn counter(&self, id: CounterId) -> Option<&CounterSpec> {
        self.counters.get(id)
    }

    /// One line for logs and `mcp-policy check`.
    pub fn summary(&self) -> String {
        let denied = self
            .tools
            .values()
            .filter(|t| t.action == ToolAction::Deny)
            .count();
        format!(
            "policy ok: default {}, {} tool rule(s) ({} deny), {} counter(s) ({} kept by rate-limit services), {} grant(s), identity from {}, max body {} bytes, refusals as {}",
            match self.default_action {
                DefaultAction::Allow => "allow",
                DefaultAction::Deny => "deny",
            },
            self.tools.len(),
            denied,
            self.counters.len(),
            self.counters.iter().filter(|c| c.service.is_some()).count(),
            self.grants.grants().len(),
            self.identity_sources.iter().map(IdentitySource::describe).collect::<Vec<_>>().join(" / "),
            self.max_body_bytes,
            match self.refusal_mode {
                RefusalMode::JsonRpc => "jsonrpc",
                RefusalMode::Http => "http",
            }
        )
    }
}
