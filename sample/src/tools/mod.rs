//! The stand-in tools. Nothing here contacts any real service: each tool answers with a fake but
//! plausible result, shaped like the real API's response, as one JSON text content block.

pub mod notify;
pub mod wechat;
pub mod wechat_prompts;
pub mod wechat_resources;

use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

/// Fake message ids: unique within one process, shaped like WeChat's numeric `msg_id`s.
static NEXT_FAKE_ID: AtomicU64 = AtomicU64::new(1_000_000_001);

/// The next fake message id.
pub fn next_fake_id() -> u64 {
    NEXT_FAKE_ID.fetch_add(1, Ordering::Relaxed)
}

/// A successful tool result carrying `value` as JSON text.
pub(crate) fn ok_json(value: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

/// A tool-level error result (`isError: true`) carrying `value` as JSON text.
pub(crate) fn error_json(value: Value) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(value.to_string())])
}
