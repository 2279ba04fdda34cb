//! The wechat server's resources: fake account data a policy may allow, and a fake secret
//! (`wechat://internal/api-keys`) that a policy would deny.

use rmcp::{
    model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate},
    ErrorData,
};
use serde_json::{json, Value};

/// The account's public profile.
pub const PROFILE_URI: &str = "wechat://account/profile";
/// A saved draft of a welcome message.
pub const WELCOME_DRAFT_URI: &str = "wechat://drafts/welcome";
/// Fake API credentials: what a policy keeps away from agents.
pub const API_KEYS_URI: &str = "wechat://internal/api-keys";
/// Any follower's profile, by OpenID.
pub const FOLLOWER_URI_TEMPLATE: &str = "wechat://followers/{openid}";

const FOLLOWER_URI_PREFIX: &str = "wechat://followers/";
const JSON_MIME: &str = "application/json";

/// Every fixed resource, in list order.
pub fn resources() -> Vec<Resource> {
    vec![
        Resource::new(PROFILE_URI, "account_profile")
            .with_title("Official Account profile")
            .with_description("Name, type and verification of the WeChat Official Account.")
            .with_mime_type(JSON_MIME),
        Resource::new(WELCOME_DRAFT_URI, "welcome_draft")
            .with_title("Welcome message draft")
            .with_description("The draft sent to new followers.")
            .with_mime_type(JSON_MIME),
        Resource::new(API_KEYS_URI, "api_keys")
            .with_title("API credentials")
            .with_description("AppID and AppSecret of the Official Account (internal).")
            .with_mime_type(JSON_MIME),
    ]
}

/// Every resource template, in list order.
pub fn resource_templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(FOLLOWER_URI_TEMPLATE, "follower_profile")
            .with_title("Follower profile")
            .with_description("The basic profile of one follower, by OpenID.")
            .with_mime_type(JSON_MIME),
    ]
}

/// Whether `uri` names a resource this server serves (fixed or from the template).
pub fn exists(uri: &str) -> bool {
    contents_of(uri).is_some()
}

/// The contents of `uri`, or MCP's resource-not-found error.
pub fn read(uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let value = contents_of(uri).ok_or_else(|| not_found(uri))?;
    let contents = ResourceContents::text(value.to_string(), uri).with_mime_type(JSON_MIME);
    Ok(ReadResourceResult::new(vec![contents]))
}

/// MCP's error for a URI the server does not serve.
pub fn not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("resource not found: {uri}"),
        Some(json!({"uri": uri})),
    )
}

fn contents_of(uri: &str) -> Option<Value> {
    match uri {
        PROFILE_URI => Some(profile()),
        WELCOME_DRAFT_URI => Some(welcome_draft()),
        API_KEYS_URI => Some(api_keys()),
        _ => follower_openid(uri).map(follower_profile),
    }
}

fn follower_openid(uri: &str) -> Option<&str> {
    uri.strip_prefix(FOLLOWER_URI_PREFIX)
        .filter(|openid| !openid.is_empty() && !openid.contains('/'))
}

fn profile() -> Value {
    json!({
        "app_id": "wxSample0000000001",
        "nickname": "Sample Official Account",
        "account_type": "service",
        "verified": true,
        "followers": super::wechat::FAKE_FOLLOWERS.len(),
    })
}

fn welcome_draft() -> Value {
    json!({
        "media_id": "draft_sample_welcome",
        "msg_type": "text",
        "title": "Welcome",
        "content": "Thanks for following the Sample Official Account! Reply 1 for news, 2 for help.",
    })
}

fn api_keys() -> Value {
    // Fake, and shaped like the real thing so a leak is easy to recognise in a test.
    json!({
        "app_id": "wxSample0000000001",
        "app_secret": "sample-secret-0123456789abcdef0123456789abcdef",
        "encoding_aes_key": "SampleAesKeyNotRealSampleAesKeyNotRealSamp",
    })
}

fn follower_profile(openid: &str) -> Value {
    json!({
        "subscribe": 1,
        "openid": openid,
        "language": "zh_CN",
        "subscribe_time": 1_700_000_000,
        "tagid_list": [2],
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;

    fn text_of(result: &ReadResourceResult) -> Value {
        match &result.contents[..] {
            [ResourceContents::TextResourceContents { text, .. }] => {
                serde_json::from_str(text).unwrap()
            }
            other => panic!("one text content expected: {other:?}"),
        }
    }

    #[test]
    fn every_listed_resource_can_be_read() {
        for resource in resources() {
            assert!(exists(&resource.uri), "{}", resource.uri);
            assert!(read(&resource.uri).is_ok(), "{}", resource.uri);
        }
        assert!(text_of(&read(API_KEYS_URI).unwrap())["app_secret"].is_string());
    }

    #[test]
    fn the_template_serves_any_openid() {
        let result = read("wechat://followers/oUser_42").unwrap();
        assert_eq!(text_of(&result)["openid"], "oUser_42");
    }

    #[test]
    fn unknown_uris_are_resource_not_found() {
        for uri in [
            "wechat://followers/",
            "wechat://followers/a/b",
            "wechat://account/other",
            "file:///etc/passwd",
        ] {
            assert!(!exists(uri), "{uri}");
            assert_eq!(read(uri).unwrap_err().code, ErrorCode::RESOURCE_NOT_FOUND);
        }
    }
}
