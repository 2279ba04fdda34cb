//! A request waiting for rate-limit services' answers, and how the answers finish it.

use super::charge::{give_back, Charging};
use super::outcome::{CounterReading, Outcome};
use crate::counters::{CasStore, CounterError};
use crate::policy::{Policy, ServiceFailureMode};
use crate::protocol::ratelimit::{Code, Response};
use crate::reply::LimitHit;
use crate::services::rate_limit::{RemoteCharge, ServiceQuery};

/// A request waiting for rate-limit services: its local counters are taken; `queries` are to
/// be sent, and `rate_limit::finish` completes the decision with their answers.
#[derive(Debug, Clone, PartialEq)]
pub struct AwaitingServices {
    pub queries: Vec<ServiceQuery>,
    pub(crate) charging: Charging,
}

impl AwaitingServices {
    /// Finish the decision with each query's answer (in `queries` order), as
    /// `rate_limit::read_answer` read it.
    pub fn resume(
        self,
        policy: &Policy,
        answers: Vec<Result<Response, String>>,
        store: &mut dyn CasStore,
    ) -> Outcome {
        let AwaitingServices {
            queries,
            mut charging,
        } = self;
        let mut answers = answers.into_iter();
        for query in queries {
            let answer = answers
                .next()
                .unwrap_or_else(|| Err("no answer".to_owned()))
                .and_then(|response| usable(response, &query, &charging, policy));
            let step = match answer {
                Ok(response) => count(&mut charging, policy, store, query.charges, &response),
                Err(problem) => without_answer(&mut charging, policy, store, query, problem),
            };
            if let Err(outcome) = step {
                return *outcome;
            }
        }
        charging.forward()
    }

    /// The request ended (the client hung up, a timeout) before the services answered: it was
    /// never forwarded, so what it took locally is given back. `Some` names refunds that failed.
    pub fn abandon(self, store: &mut dyn CasStore) -> Option<String> {
        give_back(store, &self.charging.taken)
    }
}

/// `response`, unless it is an answer that cannot be used.
fn usable(
    response: Response,
    query: &ServiceQuery,
    charging: &Charging,
    policy: &Policy,
) -> Result<Response, String> {
    // The service counts all or nothing: when only counters in shadow mode are over their limit,
    // it counted none of the others either, and forwarding would let those calls through
    // uncounted. So it is an answer that cannot be used, as if there were none.
    let over_only_in_shadow = response.overall_code == Code::OverLimit
        && query
            .charges
            .iter()
            .zip(&response.statuses)
            .filter(|(_, status)| status.code == Code::OverLimit)
            .all(|(charge, _)| charging.only_reports(policy, charge.id))
        && query
            .charges
            .iter()
            .any(|charge| !charging.only_reports(policy, charge.id));
    if over_only_in_shadow {
        Err("the answer counted nothing: only counters in shadow mode are over their limit, so the others were not charged".to_owned())
    } else {
        Ok(response)
    }
}

/// The query's service gave no usable answer (`problem`): its `failure_mode` decides whether
/// the calls go on uncounted, are counted locally, or are refused. `Err` is the request's
/// final outcome.
fn without_answer(
    charging: &mut Charging,
    policy: &Policy,
    store: &mut dyn CasStore,
    query: ServiceQuery,
    problem: String,
) -> Result<(), Box<Outcome>> {
    let service = policy.rate_limit_services.get(query.service);
    let service_name = service.map_or_else(String::new, |s| s.name.clone());
    match service.map_or(ServiceFailureMode::Closed, |s| s.failure_mode) {
        ServiceFailureMode::Open => {
            charging.open_problems.push(format!(
                "rate-limit service \"{service_name}\": {problem} (failure_mode open: call let through uncounted)"
            ));
            Ok(())
        }
        ServiceFailureMode::Local => {
            charging.open_problems.push(format!(
                "rate-limit service \"{service_name}\": {problem} (failure_mode local: counted by this Envoy alone)"
            ));
            query
                .charges
                .into_iter()
                .try_for_each(|charge| charging.take_locally(policy, store, charge))
        }
        ServiceFailureMode::Closed => {
            let first = query.charges.first().map_or(0, |c| c.id);
            let error = CounterError::Service {
                service: service_name,
                problem,
            };
            charging.refuse(policy, store, first, Ok(error))
        }
    }
}

/// The service's usable answer for `charges` (one status each, in order): the readings of a
/// request it let through, or the refusal of the counters it found over their limit. `Err` is
/// the request's final outcome.
fn count(
    charging: &mut Charging,
    policy: &Policy,
    store: &mut dyn CasStore,
    charges: Vec<RemoteCharge>,
    response: &Response,
) -> Result<(), Box<Outcome>> {
    for (charge, status) in charges.into_iter().zip(&response.statuses) {
        let Some(spec) = policy.counter(charge.id) else {
            continue;
        };
        let used = spec.max.saturating_sub(u64::from(status.limit_remaining));
        let window_start = spec.window.start_of(charging.now);
        if response.overall_code == Code::Ok {
            charging.readings.push(CounterReading {
                counter: spec.name.clone(),
                value: used,
                max: spec.max,
                window_start,
            });
            continue;
        }
        if status.code != Code::OverLimit {
            // Refused for another counter of the same request: this one was not charged.
            continue;
        }
        let retry_after = match status.seconds_until_reset {
            0 => spec.window.seconds_until_reset(charging.now),
            n => n,
        };
        let hit = LimitHit {
            window_start,
            counter: spec.name.clone(),
            max: spec.max,
            window: spec.window,
            scope: spec.scope,
            used,
            needed: charge.cost,
            retry_after_seconds: (charge.cost <= spec.max).then_some(retry_after),
            reason: charge.reason,
        };
        charging.refuse(policy, store, charge.id, Err(hit))?;
    }
    Ok(())
}
