//! Stand-ins for the DingTalk, WeCom (WeChat Work) and Lark group-robot webhooks.

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_handler, tool_router, ErrorData, ServerHandler,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{error_json, ok_json};

/// Arguments of the plain-text tools.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TextArgs {
    /// The message text.
    pub text: String,
}

/// Arguments of `ding_send_markdown`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DingMarkdownArgs {
    /// Title shown in the conversation list.
    pub title: String,
    /// Markdown body of the message.
    pub text: String,
}

/// Arguments of `wework_send_markdown`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WeworkMarkdownArgs {
    /// Markdown body of the message.
    pub text: String,
}

/// The `notify` sample server.
#[derive(Debug, Clone)]
pub struct NotifyServer {
    tool_router: ToolRouter<Self>,
}

impl Default for NotifyServer {
    fn default() -> Self {
        Self::new()
    }
}

/// DingTalk and WeCom robots answer `{"errcode":0,"errmsg":"ok"}`; an empty message is rejected.
fn robot_reply(text: &str) -> CallToolResult {
    if text.is_empty() {
        error_json(json!({"errcode": 40035, "errmsg": "message content is empty"}))
    } else {
        ok_json(json!({"errcode": 0, "errmsg": "ok"}))
    }
}

#[tool_router(router = tool_router)]
impl NotifyServer {
    /// A server with all five notification tools.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        name = "ding_send_text",
        description = "Send a text message to a DingTalk group through its robot webhook."
    )]
    async fn ding_send_text(
        &self,
        Parameters(args): Parameters<TextArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(robot_reply(&args.text))
    }

    #[tool(
        name = "ding_send_markdown",
        description = "Send a markdown message with a title to a DingTalk group through its robot webhook."
    )]
    async fn ding_send_markdown(
        &self,
        Parameters(args): Parameters<DingMarkdownArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.title.is_empty() {
            return Ok(error_json(
                json!({"errcode": 40035, "errmsg": "title is empty"}),
            ));
        }
        Ok(robot_reply(&args.text))
    }

    #[tool(
        name = "wework_send_text",
        description = "Send a text message to a WeCom (WeChat Work) group through its robot webhook."
    )]
    async fn wework_send_text(
        &self,
        Parameters(args): Parameters<TextArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(robot_reply(&args.text))
    }

    #[tool(
        name = "wework_send_markdown",
        description = "Send a markdown message to a WeCom (WeChat Work) group through its robot webhook."
    )]
    async fn wework_send_markdown(
        &self,
        Parameters(args): Parameters<WeworkMarkdownArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(robot_reply(&args.text))
    }

    #[tool(
        name = "lark_send_text",
        description = "Send a text message to a Lark (Feishu) group through its custom bot webhook."
    )]
    async fn lark_send_text(
        &self,
        Parameters(args): Parameters<TextArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.text.is_empty() {
            return Ok(error_json(
                json!({"code": 9499, "msg": "Bad Request", "data": {}}),
            ));
        }
        Ok(ok_json(json!({"code": 0, "msg": "success", "data": {}})))
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "sample-notify",
    instructions = "Sample stand-in for DingTalk / WeCom / Lark group robots; nothing is really sent."
)]
impl ServerHandler for NotifyServer {}
