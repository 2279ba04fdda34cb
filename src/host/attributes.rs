//! The request as Envoy sees it, for identity resolution: headers, the JWT payload that the
//! `jwt_authn` filter verified and stored in dynamic metadata, and the TLS peer certificate.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use crate::engine::identity::RequestAttributes;

/// Dynamic-metadata namespace where Envoy's `jwt_authn` filter puts verified payloads.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

pub struct EnvoyRequest;

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

impl RequestAttributes for EnvoyRequest {
    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
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
