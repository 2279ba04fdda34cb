//! What a decided request is about: a tool, a resource, a prompt or another method. Refusals,
//! audit records, log lines and metrics name it.

/// What the policy decided on for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A `tools/call`, by tool name.
    Tool(String),
    /// A `resources/read` or `resources/subscribe` (`method`), by URI.
    Resource { method: String, uri: String },
    /// A `prompts/get`, by prompt name.
    Prompt(String),
    /// Any other request, by method name: what a `methods` block decides.
    Method(String),
}

impl Target {
    /// The JSON-RPC method of the request.
    pub fn method(&self) -> &str {
        match self {
            Target::Tool(_) => crate::protocol::jsonrpc::TOOLS_CALL,
            Target::Resource { method, .. } => method,
            Target::Prompt(_) => crate::protocol::jsonrpc::PROMPTS_GET,
            Target::Method(method) => method,
        }
    }

    /// What the request names: the tool, the URI, the prompt or the method.
    pub fn name(&self) -> &str {
        match self {
            Target::Tool(name) | Target::Prompt(name) | Target::Method(name) => name,
            Target::Resource { uri, .. } => uri,
        }
    }

    /// The member that names it in a refusal's `data` and in the audit record.
    pub fn member(&self) -> &'static str {
        match self {
            Target::Tool(_) => "tool",
            Target::Resource { .. } => "resource",
            Target::Prompt(_) => "prompt",
            Target::Method(_) => "method",
        }
    }

    /// How a message to the agent starts naming it: `Resource "wechat://a"`.
    pub fn noun(&self) -> &'static str {
        match self {
            Target::Tool(_) => "Tool",
            Target::Resource { .. } => "Resource",
            Target::Prompt(_) => "Prompt",
            Target::Method(_) => "Method",
        }
    }

    /// What did not happen when it was refused for a counter it could not check.
    pub fn not_done(&self) -> &'static str {
        match self {
            Target::Tool(_) | Target::Method(_) => "was not called",
            Target::Resource { .. } | Target::Prompt(_) => "was not requested",
        }
    }
}
