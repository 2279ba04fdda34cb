//! The wechat server's admin routes, for tests to change its tools at run time:
//!
//! - `POST /admin/tools` with `{"tool": NAME, "description": TEXT}` and/or
//!   `{"tool": NAME, "rename": NEW_NAME}`: 200 `{"changed": TOOL}`, the tool as `tools/list`
//!   shows it from now on; 404 `{"error": ..}` when no tool is listed as NAME; 400 `{"error": ..}`
//!   for a body that is not such an object, or a rename onto another tool's name.
//! - `POST /admin/tools/reset`: every change undone; 200 `{"changed": [ORIGINAL_NAME, ..]}`,
//!   the tools that had changed.
//!
//! These routes are not accounted in `/stats`, which counts `/mcp` only.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::json;

use crate::tool_changes::{ToolChangeError, ToolChangeRequest, ToolChanges};
use crate::tools::wechat::WechatShared;

/// `/admin/tools` and `/admin/tools/reset`, changing the tools of the server that shares `shared`.
pub fn routes(shared: Arc<WechatShared>) -> Router {
    Router::new()
        .route("/admin/tools", post(change_tool))
        .route("/admin/tools/reset", post(reset_tools))
        .with_state(shared)
}

async fn change_tool(State(shared): State<Arc<WechatShared>>, body: Bytes) -> Response {
    match apply(&shared.tool_changes, &body) {
        Ok(tool) => Json(json!({ "changed": tool })).into_response(),
        Err(error) => error_response(&error),
    }
}

fn apply(changes: &ToolChanges, body: &[u8]) -> Result<rmcp::model::Tool, ToolChangeError> {
    let request: ToolChangeRequest = serde_json::from_slice(body)
        .map_err(|error| ToolChangeError::Invalid(format!("bad request body: {error}")))?;
    changes.change(&request)
}

fn error_response(error: &ToolChangeError) -> Response {
    let status = match error {
        ToolChangeError::UnknownTool(_) => StatusCode::NOT_FOUND,
        ToolChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

async fn reset_tools(State(shared): State<Arc<WechatShared>>) -> Response {
    Json(json!({ "changed": shared.tool_changes.reset() })).into_response()
}
