//! What the `resources`, `prompts` and `methods` blocks say, and which requests each decides. A
//! block that is absent decides nothing: those requests pass as if the policy did not know them.

use std::collections::HashMap;

use super::counter::CounterId;
use super::resources::UriPattern;
use super::rules::Rule;
use crate::protocol::jsonrpc::{
    INITIALIZE, NOTIFICATIONS, PING, PROMPTS_GET, PROMPTS_LIST, RESOURCES_LIST, RESOURCES_READ,
    RESOURCES_SUBSCRIBE, RESOURCES_UNSUBSCRIBE, RESOURCE_TEMPLATES_LIST, TOOLS_CALL, TOOLS_LIST,
};
use crate::protocol::listing::ListingKind;
use crate::target::Target;

/// One entry of `resources`, `prompts` or `methods`: a tool entry without approval.
#[derive(Debug, Clone)]
pub struct TargetRule {
    /// `"action": "deny"`; otherwise allowed, subject to its limits and rules.
    pub deny: bool,
    pub reason: Option<String>,
    /// Every one of these counters must have room for the request to pass.
    pub limits: Vec<CounterId>,
    /// Conditions on the request's arguments and on counters, in order (never for methods).
    pub rules: Vec<Rule>,
    /// Refusals by this entry are only reported ("would deny").
    pub shadow: bool,
    /// Where the entry is in the policy (`resources[2]`, `prompts.draft`, `methods["a/b"]`).
    pub path: String,
}

/// One entry of `resources`: what it matches and what it says.
#[derive(Debug, Clone)]
pub struct ResourceRule {
    pub pattern: UriPattern,
    pub rule: TargetRule,
}

/// The three blocks, each `None` when the policy leaves it out.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// In order: the first entry matching a URI decides it.
    pub resources: Option<Vec<ResourceRule>>,
    pub prompts: Option<HashMap<String, TargetRule>>,
    pub methods: Option<HashMap<String, TargetRule>>,
}

impl Targets {
    /// The first `resources` entry matching `uri` (a URI, or a template read as plain text).
    pub fn resource(&self, uri: &str) -> Option<&ResourceRule> {
        self.resources
            .as_ref()?
            .iter()
            .find(|entry| entry.pattern.matches(uri))
    }

    pub fn prompt(&self, name: &str) -> Option<&TargetRule> {
        self.prompts.as_ref()?.get(name)
    }

    pub fn method(&self, name: &str) -> Option<&TargetRule> {
        self.methods.as_ref()?.get(name)
    }

    /// Why a `methods` block never decides `method`, if it does not: it is decided elsewhere,
    /// keeps sessions working, or is a listing another block filters.
    pub fn outside_methods(&self, method: &str) -> Option<&'static str> {
        let resources = self.resources.is_some();
        let prompts = self.prompts.is_some();
        match method {
            TOOLS_CALL => Some("it is decided by \"tools\" (and grants)"),
            INITIALIZE | PING | TOOLS_LIST => Some("it always passes: sessions need it"),
            RESOURCES_UNSUBSCRIBE => Some("it always passes: it only gives up a subscription"),
            RESOURCES_READ | RESOURCES_SUBSCRIBE if resources => {
                Some("it is decided by the \"resources\" block")
            }
            RESOURCES_LIST | RESOURCE_TEMPLATES_LIST if resources => Some(
                "it always passes when there is a \"resources\" block, which filters its answer",
            ),
            PROMPTS_GET if prompts => Some("it is decided by the \"prompts\" block"),
            PROMPTS_LIST if prompts => {
                Some("it always passes when there is a \"prompts\" block, which filters its answer")
            }
            _ if method.starts_with(NOTIFICATIONS) => {
                Some("notifications always pass: sessions need them")
            }
            _ => None,
        }
    }

    /// Whether the `methods` block decides requests with `method`.
    pub fn methods_decide(&self, method: &str) -> bool {
        self.methods.is_some() && self.outside_methods(method).is_none()
    }

    /// Whether answers listing `kind` lose what the caller could never use (tools always do).
    pub fn filters(&self, kind: ListingKind) -> bool {
        match kind {
            ListingKind::Tools => true,
            ListingKind::Resources | ListingKind::ResourceTemplates => self.resources.is_some(),
            ListingKind::Prompts => self.prompts.is_some(),
        }
    }

    /// The `mcp_target` metric label of a request these blocks decided, bounded by the policy:
    /// the deciding resource entry's path or `default`; a prompt or method the policy names, or
    /// `other`.
    pub fn metric_label<'a>(&'a self, target: &'a Target) -> &'a str {
        match target {
            Target::Resource { uri, .. } => self
                .resource(uri)
                .map_or("default", |entry| entry.rule.path.as_str()),
            Target::Prompt(name) if self.prompt(name).is_some() => name,
            Target::Method(name) if self.method(name).is_some() => name,
            Target::Tool(_) | Target::Prompt(_) | Target::Method(_) => "other",
        }
    }

    /// What the blocks hold, for `mcp-policy check` and the filter's log (empty without them).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let resources = self.resources.as_ref().map(|r| r.iter().map(|e| &e.rule));
        let blocks = [
            ("resource", resources.map(|r| r.collect::<Vec<_>>())),
            (
                "prompt",
                self.prompts.as_ref().map(|p| p.values().collect()),
            ),
            (
                "method",
                self.methods.as_ref().map(|m| m.values().collect()),
            ),
        ];
        for (what, rules) in blocks {
            if let Some(rules) = rules {
                let denied = rules.iter().filter(|r| r.deny).count();
                out.push_str(&format!(", {} {what} rule(s) ({denied} deny)", rules.len()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;

    #[test]
    fn a_methods_block_decides_only_what_nothing_else_does() {
        let with = |blocks: &str| {
            load_policy(format!(r#"{{"version":"1",{blocks}}}"#).as_bytes())
                .unwrap()
                .targets
        };
        let methods = with(r#""methods":{}"#);
        for decided in [
            "completion/complete",
            "resources/read",
            "resources/list",
            "prompts/get",
            "prompts/list",
            "anything",
        ] {
            assert!(methods.methods_decide(decided), "{decided}");
        }
        for passing in [
            "initialize",
            "ping",
            "tools/list",
            "tools/call",
            "resources/unsubscribe",
            "notifications/initialized",
            "notifications/cancelled",
        ] {
            assert!(!methods.methods_decide(passing), "{passing}");
        }
        let all = with(r#""resources":[],"prompts":{},"methods":{}"#);
        for elsewhere in [
            "resources/read",
            "resources/subscribe",
            "resources/list",
            "resources/templates/list",
            "prompts/get",
            "prompts/list",
        ] {
            assert!(!all.methods_decide(elsewhere), "{elsewhere}");
        }
        assert!(
            !with(r#""resources":[]"#).methods_decide("anything"),
            "no methods block"
        );
    }

    #[test]
    fn only_blocks_that_are_present_filter_their_listings() {
        let bare = Targets::default();
        assert!(bare.filters(ListingKind::Tools));
        assert!(!bare.filters(ListingKind::Resources));
        assert!(!bare.filters(ListingKind::ResourceTemplates));
        assert!(!bare.filters(ListingKind::Prompts));
        let policy = load_policy(br#"{"version":"1","resources":[],"prompts":{}}"#).unwrap();
        assert!(policy.targets.filters(ListingKind::ResourceTemplates));
        assert!(policy.targets.filters(ListingKind::Prompts));
    }
}
