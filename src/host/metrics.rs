//! Metric increments on Envoy's own stats (`/stats/prometheus`), named by the engine's `Stats`.

use std::cell::RefCell;

use mcp_policy_engine::{Metric, Stats};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

thread_local! {
    // One VM per worker thread, and a VM is single-threaded: no locking needed.
    static STATS: RefCell<Stats> = RefCell::new(Stats::default());
}

/// Count one `metric` of filter instance `server`.
pub fn count(server: &str, metric: Metric<'_>) {
    STATS.with(|stats| {
        let mut define = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        if let Some(id) = stats.borrow_mut().id(server, metric, &mut define) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    });
}
