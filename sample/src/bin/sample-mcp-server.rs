//! `sample-mcp-server --server wechat|notify [--port N] [--stateless] [--page-size N]`
//!
//! Binds 127.0.0.1, prints `listening on http://127.0.0.1:PORT/mcp`, serves until SIGTERM or
//! SIGINT, then exits 0. Bad arguments exit 2; startup failures exit 1. The routes and options
//! are in [`USAGE`].

use std::io::Write;
use std::process::ExitCode;

use mcp_policy_sample::options::{Command, Options, USAGE};
use mcp_policy_sample::server;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("sample-mcp-server: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sample-mcp-server: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Handlers first: a SIGTERM sent right after the listening line must still exit 0.
        let signal = server::termination_signal()?;
        server::run_until(
            &options,
            |addr| {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "listening on http://{addr}/mcp")?;
                stdout.flush()
            },
            signal,
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sample-mcp-server ({}): {error}", options.kind);
            ExitCode::FAILURE
        }
    }
}
