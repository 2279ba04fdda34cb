//! Pinned tool definitions and the risk classes their annotations put tools in.
//!
//! A pin is the SHA-256 of a tool's definition as it was reviewed (`mcp-policy pin`), with the
//! annotations it had then. Annotations are hints a server gives about its own tools; the MCP
//! specification calls them untrusted, so a class only ever comes from a pin's annotations,
//! never from what a listing says today.

use std::collections::HashMap;

use serde_json::Value;

use super::tool::ToolRule;

/// What the filter does with a tool whose definition differs from its pin, or has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Dropped from listings, its calls refused.
    Enforce,
    /// Nothing changes; the drift is counted, logged and audited.
    Report,
    /// As `Enforce`, with the pins of tools the policy does not pin learned from the first
    /// complete listing the server returns after the policy loads.
    FirstSeen,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Enforce => "enforce",
            PinMode::Report => "report",
            PinMode::FirstSeen => "first_seen",
        }
    }

    /// Whether a drifted or unpinned tool is refused (else only reported).
    pub fn refuses(self) -> bool {
        !matches!(self, PinMode::Report)
    }
}

/// One tool's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// `sha256:<hex>` of the definition's canonical JSON (`wire::definition`).
    pub sha256: String,
    pub hints: Hints,
}

#[derive(Debug, Clone)]
pub struct Pins {
    pub mode: PinMode,
    pub tools: HashMap<String, Pin>,
    /// Names learned pins in the store: a policy that changes learns afresh.
    pub generation: String,
}

/// The four behaviour hints of MCP tool annotations, with the specification's defaults for
/// hints a tool does not give: not read-only, destructive, not idempotent, open world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Default for Hints {
    fn default() -> Hints {
        Hints {
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }
}

impl Hints {
    /// The hints of an `annotations` object; a hint that is absent or not a boolean takes its
    /// default.
    pub fn from_annotations(annotations: Option<&Value>) -> Hints {
        let hint = |name: &str, default: bool| {
            annotations
                .and_then(|a| a.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(default)
        };
        let defaults = Hints::default();
        Hints {
            read_only: hint("readOnlyHint", defaults.read_only),
            destructive: hint("destructiveHint", defaults.destructive),
            idempotent: hint("idempotentHint", defaults.idempotent),
            open_world: hint("openWorldHint", defaults.open_world),
        }
    }

    /// Whether these hints put a tool in `class`. The specification gives `destructiveHint`
    /// and `idempotentHint` meaning only for tools that are not read-only.
    pub fn in_class(self, class: Class) -> bool {
        match class {
            Class::ReadOnly => self.read_only,
            Class::Destructive => !self.read_only && self.destructive,
            Class::OpenWorld => self.open_world,
            Class::Idempotent => !self.read_only && self.idempotent,
        }
    }
}

/// A risk class, in the order a tool's class is chosen: the first it belongs to that the
/// policy defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    ReadOnly,
    Destructive,
    OpenWorld,
    Idempotent,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::ReadOnly,
        Class::Destructive,
        Class::OpenWorld,
        Class::Idempotent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::ReadOnly => "read_only",
            Class::Destructive => "destructive",
            Class::OpenWorld => "open_world",
            Class::Idempotent => "idempotent",
        }
    }
}

/// The policy's `classes`: an entry (as a tool's) per class it defines.
#[derive(Debug, Clone, Default)]
pub struct Classes {
    /// Indexed as `Class::ALL`.
    pub entries: [Option<ToolRule>; 4],
}

impl Classes {
    /// The class a tool with `hints` takes: the first, in `Class::ALL` order, that it belongs
    /// to and the policy defines.
    pub fn class_of(&self, hints: Hints) -> Option<(Class, &ToolRule)> {
        Class::ALL
            .iter()
            .zip(&self.entries)
            .filter(|(class, _)| hints.in_class(**class))
            .find_map(|(class, entry)| entry.as_ref().map(|e| (*class, e)))
    }

    pub fn entry(&self, class: Class) -> Option<&ToolRule> {
        Class::ALL
            .iter()
            .zip(&self.entries)
            .find(|(c, _)| **c == class)
            .and_then(|(_, entry)| entry.as_ref())
    }

    pub fn entries(&self) -> impl Iterator<Item = &ToolRule> {
        self.entries.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;
    use serde_json::json;

    #[test]
    fn missing_hints_take_the_specifications_defaults() {
        let hints = Hints::from_annotations(None);
        assert_eq!(hints, Hints::default());
        assert!(hints.in_class(Class::Destructive) && hints.in_class(Class::OpenWorld));
        assert!(!hints.in_class(Class::ReadOnly) && !hints.in_class(Class::Idempotent));
        let read =
            Hints::from_annotations(Some(&json!({"readOnlyHint": true, "idempotentHint": true})));
        assert!(read.in_class(Class::ReadOnly));
        // Meaningless for a read-only tool.
        assert!(!read.in_class(Class::Destructive) && !read.in_class(Class::Idempotent));
        let odd = Hints::from_annotations(Some(&json!({"destructiveHint": "no"})));
        assert!(
            odd.destructive,
            "a hint that is not a boolean takes its default"
        );
    }
}
