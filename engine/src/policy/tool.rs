//! What the policy says about one tool.

use super::counter::CounterId;
use super::rules::Rule;

/// A listed tool is allowed (subject to its limits) unless its action is `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolAction {
    Allow,
    Deny,
    /// Allowed (subject to its limits) once a human approved this exact call.
    RequireApproval,
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
    /// What is guarded in its allowed calls (arguments, results).
    pub guard: Option<super::guard::Guard>,
    /// Where this entry is in the policy (`tools.send`, `grants.ops.tools.send`): the `rule` of
    /// every decision it makes, built once at load rather than per call.
    pub path: String,
}
