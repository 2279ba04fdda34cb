//! The wechat server's prompts: message templates an agent fills in before a mass send.

use rmcp::{
    model::{
        GetPromptRequestParams, GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage,
        Role,
    },
    ErrorData,
};
use serde_json::Value;

/// Drafts a mass-message campaign; argument `topic` (required).
pub const DRAFT_CAMPAIGN: &str = "draft_campaign";
/// Drafts an apology to followers; argument `reason` (optional).
pub const APOLOGY_NOTICE: &str = "apology_notice";

/// Every prompt, in list order.
pub fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            DRAFT_CAMPAIGN,
            Some("Draft a WeChat mass-message campaign about a topic."),
            Some(vec![PromptArgument::new("topic")
                .with_description("What the campaign is about.")
                .with_required(true)]),
        )
        .with_title("Draft a campaign"),
        Prompt::new(
            APOLOGY_NOTICE,
            Some("Draft an apology notice to all followers."),
            Some(vec![PromptArgument::new("reason")
                .with_description("What went wrong, if it should be named.")
                .with_required(false)]),
        )
        .with_title("Apology notice"),
    ]
}

/// The filled-in prompt `request` asks for; unknown prompts and a missing required argument
/// are the client's error (JSON-RPC -32602), as MCP specifies.
pub fn get(request: &GetPromptRequestParams) -> Result<GetPromptResult, ErrorData> {
    let arguments = request.arguments.as_ref();
    match request.name.as_str() {
        DRAFT_CAMPAIGN => {
            let topic = argument(arguments, "topic").ok_or_else(|| {
                ErrorData::invalid_params("missing required argument `topic`", None)
            })?;
            Ok(user_prompt(
                "A campaign draft",
                format!(
                    "Draft a WeChat Official Account mass message about {topic}: a title, \
                     three short paragraphs and a call to action. Do not send it."
                ),
            ))
        }
        APOLOGY_NOTICE => {
            let cause = argument(arguments, "reason")
                .map(|reason| format!(" for {reason}"))
                .unwrap_or_default();
            Ok(user_prompt(
                "An apology notice",
                format!("Write a short, sincere apology to our followers{cause}."),
            ))
        }
        other => Err(ErrorData::invalid_params(
            format!("prompt not found: {other}"),
            None,
        )),
    }
}

fn argument<'a>(arguments: Option<&'a JsonObject>, name: &str) -> Option<&'a str> {
    arguments?
        .get(name)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

fn user_prompt(description: &str, text: String) -> GetPromptResult {
    GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
        .with_description(description)
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
    use serde_json::json;

    fn request(name: &str, arguments: Value) -> GetPromptRequestParams {
        GetPromptRequestParams::new(name).with_arguments(arguments.as_object().cloned().unwrap())
    }

    fn text(result: &GetPromptResult) -> String {
        result.messages[0].content.as_text().unwrap().text.clone()
    }

    #[test]
    fn prompts_fill_in_their_arguments() {
        let campaign = get(&request(
            DRAFT_CAMPAIGN,
            json!({"topic": "the spring sale"}),
        ))
        .unwrap();
        assert!(text(&campaign).contains("about the spring sale"));
        let apology = get(&request(APOLOGY_NOTICE, json!({"reason": "the outage"}))).unwrap();
        assert!(text(&apology).contains("for the outage"));
        let bare = get(&GetPromptRequestParams::new(APOLOGY_NOTICE)).unwrap();
        assert!(text(&bare).ends_with("followers."));
    }

    #[test]
    fn a_missing_topic_or_an_unknown_prompt_is_invalid_params() {
        let missing = get(&request(DRAFT_CAMPAIGN, json!({}))).unwrap_err();
        assert_eq!(missing.code, ErrorCode::INVALID_PARAMS);
        let unknown = get(&GetPromptRequestParams::new("leak_keys")).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS);
    }

    #[test]
    fn the_listed_arguments_say_which_are_required() {
        let prompts = prompts();
        let required: Vec<_> = prompts
            .iter()
            .map(|p| p.arguments.as_ref().unwrap()[0].required)
            .collect();
        assert_eq!(required, [Some(true), Some(false)]);
    }
}
