//! The request path: headers are screened, then the body is evaluated against the policy.

pub mod access;
pub mod evaluate;
pub mod headers;
