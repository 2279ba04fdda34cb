//! A minimal Envoy rate-limit service (`envoy.service.ratelimit.v3.RateLimitService`) that counts
//! in Redis: the shared store behind mcp-policy-filter's limits when Envoy runs as several
//! replicas. The limits themselves travel in each descriptor's override, so this service has no
//! configuration beyond where to listen and where Redis is.

pub mod counting;
pub mod decide;
pub mod proto;
pub mod service;
