//! mcp-policy-filter as a proxy-wasm filter for Envoy: each callback becomes a call into the
//! engine (`mcp_policy_engine`), and its answer becomes what Envoy does.

// Only in the real filter build: the engine's tests run natively and under Node on wasm32.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod host;
