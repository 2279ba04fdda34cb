//! Stand-ins for the WeChat Official Account mass-messaging and follower APIs.

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::CallToolResult,
    tool, tool_handler, tool_router, ErrorData, ServerHandler,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{error_json, next_fake_id, ok_json};

/// Message types accepted by the mass-send and preview APIs.
pub const MSG_TYPES: &[&str] = &["text", "mpnews", "image", "voice", "mpvideo", "wxcard"];

/// Fake followers returned by `wechat_get_followers`.
pub const FAKE_FOLLOWERS: &[&str] = &[
    "oSample_follower_0001",
    "oSample_follower_0002",
    "oSample_follower_0003",
];

/// Arguments of `wechat_mass_send`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MassSendArgs {
    /// OpenIDs of the recipients (send by OpenID list). May be empty when `tag_id` is given.
    pub openids: Vec<String>,
    /// Send to every follower carrying this tag instead of an OpenID list.
    #[serde(default)]
    pub tag_id: Option<i64>,
    /// Message type: text, mpnews, image, voice, mpvideo or wxcard.
    pub msg_type: String,
    /// The text for `text`, otherwise the media_id / card_id of the material to send.
    pub content: String,
}

/// Arguments of `wechat_mass_preview`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MassPreviewArgs {
    /// OpenID of the single follower who receives the preview.
    pub openid: String,
    /// Message type: text, mpnews, image, voice, mpvideo or wxcard.
    pub msg_type: String,
    /// The text for `text`, otherwise the media_id / card_id of the material to preview.
    pub content: String,
}

/// Arguments of `wechat_mass_delete`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MassDeleteArgs {
    /// The msg_id returned by a previous mass send.
    pub msg_id: i64,
}

/// Arguments of `wechat_get_followers`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetFollowersArgs {
    /// Continue the listing after this OpenID (the `next_openid` of the previous page).
    #[serde(default)]
    pub next_openid: Option<String>,
}

/// Arguments of `wechat_get_user_info`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetUserInfoArgs {
    /// OpenID of the follower to look up.
    pub openid: String,
}

/// Arguments of `wechat_mass_status`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct MassStatusArgs {
    /// msg_id returned by wechat_mass_send.
    pub msg_id: String,
    /// Wait up to this many seconds for the send to finish (0-30) before answering.
    #[serde(default)]
    pub wait_seconds: u64,
}

/// The `wechat` sample server.
#[derive(Debug, Clone)]
pub struct WechatServer {
    tool_router: ToolRouter<Self>,
}

impl Default for WechatServer {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid_msg_type(msg_type: &str) -> Option<CallToolResult> {
    (!MSG_TYPES.contains(&msg_type)).then(|| {
        error_json(json!({
            "errcode": 40008,
            "errmsg": format!("invalid message type: {msg_type}"),
        }))
    })
}

#[tool_router(router = tool_router)]
impl WechatServer {
    /// A server with all seven WeChat tools.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        name = "wechat_mass_send",
        description = "Mass-send a message to WeChat Official Account followers, by OpenID list or by tag."
    )]
    async fn wechat_mass_send(
        &self,
        Parameters(args): Parameters<MassSendArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(error) = invalid_msg_type(&args.msg_type) {
            return Ok(error);
        }
        if args.openids.is_empty() && args.tag_id.is_none() {
            return Ok(error_json(json!({
                "errcode": 40130,
                "errmsg": "invalid openid list size: give openids or tag_id",
            })));
        }
        let msg_id = next_fake_id();
        Ok(ok_json(json!({
            "errcode": 0,
            "errmsg": "send job submission success",
            "msg_id": msg_id,
            "msg_data_id": msg_id + 2_000_000_000,
            "recipients": args.openids.len(),
        })))
    }

    #[tool(
        name = "wechat_mass_preview",
        description = "Send a preview of a mass message to a single WeChat follower."
    )]
    async fn wechat_mass_preview(
        &self,
        Parameters(args): Parameters<MassPreviewArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(error) = invalid_msg_type(&args.msg_type) {
            return Ok(error);
        }
        if args.openid.is_empty() {
            return Ok(error_json(
                json!({"errcode": 40003, "errmsg": "invalid openid"}),
            ));
        }
        Ok(ok_json(json!({
            "errcode": 0,
            "errmsg": "preview success",
            "msg_id": next_fake_id(),
        })))
    }

    #[tool(
        name = "wechat_mass_delete",
        description = "Delete (withdraw) a previously sent WeChat mass message by its msg_id."
    )]
    async fn wechat_mass_delete(
        &self,
        Parameters(args): Parameters<MassDeleteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.msg_id <= 0 {
            return Ok(error_json(
                json!({"errcode": 40007, "errmsg": "invalid msg_id"}),
            ));
        }
        Ok(ok_json(json!({"errcode": 0, "errmsg": "ok"})))
    }

    #[tool(
        name = "wechat_get_followers",
        description = "List the OpenIDs of WeChat Official Account followers, one page at a time."
    )]
    async fn wechat_get_followers(
        &self,
        Parameters(args): Parameters<GetFollowersArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let page: Vec<&str> = match args.next_openid.as_deref() {
            None | Some("") => FAKE_FOLLOWERS.to_vec(),
            Some(_) => Vec::new(),
        };
        let next = page.last().copied().unwrap_or_default();
        Ok(ok_json(json!({
            "total": FAKE_FOLLOWERS.len(),
            "count": page.len(),
            "data": {"openid": page},
            "next_openid": next,
        })))
    }

    #[tool(
        name = "wechat_mass_status",
        description = "Get the delivery status of a mass message, optionally waiting for the send to finish."
    )]
    async fn wechat_mass_status(
        &self,
        Parameters(args): Parameters<MassStatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        // Stands in for a slow upstream API: tests use it to give up on a call mid-way.
        tokio::time::sleep(std::time::Duration::from_secs(args.wait_seconds.min(30))).await;
        Ok(ok_json(
            json!({"msg_id": args.msg_id, "msg_status": "SEND_SUCCESS"}),
        ))
    }

    /// A tool whose name is not ASCII: MCP 2026-07-28 clients send it in the `Mcp-Name` header
    /// Base64-encoded (`=?base64?…?=`), which the policy filter must decode as the server does.
    #[tool(
        name = "获取粉丝总数",
        description = "Get the total number of WeChat Official Account followers (a tool named in Chinese)."
    )]
    async fn follower_count(&self) -> Result<CallToolResult, ErrorData> {
        Ok(ok_json(json!({"total": FAKE_FOLLOWERS.len()})))
    }

    #[tool(
        name = "wechat_get_user_info",
        description = "Get the basic profile of one WeChat follower by OpenID."
    )]
    async fn wechat_get_user_info(
        &self,
        Parameters(args): Parameters<GetUserInfoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.openid.is_empty() {
            return Ok(error_json(
                json!({"errcode": 40003, "errmsg": "invalid openid"}),
            ));
        }
        Ok(ok_json(json!({
            "subscribe": 1,
            "openid": args.openid,
            "language": "zh_CN",
            "subscribe_time": 1_700_000_000,
            "remark": "",
            "groupid": 0,
            "tagid_list": [2],
            "subscribe_scene": "ADD_SCENE_QR_CODE",
        })))
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "sample-wechat",
    instructions = "Sample stand-in for the WeChat Official Account APIs; nothing is really sent."
)]
impl ServerHandler for WechatServer {}
