//! Sample upstream MCP servers for testing `mcp-policy-filter`.
//!
//! Two stand-in servers speak MCP over Streamable HTTP (rmcp) and contact nothing:
//! `wechat` (WeChat Official Account mass messaging) and `notify` (DingTalk / WeCom / Lark
//! group robots). Every request to `/mcp` is accounted (see [`stats`]) so a test behind the
//! filter can prove which calls really reached the upstream.
//!
//! [`deployment`] starts the whole sample deployment (these servers behind Envoy with the
//! filter) for `make run` and the end-to-end tests.
//!
//! The `sample-mcp-server` binary is a thin wrapper around [`server::run_until`]; tests in
//! other crates can also run a server in-process with [`server::start_on`].

pub mod deployment;
pub mod options;
pub mod server;
pub mod stats;
pub mod tools;

pub use options::{Command, Options, ServerKind};
pub use server::{start, start_on, RunningServer};
pub use stats::{RecordedPost, Stats, StatsSnapshot};
