//! Sample upstream MCP servers for testing `mcp-policy-filter`.
//!
//! Two stand-in servers speak MCP over Streamable HTTP (rmcp) and contact nothing:
//! `wechat` (WeChat Official Account mass messaging) and `notify` (DingTalk / WeCom / Lark
//! group robots). Every request to `/mcp` is accounted (see [`stats`]) so a test behind the
//! filter can prove which calls really reached the upstream.
//!
//! The `wechat` server also plays the parts that tool-integrity tests need: annotated tools,
//! resources ([`tools::wechat_resources`]) and prompts ([`tools::wechat_prompts`]), tools whose
//! description or name changes at run time ([`admin`], [`tool_changes`]), and paged `*/list`
//! results ([`paging`]).
//!
//! [`deployment`] starts the whole sample deployment (these servers behind Envoy with the
//! filter) for `make run` and the end-to-end tests.
//!
//! The `sample-mcp-server` binary is a thin wrapper around [`server::run_until`]; tests in
//! other crates can also run a server in-process with [`server::start_on`].

pub mod admin;
pub mod deployment;
pub mod options;
pub mod paging;
pub mod server;
pub mod stats;
pub mod tool_changes;
pub mod tools;

pub use options::{Command, Options, ServerKind};
pub use server::{start, start_on, RunningServer};
pub use stats::{RecordedPost, Stats, StatsSnapshot};
