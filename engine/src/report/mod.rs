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
use crate::response::tools_list::Drift;
use crate::target::Target;
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

/// Store the audit record of `outcome` (again: with what was learnt since it was decided).
pub fn store_record(
    host: &mut dyn Host,
    policy: &Policy,
    context: &AuditContext,
    outcome: &Outcome,
) {
    if let Some(record) = audit::record(policy, context, outcome) {
        if let Err(problem) = host.store_audit_record(&record) {
            host.log(
                Level::Warn,
                &format!(
                    "mcp-policy-filter[{}]: audit record not stored: {problem}",
                    context.server
                ),
            );
        }
    }
}

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
        for found in &call.detections {
            host.count(Metric::GuardDetection {
                tool: policy.metric_label(call.target.name()),
                detector: &found.detector,
                direction: found.direction.as_str(),
                action: found.action.as_str(),
            });
        }
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
        let what = match &call.target {
            // A method is all a methods-block decision is about.
            Target::Method(method) => method.clone(),
            target => format!("{} {:?}", target.method(), target.name()),
        };
        host.log(
            Level::Info,
            &format!(
                "mcp-policy-filter[{server}]: {what} by {caller:?} {} {}",
                call.decision, call.detail
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::load::load_policy;
    use crate::test_support::test;

    fn labels(policy: &Policy, target: Target) -> (String, String, String) {
        let call = CallRecord {
            target,
            decision: Decision::Denied,
            detail: String::new(),
            rule: String::new(),
            id: None,
            arguments: None,
            class: None,
            detections: Vec::new(),
        };
        match metric(policy, &call) {
            Metric::Request {
                method,
                target,
                decision,
            } => (method.into(), target.into(), decision.into()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_labels_are_bounded_by_the_policy() {
        let policy = load_policy(
            br#"{"version":"1","resources":[{"uri":"a://1"},{"glob":"a://**"}],
                "prompts":{"draft":{}},"methods":{"logging/setLevel":{},"x/custom":{}}}"#,
        )
        .unwrap();
        let resource = |method: &str, uri: &str| Target::Resource {
            method: method.into(),
            uri: uri.into(),
        };
        let expect = |m: &str, t: &str| (m.to_owned(), t.to_owned(), "denied".to_owned());
        for (target, expected) in [
            (
                resource("resources/read", "a://1"),
                expect("resources/read", "resources[0]"),
            ),
            (
                resource("resources/subscribe", "a://2"),
                expect("resources/subscribe", "resources[1]"),
            ),
            (
                resource("resources/read", "b://made-up"),
                expect("resources/read", "default"),
            ),
            (
                Target::Prompt("draft".into()),
                expect("prompts/get", "draft"),
            ),
            (
                Target::Prompt("made up".into()),
                expect("prompts/get", "other"),
            ),
            (
                Target::Method("logging/setLevel".into()),
                expect("logging/setLevel", "logging/setLevel"),
            ),
            (
                Target::Method("tasks/list".into()),
                expect("tasks/list", "other"),
            ),
            (
                Target::Method("x/custom".into()),
                expect("other", "x/custom"),
            ),
            (Target::Method("made/up".into()), expect("other", "other")),
        ] {
            assert_eq!(labels(&policy, target.clone()), expected, "{target:?}");
        }
        // Tool calls keep their own metric.
        let call = CallRecord {
            target: Target::Tool("send".into()),
            decision: Decision::Allowed,
            detail: String::new(),
            rule: String::new(),
            id: None,
            arguments: None,
            class: None,
            detections: Vec::new(),
        };
        assert_eq!(
            metric(&policy, &call),
            Metric::ToolCall {
                tool: "other",
                decision: "allowed"
            }
        );
    }
}
