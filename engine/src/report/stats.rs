//! Metric increments as Envoy stats: tool calls per server × tool × decision, other decided
//! requests per server × method × target × decision, rate-limit service answers, configuration
//! load failures. Tags are encoded in the stat name
//! (`server=.=wechat;.;`) and extracted into labels by the bootstrap's
//! `stats_config.stats_tags` (see envoy/envoy.yaml). Tool, method and target labels are bounded
//! by the policy (`Policy::metric_label`, `Targets::metric_label`), so arbitrary names from
//! clients cannot create unbounded series.

use std::collections::HashMap;

use crate::host::Metric;

/// Stat names and the ids the host gave them, so that a warm stream defines nothing and
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Stats {
    ids: HashMap<String, u32>,
    /// The stat name being looked up, reused.
    scratch: String,
}

impl Stats {
    /// The host's id for `metric` of filter instance `server`: `define` makes one (Envoy's
    /// `define_metric`) the first time a name is seen; `None` if it cannot.
    pub fn id(
        &mut self,
        server: &str,
        metric: Metric<'_>,
        define: &mut dyn FnMut(&str) -> Option<u32>,
    ) -> Option<u32> {
        self.name(server, metric);
        if let Some(id) = self.ids.get(self.scratch.as_str()) {
            return Some(*id);
        }
        let id = define(&self.scratch)?;
        self.ids.insert(self.scratch.clone(), id);
        Some(id)
    }

    fn name(&mut self, server: &str, metric: Metric<'_>) {
        self.scratch.clear();
        // Tags first: what remains once Envoy extracts them is the clean metric name.
        self.tag("server", server);
        match metric {
            Metric::ToolCall { tool, decision } => {
                self.tag("tool", tool);
                self.tag("decision", decision);
                self.scratch.push_str("mcp_policy_tool_calls_total");
            }
            Metric::Request {
                method,
                target,
                decision,
            } => {
                self.tag("method", method);
                self.tag("target", target);
                self.tag("decision", decision);
                self.scratch.push_str("mcp_policy_requests_total");
            }
            Metric::ServiceAnswer { service, result } => {
                self.tag("service", service);
                self.tag("result", result);
                self.scratch.push_str("mcp_policy_rate_limit_service_total");
            }
            Metric::ConfigFailure => self.scratch.push_str("mcp_policy_config_failures_total"),
            Metric::ToolDrift { tool } => {
                self.tag("tool", tool);
                self.scratch.push_str("mcp_policy_tool_drift_total");
            }
            Metric::GuardDetection {
                tool,
                detector,
                direction,
                action,
            } => {
                self.tag("tool", tool);
                self.tag("detector", detector);
                self.tag("direction", direction);
                self.tag("action", action);
                self.scratch.push_str("mcp_policy_guard_detections_total");
            }
        }
    }

    /// Append `tag=.=value;.;`, the value made stat-name safe.
    fn tag(&mut self, tag: &str, value: &str) {
        self.scratch.push_str(tag);
        self.scratch.push_str("=.=");
        self.scratch.extend(value.chars().map(label_char));
        self.scratch.push_str(";.;");
    }

    /// `value` as a metric label: characters other than ASCII letters, digits, `_` and `-`
    /// become `_`, as in the stat names (hosts with labelled metrics use this).
    pub fn label(value: &str) -> std::borrow::Cow<'_, str> {
        if value.chars().all(|c| label_char(c) == c) {
            std::borrow::Cow::Borrowed(value)
        } else {
            std::borrow::Cow::Owned(value.chars().map(label_char).collect())
        }
    }
}

fn label_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
        c
    } else {
        '_'
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn names_carry_their_tags_and_are_defined_once() {
        let mut stats = Stats::default();
        let mut defined = Vec::new();
        let mut define = |name: &str| {
            defined.push(name.to_owned());
            Some(u32::try_from(defined.len()).unwrap_or(0))
        };
        let call = Metric::ToolCall {
            tool: "send",
            decision: "allowed",
        };
        assert_eq!(stats.id("wechat", call, &mut define), Some(1));
        assert_eq!(stats.id("wechat", call, &mut define), Some(1));
        let answer = Metric::ServiceAnswer {
            service: "shared limits",
            result: "ok",
        };
        assert_eq!(stats.id("we.chat", answer, &mut define), Some(2));
        assert_eq!(
            stats.id("wechat", Metric::ConfigFailure, &mut define),
            Some(3)
        );
        let read = Metric::Request {
            method: "resources/read",
            target: "resources[2]",
            decision: "denied",
        };
        assert_eq!(stats.id("wechat", read, &mut define), Some(4));
        assert_eq!(
            defined,
            [
                "server=.=wechat;.;tool=.=send;.;decision=.=allowed;.;mcp_policy_tool_calls_total",
                "server=.=we_chat;.;service=.=shared_limits;.;result=.=ok;.;mcp_policy_rate_limit_service_total",
                "server=.=wechat;.;mcp_policy_config_failures_total",
                "server=.=wechat;.;method=.=resources_read;.;target=.=resources_2_;.;decision=.=denied;.;mcp_policy_requests_total",
            ]
        );
        // A name the host cannot define is not remembered.
        assert_eq!(stats.id("x", Metric::ConfigFailure, &mut |_| None), None);
    }
}
