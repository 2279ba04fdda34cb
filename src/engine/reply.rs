//! What the agent receives when a request is not forwarded: a JSON-RPC error it can read, in an
//! HTTP response whose status follows the policy's `refusal_mode`.

use serde_json::{json, Value};

use super::jsonrpc::{INVALID_REQUEST, PARSE_ERROR};
use super::policy::{RefusalMode, Scope};
use super::window::Window;

/// The tool is not allowed by policy.
pub const POLICY_DENIED: i64 = -32003;
/// The tool is allowed but its rate limit is used up for this window.
pub const RATE_LIMITED: i64 = -32029;
/// Not forwarded because another element of the same batch was refused.
pub const BATCH_REFUSED: i64 = -32005;
/// `Mcp-Method` / `Mcp-Name` headers disagree with the body (the MCP spec's own code).
pub const HEADER_MISMATCH: i64 = -32020;
/// The filter could not consult its counters; the call was refused rather than let through.
pub const CANNOT_ENFORCE: i64 = -32603;
/// The call waits for a human's approval (retry it later, unchanged).
pub const APPROVAL_PENDING: i64 = -32031;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Why one message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Denied {
        tool: String,
        reason: String,
    },
    RateLimited {
        tool: String,
        limit: LimitHit,
    },
    CannotEnforce {
        tool: String,
        counter: String,
        problem: String,
    },
    Invalid {
        code: i64,
        problem: String,
    },
    HeaderMismatch {
        problem: String,
    },
    /// Innocent member of a refused batch.
    BatchRefused,
    /// A human (or bot) refused this exact call.
    ApprovalDenied {
        tool: String,
        approval_id: String,
        approver: String,
        reason: String,
    },
    /// Nobody decided while the call was held: it waits for a human under `approval_id`.
    ApprovalPending {
        tool: String,
        approval_id: String,
        approve_url: String,
    },
    /// The approval service gave no usable answer: refused (fail closed).
    ApprovalUnavailable {
        tool: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    pub counter: String,
    pub max: u64,
    pub window: Window,
    pub scope: Scope,
    pub used: u64,
    /// Start (Unix seconds) of the window that is used up.
    pub window_start: u64,
    /// Calls of this counter the refused request needed (more than 1 only for batches).
    pub needed: u64,
    /// `None` when `needed` exceeds `max`: waiting will never help.
    pub retry_after_seconds: Option<u64>,
    /// The message of the rule that owns the counter (`on_deny`), if any.
    pub reason: Option<String>,
}

impl LimitHit {
    fn explanation(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{reason} ({})", self.counting()),
            None => self.counting(),
        }
    }

    fn counting(&self) -> String {
        let per = format!(
            "{} call(s) per {} ({} scope)",
            self.max,
            self.window,
            self.scope.as_str()
        );
        match self.retry_after_seconds {
            None => format!(
                "counter \"{}\" allows only {per} and this batch needs {}: it can never pass; send fewer calls per batch.",
                self.counter, self.needed
            ),
            Some(wait) if self.needed > 1 => format!(
                "counter \"{}\" allows {per}; this batch needs {} and {} are left; retry in {wait} s.",
                self.counter,
                self.needed,
                self.max.saturating_sub(self.used)
            ),
            Some(wait) => format!(
                "counter \"{}\" allows {per} and that budget is used up; retry in {wait} s.",
                self.counter
            ),
        }
    }
}

impl Refusal {
    pub fn decision(&self) -> &'static str {
        match self {
            Refusal::Denied { .. } => "denied",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::CannotEnforce { .. } => "error",
            Refusal::Invalid { .. } | Refusal::HeaderMismatch { .. } => "invalid",
            Refusal::BatchRefused => "batch_refused",
            Refusal::ApprovalDenied { .. } => "approval_denied",
            Refusal::ApprovalPending { .. } => "approval_pending",
            Refusal::ApprovalUnavailable { .. } => "error",
        }
    }

    pub fn error_object(&self) -> Value {
        match self {
            Refusal::Denied { tool, reason } => json!({
                "code": POLICY_DENIED,
                "message": format!("Tool \"{tool}\" is not allowed by policy: {reason}"),
                "data": {"tool": tool, "decision": "denied", "reason": reason},
            }),
            Refusal::RateLimited { tool, limit } => json!({
                "code": RATE_LIMITED,
                "message": format!("Tool \"{tool}\" is rate limited by policy: {}", limit.explanation()),
                "data": {
                    "tool": tool,
                    "decision": "rate_limited",
                    "counter": limit.counter,
                    "limit": limit.max,
                    "window_seconds": limit.window.seconds(),
                    "scope": limit.scope.as_str(),
                    "used": limit.used,
                    "needed": limit.needed,
                    "retry_after_seconds": limit.retry_after_seconds,
                    "reason": limit.reason,
                },
            }),
            Refusal::CannotEnforce {
                tool,
                counter,
                problem,
            } => json!({
                "code": CANNOT_ENFORCE,
                "message": format!(
                    "Tool \"{tool}\" was not called: the policy filter could not check counter \"{counter}\" and refuses rather than risk exceeding it; retry shortly."
                ),
                "data": {"tool": tool, "decision": "error", "counter": counter, "problem": problem},
            }),
            Refusal::Invalid { code, problem } => json!({
                "code": code,
                "message": format!("{}: {problem}", standard_message(*code)),
                "data": {"decision": "invalid"},
            }),
            Refusal::HeaderMismatch { problem } => json!({
                "code": HEADER_MISMATCH,
                "message": format!("Header mismatch: {problem}"),
                "data": {"decision": "invalid"},
            }),
            Refusal::ApprovalDenied {
                tool,
                approval_id,
                approver,
                reason,
            } => json!({
                "code": POLICY_DENIED,
                "message": if reason.is_empty() {
                    format!("Tool \"{tool}\" was not called: {approver} denied this call (approval {approval_id}).")
                } else {
                    format!("Tool \"{tool}\" was not called: {approver} denied this call (approval {approval_id}): {reason}")
                },
                "data": {"tool": tool, "decision": "approval_denied", "approval_id": approval_id,
                         "approver": approver, "reason": reason},
            }),
            Refusal::ApprovalPending {
                tool,
                approval_id,
                approve_url,
            } => json!({
                "code": APPROVAL_PENDING,
                "message": format!(
                    "Tool \"{tool}\" needs a human's approval for this exact call and none was given yet. \
                     A person can approve it at {approve_url} (approval {approval_id}). \
                     Retry the same call with the same arguments later: once approved it goes through, once. \
                     Changed arguments need a new approval."
                ),
                "data": {"tool": tool, "decision": "approval_pending", "approval_id": approval_id,
                         "approve_url": approve_url},
            }),
            Refusal::ApprovalUnavailable { tool, problem } => json!({
                "code": CANNOT_ENFORCE,
                "message": format!(
                    "Tool \"{tool}\" was not called: it needs a human's approval and the approval service could not be asked; retry shortly."
                ),
                "data": {"tool": tool, "decision": "error", "problem": problem},
            }),
            Refusal::BatchRefused => json!({
                "code": BATCH_REFUSED,
                "message": "Not forwarded: another request in this JSON-RPC batch was refused by policy, and a batch is forwarded whole or not at all.",
                "data": {"decision": "batch_refused"},
            }),
        }
    }

    /// HTTP status for this refusal; malformed input is always a 400.
    fn status(&self, mode: RefusalMode) -> u16 {
        match (self, mode) {
            (Refusal::Invalid { .. } | Refusal::HeaderMismatch { .. }, _) => 400,
            (_, RefusalMode::JsonRpc) => 200,
            (Refusal::CannotEnforce { .. }, RefusalMode::Http) => 503,
            (Refusal::Denied { .. }, RefusalMode::Http) => 403,
            (Refusal::RateLimited { .. }, RefusalMode::Http) => 429,
            (Refusal::BatchRefused, RefusalMode::Http) => 200,
            (Refusal::ApprovalUnavailable { .. }, RefusalMode::Http) => 503,
            (
                Refusal::ApprovalDenied { .. } | Refusal::ApprovalPending { .. },
                RefusalMode::Http,
            ) => 403,
        }
    }
}

fn standard_message(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid request",
        _ => "Invalid params",
    }
}

fn response(id: Option<&Value>, refusal: &Refusal) -> Value {
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": refusal.error_object()})
}

/// How severe a refusal is when several statuses compete (a batch answers with the worst).
fn severity(status: u16) -> u8 {
    match status {
        400 => 4,
        503 => 3,
        403 => 2,
        429 => 1,
        _ => 0,
    }
}

/// One refused message (or an error about the whole body, with `id` None).
pub fn single(id: Option<&Value>, refusal: &Refusal, mode: RefusalMode) -> Reply {
    build(
        refusal.status(mode),
        response(id, refusal).to_string(),
        retry_after(std::iter::once(refusal)),
    )
}

/// A refused batch: one error per element that expects an answer, plus every culprit.
/// `entries` are (id, refusal, expects_answer) in batch order.
pub fn batch(entries: &[(Option<&Value>, Refusal, bool)], mode: RefusalMode) -> Reply {
    let mut status = 200;
    let mut items = Vec::new();
    for (id, refusal, expects_answer) in entries {
        let s = refusal.status(mode);
        if severity(s) > severity(status) {
            status = s;
        }
        if *expects_answer || *refusal != Refusal::BatchRefused {
            items.push(response(*id, refusal));
        }
    }
    build(
        status,
        Value::Array(items).to_string(),
        retry_after(entries.iter().map(|(_, r, _)| r)),
    )
}

/// 413: the body is larger than `max_body_bytes`; it was not read further.
pub fn too_large(limit: u64) -> Reply {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": INVALID_REQUEST,
            "message": format!("Request body too large: this MCP endpoint accepts at most {limit} bytes per request."),
            "data": {"decision": "invalid", "max_body_bytes": limit},
        },
    });
    build(413, body.to_string(), None)
}

/// The request as a whole is not acceptable (method, headers, encoding): `status` with a JSON-RPC
/// invalid-request error.
pub fn refused_request(status: u16, problem: String) -> Reply {
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": INVALID_REQUEST, "message": format!("Invalid request: {problem}"), "data": {"decision": "invalid"}},
    });
    build(status, body.to_string(), None)
}

fn retry_after<'a>(refusals: impl Iterator<Item = &'a Refusal>) -> Option<u64> {
    refusals
        .filter_map(|r| match r {
            Refusal::RateLimited { limit, .. } => limit.retry_after_seconds,
            _ => None,
        })
        .max()
}

fn build(status: u16, body: String, retry_after: Option<u64>) -> Reply {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(seconds) = retry_after {
        headers.push(("retry-after", seconds.to_string()));
        headers.push(("x-envoy-ratelimited", "true".to_owned()));
    }
    Reply {
        status,
        headers,
        body,
    }
}
