//! Counters on Envoy's own stats (`/stats/prometheus`): tool calls per server × tool × decision,
//! and configuration load failures. Tags are encoded in the stat name (`server=.=wechat;.;`), and
//! extracted into labels by the bootstrap's `stats_config.stats_tags` (see envoy/envoy.yaml).
//! The tool label only takes names the policy lists; any other tool counts as `other`, so
//! arbitrary tool names from clients cannot create unbounded series.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

thread_local! {
    // One VM per worker thread, and a VM is single-threaded: no locking needed.
    static METRICS: std::cell::RefCell<Metrics> = std::cell::RefCell::new(Metrics::default());
}

/// Count one decision.
pub fn count_call(server: &str, tool: &str, decision: &str) {
    METRICS.with(|m| m.borrow_mut().call(server, tool, decision));
}

/// Count one answer (or failure) of a rate-limit service.
pub fn count_service_answer(server: &str, service: &str, result: &str) {
    METRICS.with(|m| m.borrow_mut().service_answer(server, service, result));
}

pub fn count_config_failure(server: &str) {
    METRICS.with(|m| m.borrow_mut().config_failure(server));
}

/// Append `value` as a stat-name-safe label value.
fn push_label(name: &mut String, value: &str) {
    name.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
}

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// The stat name being looked up, reused: no allocation per request once warm.
    scratch: String,
}

impl Metrics {
    /// Increment the counter named by `self.scratch`, defining it on first use.
    fn increment_scratch(&mut self) {
        let id = match self.ids.get(self.scratch.as_str()) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &self.scratch) {
                Ok(id) => {
                    self.ids.insert(self.scratch.clone(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn start_name(&mut self, server: &str) {
        self.scratch.clear();
        // Tags first: what remains once Envoy extracts them is the clean metric name.
        self.scratch.push_str("server=.=");
        push_label(&mut self.scratch, server);
        self.scratch.push_str(";.;");
    }

    pub fn call(&mut self, server: &str, tool: &str, decision: &str) {
        self.start_name(server);
        for (tag, value) in [("tool", tool), ("decision", decision)] {
            self.scratch.push_str(tag);
            self.scratch.push_str("=.=");
            push_label(&mut self.scratch, value);
            self.scratch.push_str(";.;");
        }
        self.scratch.push_str("mcp_policy_tool_calls_total");
        self.increment_scratch();
    }

    pub fn service_answer(&mut self, server: &str, service: &str, result: &str) {
        self.start_name(server);
        for (tag, value) in [("service", service), ("result", result)] {
            self.scratch.push_str(tag);
            self.scratch.push_str("=.=");
            push_label(&mut self.scratch, value);
            self.scratch.push_str(";.;");
        }
        self.scratch.push_str("mcp_policy_rate_limit_service_total");
        self.increment_scratch();
    }

    pub fn config_failure(&mut self, server: &str) {
        self.start_name(server);
        self.scratch.push_str("mcp_policy_config_failures_total");
        self.increment_scratch();
    }
}
