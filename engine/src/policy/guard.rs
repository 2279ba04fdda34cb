//! What a policy guards in an allowed call: its arguments (agent → server) and its results
//! (server → agent), with which detectors and what to do with what they find.

use crate::guard::detectors::Detectors;

/// What happens to a call or result a guard's detectors found something in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// The call is refused, or the result replaced by a JSON-RPC error.
    Block,
    /// Each match is replaced by a marker naming its detector (results only).
    Redact,
    /// Nothing changes: the detection is counted and audited.
    Report,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Block => "block",
            GuardAction::Redact => "redact",
            GuardAction::Report => "report",
        }
    }
}

/// One direction's guard.
#[derive(Debug, Clone)]
pub struct GuardRule {
    pub action: GuardAction,
    pub detectors: Detectors,
}

/// An entry's `guard`: its two directions, and where it is in the policy.
#[derive(Debug, Clone)]
pub struct Guard {
    pub arguments: Option<GuardRule>,
    pub results: Option<GuardRule>,
    /// A JSON result too large to hold and read goes on unguarded (`"failure_mode": "open"`)
    /// rather than being replaced by an error (the default).
    pub fail_open: bool,
    /// `tools.send.guard`, `classes.open_world.guard`, `tools["*"].guard`.
    pub path: String,
}

/// The direction of what a guard looked at, as metrics and audit records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Arguments,
    Results,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Arguments => "arguments",
            Direction::Results => "results",
        }
    }
}
