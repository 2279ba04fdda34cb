//! The request as Envoy sees it, for identity resolution: headers, the JWT payload that the
//! `jwt_authn` filter verified and stored in dynamic metadata, and the TLS peer certificate.

use proxy_wasm::hostcalls;

use mcp_policy_engine::policy::identity::RequestAttributes;
use mcp_policy_engine::request::headers::RequestHeaders;

/// Dynamic-metadata namespace where Envoy's `jwt_authn` filter puts verified payloads.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

pub struct EnvoyRequest<'a> {
    /// Already screened: one value per header, valid UTF-8.
    pub headers: &'a RequestHeaders,
}

/// Envoy returns string properties as their bytes, but numbers, booleans and structures in an
/// encoding of its own: only text without control characters is taken as an identity.
fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

impl RequestAttributes for EnvoyRequest<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(str::to_owned)
    }

    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String> {
        let mut property = vec!["metadata", "filter_metadata", JWT_AUTHN, metadata_key];
        property.extend(path.iter().map(String::as_str));
        text(hostcalls::get_property(property).ok().flatten())
    }

    fn peer_uri_san(&self) -> Option<String> {
        text(
            hostcalls::get_property(vec!["connection", "uri_san_peer_certificate"])
                .ok()
                .flatten(),
        )
    }
}
