//! Which build of the filter a deployment runs: the portable `.wasm` (proxy-wasm, any Envoy,
//! Istio) or the native Envoy dynamic module. `FILTER_BUILD=wasm|native` picks it for `make run`
//! and the end-to-end tests; both read the same policy and behave the same.

use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterBuild {
    Wasm,
    Native,
}

impl FilterBuild {
    /// `FILTER_BUILD` from the environment; the `.wasm` when unset.
    pub fn from_env() -> Result<FilterBuild, String> {
        match std::env::var("FILTER_BUILD") {
            Ok(value) => FilterBuild::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(FilterBuild::Wasm),
            Err(e) => Err(format!("FILTER_BUILD: {e}")),
        }
    }

    pub fn parse(value: &str) -> Result<FilterBuild, String> {
        match value {
            "" | "wasm" => Ok(FilterBuild::Wasm),
            "native" => Ok(FilterBuild::Native),
            other => Err(format!("FILTER_BUILD={other}: expected wasm or native")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "wasm",
            FilterBuild::Native => "native",
        }
    }

    /// Where `make build` puts this build's artefact, relative to the repository.
    pub fn default_artifact(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "dist/mcp_policy_filter.wasm",
            FilterBuild::Native => "dist/libmcp_policy_native.so",
        }
    }

    /// The per-server filter configuration template in `envoy/` (delivered by ECDS).
    pub fn filter_template(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "policy-filter.yaml",
            FilterBuild::Native => "policy-filter-native.yaml",
        }
    }

    /// The filter state key the audit record is kept under, for the access log's
    /// `%FILTER_STATE(key:PLAIN)%` (Envoy prefixes a Wasm filter's keys with `wasm.`).
    pub fn audit_key(self) -> &'static str {
        match self {
            FilterBuild::Wasm => "wasm.mcp_policy_audit",
            FilterBuild::Native => "mcp_policy_audit",
        }
    }

    /// An `http_filters` entry for filter instance `name` with `policy` (flow style, so it fits
    /// at any indentation), configured as the `envoy/` templates configure it.
    pub fn filter_entry(self, name: &str, artifact: &Path, policy: &str) -> String {
        let policy = Value::String(policy.to_owned());
        let artifact = artifact.display();
        match self {
            FilterBuild::Wasm => format!(
                r#"- {{ name: mcp-policy.{name}, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm, config: {{ name: {name}, vm_config: {{ vm_id: mcp-policy, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{artifact}" }} }} }}, configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: {policy} }}, allow_on_headers_stop_iteration: true, failure_policy: FAIL_RELOAD }} }} }}"#
            ),
            FilterBuild::Native => format!(
                r#"- {{ name: mcp-policy.{name}, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter, dynamic_module_config: {{ module: {{ local: {{ filename: "{artifact}" }} }}, do_not_close: true }}, filter_name: {name}, filter_config: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: {policy} }} }} }}"#
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_by_name() {
        assert_eq!(FilterBuild::parse("native"), Ok(FilterBuild::Native));
        assert_eq!(FilterBuild::parse("wasm"), Ok(FilterBuild::Wasm));
        assert!(FilterBuild::parse("nativ").is_err());
    }

    #[test]
    fn entries_are_yaml_with_the_policy_quoted() {
        for build in [FilterBuild::Wasm, FilterBuild::Native] {
            let entry = build.filter_entry("wechat", Path::new("/x/a b"), r#"{"version":"1"}"#);
            assert!(entry.contains(r#"value: "{\"version\":\"1\"}""#), "{entry}");
            assert!(entry.contains("name: mcp-policy.wechat"), "{entry}");
        }
    }
}
