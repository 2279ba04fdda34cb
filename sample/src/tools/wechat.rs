//! Stand-ins for the WeChat Official Account mass-messaging and follower APIs, with the
//! account's resources and prompts.
//!
//! Unlike a plain `#[tool_handler]` server, the handler lists and calls its tools through the
//! [`ToolChanges`] shared by all its sessions, and pages every `*/list` result when a page size
//! is configured: a test can play a server whose tools change under an agent's feet.

use std::num::NonZeroUsize;
use std::sync::Arc;

use rmcp::{
    handler::server::{router::tool::ToolRouter, tool::ToolCallContext, wrapper::Parameters},
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
        ServerConfig, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
    },
    service::RequestContext,
    tool, tool_router, ErrorData, RoleServer, ServerHandler,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{error_json, next_fake_id, ok_json, wechat_prompts, wechat_resources};
use crate::paging::{page_of, Page};
use crate::tool_changes::ToolChanges;

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

/// What every session of one `wechat` server shares.
#[derive(Debug)]
pub struct WechatShared {
    /// Run-time changes to the tool definitions (`POST /admin/tools`).
    pub tool_changes: ToolChanges,
    /// Longest page of a `*/list` result; `None`: everything on one page.
    pub page_size: Option<NonZeroUsize>,
}

impl WechatShared {
    /// The original tools, unchanged, paged by `page_size`.
    pub fn new(page_size: Option<NonZeroUsize>) -> Self {
        Self {
            tool_changes: ToolChanges::new(WechatServer::tool_router().list_all()),
            page_size,
        }
    }
}

/// The `wechat` sample server (one per session).
#[derive(Debug, Clone)]
pub struct WechatServer {
    tool_router: ToolRouter<Self>,
    shared: Arc<WechatShared>,
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
    /// A server with all seven WeChat tools, unchanged and unpaged, sharing nothing.
    pub fn new() -> Self {
        Self::sharing(Arc::new(WechatShared::new(None)))
    }

    /// A session of the server whose tool changes and page size are `shared`.
    pub fn sharing(shared: Arc<WechatShared>) -> Self {
        Self {
            tool_router: Self::tool_router(),
            shared,
        }
    }

    #[tool(
        name = "wechat_mass_send",
        title = "Mass send",
        description = "Mass-send a message to WeChat Official Account followers, by OpenID list or by tag.",
        annotations(
            title = "Mass send",
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
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
        title = "Mass preview",
        description = "Send a preview of a mass message to a single WeChat follower.",
        annotations(
            title = "Mass preview",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
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
        title = "Delete a mass message",
        description = "Delete (withdraw) a previously sent WeChat mass message by its msg_id.",
        annotations(
            title = "Delete a mass message",
            read_only_hint = false,
            destructive_hint = true
        )
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
        title = "List followers",
        description = "List the OpenIDs of WeChat Official Account followers, one page at a time.",
        annotations(title = "List followers", read_only_hint = true)
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
        title = "Mass message status",
        description = "Get the delivery status of a mass message, optionally waiting for the send to finish.",
        annotations(title = "Mass message status", read_only_hint = true)
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
        title = "Follower count",
        description = "Get the total number of WeChat Official Account followers (a tool named in Chinese).",
        annotations(title = "Follower count", read_only_hint = true)
    )]
    async fn follower_count(&self) -> Result<CallToolResult, ErrorData> {
        Ok(ok_json(json!({"total": FAKE_FOLLOWERS.len()})))
    }

    #[tool(
        name = "wechat_get_user_info",
        title = "Follower profile",
        description = "Get the basic profile of one WeChat follower by OpenID.",
        annotations(title = "Follower profile", read_only_hint = true)
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

/// Cache hints as the `#[tool_handler]` macro sets them: present from 2026-07-28 on, and
/// immediately stale, since tools can change at any moment.
fn cache_hints(context: &RequestContext<RoleServer>) -> (Option<u64>, Option<CacheScope>) {
    let supported = context
        .protocol_version()
        .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
    if supported {
        (Some(0), Some(CacheScope::Public))
    } else {
        (None, None)
    }
}

/// `$page` as a `$result` list result, continued by `nextCursor`. A macro because the four
/// list results share their fields but no trait.
macro_rules! list_result {
    ($result:ident, $page:expr, $context:expr) => {{
        let page: Page<_> = $page;
        let mut result = $result::with_all_items(page.items);
        result.next_cursor = page.next_cursor;
        (result.ttl_ms, result.cache_scope) = cache_hints(&$context);
        result
    }};
}

impl WechatServer {
    fn page<T>(
        &self,
        items: Vec<T>,
        request: Option<PaginatedRequestParams>,
    ) -> Result<Page<T>, ErrorData> {
        page_of(items, request.as_ref(), self.shared.page_size)
    }
}

impl ServerHandler for WechatServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "sample-wechat",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Sample stand-in for the WeChat Official Account APIs; nothing is really sent.",
            )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.shared.tool_changes.listed();
        Ok(list_result!(
            ListToolsResult,
            self.page(tools, request)?,
            context
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.tool_changes.find(name)
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // A renamed tool answers to its new name only; its handler knows the original one.
        let original = self
            .shared
            .tool_changes
            .original_name(&request.name)
            .ok_or_else(|| ErrorData::invalid_params("tool not found", None))?;
        request.name = original.into();
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = wechat_resources::resources();
        Ok(list_result!(
            ListResourcesResult,
            self.page(resources, request)?,
            context
        ))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = wechat_resources::resource_templates();
        Ok(list_result!(
            ListResourceTemplatesResult,
            self.page(templates, request)?,
            context
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        wechat_resources::read(&request.uri).map(ReadResourceResponse::from)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Accepted, never notified: nothing here ever changes a resource.
        known_resource(&request.uri)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        known_resource(&request.uri)
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = wechat_prompts::prompts();
        Ok(list_result!(
            ListPromptsResult,
            self.page(prompts, request)?,
            context
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        wechat_prompts::get(&request).map(GetPromptResponse::from)
    }
}

fn known_resource(uri: &str) -> Result<(), ErrorData> {
    if wechat_resources::exists(uri) {
        Ok(())
    } else {
        Err(wechat_resources::not_found(uri))
    }
}
