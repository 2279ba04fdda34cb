//! Wire formats: JSON-RPC bodies, server-sent events, Envoy's serialized header maps, the
//! approval service's check and the rate-limit service's protobuf messages.

pub mod approval_check;
pub mod definition;
pub mod header_map;
pub mod header_value;
pub mod jsonrpc;
pub mod listing;
pub mod ratelimit;
pub mod sse;
