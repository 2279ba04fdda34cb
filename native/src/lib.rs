//! mcp-policy-filter as a native Envoy dynamic module (`envoy.filters.http.dynamic_modules`):
//! the same engine as the `.wasm`, behind the same `Host` trait, at the price of Envoy's own
//! filters. `hooks` are the functions Envoy calls; `filter` is one stream and its `Host`;
//! `envoy` wraps the ABI callbacks (`abi`, written from Envoy's ABI header); `store` keeps every
//! worker's counters; `rate_limit` carries the rate-limit gRPC call over an HTTP stream.

// The exported hooks are `unsafe extern "C"` by nature: their safety is Envoy's contract,
// documented on each.
#![allow(clippy::missing_safety_doc)]

mod abi;
mod config;
mod envoy;
mod filter;
mod hooks;
mod rate_limit;
mod store;
