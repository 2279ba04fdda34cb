//! What the agent receives when a request is not forwarded: a JSON-RPC error it can read, in an
//! HTTP response whose status follows the policy's `refusal_mode`.

use crate::decision::Decision;
use crate::json::write;

use crate::counters::window::Window;
use crate::policy::{RefusalMode, Scope};
use crate::protocol::jsonrpc::{Body, Id, INVALID_REQUEST, PARSE_ERROR};
use crate::target::Target;

/// The request (its tool, resource, prompt or method) is not allowed by policy.
pub const POLICY_DENIED: i64 = -32003;
/// The request is allowed but a rate limit it counts against is used up for this window.
pub const RATE_LIMITED: i64 = -32029;
/// Not forwarded because another element of the same batch was refused.
pub const BATCH_REFUSED: i64 = -32005;
/// `Mcp-Method` / `Mcp-Name` headers disagree with the body (the MCP spec's own code).
pub const HEADER_MISMATCH: i64 = -32020;
/// The filter could not consult its counters; the call was refused rather than let through.
pub const CANNOT_ENFORCE: i64 = -32603;
/// The call waits for a human's approval (retry it later, unchanged).
pub const APPROVAL_PENDING: i64 = -32031;
/// The specification's URL-elicitation-required error (MCP 2025-11-25).
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// How a call waiting for a person's approval is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAnswer {
    /// A JSON-RPC error naming the approval page: every client shows it to its model.
    Plain,
    /// The URL-elicitation-required error (MCP 2025-11-25), for a session whose client declared
    /// URL-mode elicitation in `initialize`: the client opens the page itself.
    UrlElicitation,
    /// An `input_required` result asking for a URL-mode elicitation (MCP 2026-07-28, which has
    /// no -32042), for a request whose client capabilities declare it: the client opens the
    /// page and retries the call with `requestState`.
    InputRequired,
}

/// Why one message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Denied {
        target: Target,
        reason: String,
    },
    RateLimited {
        target: Target,
        limit: LimitHit,
    },
    CannotEnforce {
        target: Target,
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
        /// How the client is told, from what it declared it can do.
        answer: PendingAnswer,
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
    pub fn decision(&self) -> Decision {
        match self {
            Refusal::Denied { .. } => Decision::Denied,
            Refusal::RateLimited { .. } => Decision::RateLimited,
            Refusal::CannotEnforce { .. } | Refusal::ApprovalUnavailable { .. } => Decision::Error,
            Refusal::Invalid { .. } | Refusal::HeaderMismatch { .. } => Decision::Invalid,
            Refusal::BatchRefused => Decision::BatchRefused,
            Refusal::ApprovalDenied { .. } => Decision::ApprovalDenied,
            Refusal::ApprovalPending { .. } => Decision::ApprovalPending,
        }
    }

    /// The JSON-RPC `error` member for this refusal, as serde_json writes it: members in key
    /// order at every level (serde_json's maps sort their keys), so the text is byte for byte
    /// what building a `Value` and serialising it gave, without building one.
    pub fn write_error_object(&self, out: &mut String) {
        let mut error = Object::open(out);
        match self {
            Refusal::Denied { target, reason } => write_denied(&mut error, target, reason),
            Refusal::RateLimited { target, limit } => write_rate_limited(&mut error, target, limit),
            Refusal::CannotEnforce {
                target,
                counter,
                problem,
            } => write_cannot_enforce(&mut error, target, counter, problem),
            Refusal::Invalid { code, problem } => {
                error.i64("code", *code);
                invalid_data(&mut error);
                error.str(
                    "message",
                    &format!("{}: {problem}", standard_message(*code)),
                );
            }
            Refusal::HeaderMismatch { problem } => {
                error.i64("code", HEADER_MISMATCH);
                invalid_data(&mut error);
                error.str("message", &format!("Header mismatch: {problem}"));
            }
            Refusal::ApprovalDenied {
                tool,
                approval_id,
                approver,
                reason,
            } => write_approval_denied(&mut error, tool, approval_id, approver, reason),
            Refusal::ApprovalPending {
                tool,
                approval_id,
                approve_url,
                answer: PendingAnswer::UrlElicitation,
            } => write_approval_elicitation(&mut error, tool, approval_id, approve_url),
            // An `input_required` answer is a result, written by `single`; as an error (in a
            // batch, which approvals are refused in anyway) it is the plain one.
            Refusal::ApprovalPending {
                tool,
                approval_id,
                approve_url,
                ..
            } => write_approval_pending(&mut error, tool, approval_id, approve_url),
            Refusal::ApprovalUnavailable { tool, problem } => {
                write_approval_unavailable(&mut error, tool, problem)
            }
            Refusal::BatchRefused => write_batch_refused(&mut error),
        }
        error.close();
    }

    /// The `error` member as a document (tests read refusals this way).
    #[cfg(test)]
    pub fn error_object(&self) -> serde_json::Value {
        let mut text = String::new();
        self.write_error_object(&mut text);
        serde_json::from_str(&text).unwrap_or_default()
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

// The members of a `Refusal`'s `error` object, one function for each kind of refusal: `code`,
// `data`, `message`, in that order, as serde_json sorts them.

/// What an agent reads when `target` is denied for `reason`.
pub fn denied_message(target: &Target, reason: &str) -> String {
    format!(
        "{} \"{}\" is not allowed by policy: {reason}",
        target.noun(),
        target.name()
    )
}

fn write_denied(error: &mut Object, target: &Target, reason: &str) {
    error.i64("code", POLICY_DENIED);
    write_data(
        error,
        target,
        &[
            ("decision", Member::Str(Decision::Denied.as_str())),
            ("reason", Member::Str(reason)),
        ],
    );
    error.str("message", &denied_message(target, reason));
}

fn write_rate_limited(error: &mut Object, target: &Target, limit: &LimitHit) {
    error.i64("code", RATE_LIMITED);
    write_data(
        error,
        target,
        &[
            ("counter", Member::Str(&limit.counter)),
            ("decision", Member::Str(Decision::RateLimited.as_str())),
            ("limit", Member::U64(Some(limit.max))),
            ("needed", Member::U64(Some(limit.needed))),
            ("reason", Member::OptStr(limit.reason.as_deref())),
            (
                "retry_after_seconds",
                Member::U64(limit.retry_after_seconds),
            ),
            ("scope", Member::Str(limit.scope.as_str())),
            ("used", Member::U64(Some(limit.used))),
            ("window_seconds", Member::U64(Some(limit.window.seconds()))),
        ],
    );
    error.str(
        "message",
        &format!(
            "{} \"{}\" is rate limited by policy: {}",
            target.noun(),
            target.name(),
            limit.explanation()
        ),
    );
}

fn write_cannot_enforce(error: &mut Object, target: &Target, counter: &str, problem: &str) {
    error.i64("code", CANNOT_ENFORCE);
    write_data(
        error,
        target,
        &[
            ("counter", Member::Str(counter)),
            ("decision", Member::Str(Decision::Error.as_str())),
            ("problem", Member::Str(problem)),
        ],
    );
    error.str(
        "message",
        &format!(
            "{} \"{}\" {}: the policy filter could not check counter \"{counter}\" and refuses rather than risk exceeding it; retry shortly.",
            target.noun(),
            target.name(),
            target.not_done()
        ),
    );
}

/// A value of `error.data`.
enum Member<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    /// `null` when `None`.
    U64(Option<u64>),
}

/// `"data"`: `members` (in key order) and the member naming `target`, which sorts to another
/// place for each kind of target (`method` < `prompt` < `reason` < `resource` < `tool`).
fn write_data(error: &mut Object, target: &Target, members: &[(&str, Member)]) {
    let mut data = error.object("data");
    let mut named = false;
    for (key, value) in members {
        if !named && target.member() < *key {
            data.str(target.member(), target.name());
            named = true;
        }
        match value {
            Member::Str(text) => data.str(key, text),
            Member::OptStr(text) => data.opt_str(key, *text),
            Member::U64(n) => data.opt_u64(key, *n),
        }
    }
    if !named {
        data.str(target.member(), target.name());
    }
    data.close();
}

fn write_approval_denied(
    error: &mut Object,
    tool: &str,
    approval_id: &str,
    approver: &str,
    reason: &str,
) {
    error.i64("code", POLICY_DENIED);
    let mut data = error.object("data");
    data.str("approval_id", approval_id);
    data.str("approver", approver);
    data.str("decision", Decision::ApprovalDenied.as_str());
    data.str("reason", reason);
    data.str("tool", tool);
    data.close();
    let message = if reason.is_empty() {
        format!(
            "Tool \"{tool}\" was not called: {approver} denied this call (approval {approval_id})."
        )
    } else {
        format!("Tool \"{tool}\" was not called: {approver} denied this call (approval {approval_id}): {reason}")
    };
    error.str("message", &message);
}

fn write_approval_pending(error: &mut Object, tool: &str, approval_id: &str, approve_url: &str) {
    error.i64("code", APPROVAL_PENDING);
    let mut data = error.object("data");
    data.str("approval_id", approval_id);
    data.str("approve_url", approve_url);
    data.str("decision", Decision::ApprovalPending.as_str());
    data.str("tool", tool);
    data.close();
    error.str(
        "message",
        &format!(
            "Tool \"{tool}\" needs a human's approval for this exact call and none was given yet. \
             A person can approve it at {approve_url} (approval {approval_id}). \
             Retry the same call with the same arguments later: once approved it goes through, once. \
             Changed arguments need a new approval."
        ),
    );
}

/// The URL-elicitation-required error (MCP 2025-11-25): the client opens `approve_url` for its
/// user and retries the call once the page is done. The elicitation id is the approval's.
fn write_approval_elicitation(
    error: &mut Object,
    tool: &str,
    approval_id: &str,
    approve_url: &str,
) {
    let message = elicitation_message(tool);
    error.i64("code", URL_ELICITATION_REQUIRED);
    let mut data = error.object("data");
    data.str("approval_id", approval_id);
    data.str("approve_url", approve_url);
    data.str("decision", Decision::ApprovalPending.as_str());
    data.key("elicitations").push('[');
    let mut elicitation = Object::open(data.out);
    elicitation.str("elicitationId", approval_id);
    elicitation.str("message", &message);
    elicitation.str("mode", "url");
    elicitation.str("url", approve_url);
    elicitation.close();
    data.out.push(']');
    data.str("tool", tool);
    data.close();
    error.str("message", &message);
}

fn write_approval_unavailable(error: &mut Object, tool: &str, problem: &str) {
    error.i64("code", CANNOT_ENFORCE);
    let mut data = error.object("data");
    data.str("decision", Decision::Error.as_str());
    data.str("problem", problem);
    data.str("tool", tool);
    data.close();
    error.str(
        "message",
        &format!(
            "Tool \"{tool}\" was not called: it needs a human's approval and the approval service could not be asked; retry shortly."
        ),
    );
}

fn write_batch_refused(error: &mut Object) {
    error.i64("code", BATCH_REFUSED);
    let mut data = error.object("data");
    data.str("decision", Decision::BatchRefused.as_str());
    data.close();
    error.str(
        "message",
        "Not forwarded: another request in this JSON-RPC batch was refused by policy, and a batch is forwarded whole or not at all.",
    );
}

fn standard_message(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid request",
        _ => "Invalid params",
    }
}

/// `"data": {"decision": "invalid"}`, for malformed requests.
fn invalid_data(parent: &mut Object) {
    let mut data = parent.object("data");
    data.str("decision", Decision::Invalid.as_str());
    data.close();
}

/// One JSON-RPC error response: `{"error": …, "id": …, "jsonrpc": "2.0"}`, the id exactly as the
/// client wrote it (`null` when there is none).
fn write_response(out: &mut String, id: Option<&Id>, write_error: impl FnOnce(&mut String)) {
    out.push_str("{\"error\":");
    write_error(out);
    out.push_str(",\"id\":");
    out.push_str(id.map_or("null", Id::as_json));
    out.push_str(",\"jsonrpc\":\"2.0\"}");
}

/// A JSON object written member by member. Callers give the members in key order, as
/// serde_json's maps keep them.
struct Object<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, name: &str) -> &mut String {
        write::push_key(self.out, name, self.first);
        self.first = false;
        self.out
    }

    fn str(&mut self, name: &str, value: &str) {
        write::push_str(self.key(name), value);
    }

    fn opt_str(&mut self, name: &str, value: Option<&str>) {
        write::push_opt_str(self.key(name), value);
    }

    fn u64(&mut self, name: &str, value: u64) {
        write::push_u64(self.key(name), value);
    }

    fn opt_u64(&mut self, name: &str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(name, value),
            None => self.key(name).push_str("null"),
        }
    }

    fn i64(&mut self, name: &str, value: i64) {
        let out = self.key(name);
        if value < 0 {
            out.push('-');
        }
        write::push_u64(out, value.unsigned_abs());
    }

    fn object(&mut self, name: &str) -> Object<'_> {
        Object::open(self.key(name))
    }

    fn close(self) {
        self.out.push('}');
    }
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
pub fn single(id: Option<&Id>, refusal: &Refusal, mode: RefusalMode) -> Reply {
    if let Refusal::ApprovalPending {
        tool,
        approval_id,
        approve_url,
        answer: PendingAnswer::InputRequired,
    } = refusal
    {
        return input_required(id, tool, approval_id, approve_url);
    }
    build(
        refusal.status(mode),
        {
            let mut body = String::with_capacity(256);
            write_response(&mut body, id, |out| refusal.write_error_object(out));
            body
        },
        retry_after(std::iter::once(refusal)),
    )
}

/// The `input_required` result (MCP 2026-07-28) asking the client to send its user to the
/// approval page, with the approval's id as `requestState`; always HTTP 200: it is a result.
fn input_required(id: Option<&Id>, tool: &str, approval_id: &str, approve_url: &str) -> Reply {
    let mut body = String::with_capacity(512);
    body.push_str("{\"id\":");
    body.push_str(id.map_or("null", Id::as_json));
    body.push_str(",\"jsonrpc\":\"2.0\",\"result\":");
    let mut result = Object::open(&mut body);
    let mut requests = result.object("inputRequests");
    let mut approval = requests.object("approval");
    approval.str("method", "elicitation/create");
    let mut params = approval.object("params");
    params.str("message", &elicitation_message(tool));
    params.str("mode", "url");
    params.str("url", approve_url);
    params.close();
    approval.close();
    requests.close();
    result.str("requestState", approval_id);
    result.str("resultType", "input_required");
    result.close();
    body.push('}');
    build(200, body, None)
}

fn elicitation_message(tool: &str) -> String {
    format!(
        "Tool \"{tool}\" needs a person's approval for this exact call. Open the approval page, \
         then retry the same call with the same arguments: once approved it goes through, once."
    )
}

/// A refused batch: one error per element that expects an answer, plus every culprit.
/// `entries` are (id, refusal, expects_answer) in batch order.
pub fn batch(entries: &[(Option<&Id>, Refusal, bool)], mode: RefusalMode) -> Reply {
    let mut status = 200;
    let mut body = String::with_capacity(256 * entries.len());
    body.push('[');
    for (id, refusal, expects_answer) in entries {
        let s = refusal.status(mode);
        if severity(s) > severity(status) {
            status = s;
        }
        if *expects_answer || *refusal != Refusal::BatchRefused {
            if body.len() > 1 {
                body.push(',');
            }
            write_response(&mut body, *id, |out| refusal.write_error_object(out));
        }
    }
    body.push(']');
    build(status, body, retry_after(entries.iter().map(|(_, r, _)| r)))
}

/// The reply refusing `body`: each message its refusal, or `BatchRefused` for those that have
/// none but are refused with the rest.
pub fn for_body(body: &Body, refusals: Vec<Option<Refusal>>, refusal_mode: RefusalMode) -> Reply {
    match body {
        Body::Single(message) => {
            let refusal = refusals
                .into_iter()
                .flatten()
                .next()
                .unwrap_or(Refusal::BatchRefused);
            single(message.id.as_ref(), &refusal, refusal_mode)
        }
        Body::Batch(messages) => {
            let entries: Vec<(Option<&Id>, Refusal, bool)> = messages
                .iter()
                .zip(refusals)
                .map(|(m, r)| {
                    (
                        m.id.as_ref(),
                        r.unwrap_or(Refusal::BatchRefused),
                        m.expects_answer(),
                    )
                })
                .collect();
            batch(&entries, refusal_mode)
        }
    }
}

/// 413: the body is larger than `max_body_bytes`; it was not read further.
pub fn too_large(limit: u64) -> Reply {
    let mut body = String::with_capacity(256);
    write_response(&mut body, None, |out| {
        let mut error = Object::open(out);
        error.i64("code", INVALID_REQUEST);
        let mut data = error.object("data");
        data.str("decision", Decision::Invalid.as_str());
        data.u64("max_body_bytes", limit);
        data.close();
        error.str(
            "message",
            &format!("Request body too large: this MCP endpoint accepts at most {limit} bytes per request."),
        );
        error.close();
    });
    build(413, body, None)
}

/// The request as a whole is not acceptable (method, headers, encoding): `status` with a JSON-RPC
/// invalid-request error.
pub fn refused_request(status: u16, problem: String) -> Reply {
    let mut body = String::with_capacity(256);
    write_response(&mut body, None, |out| {
        Refusal::Invalid {
            code: INVALID_REQUEST,
            problem,
        }
        .write_error_object(out)
    });
    build(status, body, None)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;
    use serde_json::{json, Value};

    /// The `error` member as it was built before it was written by hand: a `Value`.
    fn error_value(refusal: &Refusal) -> Value {
        match refusal {
            Refusal::Denied { target, reason } => {
                let mut data = json!({"decision": "denied", "reason": reason});
                data[target.member()] = json!(target.name());
                json!({
                    "code": POLICY_DENIED,
                    "message": format!("{} \"{}\" is not allowed by policy: {reason}", target.noun(), target.name()),
                    "data": data,
                })
            }
            Refusal::RateLimited { target, limit } => {
                let mut data = json!({"decision": "rate_limited", "counter": limit.counter,
                    "limit": limit.max, "window_seconds": limit.window.seconds(),
                    "scope": limit.scope.as_str(), "used": limit.used, "needed": limit.needed,
                    "retry_after_seconds": limit.retry_after_seconds, "reason": limit.reason});
                data[target.member()] = json!(target.name());
                json!({
                    "code": RATE_LIMITED,
                    "message": format!("{} \"{}\" is rate limited by policy: {}", target.noun(), target.name(), limit.explanation()),
                    "data": data,
                })
            }
            Refusal::CannotEnforce {
                target,
                counter,
                problem,
            } => {
                let mut data = json!({"decision": "error", "counter": counter, "problem": problem});
                data[target.member()] = json!(target.name());
                json!({
                    "code": CANNOT_ENFORCE,
                    "message": format!("{} \"{}\" {}: the policy filter could not check counter \"{counter}\" and refuses rather than risk exceeding it; retry shortly.", target.noun(), target.name(), target.not_done()),
                    "data": data,
                })
            }
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
                answer: PendingAnswer::UrlElicitation,
            } => {
                let message = format!("Tool \"{tool}\" needs a person's approval for this exact call. Open the approval page, then retry the same call with the same arguments: once approved it goes through, once.");
                json!({
                    "code": URL_ELICITATION_REQUIRED,
                    "message": message,
                    "data": {"tool": tool, "decision": "approval_pending", "approval_id": approval_id,
                             "approve_url": approve_url,
                             "elicitations": [{"mode": "url", "elicitationId": approval_id,
                                               "url": approve_url, "message": message}]},
                })
            }
            Refusal::ApprovalPending {
                tool,
                approval_id,
                approve_url,
                ..
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
                "message": format!("Tool \"{tool}\" was not called: it needs a human's approval and the approval service could not be asked; retry shortly."),
                "data": {"tool": tool, "decision": "error", "problem": problem},
            }),
            Refusal::BatchRefused => json!({
                "code": BATCH_REFUSED,
                "message": "Not forwarded: another request in this JSON-RPC batch was refused by policy, and a batch is forwarded whole or not at all.",
                "data": {"decision": "batch_refused"},
            }),
        }
    }

    fn every_refusal(text: &str) -> Vec<Refusal> {
        let t = || text.to_owned();
        let limit = |reason: Option<String>, retry: Option<u64>| LimitHit {
            counter: t(),
            max: 30,
            window: Window::MINUTE,
            scope: Scope::Grant,
            used: 30,
            window_start: 1_795_342_500,
            needed: 2,
            retry_after_seconds: retry,
            reason,
        };
        let targets = [
            Target::Tool(t()),
            Target::Resource {
                method: "resources/read".into(),
                uri: t(),
            },
            Target::Prompt(t()),
            Target::Method(t()),
        ];
        let mut refusals: Vec<Refusal> = targets
            .into_iter()
            .flat_map(|target| {
                [
                    Refusal::Denied {
                        target: target.clone(),
                        reason: t(),
                    },
                    Refusal::RateLimited {
                        target: target.clone(),
                        limit: limit(None, Some(18)),
                    },
                    Refusal::RateLimited {
                        target: target.clone(),
                        limit: limit(Some(t()), None),
                    },
                    Refusal::CannotEnforce {
                        target,
                        counter: t(),
                        problem: t(),
                    },
                ]
            })
            .collect();
        refusals.extend(vec![
            Refusal::Invalid {
                code: PARSE_ERROR,
                problem: t(),
            },
            Refusal::Invalid {
                code: INVALID_REQUEST,
                problem: t(),
            },
            Refusal::HeaderMismatch { problem: t() },
            Refusal::ApprovalDenied {
                tool: t(),
                approval_id: t(),
                approver: t(),
                reason: t(),
            },
            Refusal::ApprovalDenied {
                tool: t(),
                approval_id: t(),
                approver: t(),
                reason: String::new(),
            },
            Refusal::ApprovalPending {
                tool: t(),
                approval_id: t(),
                approve_url: t(),
                answer: PendingAnswer::Plain,
            },
            Refusal::ApprovalPending {
                tool: t(),
                approval_id: t(),
                approve_url: t(),
                answer: PendingAnswer::UrlElicitation,
            },
            Refusal::ApprovalUnavailable {
                tool: t(),
                problem: t(),
            },
            Refusal::BatchRefused,
        ]);
        refusals
    }

    #[test]
    fn refusals_are_written_byte_for_byte_as_serde_json_wrote_them() {
        let ids = [
            json!(null),
            json!(7),
            json!(-7),
            json!(1.5),
            json!("req \"7\""),
        ]
        .map(Id::from);
        for text in [
            "send",
            "a \"quoted\" \\ name\n\u{1}",
            "ünïcödé 漢字 \u{1f600}",
        ] {
            let refusals = every_refusal(text);
            for refusal in &refusals {
                for id in &ids {
                    let expected =
                        json!({"jsonrpc": "2.0", "id": id.value(), "error": error_value(refusal)})
                            .to_string();
                    let reply = single(Some(id), refusal, RefusalMode::JsonRpc);
                    assert_eq!(reply.body, expected, "{refusal:?}");
                }
            }
            let entries: Vec<(Option<&Id>, Refusal, bool)> = refusals
                .iter()
                .zip(ids.iter().cycle())
                .enumerate()
                .map(|(i, (r, id))| (Some(id), r.clone(), i % 3 != 0))
                .collect();
            let expected: Vec<Value> = entries
                .iter()
                .filter(|(_, r, answer)| *answer || *r != Refusal::BatchRefused)
                .map(|(id, r, _)| {
                    json!({"jsonrpc": "2.0", "id": id.map(Id::value), "error": error_value(r)})
                })
                .collect();
            assert_eq!(
                batch(&entries, RefusalMode::Http).body,
                Value::Array(expected).to_string()
            );
            let problem = text.to_owned();
            assert_eq!(
                refused_request(405, problem.clone()).body,
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": INVALID_REQUEST,
                    "message": format!("Invalid request: {problem}"), "data": {"decision": "invalid"}}})
                .to_string()
            );
        }
        assert_eq!(
            too_large(1024).body,
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": INVALID_REQUEST,
                "message": "Request body too large: this MCP endpoint accepts at most 1024 bytes per request.",
                "data": {"decision": "invalid", "max_body_bytes": 1024}}})
            .to_string()
        );
        assert_eq!(batch(&[], RefusalMode::JsonRpc).body, "[]");
    }

    #[test]
    fn the_id_is_echoed_exactly_as_the_client_wrote_it() {
        let refusal = Refusal::Denied {
            target: Target::Tool("t".into()),
            reason: "no".into(),
        };
        for id in [
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "18446744073709551616",
            "1.0",
            "-0",
            "1e3",
            "2.5E-7",
            "0.10000000000000000000000001",
            r#""a\u0062\"c\/""#,
            r#""\ud83d\ude00 é""#,
            "null",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t"}}}}"#
            );
            let parsed = crate::protocol::jsonrpc::parse_body(body.as_bytes()).unwrap();
            let message = &parsed.messages()[0];
            let written = single(message.id.as_ref(), &refusal, RefusalMode::JsonRpc).body;
            assert!(
                written.contains(&format!(r#","id":{id},"#)),
                "{id}: {written}"
            );
            let batch = batch(
                &[(message.id.as_ref(), refusal.clone(), true)],
                RefusalMode::JsonRpc,
            )
            .body;
            assert!(batch.contains(&format!(r#","id":{id},"#)), "{id}: {batch}");
            serde_json::from_str::<Value>(&written).unwrap();
        }
    }
}
