//! Who is calling. The policy lists identity sources in order (a request header, a JWT claim that
//! Envoy's `jwt_authn` already verified, the mTLS peer's URI SAN); the first one present wins.
//! Values from a source marked `secret` (API keys) are never shown in clear: logs and agent-facing
//! messages carry a SHA-256 prefix instead.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

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

/// What happens to a `tools/call` when no source yields an identity.
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
    /// A verified JWT claim as text (strings as they are, other JSON values serialised).
    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String>;
    fn peer_uri_san(&self) -> Option<String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The value as received; used for grant matching and counter keys, never logged if secret.
    pub value: String,
    pub secret: bool,
}

impl Identity {
    pub fn new(value: impl Into<String>) -> Self {
        Identity {
            value: value.into(),
            secret: false,
        }
    }

    /// Safe to log and to show the agent.
    pub fn display(&self) -> String {
        if self.secret {
            format!("sha256:{}", short_sha256(&self.value))
        } else {
            self.value.clone()
        }
    }
}

/// First 16 hex digits of SHA-256: enough to correlate, useless to replay.
pub fn short_sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(16);
    for byte in digest.iter().take(8) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The first source that yields a non-empty value.
pub fn resolve(sources: &[IdentitySource], attributes: &dyn RequestAttributes) -> Option<Identity> {
    sources.iter().find_map(|source| {
        let (value, secret) = match source {
            IdentitySource::Header { name, secret } => (attributes.header(name)?, *secret),
            IdentitySource::JwtClaim { metadata_key, path } => {
                (attributes.jwt_claim(metadata_key, path)?, false)
            }
            IdentitySource::MtlsUriSan => (attributes.peer_uri_san()?, false),
        };
        (!value.is_empty()).then_some(Identity { value, secret })
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::engine::test_support::test;
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
                value: "k-123".into(),
                secret: true
            })
        );
        a.uri_san = Some("spiffe://cluster.local/ns/a/sa/b".into());
        assert_eq!(
            resolve(&sources(), &a).map(|i| i.value),
            Some("spiffe://cluster.local/ns/a/sa/b".into())
        );
        a.claims.insert("jwt_payload/sub".into(), "agent-7".into());
        assert_eq!(resolve(&sources(), &a), Some(Identity::new("agent-7")));
    }

    #[test]
    fn empty_values_do_not_count_and_nothing_means_none() {
        let mut a = Attributes::default();
        a.headers.insert("x-api-key".into(), String::new());
        assert_eq!(resolve(&sources(), &a), None);
    }

    #[test]
    fn secrets_are_shown_hashed() {
        let key = Identity {
            value: "sk-live-abc".into(),
            secret: true,
        };
        assert_eq!(
            key.display(),
            format!("sha256:{}", short_sha256("sk-live-abc"))
        );
        assert!(!key.display().contains("sk-live"));
        assert_eq!(short_sha256("abc"), "ba7816bf8f01cfea");
        assert_eq!(Identity::new("agent-1").display(), "agent-1");
    }
}
