//! The response path: what an answer tells about the calls that were forwarded.

pub mod listing;
pub mod result_texts;
pub mod results;
pub mod tools_list;
pub mod watch;
