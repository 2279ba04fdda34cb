//! One filter instance's configuration: the policy (the module's `filter_config`), bound to the
//! instance's name (`filter_name`, the counters' namespace), and the metrics Envoy defined for
//! it. Built on Envoy's main thread, then shared read-only by every worker.

use std::sync::Arc;

use mcp_policy_engine::{load_policy, shared_salt, Policy};

use crate::abi::{self, HttpFilterConfigEnvoyPtr, ModuleBuffer};
use crate::store::ProcessStore;

/// Envoy's ids for the filter's counters. Each is labelled (Prometheus labels, as the `.wasm`'s
/// stats get from the bootstrap's `stats_tags`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CounterIds {
    /// `mcp_policy_tool_calls_total{mcp_server, mcp_tool, mcp_decision}`
    pub tool_calls: Option<usize>,
    /// `mcp_policy_rate_limit_service_total{mcp_server, mcp_service, mcp_result}`
    pub service_answers: Option<usize>,
}

pub struct FilterConfig {
    pub policy: Arc<Policy>,
    pub namespace: Arc<str>,
    pub counters: CounterIds,
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
        service_answers: define(
            "mcp_policy_rate_limit_service_total",
            &["mcp_server", "mcp_service", "mcp_result"],
        ),
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
