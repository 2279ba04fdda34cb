//! approval-service: people approve or deny AI agents' exact MCP tool calls, which
//! mcp-policy-filter holds in Envoy meanwhile (`"action": "require_approval"`).
//!
//!   approval-service --listen 127.0.0.1:9080 --db approvals.sqlite3 [--public-url URL]
//!   (or APPROVAL_LISTEN, APPROVAL_DB, APPROVAL_PUBLIC_URL)
//!   and who approves: --approvers FILE (or APPROVAL_APPROVERS), and/or
//!   --trust-identity-header NAME --trusted-peer IP... [--header-approvers-may-decide SERVER:TOOL...];
//!   [--check-peer IP...] (who may ask /v1/check; default: anyone)
//!   approval-service hash-password | hash-token   (the secret on stdin; prints its approvers-file form)
//!   approval-service verify --db approvals.sqlite3 [--known-head HASH]   (the decision log)

mod api;
mod approvers;
mod auth;
mod chain;
mod pages;
mod secrets;
mod sessions;
mod store;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    listen: String,
    db: PathBuf,
    public_url: Option<String>,
    auth: auth::Options,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: std::env::var("APPROVAL_LISTEN").unwrap_or_else(|_| "127.0.0.1:9080".into()),
        db: std::env::var_os("APPROVAL_DB")
            .map_or_else(|| "approvals.sqlite3".into(), PathBuf::from),
        public_url: std::env::var("APPROVAL_PUBLIC_URL").ok(),
        auth: auth::Options::from_env(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value,
            "--db" => args.db = value.into(),
            "--public-url" => args.public_url = Some(value),
            other => args.auth.set(other, value)?,
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("verify") {
        return chain::command(std::env::args().skip(2));
    }
    if let Some(done) = secrets::run_subcommand(&std::env::args().nth(1).unwrap_or_default()) {
        return exit(done);
    }
    exit(run().await)
}

fn exit(done: Result<(), String>) -> ExitCode {
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("approval-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let store = store::Store::open(&args.db)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = args
        .public_url
        .unwrap_or_else(|| format!("http://{address}"));
    let auth = auth::Auth::new(args.auth, &public_url)?;
    println!("listening on http://{address}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let app = api::App::new(store, public_url, auth);
    // The peer's address: trusted identity headers and --check-peer depend on it.
    let service = api::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .await
        .map_err(|e| e.to_string())
}
