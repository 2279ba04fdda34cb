//! `envoy/envoy.yaml` is a template: `${NAME}` placeholders for ports, the .wasm path and the
//! policies. Envoy has no include mechanism, so each policy file is inlined as a JSON string
//! (which is also a valid YAML double-quoted scalar).

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct EnvoyTemplate {
    values: BTreeMap<String, String>,
}

impl EnvoyTemplate {
    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.values.insert(name.to_owned(), value.to_string());
        self
    }

    /// Inline a policy document as the quoted string the Wasm `configuration` expects.
    pub fn set_policy(&mut self, name: &str, policy_text: &str) -> &mut Self {
        let quoted = serde_json::Value::String(policy_text.to_owned()).to_string();
        self.values.insert(name.to_owned(), quoted);
        self
    }

    pub fn set_policy_file(&mut self, name: &str, path: &Path) -> Result<&mut Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(self.set_policy(name, &text))
    }

    pub fn render(&self, template: &str) -> Result<String, String> {
        render(template, &self.values)
    }
}

/// Replace every `${NAME}` outside comment lines; an unknown placeholder is an error, never
/// left for Envoy to trip on.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            render_line(line, values, &mut out)?;
        }
    }
    Ok(out)
}

fn render_line(
    line: &str,
    values: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in template line {line:?}"))?;
        let name = &after[..end];
        let value = values
            .get(name)
            .ok_or_else(|| format!("template placeholder ${{{name}}} has no value"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Render the per-server filter configuration (`envoy/policy-filter.yaml`) into
/// `dir/<server>.yaml`. Written to a temporary file and renamed into place: Envoy watches the
/// directory and reloads on the rename, never seeing a half-written file.
pub fn write_filter_config(
    template: &str,
    dir: &Path,
    server: &str,
    artifact: &Path,
    policy_text: &str,
) -> Result<(), String> {
    let rendered = EnvoyTemplate::default()
        .set("SERVER", server)
        .set("FILTER_PATH", artifact.display())
        .set_policy("POLICY", policy_text)
        .render(template)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let staging = dir.join(format!(".{server}.yaml.next"));
    std::fs::write(&staging, rendered).map_err(|e| format!("{}: {e}", staging.display()))?;
    let target = dir.join(format!("{server}.yaml"));
    std::fs::rename(&staging, &target).map_err(|e| format!("{}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_policies_quoted() {
        let mut t = EnvoyTemplate::default();
        t.set("PORT", 10000)
            .set_policy("POLICY", "{\"version\": \"1\"}\n");
        let out = t.render("port: ${PORT}\nvalue: ${POLICY}\n").unwrap();
        assert_eq!(
            out,
            "port: 10000\nvalue: \"{\\\"version\\\": \\\"1\\\"}\\n\"\n"
        );
    }

    #[test]
    fn comment_lines_are_left_alone() {
        assert_eq!(
            EnvoyTemplate::default()
                .render("# uses ${NAME}\nx: 1\n")
                .unwrap(),
            "# uses ${NAME}\nx: 1\n"
        );
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert!(EnvoyTemplate::default()
            .render("x: ${NOPE}")
            .unwrap_err()
            .contains("NOPE"));
    }
}
