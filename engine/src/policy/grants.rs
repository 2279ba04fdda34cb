//! Named grants: which identities hold them, which tools they may call, and their own limits.
//! An identity is matched exactly first, then by the longest `prefix*` pattern; the loader
//! rejects an exact identity or pattern listed in two grants, so the match is never ambiguous.

use std::collections::HashMap;

use super::counter::CounterId;
use super::tool::ToolRule;

/// How a secret source's identities (and the grant entries listing them) begin.
pub const SECRET_PREFIX: &str = "sha256:";

#[derive(Debug, Clone)]
pub struct Grant {
    pub name: String,
    /// `None`: the grant may call whatever the server-wide rules allow. `Some`: only these tools.
    pub tools: Option<HashMap<String, ToolRule>>,
    /// Apply to every tool call made under this grant.
    pub limits: Vec<CounterId>,
}

#[derive(Debug, Clone, Default)]
pub struct GrantTable {
    grants: Vec<Grant>,
    exact: HashMap<String, usize>,
    /// Grant index by prefix pattern (without its `*`).
    prefixes: HashMap<String, usize>,
    /// The lengths those prefixes come in, longest first: an identity is looked up once per
    /// length, not compared with every prefix.
    prefix_lengths: Vec<usize>,
}

/// An identity pattern: exact, or a prefix ending in `*` (`spiffe://cluster.local/ns/support/*`;
/// `*` alone matches every identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPattern {
    Exact(String),
    Prefix(String),
}

impl IdentityPattern {
    pub fn parse(text: &str) -> Result<IdentityPattern, String> {
        match text.find('*') {
            None if text.is_empty() => Err("an identity must not be empty".to_owned()),
            None => Ok(IdentityPattern::Exact(text.to_owned())),
            Some(i) if i + 1 == text.len() => Ok(IdentityPattern::Prefix(text[..i].to_owned())),
            Some(_) => Err("`*` may only end a pattern (a prefix match)".to_owned()),
        }
    }
}

impl GrantTable {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.grants.iter().map(|g| g.name.as_str()).collect()
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Add a grant with its identity patterns; on a clash, names the grant already holding it.
    pub fn add(&mut self, grant: Grant, patterns: Vec<IdentityPattern>) -> Result<(), String> {
        let index = self.grants.len();
        for pattern in &patterns {
            let (holder, shown) = match pattern {
                IdentityPattern::Exact(id) => (self.exact.get(id).copied(), id.clone()),
                IdentityPattern::Prefix(p) => (self.prefixes.get(p).copied(), format!("{p}*")),
            };
            if let Some(other) = holder.and_then(|i| self.grants.get(i)) {
                return Err(format!(
                    "\"{shown}\" is already listed by grant \"{}\"; an identity may hold one grant",
                    other.name
                ));
            }
            match pattern {
                IdentityPattern::Exact(id) => {
                    self.exact.insert(id.clone(), index);
                }
                IdentityPattern::Prefix(p) => {
                    self.prefixes.insert(p.clone(), index);
                    if let Err(at) = self.prefix_lengths.binary_search_by(|l| p.len().cmp(l)) {
                        self.prefix_lengths.insert(at, p.len());
                    }
                }
            }
        }
        self.grants.push(grant);
        Ok(())
    }

    /// The grant `identity` holds. A `sha256:` entry is a secret source's key and matches only an
    /// identity from a secret source: the hash is in the policy for anyone to read, so a plain
    /// header carrying it must not take the key's grant.
    pub fn find(&self, identity: &str, secret: bool) -> Option<&Grant> {
        let exact = self
            .exact
            .get(identity)
            .copied()
            .filter(|_| secret || !identity.starts_with(SECRET_PREFIX));
        // The longest prefix the identity starts with wins (`*` alone, length 0, comes last).
        let index = exact.or_else(|| {
            self.prefix_lengths.iter().find_map(|&length| {
                let head = identity.get(..length)?;
                let index = self.prefixes.get(head).copied()?;
                (secret || !head.starts_with(SECRET_PREFIX)).then_some(index)
            })
        })?;
        self.grants.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    fn grant(name: &str) -> Grant {
        Grant {
            name: name.into(),
            tools: None,
            limits: vec![],
        }
    }

    fn patterns(list: &[&str]) -> Vec<IdentityPattern> {
        list.iter()
            .map(|p| IdentityPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let mut t = GrantTable::default();
        t.add(grant("mesh"), patterns(&["spiffe://cluster.local/*"]))
            .unwrap();
        t.add(
            grant("support"),
            patterns(&["spiffe://cluster.local/ns/support/*"]),
        )
        .unwrap();
        t.add(
            grant("vip"),
            patterns(&["spiffe://cluster.local/ns/support/sa/lead", "agent-1"]),
        )
        .unwrap();
        let name = |id: &str| t.find(id, false).map(|g| g.name.clone());
        assert_eq!(
            name("spiffe://cluster.local/ns/support/sa/lead").as_deref(),
            Some("vip")
        );
        assert_eq!(
            name("spiffe://cluster.local/ns/support/sa/bot").as_deref(),
            Some("support")
        );
        assert_eq!(
            name("spiffe://cluster.local/ns/sales/sa/bot").as_deref(),
            Some("mesh")
        );
        assert_eq!(name("agent-1").as_deref(), Some("vip"));
        assert_eq!(name("agent-2"), None);
        assert_eq!(name("spiffe://other.domain/ns/support/sa/bot"), None);
    }

    #[test]
    fn star_alone_matches_everyone_last() {
        let mut t = GrantTable::default();
        t.add(grant("everyone"), patterns(&["*"])).unwrap();
        t.add(grant("a"), patterns(&["a"])).unwrap();
        assert_eq!(t.find("a", false).map(|g| g.name.as_str()), Some("a"));
        assert_eq!(
            t.find("zzz", false).map(|g| g.name.as_str()),
            Some("everyone")
        );
    }

    #[test]
    fn a_key_prefix_is_skipped_for_a_plain_identity_and_a_shorter_prefix_tried() {
        let mut t = GrantTable::default();
        t.add(grant("keys"), patterns(&["sha256:ab*"])).unwrap();
        t.add(grant("headers"), patterns(&["sha*"])).unwrap();
        t.add(grant("everyone"), patterns(&["*"])).unwrap();
        let name = |id: &str, secret| t.find(id, secret).map(|g| g.name.as_str());
        assert_eq!(name("sha256:abcd", true), Some("keys"));
        assert_eq!(name("sha256:abcd", false), Some("headers"));
        assert_eq!(name("sh", false), Some("everyone"));
        // A prefix length falling inside a multi-byte character is no match, and no panic.
        assert_eq!(name("sh\u{e9}", false), Some("everyone"));
        assert_eq!(name("", false), Some("everyone"));
    }

    #[test]
    fn one_identity_or_pattern_in_two_grants_is_refused() {
        let mut t = GrantTable::default();
        t.add(grant("a"), patterns(&["x", "p/*"])).unwrap();
        assert!(t
            .add(grant("b"), patterns(&["x"]))
            .unwrap_err()
            .contains("already listed by grant \"a\""));
        assert!(t
            .add(grant("c"), patterns(&["p/*"]))
            .unwrap_err()
            .contains("\"p/*\""));
    }

    #[test]
    fn pattern_syntax() {
        assert_eq!(
            IdentityPattern::parse("a*"),
            Ok(IdentityPattern::Prefix("a".into()))
        );
        assert!(IdentityPattern::parse("a*b").is_err());
        assert!(IdentityPattern::parse("").is_err());
    }
}
