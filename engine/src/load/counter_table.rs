//! The counters a policy defines, by name: one name, one budget, wherever it is used.

use serde_json::Value;

use super::values::{as_str, err, quoted_list, Result};
use crate::policy::{CounterId, CounterSpec, RateLimitService};

/// `rate_limit_service` value naming Envoy's shared data (this Envoy only).
pub const LOCAL_COUNTING: &str = "local";

/// Counters by name; a name used in several places must mean the same budget everywhere.
#[derive(Default)]
pub(crate) struct CounterTable {
    pub(super) specs: Vec<CounterSpec>,
    first_seen_at: Vec<String>,
    pub(super) services: Vec<RateLimitService>,
    /// What `limits` without `rate_limit_service` use (the policy's `rate_limit_service`).
    pub(super) default_service: Option<usize>,
}

impl CounterTable {
    /// `"local"` or the name of a declared rate-limit service.
    pub(super) fn service_named(&self, value: &Value, path: &str) -> Result<Option<usize>> {
        let name = as_str(value, path)?;
        if name == LOCAL_COUNTING {
            return Ok(None);
        }
        match self.services.iter().position(|s| s.name == name) {
            Some(index) => Ok(Some(index)),
            None => {
                let mut known: Vec<&str> = vec![LOCAL_COUNTING];
                known.extend(self.services.iter().map(|s| s.name.as_str()));
                err(
                    path,
                    format!(
                        "no rate-limit service named \"{name}\"; expected one of {} (declare services under \"rate_limit_services\")",
                        quoted_list(&known)
                    ),
                )
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn define(&mut self, spec: CounterSpec, path: &str) -> Result<CounterId> {
        let existing = self.specs.iter().position(|s| s.name == spec.name);
        match existing {
            None => {
                self.specs.push(spec);
                self.first_seen_at.push(path.to_owned());
                Ok(self.specs.len() - 1)
            }
            Some(id) => match (self.specs.get(id), self.first_seen_at.get(id)) {
                (Some(first), _) if *first == spec => Ok(id),
                (Some(first), Some(first_path)) => err(
                    path,
                    format!(
                        "counter \"{}\" is already defined at {first_path} with window {} s, max {}, scope {}; \
                         every use of a counter must have the same window, max, scope and rate-limit service (here: window {} s, max {}, scope {}{})",
                        spec.name,
                        first.window.seconds(),
                        first.max,
                        first.scope.as_str(),
                        spec.window.seconds(),
                        spec.max,
                        spec.scope.as_str(),
                        if first.service == spec.service {
                            ""
                        } else {
                            ", another rate-limit service"
                        }
                    ),
                ),
                _ => err(path, "internal error: counter table out of step"),
            },
        }
    }
}
