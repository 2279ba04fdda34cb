//! Envoy, through the proxy-wasm ABI, as the engine's `Host`. Host calls go through
//! `proxy_wasm::hostcalls`, whose errors are values (the SDK's context getters panic on them).

use std::time::{Duration, UNIX_EPOCH};

use mcp_policy_engine::Reply;
use mcp_policy_engine::{CasStore, SetOutcome, StoreError};
use mcp_policy_engine::{Host, Level, Metric, Phase};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

use super::metrics;
use super::phase_timing as timing;
use super::root::log;

const RATE_LIMIT_SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
const SHOULD_RATE_LIMIT: &str = "ShouldRateLimit";
/// Dynamic-metadata namespace where Envoy's `jwt_authn` filter puts verified payloads.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

/// The stream's side of Envoy; `started` is when the current phase began (`phase-timing`).
#[derive(Default)]
pub struct EnvoyHost {
    shared_data: SharedData,
    namespace: std::rc::Rc<str>,
    started: u64,
}

impl EnvoyHost {
    pub fn new(namespace: std::rc::Rc<str>) -> EnvoyHost {
        EnvoyHost {
            namespace,
            ..EnvoyHost::default()
        }
    }

    /// A callback began: phases are timed from here.
    pub fn start_phase(&mut self) {
        self.started = timing::now();
    }
}

fn buffer(kind: BufferType, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Envoy returns string properties as their bytes, but numbers, booleans and structures in an
/// encoding of its own: only text without control characters is taken as an identity.
fn text_property(path: Vec<&str>) -> Option<String> {
    hostcalls::get_property(path)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

impl Host for EnvoyHost {
    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn store(&mut self) -> &mut dyn CasStore {
        &mut self.shared_data
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpRequestBody, size)
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }

    fn reply(&mut self, reply: &Reply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        if let Err(status) = hostcalls::send_http_response(
            u32::from(reply.status),
            headers,
            Some(reply.body.as_bytes()),
        ) {
            self.log(Level::Error, &format!("local reply not sent: {status:?}"));
        }
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn response_body(&mut self, size: usize) -> Vec<u8> {
        buffer(BufferType::HttpResponseBody, size)
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body);
    }

    fn remove_response_header(&mut self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
    }

    fn response_code_details(&mut self) -> Option<String> {
        hostcalls::get_property(vec!["response", "code_details"])
            .ok()
            .flatten()
            .and_then(|d| String::from_utf8(d).ok())
    }

    fn call_rate_limit_service(
        &mut self,
        cluster: &str,
        request: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String> {
        hostcalls::dispatch_grpc_call(
            cluster,
            RATE_LIMIT_SERVICE,
            SHOULD_RATE_LIMIT,
            Vec::new(),
            Some(request),
            Duration::from_millis(timeout_ms),
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn call_approval_service(
        &mut self,
        cluster: &str,
        path: &str,
        body: &[u8],
        timeout_seconds: u64,
    ) -> Result<u32, String> {
        let headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", cluster),
            ("content-type", "application/json"),
        ];
        hostcalls::dispatch_http_call(
            cluster,
            headers,
            Some(body),
            Vec::new(),
            Duration::from_secs(timeout_seconds),
        )
        .map_err(|status| format!("{status:?}"))
    }

    fn store_audit_record(&mut self, record: &str) -> Result<(), String> {
        // Envoy keeps it as filter state `wasm.mcp_policy_audit`, for the access log.
        hostcalls::set_property(vec!["mcp_policy_audit"], Some(record.as_bytes()))
            .map_err(|status| format!("{status:?}"))
    }

    fn count(&mut self, metric: Metric<'_>) {
        metrics::count(&self.namespace, metric);
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Critical => LogLevel::Critical,
        };
        log(level, message);
    }

    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String> {
        let mut property = vec!["metadata", "filter_metadata", JWT_AUTHN, metadata_key];
        property.extend(path.iter().map(String::as_str));
        text_property(property)
    }

    fn peer_uri_san(&self) -> Option<String> {
        text_property(vec!["connection", "uri_san_peer_certificate"])
    }

    fn mark(&mut self, phase: Phase) {
        self.started = timing::mark(phase, self.started);
    }
}

/// Envoy shared data as the counters' store. Shared data is per VM id and shared by every
/// worker thread, which is what makes a limit exact across workers.
#[derive(Default)]
pub struct SharedData;

impl CasStore for SharedData {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            Ok((None, _)) => Ok(None),
            Ok((Some(_), None)) => Err(StoreError(format!("shared data {key}: value without CAS"))),
            Err(status) => Err(StoreError(format!("get_shared_data({key}): {status:?}"))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(SetOutcome::Stored),
            Err(Status::CasMismatch) => Ok(SetOutcome::CasMismatch),
            Err(status) => Err(StoreError(format!("set_shared_data({key}): {status:?}"))),
        }
    }
}
