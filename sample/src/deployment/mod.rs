//! Running the sample deployment: rendering the Envoy template, starting the sample MCP servers
//! and Envoy as child processes that are always stopped. Used by `make run` and by the
//! end-to-end tests, so both exercise exactly the same deployment.

pub mod build;
pub mod envoy_config;
pub mod launch;
pub mod process;

pub use build::FilterBuild;
pub use envoy_config::{render, write_filter_config, EnvoyTemplate};
pub use launch::{
    dechunk, free_port, http_get, start_approval_service, start_envoy, start_sample_server,
    start_sample_server_with, EnvoyOptions, EnvoyProcess, ServerProcess,
};
pub use process::{first_line_within, kill_group, read_until_line, ChildGuard};
