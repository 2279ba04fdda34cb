//! mcp-policy-filter: a policy firewall for MCP tool calls, running inside Envoy as proxy-wasm.
//!
//! `engine` is pure (policy, JSON-RPC, decisions, counters over an abstract CAS store) and is
//! what the tests exercise natively and on wasm32; `host` is the thin proxy-wasm adapter.

pub mod engine;

/// Converting PolicyLayer Intercept policies (YAML), for the native `mcp-policy` CLI.
#[cfg(not(target_arch = "wasm32"))]
pub mod intercept_import;

// Only in the real filter build: unit tests on wasm32 run under Node, which has no proxy-wasm host.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod host;
