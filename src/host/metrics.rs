//! Counters on Envoy's own stats (`/stats/prometheus`): tool calls per server × tool × decision,
//! and configuration load failures. Tags are encoded in the stat name (`server=.=wechat;.;`), and
//! extracted into labels by the bootstrap's `stats_config.stats_tags` (see envoy/envoy.yaml).
//! The tool label only takes names the policy lists; any other tool counts as `other`, so
//! arbitrary tool names from clients cannot create unbounded series.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::engine::policy::Policy;

thread_local! {
    // One VM per worker thread, and a VM is single-threaded: no locking needed.
    static METRICS: std::cell::RefCell<Metrics> = std::cell::RefCell::new(Metrics::default());
}

/// Count one decision.
pub fn count_call(server: &str, tool: &str, decision: &str) {
    METRICS.with(|m| m.borrow_mut().call(&label(server), tool, decision));
}

pub fn count_config_failure(server: &str) {
    METRICS.with(|m| m.borrow_mut().config_failure(&label(server)));
}

/// Stat-name-safe label value.
fn label(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

/// The label value for `tool`: its name if the policy knows it, else `other`.
pub fn tool_label<'a>(policy: &Policy, tool: &'a str) -> &'a str {
    let known = policy.tools.contains_key(tool)
        || policy.hidden.iter().any(|h| h == tool)
        || policy
            .grants
            .grants()
            .iter()
            .any(|g| g.tools.as_ref().is_some_and(|t| t.contains_key(tool)));
    let safe = tool
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if known && safe {
        tool
    } else {
        "other"
    }
}

impl Metrics {
    fn increment(&mut self, name: String) {
        let id = match self.ids.get(&name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => {
                    self.ids.insert(name, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    pub fn call(&mut self, server: &str, tool: &str, decision: &str) {
        // Tags first: what remains once Envoy extracts them is the clean metric name.
        self.increment(format!("server=.={server};.;tool=.={tool};.;decision=.={decision};.;mcp_policy_tool_calls_total"));
    }

    pub fn config_failure(&mut self, server: &str) {
        self.increment(format!(
            "server=.={server};.;mcp_policy_config_failures_total"
        ));
    }
}
