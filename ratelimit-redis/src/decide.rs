//! From a `ShouldRateLimit` request to the counters to check, and from the script's verdict to
//! the response: everything but the network, so it is tested without Redis.

use crate::counting::{counter_key, unit_seconds, Counter, Verdict};
use crate::proto::{
    Code, DescriptorStatus, Duration, RateLimit, RateLimitDescriptor, RateLimitRequest,
    RateLimitResponse, UInt64Value,
};

/// One counter per descriptor that a limit applies to, `None` for the others (no override, or a
/// unit without a fixed length): the limits live in the caller's policy, which sends each as the
/// descriptor's override, so this service has no configuration of its own to fall back on.
///
/// The error says why the request is invalid (INVALID_ARGUMENT).
pub fn plan(request: &RateLimitRequest) -> Result<Vec<Option<Counter>>, &'static str> {
    if request.domain.is_empty() {
        return Err("rate limit domain must not be empty");
    }
    if request.descriptors.is_empty() {
        return Err("rate limit descriptors must not be empty");
    }
    Ok(request
        .descriptors
        .iter()
        .map(|descriptor| counter(&request.domain, descriptor, request.hits_addend))
        .collect())
}

fn counter(domain: &str, descriptor: &RateLimitDescriptor, request_hits: u32) -> Option<Counter> {
    let limit = descriptor.limit.as_ref()?;
    let unit = limit.unit();
    let seconds = unit_seconds(unit)?;
    let entries = descriptor
        .entries
        .iter()
        .map(|entry| (entry.key.as_str(), entry.value.as_str()));
    Some(Counter {
        key: counter_key(domain, entries, seconds),
        unit,
        unit_seconds: seconds,
        limit: limit.requests_per_unit,
        hits: hits(descriptor.hits_addend.as_ref(), request_hits),
    })
}

/// As Envoy defines it: the descriptor's own hits if it has them (0 = only ask), else the
/// request's if above 0, else 1.
pub fn hits(descriptor: Option<&UInt64Value>, request: u32) -> u64 {
    match descriptor {
        Some(hits) => hits.value,
        None if request > 0 => u64::from(request),
        None => 1,
    }
}

/// The counters `plan` produced, without the unlimited descriptors.
pub fn limited(plan: &[Option<Counter>]) -> Vec<Counter> {
    plan.iter().flatten().cloned().collect()
}

/// The response for `plan`, given the script's `verdict` over `limited(plan)` (`None` when no
/// descriptor was limited, so Redis was not asked).
pub fn respond(plan: &[Option<Counter>], verdict: Option<&Verdict>) -> RateLimitResponse {
    let admitted = verdict.is_none_or(|verdict| verdict.admitted);
    let mut outcomes = verdict.iter().flat_map(|verdict| verdict.outcomes.iter());
    let statuses = plan
        .iter()
        .map(|counter| {
            let Some(counter) = counter else {
                return DescriptorStatus {
                    code: Code::Ok as i32,
                    ..DescriptorStatus::default()
                };
            };
            let Some(outcome) = outcomes.next() else {
                // `count` checks the reply's length, so this cannot happen; say nothing false.
                return DescriptorStatus::default();
            };
            let count = u32::try_from(outcome.count).unwrap_or(u32::MAX);
            DescriptorStatus {
                code: if outcome.over {
                    Code::OverLimit
                } else {
                    Code::Ok
                } as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: counter.limit,
                    unit: counter.unit as i32,
                    name: String::new(),
                }),
                limit_remaining: counter.limit.saturating_sub(count),
                duration_until_reset: Some(Duration {
                    seconds: i64::try_from(outcome.reset_seconds).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            }
        })
        .collect();
    RateLimitResponse {
        overall_code: if admitted { Code::Ok } else { Code::OverLimit } as i32,
        statuses,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::counting::Outcome;
    use crate::proto::{Entry, RateLimitOverride, Unit};

    fn descriptor(limit: Option<(u32, Unit)>, hits: Option<u64>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![Entry {
                key: "tool".into(),
                value: "send".into(),
            }],
            limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
                requests_per_unit,
                unit: unit as i32,
            }),
            hits_addend: hits.map(|value| UInt64Value { value }),
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>, hits_addend: u32) -> RateLimitRequest {
        RateLimitRequest {
            domain: "mcp".into(),
            descriptors,
            hits_addend,
        }
    }

    #[test]
    fn hits_resolution() {
        assert_eq!(hits(Some(&UInt64Value { value: 5 }), 7), 5);
        assert_eq!(hits(Some(&UInt64Value { value: 0 }), 7), 0);
        assert_eq!(hits(None, 7), 7);
        assert_eq!(hits(None, 0), 1);
    }

    #[test]
    fn invalid_requests() {
        let mut empty_domain = request(vec![descriptor(Some((1, Unit::Hour)), None)], 0);
        empty_domain.domain.clear();
        assert!(plan(&empty_domain).unwrap_err().contains("domain"));
        assert!(plan(&request(vec![], 0))
            .unwrap_err()
            .contains("descriptors"));
    }

    #[test]
    fn only_descriptors_with_a_countable_override_are_limited() {
        let plan = plan(&request(
            vec![
                descriptor(Some((3, Unit::Minute)), None),
                descriptor(None, None),
                descriptor(Some((3, Unit::Month)), None),
                descriptor(Some((3, Unit::Unknown)), None),
                descriptor(Some((3, Unit::Week)), Some(2)),
            ],
            4,
        ))
        .unwrap();
        let limited: Vec<_> = plan
            .iter()
            .map(|c| c.as_ref().map(|c| (c.unit_seconds, c.hits)))
            .collect();
        assert_eq!(
            limited,
            vec![Some((60, 4)), None, None, None, Some((604_800, 2))]
        );
        assert_eq!(
            plan[0].as_ref().unwrap().key,
            "rls:3:mcp|1|4:tool4:send|60|"
        );
    }

    #[test]
    fn response_of_a_refused_request() {
        let plan = plan(&request(
            vec![
                descriptor(Some((10, Unit::Minute)), None),
                descriptor(None, None),
                descriptor(Some((2, Unit::Hour)), None),
            ],
            0,
        ))
        .unwrap();
        let verdict = Verdict {
            admitted: false,
            outcomes: vec![
                Outcome {
                    over: false,
                    count: 4,
                    reset_seconds: 17,
                },
                Outcome {
                    over: true,
                    count: 2,
                    reset_seconds: 900,
                },
            ],
        };
        let response = respond(&plan, Some(&verdict));
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        let s = &response.statuses;
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].code, s[0].limit_remaining), (Code::Ok as i32, 6));
        assert_eq!(s[0].duration_until_reset.as_ref().unwrap().seconds, 17);
        assert_eq!(
            s[0].current_limit.as_ref().unwrap().unit,
            Unit::Minute as i32
        );
        assert_eq!(
            s[1],
            DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            }
        );
        assert_eq!(
            (s[2].code, s[2].limit_remaining),
            (Code::OverLimit as i32, 0)
        );
        assert_eq!(s[2].current_limit.as_ref().unwrap().requests_per_unit, 2);
    }

    #[test]
    fn response_without_limited_descriptors_is_ok() {
        let plan = plan(&request(vec![descriptor(None, None)], 0)).unwrap();
        let response = respond(&plan, None);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(response.statuses.len(), 1);
    }
}
