//! `mcp-policy pin URL`: connect to a live MCP server as a client, list every tool on every
//! page, and print the `pins` block that pins each definition as it is now.

#[cfg(test)]
mod fake_server;
mod http;
mod legacy;
mod options;
mod pins;
mod session;
mod sse;
mod streamable;

use std::process::ExitCode;

use options::{Options, TransportKind, USAGE};

/// Run the command; the block on stdout, or a message on stderr and exit code 1 (2 for a
/// command line that cannot be used).
pub fn run(args: &[&str]) -> ExitCode {
    let options = match options::parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("mcp-policy pin: {e}\nusage: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match pin(&options) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-policy pin: {}: {e}", options.url);
            ExitCode::FAILURE
        }
    }
}

/// The printed block: everything is fetched and checked before anything is printed.
fn pin(options: &Options) -> Result<String, String> {
    let client = http::Http::new(options.headers.clone(), options.timeout);
    let tools = match transport_for(options) {
        TransportKind::StreamableHttp => {
            session::list_tools(&mut streamable::StreamableHttp::new(client, &options.url))?
        }
        TransportKind::LegacySse => {
            session::list_tools(&mut legacy::LegacySse::connect(client, &options.url)?)?
        }
    };
    pins::to_sorted_pretty(&pins::pins_block(&options.mode, &tools)?)
}

/// `--transport` when given; otherwise legacy HTTP+SSE for a path ending in `/sse` (where
/// legacy servers conventionally serve their stream), Streamable HTTP for any other.
fn transport_for(options: &Options) -> TransportKind {
    options
        .transport
        .unwrap_or(if http::is_legacy_sse_url(&options.url) {
            TransportKind::LegacySse
        } else {
            TransportKind::StreamableHttp
        })
}
