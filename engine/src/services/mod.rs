//! External services the decision may wait for: the approval service and rate-limit services.

pub mod approval;
pub mod rate_limit;
