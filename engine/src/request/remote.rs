//! A request waiting for rate-limit services' answers, and how the answers finish it.

use super::charge::{give_back, Charging};
use super::outcome::{CounterReading, Outcome};
use crate::counters::{CasStore, CounterError};
use crate::policy::{Policy, ServiceFailureMode};
use crate::protocol::ratelimit::{Code, Response};
use crate::reply::LimitHit;
use crate::services::rate_limit::ServiceQuery;

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
            .and_then(|response| {
                // The service counts all or nothing: when only counters in shadow mode are over
                // their limit, it counted none of the others either, and forwarding would let
                // those calls through uncounted. So it is an answer that
                // cannot be used, as if there were none.
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
            });
            let service = policy.rate_limit_services.get(query.service);
            let service_name = service.map_or_else(String::new, |s| s.name.clone());
            let response = match answer {
                Ok(response) => response,
                Err(problem) => {
                    let failure_mode =
                        service.map_or(ServiceFailureMode::Closed, |s| s.failure_mode);
                    let step = match failure_mode {
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
                    };
                    if let Err(outcome) = step {
                        return *outcome;
                    }
                    continue;
                }
            };
            for (charge, status) in query.charges.into_iter().zip(&response.statuses) {
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
                if let Err(outcome) = charging.refuse(policy, store, charge.id, Err(hit)) {
                    return *outcome;
                }
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
