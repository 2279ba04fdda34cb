//! The cost floor of a proxy-wasm filter in Envoy, for the benchmark (`bench/run.py`, arms W and
//! H). It decides nothing; what it measures is Envoy's side of running any Wasm filter:
//!
//! - `"empty"`: every callback crosses into the VM and returns at once (arm W);
//! - `"hold-body"`: the least a filter that decides on the body must do, as mcp-policy-filter
//!   does: hold the headers, let Envoy buffer the body, read it once, release the request (arm H).
//!
//! `"hold-body"` may be followed by host calls that mcp-policy-filter makes, each joined with `+`
//! (`"hold-body+headers+audit"`), so the bench can price each kind of call without any decision
//! logic (`bench/host_calls.py`): see [`HostCalls::parse`]. A call that fails answers the
//! request with a 500, which fails the benchmark: a step never measures a failing call.
//!
//! The plugin configuration (a string) picks the mode; anything else is refused at configure.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot::default()) });
}}

/// What mcp-policy-filter asks of Envoy for an allowed call, one switch per kind of host call.
#[derive(Clone, Copy, Default)]
struct HostCalls {
    /// Every request header, in one call.
    headers: bool,
    /// The host clock.
    clock: bool,
    /// One counter in shared data: read it, then write it back with its CAS.
    shared: bool,
    /// A record of an allowed call's size, stored as filter state (`set_property`).
    audit: bool,
    /// One Envoy counter incremented.
    metric: bool,
    /// The response headers, and the whole response body buffered and read.
    response: bool,
}

/// About the size of mcp-policy-filter's audit record for an allowed call with its hash.
const AUDIT_RECORD_BYTES: usize = 330;
const SHARED_KEY: &str = "floor-filter/counter";

impl HostCalls {
    /// `rest`: what follows `"hold-body"`, each name after a `+`. `None` for a name this filter
    /// does not know, an empty or repeated one.
    fn parse(rest: &str) -> Option<HostCalls> {
        let mut calls = HostCalls::default();
        if rest.is_empty() {
            return Some(calls);
        }
        for name in rest.strip_prefix('+')?.split('+') {
            let switch = match name {
                "headers" => &mut calls.headers,
                "clock" => &mut calls.clock,
                "shared" => &mut calls.shared,
                "audit" => &mut calls.audit,
                "metric" => &mut calls.metric,
                "response" => &mut calls.response,
                _ => return None,
            };
            if *switch {
                return None;
            }
            *switch = true;
        }
        Some(calls)
    }
}

#[derive(Default)]
struct FloorRoot {
    hold_body: bool,
    calls: HostCalls,
    metric: u32,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mode = self.get_plugin_configuration().unwrap_or_default();
        let Ok(mode) = std::str::from_utf8(&mode) else {
            return false;
        };
        if mode == "empty" {
            self.hold_body = false;
            return true;
        }
        let Some(calls) = mode.strip_prefix("hold-body").and_then(HostCalls::parse) else {
            return false;
        };
        self.hold_body = true;
        self.calls = calls;
        if calls.metric {
            match hostcalls::define_metric(MetricType::Counter, "floor_filter_calls_total") {
                Ok(id) => self.metric = id,
                Err(_) => return false,
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.hold_body {
            Some(Box::new(HoldBody {
                calls: self.calls,
                metric: self.metric,
            }))
        } else {
            Some(Box::new(Empty))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {}

struct HoldBody {
    calls: HostCalls,
    metric: u32,
}

impl Context for HoldBody {}

impl HoldBody {
    /// The host calls made once the body is read, in mcp-policy-filter's order; then the
    /// request goes on, or is answered with a 500 if a call failed.
    fn decide(&self) -> Action {
        if self.calls.clock {
            std::hint::black_box(self.get_current_time());
        }
        let mut failed = None;
        if self.calls.shared {
            let (value, cas) = self.get_shared_data(SHARED_KEY);
            let count = value
                .and_then(|v| v.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let next = count.wrapping_add(1).to_le_bytes();
            // The bench runs one worker, so one VM: nothing can write in between, and a CAS
            // mismatch would be a failure too.
            if self.set_shared_data(SHARED_KEY, Some(&next), cas).is_err() {
                failed = Some("set_shared_data");
            }
        }
        if self.calls.audit {
            let record = [b'x'; AUDIT_RECORD_BYTES];
            if hostcalls::set_property(vec!["mcp_policy_audit"], Some(&record)).is_err() {
                failed = Some("set_property");
            }
        }
        if self.calls.metric && hostcalls::increment_metric(self.metric, 1).is_err() {
            failed = Some("increment_metric");
        }
        match failed {
            None => Action::Continue,
            Some(call) => {
                let message = format!("floor-filter: {call} failed");
                self.send_http_response(500, vec![], Some(message.as_bytes()));
                Action::Pause
            }
        }
    }
}

impl HttpContext for HoldBody {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.calls.headers {
            std::hint::black_box(self.get_http_request_headers_bytes());
        }
        if end_of_stream {
            self.decide()
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        // Read once, as a filter deciding on the body must; `black_box` keeps the read.
        let body = self.get_http_request_body(0, body_size);
        std::hint::black_box(body);
        self.decide()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.calls.response {
            std::hint::black_box(self.get_http_response_headers_bytes());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.calls.response {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(self.get_http_response_body(0, body_size));
        Action::Continue
    }
}
