//! `ratelimit-redis --listen 127.0.0.1:8081 --redis redis://127.0.0.1:6379`

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use ratelimit_redis::counting::RedisCounters;
use ratelimit_redis::service::RateLimitService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

const USAGE: &str = "usage: ratelimit-redis [--listen ADDR:PORT] [--redis URL]
  --listen  gRPC address (env RLS_LISTEN, default 127.0.0.1:8081; port 0 picks a free one)
  --redis   Redis URL (env RLS_REDIS_URL, default redis://127.0.0.1:6379)";

struct Options {
    listen: String,
    redis: String,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        listen: std::env::var("RLS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".into()),
        redis: std::env::var("RLS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let slot = match name.as_str() {
            "--listen" => &mut options.listen,
            "--redis" => &mut options.redis,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {name}")),
        };
        *slot = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{name} needs a value")),
        };
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("ratelimit-redis: {error}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ratelimit-redis: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: &Options) -> Result<(), String> {
    let counters = RedisCounters::new(&options.redis)
        .map_err(|e| format!("redis URL {}: {e}", options.redis))?;
    let addr: SocketAddr = options
        .listen
        .parse()
        .map_err(|e| format!("listen address {}: {e}", options.listen))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    // Tests and scripts wait for this line (and read the port from it when asked for port 0).
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {local}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(stdout);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .serve_with_incoming(RateLimitService::new(counters), incoming)
        .await
        .map_err(|e| format!("serve: {e}"))
}
