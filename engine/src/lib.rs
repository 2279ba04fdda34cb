//! The policy engine of mcp-policy-filter. It never names a host ABI: a host (the proxy-wasm
//! filter, a native Envoy module) hands it what the proxy gives and performs what it returns.
//!
//! The front door:
//! - [`load_policy`] reads a policy; [`Policy::bind`] binds it to a filter instance and its
//!   counter salt.
//! - [`Stream`] is one HTTP stream: each proxy callback becomes one call on it, and it acts
//!   through the [`Host`] the proxy implements (reply, resume, call a service, store the audit
//!   record, count, log).
//! - [`evaluate`] decides one request body alone (the CLI, benches, fuzzing): a [`Step`], done
//!   with an [`Outcome`] or waiting for a service.
//! - [`explain`] and [`explain_request`] say which element of a policy decides a call or another
//!   request.
//!
//! Inside, modules read top to bottom (docs/architecture.md): `stream` → `report`,
//! `response` → `request` → `services` → `reply` → `load` → `policy` → `counters` →
//! `protocol` → `json`.

mod counters;
mod decision;
mod explain;
mod guard;
mod hex;
mod host;
mod json;
mod load;
mod policy;
mod protocol;
mod reply;
mod report;
mod request;
mod response;
mod services;
mod stream;
mod target;

pub use counters::{shared_salt, CasStore, SetOutcome, StoreError};
pub use decision::Decision;
pub use explain::{explain, explain_request};
pub use host::{Action, Host, Level, Metric, Phase};
pub use load::{load_policy, policy_from_value, PolicyError};
pub use policy::identity::{sha256_tag, Identity};
pub use policy::Policy;
pub use reply::Reply;
pub use report::stats::Stats;
pub use request::evaluate::{evaluate, RequestMeta, Step};
pub use request::outcome::{Outcome, Verdict};
pub use stream::Stream;

/// Wire formats other programs share with the engine.
pub mod wire {
    /// The approval service's check (`POST /v1/check`): the filter's question and the answer.
    pub use crate::protocol::approval_check as approval;
    /// A tool's definition in canonical JSON and its SHA-256, as pins hold it.
    pub use crate::protocol::definition;
    /// Envoy's serialized header maps, as hosts hand them over.
    pub use crate::protocol::header_map;
    /// The rate-limit service's protobuf messages (`envoy.service.ratelimit.v3`).
    pub use crate::protocol::ratelimit;
}

/// What fuzz targets and benches drive beyond the front door.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::counters::memory::MemoryStore;
    pub use crate::json::{scan, strict};
    pub use crate::protocol::jsonrpc::parse_body;
    pub use crate::response::result_texts;

    /// Whether `identity` (not a secret) holds a grant of `policy`.
    pub fn has_grant(policy: &crate::Policy, identity: &str) -> bool {
        policy.grants.find(identity, false).is_some()
    }

    /// How many tools `policy` lists.
    pub fn tool_count(policy: &crate::Policy) -> usize {
        policy.tools.len()
    }
}

#[cfg(test)]
mod test_support;
