//! `bench-upstream [--port N]`: the benchmark's upstream, as cheap as an HTTP server can be.
//!
//! Binds 127.0.0.1 (port 0 = any free port), prints `listening on http://127.0.0.1:PORT/`, reads
//! every request body whole and answers it with one small JSON-RPC result, so the benchmark
//! measures Envoy and its filters rather than an MCP server. One thread: the benchmark pins it to
//! the load generator's core.

use std::io::Write;
use std::process::ExitCode;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::Router;

const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;

async fn answer(_body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, "application/json")], RESULT)
}

fn port_from_args() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(0),
        (Some("--port"), Some(port)) => port.parse().map_err(|_| format!("not a port: {port}")),
        (Some(other), _) => Err(format!(
            "unexpected argument {other}; usage: bench-upstream [--port N]"
        )),
    }
}

fn main() -> ExitCode {
    let port = match port_from_args() {
        Ok(port) => port,
        Err(error) => {
            eprintln!("bench-upstream: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-upstream: cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "listening on http://{addr}/")?;
            stdout.flush()?;
        }
        let app = Router::new().fallback(answer);
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-upstream: {error}");
            ExitCode::FAILURE
        }
    }
}
