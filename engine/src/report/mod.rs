//! What a decision leaves behind for operators: the audit record, metric increments (named as
//! Envoy stats by `stats`) and log lines, handed to the host.

pub mod audit;
pub mod stats;

use crate::decision::Decision;
use crate::host::{mark, Host, Level, Metric, Phase};
use crate::policy::identity::Identity;
use crate::policy::Policy;
use crate::protocol::jsonrpc::MCP_METHODS;
use crate::request::outcome::{CallRecord, Outcome, Verdict};
use crate::target::Target;
use audit::AuditContext;

/// Store the audit record, count every decision and log what an operator should see.
pub fn publish(host: &mut dyn Host, policy: &Policy, context: &AuditContext, outcome: &Outcome) {
    let server = context.server;
    let record = audit::record(policy, context, outcome);
    mark(host, Phase::AuditRecord);
    if let Some(record) = record {
        if let Err(problem) = host.store_audit_record(&record) {
            host.log(
                Level::Warn,
                &format!("mcp-policy-filter[{server}]: audit record not stored: {problem}"),
            );
        }
    }
    mark(host, Phase::AuditStore);
    for call in &outcome.calls {
        host.count(metric(policy, call));
    }
    if outcome.calls.is_empty() && matches!(outcome.verdict, Verdict::Reply(_)) {
        host.count(Metric::ToolCall {
            tool: "none",
            decision: "invalid",
        });
    }
    mark(host, Phase::Metrics);
    if let Some(problem) = &outcome.problem {
        host.log(
            Level::Error,
            &format!("mcp-policy-filter[{server}]: {problem}"),
        );
    }
    let caller = context
        .identity
        .map_or_else(|| "anonymous".to_owned(), Identity::display);
    for call in outcome
        .calls
        .iter()
        .filter(|c| c.decision != Decision::Allowed)
    {
        host.log(
            Level::Info,
            &format!(
                "mcp-policy-filter[{server}]: {} {:?} by {caller:?} {} {}",
                call.target.method(),
                call.target.name(),
                call.decision,
                call.detail
            ),
        );
    }
}

/// The metric one decision increments, its labels bounded by the policy.
fn metric<'a>(policy: &'a Policy, call: &'a CallRecord) -> Metric<'a> {
    let decision = call.decision.as_str();
    if let Target::Tool(tool) = &call.target {
        return Metric::ToolCall {
            tool: policy.metric_label(tool),
            decision,
        };
    }
    let method = call.target.method();
    Metric::Request {
        method: MCP_METHODS
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or("other"),
        target: policy.targets.metric_label(&call.target),
        decision,
    }
}
