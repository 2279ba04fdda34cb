//! One POSTed body in, one verdict out: forward it untouched, or answer it ourselves.

use serde_json::Value;

use super::counters::{release, try_acquire, Acquire, CasStore, CounterError};
use super::decide::{decide_tool, ToolDecision};
use super::jsonrpc::{parse_body, Body, Message, MessageKind};
use super::policy::{CounterId, CounterSpec, Policy, Scope};
use super::reply::{self, LimitHit, Refusal, Reply};

/// What the filter knows about the request besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMeta<'a> {
    /// Keeps the counters of different filter instances (one per MCP server) apart.
    pub namespace: &'a str,
    /// Value of the policy's identity header, if sent.
    pub identity: Option<&'a str>,
    /// `Mcp-Session-Id`, if sent.
    pub session: Option<&'a str>,
    /// `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28 clients), if sent.
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
    /// Unix time, seconds.
    pub now: u64,
}

/// What happened to one `tools/call` (for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub tool: String,
    pub decision: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Reply(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub calls: Vec<CallRecord>,
    /// Set when something went wrong that an operator should see (counter store failures).
    pub problem: Option<String>,
}

impl Outcome {
    fn reply(reply: Reply, calls: Vec<CallRecord>) -> Outcome {
        Outcome { verdict: Verdict::Reply(reply), calls, problem: None }
    }
}

pub fn evaluate(policy: &Policy, body: &[u8], meta: &RequestMeta, store: &mut dyn CasStore) -> Outcome {
    if body.len() as u64 > policy.max_body_bytes {
        return Outcome::reply(reply::too_large(policy.max_body_bytes), Vec::new());
    }
    let body = match parse_body(body) {
        Ok((body, _)) => body,
        Err(e) => {
            let refusal = Refusal::Invalid { code: e.code, problem: e.problem };
            return Outcome::reply(reply::single(None, &refusal, policy.refusal_mode), Vec::new());
        }
    };
    if let Err(problem) = headers_agree(&body, meta) {
        let id = match &body {
            Body::Single(m) => m.id.as_ref(),
            Body::Batch(_) => None,
        };
        let refusal = Refusal::HeaderMismatch { problem };
        return Outcome::reply(reply::single(id, &refusal, policy.refusal_mode), Vec::new());
    }

    let messages = body.messages();
    // First pass: policy decisions and malformed messages, without touching any counter.
    let mut refusals: Vec<Option<Refusal>> = Vec::with_capacity(messages.len());
    let mut calls = Vec::new();
    let mut charges: Vec<(CounterId, u64)> = Vec::new();
    for message in messages {
        refusals.push(match &message.kind {
            MessageKind::ToolCall { name } => match decide_tool(policy, name) {
                ToolDecision::Deny { reason } => {
                    calls.push(CallRecord { tool: name.clone(), decision: "denied", detail: reason.clone() });
                    Some(Refusal::Denied { tool: name.clone(), reason })
                }
                ToolDecision::Allow { limits } => {
                    for id in limits {
                        match charges.iter_mut().find(|(c, _)| c == id) {
                            Some((_, cost)) => *cost += 1,
                            None => charges.push((*id, 1)),
                        }
                    }
                    calls.push(CallRecord { tool: name.clone(), decision: "allowed", detail: String::new() });
                    None
                }
            },
            MessageKind::Invalid { code, problem } => Some(Refusal::Invalid { code: *code, problem: problem.clone() }),
            MessageKind::Other { .. } | MessageKind::Response => None,
        });
    }
    if refusals.iter().any(Option::is_some) {
        return Outcome::reply(refuse(&body, refusals, policy), calls);
    }

    // Second pass: charge every counter the allowed calls use, all or nothing.
    charges.sort_unstable_by_key(|(id, _)| *id);
    let mut taken: Vec<(String, u64, u64)> = Vec::with_capacity(charges.len());
    for (id, cost) in &charges {
        let Some(spec) = policy.counter(*id) else { continue };
        let key = counter_key(meta.namespace, spec, meta);
        let failure = match try_acquire(store, &key, spec.window, spec.max, *cost, meta.now) {
            Ok(Acquire::Granted { window_start, .. }) => {
                taken.push((key, window_start, *cost));
                continue;
            }
            Ok(Acquire::Exhausted { count, retry_after_seconds }) => Err(LimitHit {
                counter: spec.name.clone(),
                max: spec.max,
                window: spec.window,
                scope: spec.scope,
                used: count,
                retry_after_seconds,
            }),
            Err(e) => Ok(e),
        };
        let release_problem = give_back(store, &taken);
        let mut outcome = refuse_for_counter(&body, policy, *id, spec, failure, &mut calls);
        outcome.problem = match (outcome.problem, release_problem) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        return outcome;
    }
    Outcome { verdict: Verdict::Forward, calls, problem: None }
}

/// Refunds counters taken for a request that is refused after all. A failure here only
/// over-counts (the safe direction), so it is reported, not fatal.
fn give_back(store: &mut dyn CasStore, taken: &[(String, u64, u64)]) -> Option<String> {
    let failures: Vec<String> = taken
        .iter()
        .filter_map(|(key, start, cost)| release(store, key, *start, *cost).err().map(|e| format!("refund of {key} failed: {e}")))
        .collect();
    (!failures.is_empty()).then(|| failures.join("; "))
}

fn refuse_for_counter(
    body: &Body,
    policy: &Policy,
    counter: CounterId,
    spec: &CounterSpec,
    failure: Result<CounterError, LimitHit>,
    calls: &mut [CallRecord],
) -> Outcome {
    let problem = failure.as_ref().ok().map(|e| format!("counter \"{}\": {e} (call refused: fail closed)", spec.name));
    let refusals = body
        .messages()
        .iter()
        .map(|message| {
            let MessageKind::ToolCall { name } = &message.kind else { return None };
            let uses_counter =
                policy.tools.get(name).is_some_and(|rule| rule.limits.contains(&counter));
            uses_counter.then(|| match &failure {
                Err(hit) => Refusal::RateLimited { tool: name.clone(), limit: hit.clone() },
                Ok(e) => Refusal::CannotEnforce { tool: name.clone(), counter: spec.name.clone(), problem: e.to_string() },
            })
        })
        .collect::<Vec<_>>();
    // `calls` has one record per tools/call message, in body order.
    let per_call = body.messages().iter().zip(&refusals).filter(|(m, _)| matches!(m.kind, MessageKind::ToolCall { .. }));
    for (record, (_, refusal)) in calls.iter_mut().zip(per_call) {
        if let Some(refusal) = refusal {
            record.decision = refusal.decision();
            record.detail = format!("counter {}", spec.name);
        }
    }
    let mut outcome = Outcome::reply(refuse(body, refusals, policy), calls.to_vec());
    outcome.problem = problem;
    outcome
}

fn refuse(body: &Body, refusals: Vec<Option<Refusal>>, policy: &Policy) -> Reply {
    match body {
        Body::Single(message) => {
            let refusal = refusals.into_iter().flatten().next().unwrap_or(Refusal::BatchRefused);
            reply::single(message.id.as_ref(), &refusal, policy.refusal_mode)
        }
        Body::Batch(messages) => {
            let entries: Vec<(Option<&Value>, Refusal, bool)> = messages
                .iter()
                .zip(refusals)
                .map(|(m, r)| (m.id.as_ref(), r.unwrap_or(Refusal::BatchRefused), m.expects_answer()))
                .collect();
            reply::batch(&entries, policy.refusal_mode)
        }
    }
}

/// MCP 2026-07-28 clients repeat the method (and tool name) in headers, which proxies and
/// servers may route on. If they disagree with the body, something is trying to make us and the
/// server see different requests: refuse.
fn headers_agree(body: &Body, meta: &RequestMeta) -> Result<(), String> {
    if meta.mcp_method.is_none() && meta.mcp_name.is_none() {
        return Ok(());
    }
    let message: &Message = match body {
        Body::Single(m) => m,
        Body::Batch(_) => return Err("Mcp-Method/Mcp-Name headers cannot describe a JSON-RPC batch".to_owned()),
    };
    if let Some(header) = meta.mcp_method {
        match message.method() {
            Some(method) if method == header => {}
            Some(method) => return Err(format!("Mcp-Method header is \"{header}\" but the body's method is \"{method}\"")),
            None => return Err(format!("Mcp-Method header is \"{header}\" but the body has no method")),
        }
    }
    if let (Some(header), MessageKind::ToolCall { name }) = (meta.mcp_name, &message.kind) {
        if header != name {
            return Err(format!("Mcp-Name header is \"{header}\" but the body calls tool \"{name}\""));
        }
    }
    Ok(())
}

/// Shared-data key for one counter as seen by this request. Lengths prefix the free-form parts
/// so that no choice of names can make two different counters share a key.
pub fn counter_key(namespace: &str, spec: &CounterSpec, meta: &RequestMeta) -> String {
    let scope_part = match (spec.scope, meta.identity, meta.session) {
        (Scope::Global, _, _) => "global".to_owned(),
        (Scope::Grant, Some(identity), _) => format!("grant={identity}"),
        (Scope::Grant, None, _) => "grant-anonymous".to_owned(),
        (Scope::Session, _, Some(session)) => format!("session={session}"),
        (Scope::Session, _, None) => "session-none".to_owned(),
    };
    format!("mcp-policy/v1/{}:{namespace}/{}:{}/{scope_part}", namespace.len(), spec.name.len(), spec.name)
}
