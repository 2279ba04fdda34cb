//! One HTTP stream: each hook becomes one call into the engine's `Stream`, which acts through
//! `NativeHost`, the engine's `Host` over Envoy's dynamic-module ABI.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mcp_policy_engine::{Action, CasStore, Host, Level, Metric, Reply, Stats, Stream};

use crate::abi;
use crate::config::FilterConfig;
use crate::envoy::{self, EnvoyStream, Headers};
use crate::rate_limit::GrpcCall;
use crate::store::ProcessStore;

/// The filter state key of the audit record (`%FILTER_STATE(mcp_policy_audit:PLAIN)%`).
const AUDIT_KEY: &str = "mcp_policy_audit";
/// Envoy's `response.code_details` for the filter's own answers.
const REPLY_DETAILS: &str = "mcp_policy";

/// What Envoy's pointer to one stream refers to. Envoy calls some hooks from inside its own
/// callbacks (a local reply completes and destroys the stream before `send_response` returns;
/// a service that fails at once answers before the call that started it returns): those
/// re-entrant calls must not reach the filter while a hook is using it, so they are recorded
/// here and acted on when the running hook is done.
pub struct Slot {
    /// A hook is using the filter.
    pub running: Cell<bool>,
    /// The stream ended while a hook was running.
    pub completed: Cell<bool>,
    /// Envoy destroyed the stream while a hook was running: freed when it is done.
    pub destroyed: Cell<bool>,
    /// Service calls' answers as they arrive, shared with the host.
    pub calls: Rc<RefCell<Calls>>,
    pub filter: UnsafeCell<Filter>,
}

impl Slot {
    pub fn new(config: Arc<FilterConfig>, envoy: EnvoyStream) -> Slot {
        let calls = Rc::new(RefCell::new(Calls::default()));
        Slot {
            running: Cell::new(false),
            completed: Cell::new(false),
            destroyed: Cell::new(false),
            filter: UnsafeCell::new(Filter::new(config, envoy, calls.clone())),
            calls,
        }
    }
}

/// Service calls in flight and answers that came back before their call was registered.
#[derive(Default)]
pub struct Calls {
    /// Rate-limit calls, by Envoy's stream id, as their answer arrives.
    pub streams: HashMap<u64, GrpcCall>,
    /// Rate-limit calls that ended inside `start_http_stream` (a cluster with no healthy host).
    pub streams_ended: HashMap<u64, Result<Vec<u8>, String>>,
    /// Approval calls that ended inside `http_callout`.
    pub callouts_ended: HashMap<u64, Result<(u16, Vec<u8>), String>>,
}

pub struct Filter {
    pub stream: Stream,
    pub host: NativeHost,
    /// A hook panicked: the request was refused and the stream is left alone.
    pub failed: bool,
    /// Test builds (`panic-probe`): the response body hook is to panic.
    pub probe_response: bool,
}

impl Filter {
    fn new(config: Arc<FilterConfig>, envoy: EnvoyStream, calls: Rc<RefCell<Calls>>) -> Filter {
        Filter {
            stream: Stream::new(config.policy.clone(), config.namespace.clone()),
            host: NativeHost {
                envoy,
                config,
                store: ProcessStore,
                replied: false,
                calls,
            },
            failed: false,
            probe_response: false,
        }
    }
}

pub struct NativeHost {
    pub envoy: EnvoyStream,
    config: Arc<FilterConfig>,
    store: ProcessStore,
    /// Whether the filter answered the request itself (Envoy then wants the hook to stop).
    pub replied: bool,
    calls: Rc<RefCell<Calls>>,
}

/// The engine's ids for calls are 32 bits; Envoy's 64.
fn token(id: u64) -> Result<u32, String> {
    u32::try_from(id).map_err(|_| format!("call id {id} out of range"))
}

impl Host for NativeHost {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn store(&mut self) -> &mut dyn CasStore {
        &mut self.store
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        self.envoy.body(Headers::Request, size)
    }

    fn remove_request_header(&mut self, name: &str) {
        self.envoy.remove_header(Headers::Request, name);
    }

    fn reply(&mut self, reply: &Reply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.replied = true;
        self.envoy
            .send_response(reply.status, &headers, reply.body.as_bytes(), REPLY_DETAILS);
    }

    fn resume_request(&mut self) {
        self.envoy.continue_request();
    }

    fn response_body(&mut self, size: usize) -> Vec<u8> {
        self.envoy.body(Headers::Response, size)
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        self.envoy.replace_body(Headers::Response, size, body);
    }

    fn remove_response_header(&mut self, name: &str) {
        self.envoy.remove_header(Headers::Response, name);
    }

    fn response_code_details(&mut self) -> Option<String> {
        self.envoy.attribute(abi::ATTRIBUTE_RESPONSE_CODE_DETAILS)
    }

    fn call_rate_limit_service(
        &mut self,
        cluster: &str,
        request: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        let id = crate::rate_limit::start(self.envoy, cluster, request, timeout_ms)?;
        // Ended before it started (no healthy host, overflow): the answer is that failure.
        match self.calls.borrow_mut().streams_ended.remove(&id) {
            Some(Err(why)) => Err(why),
            Some(Ok(_)) => Err("answered before the call was registered".to_owned()),
            None => token(id),
        }
    }

    fn call_approval_service(
        &mut self,
        cluster: &str,
        path: &str,
        body: &[u8],
        timeout_seconds: u64,
    ) -> Result<u32, String> {
        let headers = [
            (":method", "POST"),
            (":path", path),
            ("host", cluster),
            ("content-type", "application/json"),
        ];
        let id = self.envoy.callout(
            cluster,
            &headers,
            body,
            timeout_seconds.saturating_mul(1000),
        )?;
        match self.calls.borrow_mut().callouts_ended.remove(&id) {
            Some(Err(why)) => Err(why),
            Some(Ok((status, _))) => Err(format!(
                "answered ({status}) before the call was registered"
            )),
            None => token(id),
        }
    }

    fn store_audit_record(&mut self, record: &str) -> Result<(), String> {
        if self.envoy.set_filter_state(AUDIT_KEY, record.as_bytes()) {
            Ok(())
        } else {
            Err(format!("filter state {AUDIT_KEY} not writable"))
        }
    }

    fn count(&mut self, metric: Metric<'_>) {
        let server = Stats::label(&self.config.namespace);
        match metric {
            Metric::ToolCall { tool, decision } => {
                if let Some(id) = self.config.counters.tool_calls {
                    self.envoy
                        .increment(id, &[&server, &Stats::label(tool), decision]);
                }
            }
            Metric::Request {
                method,
                target,
                decision,
            } => {
                if let Some(id) = self.config.counters.requests {
                    let (method, target) = (Stats::label(method), Stats::label(target));
                    self.envoy
                        .increment(id, &[&server, &method, &target, decision]);
                }
            }
            Metric::ServiceAnswer { service, result } => {
                if let Some(id) = self.config.counters.service_answers {
                    self.envoy
                        .increment(id, &[&server, &Stats::label(service), result]);
                }
            }
            Metric::ToolDrift { tool } => {
                if let Some(id) = self.config.counters.tool_drift {
                    self.envoy.increment(id, &[&server, &Stats::label(tool)]);
                }
            }
            Metric::GuardDetection {
                tool,
                detector,
                direction,
                action,
            } => {
                if let Some(id) = self.config.counters.guard_detections {
                    let (tool, detector) = (Stats::label(tool), Stats::label(detector));
                    self.envoy
                        .increment(id, &[&server, &tool, &detector, direction, action]);
                }
            }
            // Envoy counts refused configurations itself (`config_fail` of the filter's
            // extension config discovery): a refused configuration has no counters.
            Metric::ConfigFailure => {}
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        envoy::log(log_level(level), message);
    }

    fn jwt_claim(&self, _metadata_key: &str, _path: &[String]) -> Option<String> {
        // Refused at load (`config::load`): the ABI reads only top-level metadata strings.
        None
    }

    fn peer_uri_san(&self) -> Option<String> {
        self.envoy
            .attribute(abi::ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE)
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
    }
}

pub fn log_level(level: Level) -> abi::LogLevel {
    match level {
        Level::Debug => abi::LOG_LEVEL_DEBUG,
        Level::Info => abi::LOG_LEVEL_INFO,
        Level::Warn => abi::LOG_LEVEL_WARN,
        Level::Error => abi::LOG_LEVEL_ERROR,
        Level::Critical => abi::LOG_LEVEL_CRITICAL,
    }
}

/// Whether a hook's `Action` holds the stream.
pub fn holds(action: Action) -> bool {
    action == Action::Pause
}
