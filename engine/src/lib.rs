//! The policy engine of mcp-policy-filter. It never names a host ABI: the proxy-wasm filter
//! (and any other host) hands it what Envoy gives and performs what it returns.

pub mod counters;
pub mod explain;
pub mod hex;
pub mod json;
pub mod load;
pub mod policy;
pub mod protocol;
pub mod reply;
pub mod report;
pub mod request;
pub mod response;
pub mod services;

#[cfg(test)]
mod test_support;
