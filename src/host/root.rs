//! Root context: parses and validates the policy once per configuration, then hands every HTTP
//! stream a read-only reference to it.

use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use mcp_policy_engine::load_policy;
use mcp_policy_engine::shared_salt;
use mcp_policy_engine::Metric;
use mcp_policy_engine::Policy;

use super::entropy::random_u64;
use super::envoy::SharedData;
use super::http::PolicyStream;

#[derive(Default)]
pub struct PolicyRoot {
    policy: Option<Arc<Policy>>,
    /// The filter's plugin name: separates the counters of filters protecting different servers.
    namespace: Rc<str>,
}

impl Context for PolicyRoot {}

impl RootContext for PolicyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let name = plugin_name();
        let text = self.get_plugin_configuration().unwrap_or_default();
        // Every worker's VM must mix the same salt into callers' fingerprints: the first one to
        // configure stores it in shared data, the others adopt it.
        let salt = match shared_salt(&mut SharedData, random_u64()) {
            Ok(salt) => salt,
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("mcp-policy-filter[{name}]: cannot set up counters: {e}"),
                );
                super::metrics::count(&name, Metric::ConfigFailure);
                return false;
            }
        };
        match load_policy(&text) {
            Ok(policy) => {
                let policy = policy.bind(&name, salt);
                log(
                    LogLevel::Info,
                    &format!("mcp-policy-filter[{name}]: {}", policy.summary()),
                );
                self.policy = Some(Arc::new(policy));
                self.namespace = name.into();
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject this configuration (at startup: Envoy exits;
                // on an update: the update is refused and the previous configuration stays).
                log(
                    LogLevel::Critical,
                    &format!("mcp-policy-filter[{name}]: invalid policy: {e}"),
                );
                super::metrics::count(&name, Metric::ConfigFailure);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a valid policy there is no stream context; Envoy only gets here after a
        // successful on_configure, so this is a guard, not a code path.
        let policy = self.policy.clone()?;
        Some(Box::new(PolicyStream::new(policy, self.namespace.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn plugin_name() -> String {
    hostcalls::get_property(vec!["plugin_name"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

pub fn log(level: LogLevel, message: &str) {
    // Logging is best effort; there is nowhere else to report its failure.
    let _ = hostcalls::log(level, message);
}
