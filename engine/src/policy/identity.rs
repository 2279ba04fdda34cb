//! Who is calling. The policy lists identity sources in order (a request header, a JWT claim that
//! Envoy's `jwt_authn` already verified, the mTLS peer's URI SAN); the first one present wins.
//! Values from a source marked `secret` (API keys) are never shown in clear: logs and agent-facing
//! messages carry a SHA-256 prefix instead.

use sha2::{Digest, Sha256};

use crate::hex::push_hex;

/// Where an identity may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header (lower-case name).
    Header { name: String, secret: bool },
    /// A claim of the JWT payload that `jwt_authn` put in dynamic metadata
    /// (`envoy.filters.http.jwt_authn` / `metadata_key`), as a path of object keys.
    JwtClaim {
        metadata_key: String,
        path: Vec<String>,
    },
    /// The URI SAN of the client certificate (a SPIFFE ID in Istio meshes).
    MtlsUriSan,
}

impl IdentitySource {
    pub fn describe(&self) -> String {
        match self {
            IdentitySource::Header { name, .. } => format!("header {name}"),
            IdentitySource::JwtClaim { path, .. } => format!("JWT claim {}", path.join(".")),
            IdentitySource::MtlsUriSan => "mTLS peer URI SAN".to_owned(),
        }
    }
}

/// Why a caller without identity is refused under `missing: deny`, naming every source.
pub fn missing_reason(sources: &[IdentitySource]) -> String {
    let expected: Vec<String> = sources.iter().map(IdentitySource::describe).collect();
    format!(
        "the caller has no identity (expected {})",
        expected.join(" or ")
    )
}

/// What happens to a decided request (a `tools/call`, or what a `resources`, `prompts` or
/// `methods` block decides) when no source yields an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingIdentity {
    /// Callers without identity share one "anonymous" identity.
    Anonymous,
    /// Their tool calls are denied, with a reason saying which identity was expected.
    Deny,
}

/// The host's view of a request, for identity resolution.
pub trait RequestAttributes {
    fn header(&self, name: &str) -> Option<String>;
    /// A verified JWT claim, when it is a string.
    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String>;
    fn peer_uri_san(&self) -> Option<String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// What grants are matched against: the value as received, or for a secret source
    /// `sha256:<64 hex digits>` of it (the raw secret is not kept).
    pub value: String,
    pub secret: bool,
    /// Which source produced it (`header:x-api-key`, `jwt`, `mtls`): part of counter keys, so equal
    /// values from different sources never share a budget.
    pub source: String,
}

impl Identity {
    /// A plain identity from a header source named `x-agent-id` (tests and examples).
    pub fn new(value: impl Into<String>) -> Self {
        Identity {
            value: value.into(),
            secret: false,
            source: "header:x-agent-id".to_owned(),
        }
    }

    fn from_source(source: &IdentitySource, value: String) -> Self {
        match source {
            IdentitySource::Header { name, secret: true } => Identity {
                value: sha256_tag(&value),
                secret: true,
                source: format!("header:{name}"),
            },
            IdentitySource::Header {
                name,
                secret: false,
            } => Identity {
                value,
                secret: false,
                source: format!("header:{name}"),
            },
            IdentitySource::JwtClaim { .. } => Identity {
                value,
                secret: false,
                source: "jwt".to_owned(),
            },
            IdentitySource::MtlsUriSan => Identity {
                value,
                secret: false,
                source: "mtls".to_owned(),
            },
        }
    }

    /// Safe to log and to show the agent: secrets are cut to a 16-digit hash prefix.
    pub fn display(&self) -> String {
        self.shown().to_owned()
    }

    /// What `display` shows, borrowed.
    pub fn shown(&self) -> &str {
        if !self.secret {
            return &self.value;
        }
        let end = self
            .value
            .char_indices()
            .nth("sha256:".len() + 16)
            .map_or(self.value.len(), |(at, _)| at);
        self.value.get(..end).unwrap_or(&self.value)
    }
}

/// `sha256:` and the 64 hex digits of SHA-256: how secret identities are listed in grants
/// (`mcp-policy hash VALUE` prints it).
pub fn sha256_tag(text: &str) -> String {
    let mut out = String::with_capacity(7 + 64);
    push_sha256_tag(&mut out, text);
    out
}

/// Append what `sha256_tag` returns.
pub fn push_sha256_tag(out: &mut String, text: &str) {
    let digest = Sha256::digest(text.as_bytes());
    out.push_str("sha256:");
    push_hex(out, &digest);
}

/// The first source that yields a non-empty value.
pub fn resolve(sources: &[IdentitySource], attributes: &dyn RequestAttributes) -> Option<Identity> {
    sources.iter().find_map(|source| {
        let value = match source {
            IdentitySource::Header { name, .. } => attributes.header(name)?,
            IdentitySource::JwtClaim { metadata_key, path } => {
                attributes.jwt_claim(metadata_key, path)?
            }
            IdentitySource::MtlsUriSan => attributes.peer_uri_san()?,
        };
        (!value.is_empty()).then(|| Identity::from_source(source, value))
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::test_support::test;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct Attributes {
        pub headers: HashMap<String, String>,
        pub claims: HashMap<String, String>,
        pub uri_san: Option<String>,
    }

    impl RequestAttributes for Attributes {
        fn header(&self, name: &str) -> Option<String> {
            self.headers.get(name).cloned()
        }
        fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String> {
            self.claims
                .get(&format!("{metadata_key}/{}", path.join(".")))
                .cloned()
        }
        fn peer_uri_san(&self) -> Option<String> {
            self.uri_san.clone()
        }
    }

    fn sources() -> Vec<IdentitySource> {
        vec![
            IdentitySource::JwtClaim {
                metadata_key: "jwt_payload".into(),
                path: vec!["sub".into()],
            },
            IdentitySource::MtlsUriSan,
            IdentitySource::Header {
                name: "x-api-key".into(),
                secret: true,
            },
        ]
    }

    #[test]
    fn the_first_present_source_wins() {
        let mut a = Attributes::default();
        a.headers.insert("x-api-key".into(), "k-123".into());
        assert_eq!(
            resolve(&sources(), &a),
            Some(Identity {
                value: sha256_tag("k-123"),
                secret: true,
                source: "header:x-api-key".into()
            })
        );
        a.uri_san = Some("spiffe://cluster.local/ns/a/sa/b".into());
        assert_eq!(
            resolve(&sources(), &a).map(|i| i.value),
            Some("spiffe://cluster.local/ns/a/sa/b".into())
        );
        a.claims.insert("jwt_payload/sub".into(), "agent-7".into());
        assert_eq!(
            resolve(&sources(), &a),
            Some(Identity {
                value: "agent-7".into(),
                secret: false,
                source: "jwt".into()
            })
        );
    }

    #[test]
    fn empty_values_do_not_count_and_nothing_means_none() {
        let mut a = Attributes::default();
        a.headers.insert("x-api-key".into(), String::new());
        assert_eq!(resolve(&sources(), &a), None);
    }

    #[test]
    fn shown_is_the_first_23_characters_of_a_secret_and_all_of_anything_else() {
        for value in [
            "",
            "short",
            "sha256:0123456789abcdef0123",
            "é漢字".repeat(12).as_str(),
        ] {
            for secret in [true, false] {
                let identity = Identity {
                    value: value.to_owned(),
                    secret,
                    source: "header:x".into(),
                };
                let expected: String = if secret {
                    value.chars().take(23).collect()
                } else {
                    value.to_owned()
                };
                assert_eq!(identity.shown(), expected);
                assert_eq!(identity.display(), expected);
            }
        }
        let mut tag = "x".to_owned();
        push_sha256_tag(&mut tag, "abc");
        assert_eq!(tag, format!("x{}", sha256_tag("abc")));
    }

    #[test]
    fn secrets_are_kept_and_shown_only_hashed() {
        let mut a = Attributes::default();
        a.headers.insert("x-api-key".into(), "sk-live-abc".into());
        let key = resolve(&sources(), &a).unwrap();
        assert_eq!(key.value, sha256_tag("sk-live-abc"));
        assert_eq!(key.value.len(), 7 + 64);
        assert_eq!(key.display(), key.value[..23]);
        assert!(!format!("{key:?}").contains("sk-live"));
        assert_eq!(
            sha256_tag("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Identity::new("agent-1").display(), "agent-1");
    }

    #[test]
    fn equal_values_from_different_sources_are_different_identities() {
        let mut a = Attributes::default();
        a.headers.insert("x-api-key".into(), "alice".into());
        let from_header = resolve(&sources(), &a).unwrap();
        a.claims.insert("jwt_payload/sub".into(), "alice".into());
        let from_jwt = resolve(&sources(), &a).unwrap();
        assert_eq!(from_header.source, "header:x-api-key");
        assert_eq!(
            (from_jwt.source.as_str(), from_jwt.value.as_str()),
            ("jwt", "alice")
        );
        assert_ne!(from_header, from_jwt);
    }
}
