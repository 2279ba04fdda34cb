//! The validated policy the filter enforces: built only by `load::load_policy`, bound to a
//! filter instance by `Policy::bind`, read-only from then on (its fields are the engine's).

pub mod caller;
pub mod counter;
pub mod grants;
pub mod guard;
pub mod identity;
pub mod pins;
pub mod resources;
pub mod rules;
pub mod targets;
pub mod tool;

pub use counter::{
    CounterId, CounterKeys, CounterSpec, RateLimitService, Scope, ServiceFailureMode,
};
pub use tool::{ToolAction, ToolRule};

use std::collections::{HashMap, HashSet};

use crate::policy::grants::GrantTable;
use crate::policy::identity::{IdentitySource, MissingIdentity};
use crate::policy::pins::{Class, Classes, Pins};
use crate::policy::rules::Rule;

/// What happens to a request the policy decides but names no entry for: a `tools/call` of a tool
/// it does not list, a resource no entry matches, a prompt or method it does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    Allow,
    Deny,
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

/// How refusals are signalled at the HTTP level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalMode {
    /// HTTP 200 carrying a JSON-RPC error: what MCP clients surface to the model.
    JsonRpc,
    /// HTTP 403 (denied) / 429 (rate limited) / 503 (cannot enforce), same JSON-RPC body.
    Http,
}

pub const DEFAULT_IDENTITY_HEADER: &str = "x-agent-id";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) default_action: DefaultAction,
    pub(crate) tools: HashMap<String, ToolRule>,
    /// Rules of the `"*"` entry: they apply to every call after the tool's own rules.
    pub(crate) wildcard_rules: Vec<Rule>,
    /// Tools denied on call and removed from tools/list; `hide_all` for `"*"`.
    pub(crate) hidden: HashSet<String>,
    pub(crate) hide_all: bool,
    /// Tools whose metrics carry their own name (see `metric_label`), found once at load.
    pub(crate) labelled_tools: HashSet<String>,
    pub(crate) counters: Vec<CounterSpec>,
    /// Tried in order; the first present one identifies the caller.
    pub(crate) identity_sources: Vec<IdentitySource>,
    pub(crate) missing_identity: MissingIdentity,
    /// Empty when the policy defines no grants.
    pub(crate) grants: GrantTable,
    pub(crate) max_body_bytes: u64,
    pub(crate) refusal_mode: RefusalMode,
    /// The whole policy only reports what it would refuse ("would deny") and blocks nothing.
    pub(crate) shadow: bool,
    /// Audit records carry the calls' raw arguments (not only their SHA-256).
    pub(crate) audit_arguments: bool,
    /// Audit records carry a SHA-256 of each call's arguments (`"hash_arguments": true`; off by
    /// default). Hashing costs about 2.5 ns per byte of arguments inside Envoy (Wasm SIMD), most
    /// of what a large call costs.
    pub(crate) audit_hash: bool,
    /// When counters cannot be consulted (shared-data errors, CAS exhaustion): refuse the call
    /// (`false`, the default) or let it through uncounted (`"failure_mode": "open"`).
    pub(crate) fail_open: bool,
    /// The namespace (the filter's plugin name) the counters' `keys` were built for; empty
    /// until `bind`.
    pub(crate) counter_namespace: String,
    /// Buckets per scoped counter (`counter_slots` / `ENTRIES_PER_BUCKET`): the bound on the
    /// shared-data keys a counter can ever use, however many sessions and identities come.
    pub(crate) counter_buckets: u64,
    /// Mixed into callers' fingerprints so that nobody outside can pick session ids or
    /// identities that crowd a chosen caller's bucket. Set by `bind`, from a random value the
    /// filter keeps in shared data (the same for every worker); 0 until then.
    pub(crate) counter_salt: u64,
    /// Named in `"rate_limit_services"`; counters refer to them by index.
    pub(crate) rate_limit_services: Vec<RateLimitService>,
    /// Required when a tool's action is `require_approval`.
    pub(crate) approval: Option<ApprovalSettings>,
    /// Pinned tool definitions; `None`: definitions are not checked.
    pub(crate) pins: Option<Pins>,
    /// Entries for tools by risk class, applied through pinned annotations.
    pub(crate) classes: Classes,
    /// The `resources`, `prompts` and `methods` blocks.
    pub(crate) targets: targets::Targets,
    /// The `"*"` entry's guard: for calls whose own entry has none.
    pub(crate) wildcard_guard: Option<guard::Guard>,
}

impl Policy {
    /// A tool's server-wide entry: its own, else its class's (`class`, from its pin).
    pub(crate) fn entry(&self, tool: &str, class: Option<Class>) -> Option<&ToolRule> {
        self.tools
            .get(tool)
            .or_else(|| class.and_then(|c| self.classes.entry(c)))
    }

    /// The guard of a call whose entry is `entry`: the entry's own, else the `"*"` entry's.
    pub(crate) fn guard<'p>(&'p self, entry: Option<&'p ToolRule>) -> Option<&'p guard::Guard> {
        entry
            .and_then(|e| e.guard.as_ref())
            .or(self.wildcard_guard.as_ref())
    }

    /// Whether deciding a tool whose entry is `entry` may read its arguments (it, or `"*"`,
    /// has rules).
    pub(crate) fn reads_arguments(&self, entry: Option<&ToolRule>) -> bool {
        !self.wildcard_rules.is_empty() || entry.is_some_and(|t| !t.rules.is_empty())
    }

    /// Whether audit records read the calls' arguments: their hash, or the arguments themselves.
    pub(crate) fn audit_reads_arguments(&self) -> bool {
        self.audit_hash || self.audit_arguments
    }

    /// Whether refusals of a tool whose entry is `entry` are only reported ("would deny"):
    /// the whole policy or the entry is in shadow mode.
    pub(crate) fn in_shadow(&self, entry: Option<&ToolRule>) -> bool {
        self.shadow || entry.is_some_and(|t| t.shadow)
    }

    pub fn is_hidden(&self, tool: &str) -> bool {
        self.hide_all || self.hidden.contains(tool)
    }

    /// The metrics label for `tool`: its name if the policy names it (in `tools`, `hide` or a
    /// grant) and it is safe in a stat name, else `other`, so that clients cannot create new
    /// time series by making names up.
    pub fn metric_label<'a>(&self, tool: &'a str) -> &'a str {
        if self.labelled_tools.contains(tool) {
            tool
        } else {
            "other"
        }
    }

    /// The names `metric_label` keeps, from the loaded policy's tools, hidden tools and grants.
    pub(crate) fn names_to_label(&self) -> HashSet<String> {
        let granted = self
            .grants
            .grants()
            .iter()
            .filter_map(|g| g.tools.as_ref())
            .flat_map(|tools| tools.keys());
        let pinned = self.pins.iter().flat_map(|pins| pins.tools.keys());
        self.tools
            .keys()
            .chain(&self.hidden)
            .chain(granted)
            .chain(pinned)
            .filter(|name| {
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .cloned()
            .collect()
    }

    /// The policy as one filter instance enforces it: its counters kept under `namespace`
    /// (the filter's name), callers' fingerprints salted with `salt` (the same in every worker).
    pub fn bind(mut self, namespace: &str, salt: u64) -> Policy {
        self.counter_salt = salt;
        self.prepare_counter_keys(namespace);
        self
    }

    /// Build every counter's shared-data keys for this filter's `namespace` (and the policy's
    /// `counter_buckets`), once.
    pub(crate) fn prepare_counter_keys(&mut self, namespace: &str) {
        for spec in &mut self.counters {
            spec.keys = CounterKeys::new(namespace, spec, self.counter_buckets.max(1));
        }
        namespace.clone_into(&mut self.counter_namespace);
    }

    /// The JSON path of the first identity source that reads a `jwt_authn` claim from dynamic
    /// metadata (`identity.sources[2]`), for hosts that cannot read it.
    pub fn jwt_claim_source(&self) -> Option<String> {
        self.identity_sources
            .iter()
            .position(|s| matches!(s, IdentitySource::JwtClaim { .. }))
            .map(|index| format!("identity.sources[{index}]"))
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
            "policy ok: default {}, {} tool rule(s) ({} deny){}, {} counter(s) ({} kept by rate-limit services), {} grant(s), identity from {}, max body {} bytes, refusals as {}",
            match self.default_action {
                DefaultAction::Allow => "allow",
                DefaultAction::Deny => "deny",
            },
            self.tools.len(),
            denied,
            self.targets.summary(),
            self.counters.len(),
            self.counters.iter().filter(|c| c.service.is_some()).count(),
            self.grants.grants().len(),
            self.identity_sources.iter().map(IdentitySource::describe).collect::<Vec<_>>().join(" / "),
            self.max_body_bytes,
            match self.refusal_mode {
                RefusalMode::JsonRpc => "jsonrpc",
                RefusalMode::Http => "http",
            }
        ) + &self.pins_summary()
    }

    /// `, pins …, classes …` when the policy has them.
    fn pins_summary(&self) -> String {
        let Some(pins) = &self.pins else {
            return String::new();
        };
        let classes: Vec<&str> = pins::Class::ALL
            .iter()
            .filter(|c| self.classes.entry(**c).is_some())
            .map(|c| c.as_str())
            .collect();
        format!(
            ", pins {} ({} pinned tool(s)), classes: {}",
            pins.mode.as_str(),
            pins.tools.len(),
            if classes.is_empty() {
                "none".to_owned()
            } else {
                classes.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_policy;
    use crate::test_support::test;

    #[test]
    fn metrics_label_only_tools_the_policy_names_and_stat_names_can_hold() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow",
                "tools":{"send":{},"odd name":{}},
                "hide":["secret_tool"],
                "grants":{"ops":{"identities":["ops-1"],"tools":{"restart-db":{}}}}}"#,
        )
        .unwrap();
        for tool in ["send", "secret_tool", "restart-db"] {
            assert_eq!(policy.metric_label(tool), tool);
        }
        for tool in ["made_up", "odd name", ""] {
            assert_eq!(policy.metric_label(tool), "other", "{tool:?}");
        }
    }
}
