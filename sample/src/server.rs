//! The HTTP side: rmcp's Streamable HTTP service at `/mcp`, wrapped in call accounting, plus
//! `/stats` and (wechat) the [`admin`](crate::admin) routes; binding, serving and shutting down.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rmcp::{
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServerHandler,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::options::{Options, ServerKind};
use crate::stats::{Stats, StatsSnapshot};
use crate::tools::{
    notify::NotifyServer,
    wechat::{WechatServer, WechatShared},
};

/// Largest POST body the accounting layer buffers. Larger than rmcp's own 4 MiB limit, so rmcp
/// still answers oversized-but-buffered bodies with its usual 413.
pub const MAX_ACCOUNTED_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long shutdown waits for open connections (e.g. SSE streams) before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The rmcp transport configuration for a server in the given mode.
///
/// Stateful (default): rmcp's legacy session mode, `Mcp-Session-Id` issued by `initialize`,
/// POSTs answered as SSE. Stateless: no sessions, plain `application/json` answers.
/// `Host` checking is off: the server only binds loopback, and behind Envoy the `Host` header
/// is whatever the test's route uses.
pub fn transport_config(stateless: bool, ct: CancellationToken) -> StreamableHttpServerConfig {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(ct);
    if stateless {
        config
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
    } else {
        config
    }
}

fn mcp_service<S, F>(
    config: StreamableHttpServerConfig,
    new_session: F,
) -> StreamableHttpService<S, LocalSessionManager>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    StreamableHttpService::new(move || Ok(new_session()), Arc::default(), config)
}

/// The wechat server's `/mcp` and admin routes; every session shares one [`WechatShared`].
fn wechat_routes(config: StreamableHttpServerConfig, options: &Options) -> (Router, Router) {
    let shared = Arc::new(WechatShared::new(options.page_size));
    let for_sessions = shared.clone();
    let mcp = Router::new().nest_service(
        "/mcp",
        mcp_service(config, move || WechatServer::sharing(for_sessions.clone())),
    );
    (mcp, admin::routes(shared))
}

/// The whole application: `/mcp` (accounted), `/stats`, and for wechat `/admin/tools`.
pub fn app(options: &Options, stats: Arc<Stats>, ct: CancellationToken) -> Router {
    let config = transport_config(options.stateless, ct);
    let (mcp, admin) = match options.kind {
        ServerKind::Wechat => wechat_routes(config, options),
        ServerKind::Notify => (
            Router::new().nest_service("/mcp", mcp_service(config, NotifyServer::new)),
            Router::new(),
        ),
    };
    let mcp = mcp.layer(middleware::from_fn_with_state(stats.clone(), account));
    let stats_routes = Router::new()
        .route("/stats", get(get_stats))
        .route("/stats/reset", post(reset_stats))
        .with_state(stats);
    mcp.merge(stats_routes).merge(admin)
}

/// Accounting middleware for `/mcp`: counts and records the request, then hands the identical
/// body bytes on to rmcp.
async fn account(State(stats): State<Arc<Stats>>, request: Request, next: Next) -> Response {
    match *request.method() {
        Method::POST => {
            let (parts, body) = request.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_ACCOUNTED_BODY_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    // Still an arriving POST, even if its body could not be read whole.
                    stats.record_post(&parts.headers, b"");
                    return body_error_response(error);
                }
            };
            stats.record_post(&parts.headers, &bytes);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Method::GET => {
            stats.record_get();
            next.run(request).await
        }
        Method::DELETE => {
            stats.record_delete();
            next.run(request).await
        }
        _ => {
            stats.record_other();
            next.run(request).await
        }
    }
}

fn body_error_response(error: axum::Error) -> Response {
    let too_large = std::error::Error::source(&error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        || error
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
    if too_large {
        (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large").into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            "Bad Request: could not read the request body",
        )
            .into_response()
    }
}

async fn get_stats(State(stats): State<Arc<Stats>>) -> Json<StatsSnapshot> {
    Json(stats.snapshot())
}

async fn reset_stats(State(stats): State<Arc<Stats>>) -> Json<StatsSnapshot> {
    stats.reset();
    Json(stats.snapshot())
}

/// A sample server serving in the background of the current tokio runtime.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stats: Arc<Stats>,
    ct: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// The bound address (always on 127.0.0.1 when started from [`Options`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The MCP endpoint, `http://ADDR/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// The root of the admin and `/stats` routes, `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The accounting shared with the HTTP handlers (same data as `GET /stats`).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Resolves when the server stops on its own (which only happens on an I/O error).
    pub async fn wait(&mut self) -> io::Result<()> {
        join_result((&mut self.task).await)
    }

    /// Stop accepting, end rmcp sessions and streams, and wait up to [`SHUTDOWN_GRACE`] for
    /// open connections to finish.
    pub async fn shutdown(self) -> io::Result<()> {
        self.ct.cancel();
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(result) => join_result(result),
            Err(_elapsed) => {
                task.abort();
                Ok(())
            }
        }
    }
}

fn join_result(result: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    match result {
        Ok(result) => result,
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => Err(io::Error::other(format!("server task failed: {error}"))),
    }
}

/// Bind `addr` and serve `kind` on it in the background (no paging).
pub async fn start_on(
    kind: ServerKind,
    addr: SocketAddr,
    stateless: bool,
) -> io::Result<RunningServer> {
    let options = Options {
        kind,
        port: addr.port(),
        stateless,
        page_size: None,
    };
    serve_in_background(&options, addr).await
}

/// Bind 127.0.0.1 on the configured port and serve in the background.
pub async fn start(options: &Options) -> io::Result<RunningServer> {
    let addr = SocketAddr::from(([127, 0, 0, 1], options.port));
    serve_in_background(options, addr).await
}

async fn serve_in_background(options: &Options, addr: SocketAddr) -> io::Result<RunningServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| io::Error::new(error.kind(), format!("cannot bind {addr}: {error}")))?;
    let local_addr = listener.local_addr()?;
    let stats = Arc::new(Stats::new(options.kind.as_str(), options.stateless));
    let ct = CancellationToken::new();
    let router = app(options, stats.clone(), ct.child_token());
    let shutdown = ct.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok(RunningServer {
        local_addr,
        stats,
        ct,
        task,
    })
}

/// Install SIGTERM and SIGINT handlers now (so a signal arriving at any later moment is caught)
/// and return a future that resolves on the first of them. Elsewhere than Unix: Ctrl-C.
///
/// Must be called inside a tokio runtime.
pub fn termination_signal() -> io::Result<impl Future<Output = io::Result<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok(())
        })
    }
    #[cfg(not(unix))]
    {
        Ok(tokio::signal::ctrl_c())
    }
}

/// Serve until `stop` resolves (or the server fails), then shut down cleanly.
///
/// `on_listening` is called once with the bound address, before any request is served.
pub async fn run_until<F, L>(options: &Options, on_listening: L, stop: F) -> io::Result<()>
where
    F: Future<Output = io::Result<()>>,
    L: FnOnce(SocketAddr) -> io::Result<()>,
{
    let mut server = start(options).await?;
    if let Err(error) = on_listening(server.local_addr()) {
        // Best effort: the listening report failed, which is the real error to return.
        let _ = server.shutdown().await;
        return Err(error);
    }
    let stopped = tokio::select! {
        stopped = stop => stopped,
        ended = server.wait() => {
            return match ended {
                Ok(()) => Err(io::Error::other("server stopped unexpectedly")),
                Err(error) => Err(error),
            };
        }
    };
    let shutdown = server.shutdown().await;
    stopped.and(shutdown)
}
