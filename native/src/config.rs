//! One filter instance's configuration: the policy (the module's `filter_config`), bound to the
//! instance's name (`filter_name`, the counters' namespace), and the metrics Envoy defined for
//! it. Built on Envoy's main thread, then shared read-only by every worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use mcp_policy_engine::{load_policy, shared_salt, Policy};

use crate::abi::{self, HttpFilterConfigEnvoyPtr, ModuleBuffer};
use crate::store::ProcessStore;

/// Envoy's ids for the filter's counters. Each is labelled (Prometheus labels, as the `.wasm`'s
/// stats get from the bootstrap's `stats_tags`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CounterIds {
    /// `mcp_policy_tool_calls_total{mcp_server, mcp_tool, mcp_decision}`
    pub tool_calls: Option<usize>,
    /// `mcp_policy_requests_total{mcp_server, mcp_method, mcp_target, mcp_decision}`
    pub requests: Option<usize>,
    /// `mcp_policy_rate_limit_service_total{mcp_server, mcp_service, mcp_result}`
    pub service_answers: Option<usize>,
    /// `mcp_policy_config_failures_total{mcp_server}`
    pub config_failures: Option<usize>,
    /// `mcp_policy_tool_drift_total{mcp_server, mcp_tool}`
    pub tool_drift: Option<usize>,
    /// `mcp_policy_guard_detections_total{mcp_server, mcp_tool, mcp_detector, mcp_direction, mcp_action}`
    pub guard_detections: Option<usize>,
}

pub struct FilterConfig {
    pub policy: Arc<Policy>,
    pub namespace: Arc<str>,
    pub counters: CounterIds,
    /// Envoy's pointer for this configuration (as a number: only compared, see `retire`).
    pub envoy: usize,
}

/// The policy in `text` for the instance `name`, or why it is refused (the message names the
/// policy's field by its JSON path, as the `.wasm` does).
pub fn load(name: &str, text: &[u8], salt_seed: u64) -> Result<Policy, String> {
    let policy = load_policy(text).map_err(|e| format!("invalid policy: {e}"))?;
    if let Some(path) = policy.jwt_claim_source() {
        return Err(format!(
            "invalid policy: {path}: the native build cannot read the JWT payload jwt_authn keeps \
             in dynamic metadata; have jwt_authn copy the claim into a request header \
             (`claim_to_headers`, on a route that requires the JWT) and use {{\"header\": NAME}}, \
             or run the .wasm build"
        ));
    }
    let salt = shared_salt(&mut ProcessStore, salt_seed)
        .map_err(|e| format!("cannot set up counters: {e}"))?;
    Ok(policy.bind(name, salt))
}

/// Define the filter's counters (Envoy allows it only while the configuration is created).
pub fn define_counters(config: HttpFilterConfigEnvoyPtr) -> CounterIds {
    let define = |name: &str, labels: &[&str]| {
        let mut labels: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::from_bytes(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        // SAFETY: `config` is the pointer Envoy passed to `config_new`, still running; every
        // buffer outlives the call.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                config,
                ModuleBuffer::from_bytes(name.as_bytes()),
                labels.as_mut_ptr(),
                labels.len(),
                &mut id,
            )
        };
        (result == abi::METRICS_SUCCESS).then_some(id)
    };
    CounterIds {
        tool_calls: define(
            "mcp_policy_tool_calls_total",
            &["mcp_server", "mcp_tool", "mcp_decision"],
        ),
        requests: define(
            "mcp_policy_requests_total",
            &["mcp_server", "mcp_method", "mcp_target", "mcp_decision"],
        ),
        service_answers: define(
            "mcp_policy_rate_limit_service_total",
            &["mcp_server", "mcp_service", "mcp_result"],
        ),
        config_failures: define("mcp_policy_config_failures_total", &["mcp_server"]),
        tool_drift: define("mcp_policy_tool_drift_total", &["mcp_server", "mcp_tool"]),
        guard_detections: define(
            "mcp_policy_guard_detections_total",
            &[
                "mcp_server",
                "mcp_tool",
                "mcp_detector",
                "mcp_direction",
                "mcp_action",
            ],
        ),
    }
}

/// The configuration each instance serves with, by name: where a refused update of that
/// instance is counted (a refused configuration's own counters go with it). Only Envoy's main
/// thread creates and destroys configurations.
fn serving() -> MutexGuard<'static, HashMap<String, (usize, usize)>> {
    static SERVING: OnceLock<Mutex<HashMap<String, (usize, usize)>>> = OnceLock::new();
    SERVING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `config` (Envoy's pointer) now serves instance `name`.
pub fn serve(name: &str, config: HttpFilterConfigEnvoyPtr, counters: CounterIds) {
    if let Some(id) = counters.config_failures {
        serving().insert(name.to_owned(), (config as usize, id));
    }
}

/// `config` is destroyed: no longer where failures of `name` are counted.
pub fn retire(name: &str, config: usize) {
    let mut serving = serving();
    if serving
        .get(name)
        .is_some_and(|(serving, _)| *serving == config)
    {
        serving.remove(name);
    }
}

/// Count a refused configuration of instance `name`, on the configuration still serving it.
pub fn count_failure(name: &str) {
    // Held while counting: the configuration cannot be retired (and destroyed) meanwhile.
    let serving = serving();
    let Some((config, id)) = serving.get(name).copied() else {
        return;
    };
    let config = config as HttpFilterConfigEnvoyPtr;
    let label = mcp_policy_engine::Stats::label(name);
    let mut labels = [ModuleBuffer::from_bytes(label.as_bytes())];
    // SAFETY: `config` serves `name` until `retire` (both on Envoy's main thread, as this
    // call); the label outlives the call.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
            config,
            id,
            labels.as_mut_ptr(),
            labels.len(),
            1,
        );
    }
}

/// A seed for the counters' salt, different in every process (the first filter instance's
/// seed wins; the others read the stored salt).
pub fn salt_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
