//! The second pass: charge every counter the allowed calls use, all or nothing, and turn a
//! counter that has no room (or cannot be read) into the request's refusal.

use sha2::{Digest, Sha256};

use super::outcome::{CallRecord, CounterReading, Outcome, Verdict};
use crate::counters::reservations::{Hold, Reservation};
use crate::counters::{release, try_acquire, Acquire, CasStore, CounterError, Slot};
use crate::decision::Decision;
use crate::json::write;
use crate::policy::caller::Caller;
use crate::policy::rules::Charge;
use crate::policy::{CounterId, CounterKeys, CounterSpec, Policy, RefusalMode, Scope};
use crate::protocol::jsonrpc::{Body, Id, MessageKind};
use crate::reply::{self, LimitHit, Refusal, Reply};
use crate::services::rate_limit::RemoteCharge;

/// Everything the second pass carries from counter to counter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Charging {
    pub(crate) body: Body,
    pub(crate) call_limits: Vec<Option<Vec<Charge>>>,
    pub(crate) taken: Vec<(Slot, u64, u64)>,
    taken_ids: Vec<CounterId>,
    pub(crate) readings: Vec<CounterReading>,
    pub(crate) open_problems: Vec<String>,
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) refusal_mode: RefusalMode,
    pub(crate) now: u64,
}

impl Charging {
    pub(crate) fn new(
        body: Body,
        call_limits: Vec<Option<Vec<Charge>>>,
        calls: Vec<CallRecord>,
        refusal_mode: RefusalMode,
        now: u64,
        counters: usize,
    ) -> Charging {
        Charging {
            body,
            call_limits,
            taken: Vec::with_capacity(counters),
            taken_ids: Vec::with_capacity(counters),
            readings: Vec::with_capacity(counters),
            open_problems: Vec::new(),
            calls,
            refusal_mode,
            now,
        }
    }

    /// Take `charge` from this Envoy's shared data. `Err` is the request's final outcome: it is
    /// refused (and everything taken before is given back).
    pub(crate) fn take_locally(
        &mut self,
        policy: &Policy,
        store: &mut dyn CasStore,
        charge: RemoteCharge,
    ) -> Result<(), Box<Outcome>> {
        let RemoteCharge {
            id,
            cost,
            reason,
            slot,
        } = charge;
        let Some(spec) = policy.counter(id) else {
            return Ok(());
        };
        let failure = match try_acquire(store, &slot, spec.window, spec.max, cost, self.now) {
            Ok(Acquire::Granted {
                window_start,
                count,
            }) => {
                self.taken.push((slot, window_start, cost));
                self.taken_ids.push(id);
                self.readings.push(CounterReading {
                    counter: spec.name.clone(),
                    value: count,
                    max: spec.max,
                    window_start,
                });
                return Ok(());
            }
            Ok(Acquire::Exhausted {
                window_start,
                count,
                retry_after_seconds,
            }) => Err(LimitHit {
                window_start,
                counter: spec.name.clone(),
                max: spec.max,
                window: spec.window,
                scope: spec.scope,
                used: count,
                needed: cost,
                retry_after_seconds: (cost <= spec.max).then_some(retry_after_seconds),
                reason,
            }),
            Err(e) => Ok(e),
        };
        if let (Ok(error), true) = (&failure, policy.fail_open) {
            // `failure_mode: open`: the operator prefers availability; the call goes on
            // uncounted and the problem is reported.
            self.open_problems.push(format!(
                "counter \"{}\": {error} (failure_mode open: call let through uncounted)",
                spec.name
            ));
            return Ok(());
        }
        self.refuse(policy, store, id, failure)
    }

    /// Whether running out of counter `id` is only reported for this request (shadow mode).
    pub(crate) fn only_reports(&self, policy: &Policy, id: CounterId) -> bool {
        shadowed_counter(policy, &self.body, &self.call_limits, id)
    }

    /// Refuse the calls using counter `id` for `failure` (or, in shadow mode, only report it
    /// and go on: `Ok`).
    pub(crate) fn refuse(
        &mut self,
        policy: &Policy,
        store: &mut dyn CasStore,
        id: CounterId,
        failure: Result<CounterError, LimitHit>,
    ) -> Result<(), Box<Outcome>> {
        let Some(spec) = policy.counter(id) else {
            return Ok(());
        };
        if failure.is_err() && shadowed_counter(policy, &self.body, &self.call_limits, id) {
            // In shadow mode a used-up counter is reported, not enforced: skip it.
            mark_would_deny(&self.body, &self.call_limits, id, spec, &mut self.calls);
            return Ok(());
        }
        if let Err(hit) = &failure {
            self.readings.push(CounterReading {
                counter: spec.name.clone(),
                value: hit.used,
                max: spec.max,
                window_start: hit.window_start,
            });
        }
        let release_problem = give_back(store, &self.taken);
        self.taken.clear();
        let mut outcome = refuse_for_counter(
            &self.body,
            self.refusal_mode,
            &self.call_limits,
            id,
            spec,
            failure,
            &mut self.calls,
        );
        outcome.counters = std::mem::take(&mut self.readings);
        outcome.problem = match (outcome.problem, release_problem) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        Err(Box::new(outcome))
    }

    /// Every counter fits: the request goes on, with what each call holds for a refund.
    pub(crate) fn forward(self) -> Outcome {
        let Charging {
            body,
            call_limits,
            taken,
            taken_ids,
            readings,
            open_problems,
            calls,
            ..
        } = self;
        let reservations = body
            .messages()
            .iter()
            .zip(&call_limits)
            .filter_map(|(message, charges)| {
                let id = message.id.as_ref()?.value().clone();
                let holds = charges
                    .as_ref()?
                    .iter()
                    .filter_map(|charge| {
                        let index = taken_ids.iter().position(|t| *t == charge.counter)?;
                        let (slot, window_start, _) = taken.get(index)?;
                        Some(Hold {
                            slot: slot.clone(),
                            window_start: *window_start,
                            amount: charge.amount,
                        })
                    })
                    .collect::<Vec<_>>();
                (!holds.is_empty()).then_some(Reservation { id, holds })
            })
            .collect();
        Outcome {
            verdict: Verdict::Forward,
            calls,
            problem: (!open_problems.is_empty()).then(|| open_problems.join("; ")),
            reservations,
            counters: readings,
            tools_list_ids: body
                .messages()
                .iter()
                .filter(|m| m.method() == Some("tools/list"))
                .filter_map(|m| m.id.as_ref().map(|id| id.value().clone()))
                .collect(),
        }
    }
}

/// Whether running out of `counter` is only to be reported: the policy is in shadow mode, or
/// every call using the counter is of a tool in shadow mode or uses it only through rules in
/// shadow mode.
fn shadowed_counter(
    policy: &Policy,
    body: &Body,
    call_limits: &[Option<Vec<Charge>>],
    counter: CounterId,
) -> bool {
    policy.shadow
        || body
            .messages()
            .iter()
            .zip(call_limits)
            .all(|(message, charges)| {
                let mut using = charges.iter().flatten().filter(|c| c.counter == counter);
                let uses = using.clone().next().is_some();
                let shadow_rules_only = using.all(|c| c.shadow);
                let shadow_tool = match &message.kind {
                    MessageKind::ToolCall { name } => {
                        policy.tools.get(name).is_some_and(|t| t.shadow)
                    }
                    _ => false,
                };
                !uses || shadow_tool || shadow_rules_only
            })
}

fn mark_would_deny(
    body: &Body,
    call_limits: &[Option<Vec<Charge>>],
    counter: CounterId,
    spec: &CounterSpec,
    calls: &mut [CallRecord],
) {
    let per_call = body
        .messages()
        .iter()
        .zip(call_limits)
        .filter(|(m, _)| matches!(m.kind, MessageKind::ToolCall { .. }));
    for (record, (_, charges)) in calls.iter_mut().zip(per_call) {
        if charges
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.counter == counter))
        {
            record.decision = Decision::WouldDeny;
            record.detail = format!("rate limited: counter {} is used up", spec.name);
        }
    }
}

/// Refunds counters taken for a request that is refused after all. A failure here only
/// over-counts (the safe direction), so it is reported, not fatal.
pub(crate) fn give_back(store: &mut dyn CasStore, taken: &[(Slot, u64, u64)]) -> Option<String> {
    let failures: Vec<String> = taken
        .iter()
        .filter_map(|(slot, start, cost)| {
            release(store, slot, *start, *cost)
                .err()
                .map(|e| format!("refund of {} failed: {e}", slot.key))
        })
        .collect();
    (!failures.is_empty()).then(|| failures.join("; "))
}

fn refuse_for_counter(
    body: &Body,
    refusal_mode: RefusalMode,
    call_limits: &[Option<Vec<Charge>>],
    counter: CounterId,
    spec: &CounterSpec,
    failure: Result<CounterError, LimitHit>,
    calls: &mut [CallRecord],
) -> Outcome {
    let problem = failure
        .as_ref()
        .ok()
        .map(|e| format!("counter \"{}\": {e} (call refused: fail closed)", spec.name));
    let refusals = body
        .messages()
        .iter()
        .zip(call_limits)
        .map(|(message, limits)| {
            let MessageKind::ToolCall { name } = &message.kind else {
                return None;
            };
            let uses_counter = limits
                .as_ref()
                .is_some_and(|l| l.iter().any(|c| c.counter == counter));
            uses_counter.then(|| match &failure {
                Err(hit) => Refusal::RateLimited {
                    tool: name.clone(),
                    limit: hit.clone(),
                },
                Ok(e) => Refusal::CannotEnforce {
                    tool: name.clone(),
                    counter: spec.name.clone(),
                    problem: e.to_string(),
                },
            })
        })
        .collect::<Vec<_>>();
    // `calls` has one record per tools/call message, in body order.
    let per_call = body
        .messages()
        .iter()
        .zip(&refusals)
        .filter(|(m, _)| matches!(m.kind, MessageKind::ToolCall { .. }));
    for (record, (_, refusal)) in calls.iter_mut().zip(per_call) {
        if let Some(refusal) = refusal {
            record.decision = refusal.decision();
            record.detail = format!("counter {}", spec.name);
        }
    }
    let mut outcome = Outcome::reply(refuse(body, refusals, refusal_mode), calls.to_vec());
    outcome.problem = problem;
    outcome
}

pub(crate) fn refuse(
    body: &Body,
    refusals: Vec<Option<Refusal>>,
    refusal_mode: RefusalMode,
) -> Reply {
    match body {
        Body::Single(message) => {
            let refusal = refusals
                .into_iter()
                .flatten()
                .next()
                .unwrap_or(Refusal::BatchRefused);
            reply::single(message.id.as_ref(), &refusal, refusal_mode)
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
            reply::batch(&entries, refusal_mode)
        }
    }
}

/// Where this caller's count of one counter lives: the counter's key (`CounterKeys`) and, for a
/// scoped counter, one of its `policy.counter_buckets` buckets, picked by the caller's
/// fingerprint (a salted SHA-256 of its scope value, so secret identities never appear and
/// nobody can aim at a chosen caller's bucket).
pub fn counter_slot(
    policy: &Policy,
    namespace: &str,
    spec: &CounterSpec,
    caller: &Caller,
    session: Option<&str>,
) -> Slot {
    // The keys built when the filter configured, unless asked about another namespace.
    let built;
    let keys = if policy.counter_namespace == namespace && !spec.keys.bucket_prefix.is_empty() {
        &spec.keys
    } else {
        built = CounterKeys::new(namespace, spec, policy.counter_buckets.max(1));
        &built
    };
    let identity = caller.identity;
    let mut hasher = Sha256::new();
    hasher.update(policy.counter_salt.to_le_bytes());
    let mut scope_value = |parts: &[&str]| {
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    };
    match (spec.scope, caller.grant, identity, session) {
        (Scope::Global, ..) => {
            return Slot {
                key: keys.global.clone(),
                owner: 1,
            };
        }
        (Scope::Grant, Some(grant), ..) => scope_value(&["grant", &grant.name]),
        // No grant held (or none defined): the identity is its own grant.
        (Scope::Grant, None, Some(identity), _) => {
            scope_value(&["grant-of-identity", &identity.source, &identity.value])
        }
        (Scope::Grant, None, None, _) => scope_value(&["grant-anonymous"]),
        (Scope::Identity, _, Some(identity), _) => {
            scope_value(&["identity", &identity.source, &identity.value])
        }
        (Scope::Identity, _, None, _) => scope_value(&["identity-anonymous"]),
        (Scope::Session, .., Some(session)) => scope_value(&["session", session]),
        (Scope::Session, .., None) => scope_value(&["session-none"]),
    }
    let digest = hasher.finalize();
    let word = |at: usize| {
        let mut raw = [0u8; 8];
        if let Some(bytes) = digest.get(at..at + 8) {
            raw.copy_from_slice(bytes);
        }
        u64::from_le_bytes(raw)
    };
    let mut key = String::with_capacity(keys.bucket_prefix.len() + 20);
    key.push_str(&keys.bucket_prefix);
    write::push_u64(&mut key, word(8) % policy.counter_buckets.max(1));
    // 0 is the overflow entry's owner; a fingerprint of 0 (one chance in 2^64) becomes 1.
    Slot {
        key: key.as_str().into(),
        owner: word(0).max(1),
    }
}
