//! `bench-upstream [--port N]`: the benchmark's upstream, as cheap as an HTTP server can be.
//!
//! Binds 127.0.0.1 (port 0 = any free port), prints `listening on http://127.0.0.1:PORT/`, reads
//! every request body whole and answers it with one small JSON-RPC result, so the benchmark
//! measures Envoy and its filters rather than an MCP server. One thread: the benchmark pins it to
//! the load generator's core.
//!
//! One tool answers differently: `read_document` with `{"bytes": N}` returns a text result of
//! exactly N bytes of ordinary prose (a result guard's workload), and with `"secret": true` that
//! text starts with a fake cloud key and card number (to show the guard at work).

use std::borrow::Cow;
use std::io::Write;
use std::process::ExitCode;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::Router;
use serde_json::{json, Value};

const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#;
const DOCUMENT_TOOL: &[u8] = b"\"read_document\"";
/// What a document is made of: text with numbers, dates and punctuation, and nothing a
/// detector looks for.
const PROSE: &str = "Quarterly report, section 12: the Zurich office shipped 1,284 units on \
    2026-03-14 at 09:30; the ops room notes (ticket 4471) say the backlog fell 18% week over \
    week, and the next review is set for Thursday. ";
const SECRET: &str = "key AKIAIOSFODNN7EXAMPLE card 4111 1111 1111 1111 ";
/// Larger documents are not asked for; this bounds what one request can make the server build.
const MAX_DOCUMENT: usize = 1 << 20;

async fn answer(body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], Cow<'static, str>) {
    let document = body
        .windows(DOCUMENT_TOOL.len())
        .any(|w| w == DOCUMENT_TOOL)
        .then(|| document_answer(&body))
        .flatten();
    let text = document.map_or(Cow::Borrowed(RESULT), Cow::Owned);
    ([(CONTENT_TYPE, "application/json")], text)
}

/// The answer to a `read_document` call: its text exactly `bytes` long.
fn document_answer(body: &[u8]) -> Option<String> {
    let call: Value = serde_json::from_slice(body).ok()?;
    let arguments = call.get("params")?.get("arguments")?;
    let bytes = usize::try_from(arguments.get("bytes")?.as_u64()?).ok()?.min(MAX_DOCUMENT);
    let secret = arguments.get("secret").and_then(Value::as_bool) == Some(true);
    let mut text = String::with_capacity(bytes + PROSE.len());
    if secret {
        text.push_str(SECRET);
    }
    while text.len() < bytes {
        text.push_str(PROSE);
    }
    // ASCII throughout, so any length is a character boundary.
    text.truncate(bytes);
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    Some(
        json!({"jsonrpc": "2.0", "id": id,
               "result": {"content": [{"type": "text", "text": text}], "isError": false}})
        .to_string(),
    )
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
