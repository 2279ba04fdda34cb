//! The approval service's check, as JSON on the wire: what the filter POSTs to [`CHECK_PATH`]
//! and what the service answers. The filter writes [`CheckRequest`] and reads [`CheckAnswer`];
//! the service reads the one and writes the other with these same types, so the two cannot
//! drift apart. The filter writes and reads them through `serde_json::Value`
//! ([`CheckRequest::to_json`], [`CheckAnswer::read`]), which it parses anyway: derived serde code
//! would only add to the `.wasm`; the tests hold both ways to the same bytes and meanings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The path the filter POSTs questions to.
pub const CHECK_PATH: &str = "/v1/check";

/// One call the filter asks about.
///
/// Fields are declared in alphabetical order: serde writes a struct's fields in declaration
/// order and serde_json writes a map's keys sorted, so the body is the same bytes whichever
/// of the two built it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The call's arguments, canonical (keys sorted, no whitespace); `null` for none.
    #[serde(default)]
    pub arguments: Value,
    /// SHA-256 (hex) of server, tool, arguments and caller: what an approval is for.
    pub digest: String,
    /// How long the service may hold the check waiting for a decision, in milliseconds.
    #[serde(default)]
    pub hold_ms: u64,
    /// The caller as shown to people (secrets cut to a hash prefix); `null` for anonymous.
    pub identity: Option<String>,
    /// The MCP server (the filter's namespace).
    pub server: String,
    pub tool: String,
    /// How long an approval stays usable, in seconds.
    #[serde(default)]
    pub valid_for_s: u64,
}

impl CheckRequest {
    /// The request body, as the derived `Serialize` writes it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "arguments": self.arguments,
            "digest": self.digest,
            "hold_ms": self.hold_ms,
            "identity": self.identity,
            "server": self.server,
            "tool": self.tool,
            "valid_for_s": self.valid_for_s,
        })
        .to_string()
    }
}

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Approved: this answer uses the approval up.
    Approved,
    Denied,
    /// Nobody has decided yet (within the hold time).
    Pending,
}

/// The service's answer to a check. Fields the answer does not carry are left out of it;
/// declared in alphabetical order, as [`CheckRequest`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    /// Where a person decides (pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_url: Option<String>,
    /// Who decided (approved or denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The approval request's id; an answer without one is not usable.
    #[serde(default)]
    pub id: String,
    /// Why, as the approver said (approved or denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: CheckStatus,
}

impl CheckAnswer {
    /// The answer in `value`, as the derived `Deserialize` reads it; `None` if it is not one.
    pub fn read(value: &Value) -> Option<CheckAnswer> {
        let object = value.as_object()?;
        let text = |key: &str| -> Option<Option<String>> {
            match object.get(key) {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(text)) => Some(Some(text.clone())),
                Some(_) => None,
            }
        };
        let status = match object.get("status")?.as_str()? {
            "approved" => CheckStatus::Approved,
            "denied" => CheckStatus::Denied,
            "pending" => CheckStatus::Pending,
            _ => return None,
        };
        let id = match object.get("id") {
            None => String::new(),
            Some(id) => id.as_str()?.to_owned(),
        };
        Some(CheckAnswer {
            approve_url: text("approve_url")?,
            approver: text("approver")?,
            id,
            reason: text("reason")?,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::test_support::test;

    #[test]
    fn a_request_is_written_as_the_map_of_its_fields() {
        let request = CheckRequest {
            arguments: json!({"to": "all", "n": [1, 2.5, "x"]}),
            digest: "d".repeat(64),
            hold_ms: 20_000,
            identity: Some("sha256:0123456789abcdef".to_owned()),
            server: "wechat".to_owned(),
            tool: "wechat_mass_send".to_owned(),
            valid_for_s: 600,
        };
        let as_map = json!({
            "digest": request.digest,
            "server": request.server,
            "tool": request.tool,
            "identity": request.identity,
            "arguments": request.arguments,
            "hold_ms": request.hold_ms,
            "valid_for_s": request.valid_for_s,
        });
        assert_eq!(serde_json::to_string(&request).unwrap(), as_map.to_string());
        let anonymous = CheckRequest {
            arguments: Value::Null,
            identity: None,
            ..request
        };
        assert_eq!(
            serde_json::to_string(&anonymous).unwrap(),
            format!(
                r#"{{"arguments":null,"digest":"{}","hold_ms":20000,"identity":null,"server":"wechat","tool":"wechat_mass_send","valid_for_s":600}}"#,
                anonymous.digest
            )
        );
    }

    #[test]
    fn a_request_needs_only_digest_server_and_tool() {
        let request: CheckRequest =
            serde_json::from_str(r#"{"digest":"d","server":"s","tool":"t"}"#).unwrap();
        assert_eq!(
            (
                request.arguments,
                request.identity,
                request.hold_ms,
                request.valid_for_s
            ),
            (Value::Null, None, 0, 0)
        );
        let missing = serde_json::from_str::<CheckRequest>(r#"{"tool":"t"}"#).unwrap_err();
        assert!(
            missing.to_string().starts_with("missing field `digest`"),
            "{missing}"
        );
    }

    #[test]
    fn answers_carry_only_what_their_status_has() {
        let pending = CheckAnswer {
            approve_url: Some("http://approvals/#a3".to_owned()),
            approver: None,
            id: "a3".to_owned(),
            reason: None,
            status: CheckStatus::Pending,
        };
        let text = serde_json::to_string(&pending).unwrap();
        assert_eq!(
            text,
            r#"{"approve_url":"http://approvals/#a3","id":"a3","status":"pending"}"#
        );
        assert_eq!(serde_json::from_str::<CheckAnswer>(&text).unwrap(), pending);
        let denied: CheckAnswer = serde_json::from_str(
            r#"{"status":"denied","id":"a2","approver":"dan","reason":"no","extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            (
                denied.status,
                denied.approver.as_deref(),
                denied.reason.as_deref()
            ),
            (CheckStatus::Denied, Some("dan"), Some("no"))
        );
        for unusable in [
            r#"{"id":"x"}"#,
            r#"{"status":"maybe","id":"x"}"#,
            r#"{"status":"APPROVED"}"#,
        ] {
            assert!(
                serde_json::from_str::<CheckAnswer>(unusable).is_err(),
                "{unusable}"
            );
        }
    }

    #[test]
    fn the_filter_writes_requests_as_serde_does() {
        for (identity, arguments) in [
            (
                Some("sha256:0123456789abcdef".to_owned()),
                json!({"b": [1, 2.5, "x"], "a": null}),
            ),
            (None, Value::Null),
            (Some("a\"b\u{7f}".to_owned()), json!("text")),
        ] {
            let request = CheckRequest {
                arguments,
                digest: "d".repeat(64),
                hold_ms: 20_000,
                identity,
                server: "we\"chat".to_owned(),
                tool: "发送".to_owned(),
                valid_for_s: 600,
            };
            assert_eq!(request.to_json(), serde_json::to_string(&request).unwrap());
        }
    }

    #[test]
    fn the_filter_reads_answers_as_serde_does() {
        for text in [
            r#"{"status":"approved","id":"a1","approver":"carol"}"#,
            r#"{"status":"denied","id":"a2","approver":"dan","reason":"no","extra":1}"#,
            r#"{"status":"pending","id":"a3","approve_url":"http://x/#a3"}"#,
            r#"{"status":"pending","approve_url":null}"#,
            r#"{"status":"approved","id":"a1","approver":7}"#,
            r#"{"status":"approved","id":null}"#,
            r#"{"status":"approved","id":5}"#,
            r#"{"status":"APPROVED","id":"a1"}"#,
            r#"{"status":"maybe","id":"x"}"#,
            r#"{"id":"x"}"#,
            r#"{"status":null}"#,
            r#"[]"#,
            r#""approved""#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                CheckAnswer::read(&value),
                serde_json::from_str::<CheckAnswer>(text).ok(),
                "{text}"
            );
        }
    }
}
