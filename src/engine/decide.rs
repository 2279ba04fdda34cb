//! Allow or deny one tool by name. Rate limits are applied afterwards by `evaluate`, because
//! they need the counter store and the whole request (a batch is charged all at once).

use super::policy::{CounterId, DefaultAction, Policy, ToolAction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDecision<'p> {
    /// Allowed if every listed counter has room.
    Allow {
        limits: &'p [CounterId],
    },
    Deny {
        reason: String,
    },
}

pub const UNLISTED_UNDER_DEFAULT_DENY: &str =
    "the policy denies every tool it does not list (default: deny)";
pub const DENIED_WITHOUT_REASON: &str = "this tool is denied by the policy";

pub fn decide_tool<'p>(policy: &'p Policy, tool: &str) -> ToolDecision<'p> {
    match policy.tools.get(tool) {
        Some(rule) => match rule.action {
            ToolAction::Allow => ToolDecision::Allow {
                limits: &rule.limits,
            },
            ToolAction::Deny => ToolDecision::Deny {
                reason: rule
                    .reason
                    .clone()
                    .unwrap_or_else(|| DENIED_WITHOUT_REASON.to_owned()),
            },
        },
        None => match policy.default_action {
            DefaultAction::Allow => ToolDecision::Allow { limits: &[] },
            DefaultAction::Deny => ToolDecision::Deny {
                reason: UNLISTED_UNDER_DEFAULT_DENY.to_owned(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::load::load_policy;
    use crate::engine::test_support::test;

    const SEED: &str = r#"{"version":"1","default":"deny","tools":{"wechat_mass_send":{"limits":[{"counter":"wechat_mass_send_rate","window":"minute","max":30,"scope":"grant"}]}}}"#;

    #[test]
    fn seed_allows_its_listed_tool_with_its_limit() {
        let policy = load_policy(SEED.as_bytes()).unwrap();
        assert_eq!(
            decide_tool(&policy, "wechat_mass_send"),
            ToolDecision::Allow { limits: &[0] }
        );
    }

    #[test]
    fn seed_denies_everything_else() {
        let policy = load_policy(SEED.as_bytes()).unwrap();
        assert_eq!(
            decide_tool(&policy, "wechat_mass_delete"),
            ToolDecision::Deny {
                reason: UNLISTED_UNDER_DEFAULT_DENY.into()
            }
        );
        // Names are exact: no case folding, no trimming.
        assert!(matches!(
            decide_tool(&policy, "WECHAT_MASS_SEND"),
            ToolDecision::Deny { .. }
        ));
        assert!(matches!(
            decide_tool(&policy, "wechat_mass_send "),
            ToolDecision::Deny { .. }
        ));
    }

    #[test]
    fn explicit_deny_carries_its_reason() {
        let policy = load_policy(
            br#"{"version":"1","default":"allow","tools":{"wechat_mass_delete":{"action":"deny","reason":"deleting mass messages needs a human"},"x":{"action":"deny"}}}"#,
        )
        .unwrap();
        assert_eq!(
            decide_tool(&policy, "wechat_mass_delete"),
            ToolDecision::Deny {
                reason: "deleting mass messages needs a human".into()
            }
        );
        assert_eq!(
            decide_tool(&policy, "x"),
            ToolDecision::Deny {
                reason: DENIED_WITHOUT_REASON.into()
            }
        );
        assert_eq!(
            decide_tool(&policy, "anything_else"),
            ToolDecision::Allow { limits: &[] }
        );
    }
}
