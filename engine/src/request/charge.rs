//! The second pass: charge every counter the allowed calls use, all or nothing, and turn a
//! counter that has no room (or cannot be read) into the request's refusal.

use super::outcome::{CounterReading, Outcome, Verdict};
use super::plan::{Plan, Planned};
use crate::counters::reservations::{Hold, Reservation};
use crate::counters::{release, try_acquire, Acquire, CasStore, CounterError, Slot};
use crate::decision::Decision;
use crate::policy::{CounterId, CounterSpec, Policy, RefusalMode};
use crate::protocol::jsonrpc::Body;
use crate::protocol::listing::Listing;
use crate::reply::{self, LimitHit, Refusal};
use crate::services::rate_limit::RemoteCharge;
use crate::target::Target;

/// Everything the second pass carries from counter to counter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Charging {
    /// Without the arguments: they were read when the request was planned.
    body: Body<'static>,
    /// One per message of `body`, in order.
    entries: Vec<Planned>,
    /// Slot, window start and amount of every counter taken so far.
    pub(crate) taken: Vec<(Slot, u64, u64)>,
    taken_ids: Vec<CounterId>,
    pub(crate) readings: Vec<CounterReading>,
    pub(crate) open_problems: Vec<String>,
    refusal_mode: RefusalMode,
    pub(crate) now: u64,
}

impl Charging {
    pub(crate) fn new(
        plan: Plan<'_>,
        refusal_mode: RefusalMode,
        now: u64,
        counters: usize,
    ) -> Charging {
        Charging {
            body: plan.body.without_arguments(),
            entries: plan.entries,
            taken: Vec::with_capacity(counters),
            taken_ids: Vec::with_capacity(counters),
            readings: Vec::with_capacity(counters),
            open_problems: Vec::new(),
            refusal_mode,
            now,
        }
    }

    /// Counter `id` is not in the policy: refuse every call rather than skip a limit.
    pub(crate) fn undefined(self, store: &mut dyn CasStore, id: CounterId) -> Outcome {
        let problem = format!("counter #{id} is not defined");
        let refusal = Refusal::CannotEnforce {
            target: Target::Tool(String::new()),
            counter: format!("#{id}"),
            problem: problem.clone(),
        };
        let mut calls: Vec<_> = self.entries.into_iter().filter_map(|e| e.record).collect();
        for call in &mut calls {
            call.decision = refusal.decision();
        }
        let mut outcome = Outcome::reply(reply::single(None, &refusal, self.refusal_mode), calls);
        outcome.problem = Some(problem);
        give_back(store, &self.taken);
        outcome
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
        shadowed_counter(policy, &self.entries, id)
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
        if failure.is_err() && shadowed_counter(policy, &self.entries, id) {
            // In shadow mode a used-up counter is reported, not enforced: skip it.
            mark_would_deny(&mut self.entries, id, spec);
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
            &mut self.entries,
            id,
            spec,
            failure,
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
            entries,
            taken,
            taken_ids,
            readings,
            open_problems,
            ..
        } = self;
        let guarded = entries.iter().filter_map(|e| e.guarded.clone()).collect();
        let listings = body
            .messages()
            .iter()
            .zip(&entries)
            .filter_map(|(message, entry)| {
                Some(Listing {
                    id: message.id.as_ref()?.value().clone(),
                    kind: entry.listing?,
                })
            })
            .collect();
        let reservations = body
            .messages()
            .iter()
            .zip(&entries)
            .filter_map(|(message, entry)| {
                let id = message.id.as_ref()?.value().clone();
                let holds = entry
                    .charges
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
            calls: entries.into_iter().filter_map(|e| e.record).collect(),
            problem: (!open_problems.is_empty()).then(|| open_problems.join("; ")),
            reservations,
            counters: readings,
            listings,
            guarded,
        }
    }
}

/// Whether running out of `counter` is only to be reported: the policy is in shadow mode, or
/// every request using the counter was decided by an entry (a tool's, a resource's, …) in
/// shadow mode or uses it only through rules in shadow mode.
fn shadowed_counter(policy: &Policy, entries: &[Planned], counter: CounterId) -> bool {
    policy.shadow
        || entries.iter().all(|entry| {
            let mut using = entry
                .charges
                .iter()
                .flatten()
                .filter(|c| c.counter == counter);
            let uses = using.clone().next().is_some();
            let shadow_rules_only = using.all(|c| c.shadow);
            !uses || entry.shadow || shadow_rules_only
        })
}

fn mark_would_deny(entries: &mut [Planned], counter: CounterId, spec: &CounterSpec) {
    for entry in entries.iter_mut().filter(|e| e.uses(counter)) {
        if let Some(record) = &mut entry.record {
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
    entries: &mut [Planned],
    counter: CounterId,
    spec: &CounterSpec,
    failure: Result<CounterError, LimitHit>,
) -> Outcome {
    let problem = failure
        .as_ref()
        .ok()
        .map(|e| format!("counter \"{}\": {e} (call refused: fail closed)", spec.name));
    let refusals = entries
        .iter_mut()
        .map(|entry| {
            if !entry.uses(counter) {
                return None;
            }
            let record = entry.record.as_mut()?;
            let target = record.target.clone();
            let refusal = match &failure {
                Err(hit) => Refusal::RateLimited {
                    target,
                    limit: hit.clone(),
                },
                Ok(e) => Refusal::CannotEnforce {
                    target,
                    counter: spec.name.clone(),
                    problem: e.to_string(),
                },
            };
            record.decision = refusal.decision();
            record.detail = format!("counter {}", spec.name);
            Some(refusal)
        })
        .collect::<Vec<_>>();
    let calls = entries.iter().filter_map(|e| e.record.clone()).collect();
    let mut outcome = Outcome::reply(reply::for_body(body, refusals, refusal_mode), calls);
    outcome.problem = problem;
    outcome
}
