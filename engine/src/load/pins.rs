//! `pins`: pinned tool definitions.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::values::{
    as_object, as_str, describe, err, key_path, one_of, reject_unknown_fields, Result,
};
use crate::hex::hex;
use crate::policy::pins::{Hints, Pin, PinMode, Pins};
use crate::protocol::definition::push_canonical;

const PINS_FIELDS: &[&str] = &["mode", "tools"];
const PIN_FIELDS: &[&str] = &["sha256", "annotations"];
const MODES: &[&str] = &["enforce", "report", "first_seen"];

/// `pins`, if the policy has them. `document`: the whole policy, whose canonical form names the
/// pins a `first_seen` policy learns (a changed policy learns afresh).
#[cold]
#[inline(never)]
pub(crate) fn pins(root: &Map<String, Value>, document: &Value) -> Result<Option<Pins>> {
    let Some(value) = root.get("pins") else {
        return Ok(None);
    };
    let object = as_object(value, "pins")?;
    reject_unknown_fields(object, "pins", PINS_FIELDS)?;
    let mode = match object.get("mode") {
        None => PinMode::Enforce,
        Some(v) => match one_of(v, "pins.mode", MODES)? {
            "report" => PinMode::Report,
            "first_seen" => PinMode::FirstSeen,
            _ => PinMode::Enforce,
        },
    };
    let tools = match object.get("tools") {
        Some(v) => pinned_tools(v)?,
        None => HashMap::new(),
    };
    if tools.is_empty() && mode != PinMode::FirstSeen {
        return err(
            "pins.tools",
            format!(
                "mode \"{}\" needs at least one pinned tool (`mcp-policy pin URL` prints them); \"first_seen\" learns them instead",
                mode.as_str()
            ),
        );
    }
    Ok(Some(Pins {
        mode,
        tools,
        generation: generation(document),
    }))
}

#[cold]
#[inline(never)]
fn pinned_tools(value: &Value) -> Result<HashMap<String, Pin>> {
    let mut tools = HashMap::new();
    for (name, entry) in as_object(value, "pins.tools")? {
        let path = key_path("pins.tools", name);
        if name.is_empty() {
            return err(&path, "a tool name must not be empty");
        }
        tools.insert(name.clone(), pin(entry, &path)?);
    }
    Ok(tools)
}

#[cold]
#[inline(never)]
fn pin(value: &Value, path: &str) -> Result<Pin> {
    let object = as_object(value, path)?;
    reject_unknown_fields(object, path, PIN_FIELDS)?;
    let sha_path = key_path(path, "sha256");
    let sha256 = match object.get("sha256") {
        Some(v) => as_str(v, &sha_path)?,
        None => {
            return err(
                &sha_path,
                "required: the definition's hash, as `mcp-policy pin` prints it",
            )
        }
    };
    if !is_sha256_tag(sha256) {
        return err(
            &sha_path,
            format!("expected \"sha256:\" and 64 lowercase hex digits, got {sha256:?}"),
        );
    }
    let annotations = object.get("annotations");
    if let Some(a) = annotations {
        if !a.is_object() {
            return err(
                &key_path(path, "annotations"),
                format!(
                    "expected an object (the tool's annotations as listed), got {}",
                    describe(a)
                ),
            );
        }
    }
    Ok(Pin {
        sha256: sha256.to_owned(),
        hints: Hints::from_annotations(annotations),
    })
}

fn is_sha256_tag(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|digits| {
        digits.len() == 64
            && digits
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The first 16 hex digits of the SHA-256 of the policy's canonical JSON.
#[cold]
#[inline(never)]
fn generation(document: &Value) -> String {
    let mut text = String::new();
    push_canonical(&mut text, document);
    let digest = Sha256::digest(text.as_bytes());
    hex(digest.get(..8).unwrap_or_default())
}
