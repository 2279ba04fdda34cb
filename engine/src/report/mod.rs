//! What a decision leaves behind for operators: the audit record.

pub mod audit;
