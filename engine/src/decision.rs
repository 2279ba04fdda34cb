//! What happened to one decided request (a `tools/call`, or a request a `resources`, `prompts`
//! or `methods` block decides), with the name the agent, the audit record and the metrics give
//! it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Shadow mode: the policy would have refused it, and it went on.
    WouldDeny,
    Denied,
    RateLimited,
    /// The filter could not enforce the policy (counters, a rate-limit service or the approval
    /// service unavailable): refused.
    Error,
    /// Malformed: refused.
    Invalid,
    /// Allowed, but not forwarded: another request in its JSON-RPC batch was refused.
    BatchRefused,
    ApprovalDenied,
    ApprovalPending,
}

impl Decision {
    /// The wire name (`error.data.decision`, the audit record, the `mcp_decision` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::WouldDeny => "would_deny",
            Decision::Denied => "denied",
            Decision::RateLimited => "rate_limited",
            Decision::Error => "error",
            Decision::Invalid => "invalid",
            Decision::BatchRefused => "batch_refused",
            Decision::ApprovalDenied => "approval_denied",
            Decision::ApprovalPending => "approval_pending",
        }
    }

    /// The call goes on (so far): allowed, or only reported in shadow mode.
    pub fn lets_through(self) -> bool {
        matches!(self, Decision::Allowed | Decision::WouldDeny)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compared by wire name, as tests and logs spell decisions.
impl PartialEq<&str> for Decision {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Decision> for &str {
    fn eq(&self, other: &Decision) -> bool {
        *self == other.as_str()
    }
}
