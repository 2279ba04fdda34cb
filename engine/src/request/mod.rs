//! The request path: headers are screened, then the body is evaluated against the policy:
//! envelope → plan each message (`plan`, deciding tool calls with `access`, resources, prompts
//! and other methods with `targets`) → charge counters
//! (`charge`) → a `Step`, finished (`outcome`) or waiting for rate-limit services (`remote`) or
//! an approval.

pub mod access;
pub mod charge;
pub mod elicitation;
pub mod evaluate;
pub mod headers;
pub mod integrity;
pub mod meta;
pub mod outcome;
pub mod plan;
pub mod remote;
pub mod slot;
pub mod targets;
