//! Filtering listings: a `tools/list`, `resources/list`, `resources/templates/list` or
//! `prompts/list` answer loses the entries the caller could never use, so agents do not spend
//! turns and context on them. Tools are judged by `tools_list`; resources (templates matched as
//! plain text, `{…}` included) and prompts by the `resources` and `prompts` blocks. Works on a
//! JSON body and, event by event as it streams, on an SSE body.

use serde_json::Value;

use super::tools_list;
use crate::policy::caller::Caller;
use crate::policy::Policy;
use crate::protocol::jsonrpc::same_id;
use crate::protocol::listing::{Listing, ListingKind};
use crate::request::targets::may_list;

/// If `message` answers one of `listings` (matched by id), drop the entries the caller may not
/// use. Returns the rewritten message, or `None` when nothing changes.
pub fn filter_message(
    policy: &Policy,
    caller: &Caller,
    listings: &[Listing],
    message: &Value,
) -> Option<Value> {
    let id = message.get("id")?;
    let listing = listings.iter().find(|l| same_id(&l.id, id))?;
    if listing.kind == ListingKind::Tools {
        return tools_list::filter_message(
            policy,
            caller,
            std::slice::from_ref(&listing.id),
            message,
        );
    }
    let (entries, name) = (listing.kind.entries(), listing.kind.name());
    let listed = message.get("result")?.get(entries)?.as_array()?;
    let kept: Vec<Value> = listed
        .iter()
        .filter(|entry| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .is_none_or(|name| may_list(policy, caller, listing.kind, name))
        })
        .cloned()
        .collect();
    if kept.len() == listed.len() {
        return None;
    }
    let mut rewritten = message.clone();
    if let Some(result) = rewritten.get_mut("result").and_then(Value::as_object_mut) {
        result.insert(entries.to_owned(), Value::Array(kept));
    }
    Some(rewritten)
}

/// Filter a whole JSON body (one message or a batch). `None` when nothing changes.
pub fn filter_json_body(
    policy: &Policy,
    caller: &Caller,
    listings: &[Listing],
    body: &[u8],
) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let rewritten = match &value {
        Value::Array(items) => {
            let mut changed = false;
            let items: Vec<Value> = items
                .iter()
                .map(|m| match filter_message(policy, caller, listings, m) {
                    Some(new) => {
                        changed = true;
                        new
                    }
                    None => m.clone(),
                })
                .collect();
            changed.then_some(Value::Array(items))?
        }
        single => filter_message(policy, caller, listings, single)?,
    };
    Some(rewritten.to_string().into_bytes())
}
