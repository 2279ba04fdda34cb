//! What a decision leaves behind for operators: the audit record, metric increments (named as
//! Envoy stats by `stats`) and log lines, handed to the host.

pub mod audit;
pub mod stats;

use crate::decision::Decision;
use crate::host::{mark, Host, Level, Metric, Phase};
use crate::policy::identity::Identity;
use crate::policy::Policy;
use crate::request::outcome::{Outcome, Verdict};
use crate::response::tools_list::Drift;
use audit::AuditContext;

/// Count and log the drift a listing showed (`new`, found since the last call). When the answer
/// is complete (`all`), store the audit record of every drift it showed.
pub fn publish_drift(
    host: &mut dyn Host,
    policy: &Policy,
    context: &AuditContext,
    new: &[Drift],
    all: Option<&[Drift]>,
) {
    let server = context.server;
    for drift in new {
        host.count(Metric::ToolDrift {
            tool: policy.metric_label(&drift.tool),
        });
        let what = match &drift.pinned {
            Some(pinned) => format!("differs from its pin ({pinned}; listed {})", drift.seen),
            None => format!("has no pin (listed {})", drift.seen),
        };
        let action = if drift.dropped {
            "dropped from the listing"
        } else {
            "reported"
        };
        host.log(
            Level::Warn,
            &format!(
                "mcp-policy-filter[{server}]: tool {:?} {what}: {action}",
                drift.tool
            ),
        );
    }
    if let Some(all) = all.filter(|all| !all.is_empty()) {
        if let Err(problem) = host.store_audit_record(&audit::drift_record(context, all)) {
            host.log(
                Level::Warn,
                &format!("mcp-policy-filter[{server}]: audit record not stored: {problem}"),
            );
        }
    }
}

/// Store the audit record, count every call's decision and log what an operator should see.
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
        host.count(Metric::ToolCall {
            tool: policy.metric_label(&call.tool),
            decision: call.decision.as_str(),
        });
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
                "mcp-policy-filter[{server}]: tools/call {:?} by {caller:?} {} {}",
                call.tool, call.decision, call.detail
            ),
        );
    }
}
