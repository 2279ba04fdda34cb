//! The MCP methods whose answers list what a server offers, and where in such an answer each
//! entry names what it offers.

use serde_json::Value;

use super::jsonrpc::{PROMPTS_LIST, RESOURCES_LIST, RESOURCE_TEMPLATES_LIST, TOOLS_LIST};

/// What an answer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    ResourceTemplates,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
}

impl ListingKind {
    /// The listing a request with `method` asks for, if it asks for one.
    pub fn of(method: &str) -> Option<ListingKind> {
        match method {
            TOOLS_LIST => Some(ListingKind::Tools),
            RESOURCES_LIST => Some(ListingKind::Resources),
            RESOURCE_TEMPLATES_LIST => Some(ListingKind::ResourceTemplates),
            PROMPTS_LIST => Some(ListingKind::Prompts),
            _ => None,
        }
    }

    /// The member of `result` holding the entries.
    pub fn entries(self) -> &'static str {
        match self {
            ListingKind::Tools => "tools",
            ListingKind::Resources => "resources",
            ListingKind::ResourceTemplates => "resourceTemplates",
            ListingKind::Prompts => "prompts",
        }
    }

    /// The member of an entry naming it.
    pub fn name(self) -> &'static str {
        match self {
            ListingKind::Tools | ListingKind::Prompts => "name",
            ListingKind::Resources => "uri",
            ListingKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// A forwarded request whose answer lists entries: its id (as a server reads it) and what it
/// lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub id: Value,
    pub kind: ListingKind,
}
