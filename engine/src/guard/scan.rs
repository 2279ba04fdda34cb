//! Running detectors over JSON: every string (keys and values) of a document, decoded, and how
//! many matches each detector found. Only names and counts leave here, never what matched.

use serde_json::Value;

use super::detectors::Detectors;
use crate::json::strict;

/// What `detectors` found in the strings of the JSON `text`: (detector, matches), in detector
/// name order. `Err`: the text is not JSON the filter accepts.
pub fn scan_json(detectors: &Detectors, text: &str) -> Result<Vec<(String, u64)>, String> {
    let value = strict::from_slice(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut found: Vec<(String, u64)> = Vec::new();
    scan_value(detectors, &value, &mut found);
    found.sort_unstable();
    Ok(found)
}

/// Add what `detectors` find in the strings of `value` to `found`.
pub fn scan_value(detectors: &Detectors, value: &Value, found: &mut Vec<(String, u64)>) {
    match value {
        Value::String(text) => count(detectors, text, found),
        Value::Array(items) => items.iter().for_each(|v| scan_value(detectors, v, found)),
        Value::Object(map) => {
            for (key, v) in map {
                count(detectors, key, found);
                scan_value(detectors, v, found);
            }
        }
        _ => {}
    }
}

fn count(detectors: &Detectors, text: &str, found: &mut Vec<(String, u64)>) {
    for finding in detectors.find(text) {
        match found.iter_mut().find(|(name, _)| name == finding.detector) {
            Some((_, n)) => *n += 1,
            None => found.push((finding.detector.to_owned(), 1)),
        }
    }
}

/// `what private_key (1) and email (2) found`, for reasons and logs.
pub fn summary(found: &[(String, u64)]) -> String {
    let parts: Vec<String> = found
        .iter()
        .map(|(name, n)| format!("{name} ({n})"))
        .collect();
    format!("what the guard's detectors found: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn strings_and_keys_at_any_depth_are_scanned_and_only_names_come_out() {
        let text = r#"{"note":"key AKIAIOSFODNN7EXAMPLE","to":["a@example.com",{"cc":"b@example.org"}],"n":4111111111111111}"#;
        let found = scan_json(&Detectors::all(), text).unwrap();
        assert_eq!(
            found,
            vec![("aws_access_key".to_owned(), 1), ("email".to_owned(), 2)]
        );
        let said = summary(&found);
        assert!(
            !said.contains("AKIA") && !said.contains("example.com"),
            "{said}"
        );
        assert!(scan_json(&Detectors::all(), "{").is_err());
    }
}
