//! The approvers file (`--approvers FILE`): who may sign in, with what, and which calls each may
//! decide.
//!
//! ```json
//! {"approvers": [
//!   {"name": "carol",
//!    "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$…",   // approval-service hash-password
//!    "token_sha256": "9f86d0…",                              // approval-service hash-token
//!    "may_decide": [{"server": "wechat", "tool": "wechat_mass_*"}, {"server": "*", "tool": "*"}]}]}
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::secrets;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    approvers: Vec<Approver>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    pub name: String,
    /// Argon2id PHC string: this approver signs in on the page.
    #[serde(default)]
    password_hash: Option<String>,
    /// SHA-256 (hex) of an API token: this approver's bots use `Authorization: Bearer <token>`.
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    pub may_decide: Vec<Right>,
}

/// The right to decide calls of the tools `tool` on the servers `server`. Each is a name, `*`
/// (any), or a prefix ending in `*` (`wechat_mass_*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Right {
    pub server: String,
    pub tool: String,
}

impl Right {
    /// `SERVER:TOOL`, as `--header-approvers-may-decide` takes it.
    pub fn parse(text: &str) -> Result<Right, String> {
        match text.split_once(':') {
            Some((server, tool)) if !server.is_empty() && !tool.is_empty() => Ok(Right {
                server: server.to_owned(),
                tool: tool.to_owned(),
            }),
            _ => Err(format!("{text:?}: expected SERVER:TOOL (either may be *)")),
        }
    }

    pub fn covers(&self, server: &str, tool: &str) -> bool {
        pattern_matches(&self.server, server) && pattern_matches(&self.tool, tool)
    }
}

fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

pub struct Approvers {
    list: Vec<Approver>,
}

impl Approvers {
    /// Nobody: only identities from a trusted proxy's header.
    pub fn none() -> Approvers {
        Approvers { list: Vec::new() }
    }

    pub fn load(path: &Path) -> Result<Approvers, String> {
        let at = |e: String| format!("{}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        let file: File = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
        validate(&file.approvers).map_err(at)?;
        Ok(Approvers {
            list: file.approvers,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn named(&self, name: &str) -> Option<&Approver> {
        self.list.iter().find(|a| a.name == name)
    }

    /// The approver `name` if `password` is theirs. An unknown name, or an approver without a
    /// password, is checked against another approver's hash, so it costs what a wrong password
    /// costs and timing does not tell which part was wrong.
    pub fn by_password(&self, name: &str, password: &str) -> Option<&Approver> {
        let approver = self.named(name);
        let hash = approver
            .and_then(|a| a.password_hash.as_deref())
            .or_else(|| self.list.iter().find_map(|a| a.password_hash.as_deref()))?;
        let matches = secrets::password_matches(password, hash);
        approver.filter(|a| matches && a.password_hash.is_some())
    }

    /// The approver whose API token this is; every entry is compared, in constant time.
    pub fn by_token(&self, token: &str) -> Option<&Approver> {
        let digest = secrets::token_sha256(token);
        self.list.iter().fold(None, |found, approver| {
            let matches = approver
                .token_sha256
                .as_deref()
                .is_some_and(|expected| secrets::same(expected, &digest));
            if matches {
                Some(approver)
            } else {
                found
            }
        })
    }
}

fn validate(approvers: &[Approver]) -> Result<(), String> {
    if approvers.is_empty() {
        return Err("no approvers".into());
    }
    let mut names = HashSet::new();
    let mut tokens = HashSet::new();
    for approver in approvers {
        let name = &approver.name;
        let problem = |what: &str| format!("approver {name:?}: {what}");
        if name.trim().is_empty() || name.trim() != name || name.chars().any(char::is_control) {
            return Err(problem("a name is required, without surrounding spaces"));
        }
        if !names.insert(name.to_lowercase()) {
            return Err(problem("named twice (names are compared ignoring case)"));
        }
        if approver.password_hash.is_none() && approver.token_sha256.is_none() {
            return Err(problem("needs password_hash or token_sha256 (or both)"));
        }
        if let Some(hash) = &approver.password_hash {
            secrets::check_password_hash(hash)
                .map_err(|e| problem(&format!("password_hash: {e}")))?;
        }
        if let Some(token) = &approver.token_sha256 {
            validate_token_hash(token).map_err(|e| problem(&e))?;
            if !tokens.insert(token.as_str()) {
                return Err(problem("token_sha256 is another approver's too"));
            }
        }
        for right in &approver.may_decide {
            if right.server.is_empty() || right.tool.is_empty() {
                return Err(problem(
                    "may_decide: server and tool must not be empty (* is any)",
                ));
            }
        }
    }
    Ok(())
}

fn validate_token_hash(token: &str) -> Result<(), String> {
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if token.len() == 64 && token.chars().all(lower_hex) {
        Ok(())
    } else {
        Err("token_sha256: 64 lower-case hex digits (approval-service hash-token)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_match_names_any_and_prefixes() {
        let right = |text: &str| {
            let (server, tool) = text.split_once(':').unwrap_or_default();
            Right {
                server: server.into(),
                tool: tool.into(),
            }
        };
        assert!(right("wechat:wechat_mass_*").covers("wechat", "wechat_mass_send"));
        assert!(!right("wechat:wechat_mass_*").covers("notify", "wechat_mass_send"));
        assert!(right("*:*").covers("any", "thing"));
        assert!(right("notify:lark_send_text").covers("notify", "lark_send_text"));
        assert!(!right("notify:lark_send_text").covers("notify", "lark_send_text2"));
        assert!(Right::parse("notify").is_err() && Right::parse(":x").is_err());
    }
}
