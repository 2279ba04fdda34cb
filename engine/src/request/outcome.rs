//! What a finished decision is: forward the request or answer it, what happened to each call,
//! what the calls hold for refunds, and the counters they touched.

use crate::counters::reservations::Reservation;
use crate::decision::Decision;
use crate::policy::RefusalMode;
use crate::protocol::jsonrpc::Id;
use crate::protocol::listing::Listing;
use crate::reply::{self, Refusal, Reply};
use crate::services::approval::ApprovalQuery;
use crate::target::Target;

/// What happened to one decided request: a `tools/call`, or what a `resources`, `prompts` or
/// `methods` block decided (for the audit record, metrics and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub target: Target,
    pub decision: Decision,
    pub detail: String,
    /// The policy element that decided (JSON path), for audit records.
    pub rule: String,
    /// The JSON-RPC id of the call, if it has one.
    pub id: Option<Id>,
    /// A tool call's `arguments` as sent (raw JSON), for the audit record: kept only when it
    /// reads them (`Policy::audit_reads_arguments`), hashed or whole.
    pub arguments: Option<String>,
    /// The tool's risk class (from its pin), when one applied.
    pub class: Option<crate::policy::pins::Class>,
    /// What a guard's detectors found in the call (never what they matched).
    pub detections: Vec<Detection>,
}

/// A forwarded call whose results its guard reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub id: serde_json::Value,
    pub tool: String,
    pub class: Option<crate::policy::pins::Class>,
}

/// How many matches one detector found in one direction of a call, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub detector: String,
    pub count: u64,
    pub direction: crate::policy::guard::Direction,
    pub action: crate::policy::guard::GuardAction,
}

/// A counter this request touched: its value after the request (or when it refused it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterReading {
    pub counter: String,
    pub value: u64,
    pub max: u64,
    /// Start (Unix seconds) of the window `value` counts in.
    pub window_start: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Release the request untouched.
    Forward,
    /// Answer it here; the upstream never sees it.
    Reply(Reply),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub calls: Vec<CallRecord>,
    /// Set when something went wrong that an operator should see (counter store failures).
    pub problem: Option<String>,
    /// Forwarded listing requests (`tools/list`, …) whose answers are to be filtered.
    pub listings: Vec<Listing>,
    /// What each forwarded request with an id has taken: refunded if it fails upstream.
    pub reservations: Vec<Reservation>,
    /// Counters charged (or found used up), for the audit record.
    pub counters: Vec<CounterReading>,
    /// Forwarded tool calls whose results their guard reads.
    pub guarded: Vec<Guarded>,
}

pub(crate) const BATCH_REFUSED_DETAIL: &str =
    "not forwarded: another request in this batch was refused";

impl Outcome {
    pub fn refused(reply: Reply, calls: Vec<CallRecord>) -> Outcome {
        Outcome::reply(reply, calls)
    }

    /// A refused request forwards nothing: calls in it that the policy let through are recorded
    /// (and counted) as refused with their batch, as the client is told.
    pub(crate) fn reply(reply: Reply, mut calls: Vec<CallRecord>) -> Outcome {
        for call in &mut calls {
            if call.decision.lets_through() {
                call.decision = Refusal::BatchRefused.decision();
                call.detail = if call.detail.is_empty() {
                    BATCH_REFUSED_DETAIL.to_owned()
                } else {
                    format!("{BATCH_REFUSED_DETAIL}; {}", call.detail)
                };
            }
        }
        Outcome {
            verdict: Verdict::Reply(reply),
            calls,
            problem: None,
            listings: Vec::new(),
            reservations: Vec::new(),
            counters: Vec::new(),
            guarded: Vec::new(),
        }
    }
}

impl Outcome {
    /// The outcome of a call whose approval was refused (denied, still pending, or not asked).
    pub fn approval_refused(
        query: ApprovalQuery,
        refusal: &Refusal,
        refusal_mode: RefusalMode,
    ) -> Outcome {
        let detail = match refusal {
            Refusal::ApprovalDenied {
                approval_id,
                approver,
                reason,
                ..
            } => format!("approval {approval_id} denied by {approver}: {reason}"),
            Refusal::ApprovalPending { approval_id, .. } => {
                format!("approval {approval_id} pending")
            }
            Refusal::ApprovalUnavailable { problem, .. } => problem.clone(),
            _ => String::new(),
        };
        let record = CallRecord {
            target: Target::Tool(query.tool.clone()),
            decision: refusal.decision(),
            detail,
            rule: query.rule.clone(),
            id: query.id.clone(),
            arguments: query.arguments,
            class: None,
            detections: Vec::new(),
        };
        let mut outcome = Outcome::refused(
            reply::single(query.id.as_ref(), refusal, refusal_mode),
            vec![record],
        );
        if let Refusal::ApprovalUnavailable { problem, .. } = refusal {
            outcome.problem = Some(format!(
                "approval service: {problem} (call refused: fail closed)"
            ));
        }
        outcome
    }
}
