//! What the engine knows about a request besides its body.

use crate::policy::identity::Identity;
use crate::services::approval::Approved;

/// What the filter knows about the request besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMeta<'a> {
    /// Keeps the counters of different filter instances (one per MCP server) apart.
    pub namespace: &'a str,
    /// The caller, as resolved from the policy's identity sources.
    pub identity: Option<&'a Identity>,
    /// `Mcp-Session-Id`, if sent.
    pub session: Option<&'a str>,
    /// `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28 clients), if sent, as sent (`Mcp-Name` may be
    /// in the encoded form `=?base64?…?=`).
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
    /// Unix time, seconds.
    pub now: u64,
    /// A POST to the legacy HTTP+SSE transport's message endpoint: its answer travels on the
    /// session's SSE stream and clients read only the status of this response, so refusals use
    /// HTTP error statuses (as `refusal_mode: http`) whatever the policy's refusal mode.
    pub legacy_sse: bool,
    /// A human approved the call with this digest (set when the request is decided again after
    /// the approval service said yes).
    pub approved: Option<Approved<'a>>,
}
