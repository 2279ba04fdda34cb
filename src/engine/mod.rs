//! The pure policy engine: no proxy-wasm calls, so it is tested natively and on wasm32 alike.

pub mod approval;
pub mod audit;
pub mod counters;
pub mod decide;
pub mod evaluate;
pub mod explain;
pub mod grants;
pub mod header_map;
pub mod header_value;
pub mod hex;
pub mod identity;
pub mod json_scan;
pub mod json_write;
pub mod jsonrpc;
pub mod load;
pub mod policy;
pub mod ratelimit_proto;
pub mod remote_limits;
pub mod reply;
pub mod request_headers;
pub mod reservations;
pub mod rules;
pub mod rules_load;
pub mod sse;
pub mod strict_json;
pub mod tools_list;
pub mod window;

#[cfg(test)]
pub mod test_support;
