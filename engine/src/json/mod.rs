//! JSON machinery with no policy in it: a scanner that keeps members' raw text, strict
//! validation (duplicate and case-colliding keys), and writing without an intermediate value.

pub mod path;
pub(crate) mod plain;
pub mod scan;
pub mod strict;
pub mod write;
