//! The HTTP side both transports share: one client with a deadline on every network wait, the
//! caller's headers on every request, and statuses, content types and URLs checked the same way.

use std::io::BufReader;
use std::time::Duration;

use ureq::http::{Response, Uri};
use ureq::{Agent, Body, BodyReader};

/// Largest body read whole (a JSON answer); a tool list of a few thousand tools is far below.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// How much of an error response's body a message quotes.
const QUOTED_BODY_CHARS: usize = 300;

pub struct Http {
    agent: Agent,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

impl Http {
    /// Every connection, every write and every read waits at most `timeout`. Redirects are
    /// not followed: a redirect would carry the caller's credentials where the caller did not
    /// point them.
    pub fn new(headers: Vec<(String, String)>, timeout: Duration) -> Http {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .build();
        Http {
            agent: config.into(),
            headers,
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POST `body` as JSON; the whole exchange, answer included, within the timeout.
    pub fn post(
        &self,
        url: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<Response<Body>, String> {
        let mut request = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(self.timeout))
            .build()
            .header("content-type", "application/json");
        for (name, value) in self.all_headers(extra) {
            request = request.header(name, value);
        }
        let response = request
            .send(body)
            .map_err(|e| self.failed("POST", url, &e))?;
        successful("POST", url, response)
    }

    /// GET an event stream that stays open: no deadline on the whole exchange, only on each
    /// read (a silent stream fails after the timeout).
    pub fn get_stream(&self, url: &str) -> Result<Response<Body>, String> {
        let mut request = self.agent.get(url);
        for (name, value) in self.all_headers(&[("accept", "text/event-stream")]) {
            request = request.header(name, value);
        }
        let response = request.call().map_err(|e| self.failed("GET", url, &e))?;
        successful("GET", url, response)
    }

    /// DELETE, within the timeout.
    pub fn delete(&self, url: &str, extra: &[(&str, &str)]) -> Result<(), String> {
        let mut request = self
            .agent
            .delete(url)
            .config()
            .timeout_global(Some(self.timeout))
            .build();
        for (name, value) in self.all_headers(extra) {
            request = request.header(name, value);
        }
        let response = request.call().map_err(|e| self.failed("DELETE", url, &e))?;
        successful("DELETE", url, response).map(drop)
    }

    /// What went wrong, in words: ureq says only which phase of its deadlines ran out.
    fn failed(&self, method: &str, url: &str, error: &ureq::Error) -> String {
        match error {
            ureq::Error::Timeout(_) => {
                format!("{method} {url}: no answer within {:?}", self.timeout)
            }
            other => format!("{method} {url}: {other}"),
        }
    }

    /// The transport's own headers, then the caller's (options refuse caller headers with the
    /// transport's names, so none is sent twice).
    fn all_headers<'a>(
        &'a self,
        extra: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        extra.iter().copied().chain(
            self.headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
    }
}

/// The response when its status is 2xx; otherwise an error quoting the start of its body.
fn successful(method: &str, url: &str, response: Response<Body>) -> Result<Response<Body>, String> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|to| format!(" (redirect to {to}: pin that URL)"))
        .unwrap_or_default();
    let body = read_text(response).unwrap_or_default();
    let quoted: String = body.trim().chars().take(QUOTED_BODY_CHARS).collect();
    let quoted = if quoted.is_empty() {
        quoted
    } else {
        format!(": {quoted}")
    };
    Err(format!("{method} {url}: HTTP {status}{location}{quoted}"))
}

/// The media type of the response (`text/event-stream`), lower case, without parameters.
pub fn media_type(response: &Response<Body>) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A response header's value, when present and text.
pub fn header(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The whole body as text (bounded).
pub fn read_text(response: Response<Body>) -> Result<String, String> {
    response
        .into_body()
        .into_with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()
        .map_err(|e| format!("reading the response: {e}"))
}

/// The body as a buffered stream, for events read as they arrive (each bounded by the SSE
/// reader).
pub fn stream(response: Response<Body>) -> BufReader<BodyReader<'static>> {
    BufReader::new(response.into_body().into_reader())
}

/// Whether `url`'s path names a legacy HTTP+SSE endpoint (ends in `/sse`).
pub fn is_legacy_sse_url(url: &str) -> bool {
    url.parse::<Uri>()
        .map(|uri| uri.path().trim_end_matches('/').ends_with("/sse"))
        .unwrap_or(false)
}

/// `reference` (an absolute URL, or a path relative to `base`) as an absolute URL, refused
/// unless it has `base`'s scheme, host and port: the caller's headers (credentials) go to it.
pub fn resolve_same_origin(base: &str, reference: &str) -> Result<String, String> {
    let base_uri: Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    let (Some(scheme), Some(authority)) = (base_uri.scheme_str(), base_uri.authority()) else {
        return Err(format!("{base}: not an absolute URL"));
    };
    let origin = format!("{scheme}://{authority}");
    let resolved = if reference.contains("://") {
        reference.to_owned()
    } else if let Some(rest) = reference.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if reference.starts_with('/') {
        format!("{origin}{reference}")
    } else if reference.starts_with('?') {
        format!("{origin}{}{reference}", base_uri.path())
    } else {
        let directory = base_uri.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{origin}{directory}/{reference}")
    };
    let resolved_uri: Uri = resolved
        .parse()
        .map_err(|e| format!("endpoint {reference:?}: {e}"))?;
    if origin_of(&resolved_uri) != origin_of(&base_uri) {
        return Err(format!(
            "the server named an endpoint on another origin ({resolved}); refusing to send it \
             the headers meant for {base}"
        ));
    }
    Ok(resolved)
}

/// Scheme, lower-case host and port (the scheme's default when not written).
fn origin_of(uri: &Uri) -> (String, String, Option<u16>) {
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    (scheme, host, uri.port_u16().or(default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_endpoints_are_recognised_by_their_path() {
        assert!(is_legacy_sse_url("http://127.0.0.1:8000/sse"));
        assert!(is_legacy_sse_url("https://example.com/tools/sse/?x=1"));
        assert!(!is_legacy_sse_url("http://127.0.0.1:8000/mcp"));
        assert!(!is_legacy_sse_url("http://127.0.0.1:8000/mcp?via=/sse"));
        assert!(!is_legacy_sse_url("http://127.0.0.1:8000/assets"));
    }

    #[test]
    fn endpoints_resolve_against_the_stream_url() {
        let base = "http://127.0.0.1:8000/a/sse?key=1";
        for (reference, expected) in [
            (
                "/messages/?session_id=ab",
                "http://127.0.0.1:8000/messages/?session_id=ab",
            ),
            ("messages?s=1", "http://127.0.0.1:8000/a/messages?s=1"),
            ("?s=1", "http://127.0.0.1:8000/a/sse?s=1"),
            ("http://127.0.0.1:8000/m", "http://127.0.0.1:8000/m"),
            ("//127.0.0.1:8000/m", "http://127.0.0.1:8000/m"),
            ("HTTP://127.0.0.1:8000/m", "HTTP://127.0.0.1:8000/m"),
        ] {
            assert_eq!(
                resolve_same_origin(base, reference).as_deref(),
                Ok(expected),
                "{reference}"
            );
        }
        assert_eq!(
            resolve_same_origin("http://example.com/sse", "http://example.com:80/m").as_deref(),
            Ok("http://example.com:80/m")
        );
    }

    #[test]
    fn endpoints_on_another_origin_are_refused() {
        let base = "http://127.0.0.1:8000/sse";
        for reference in [
            "http://evil.example/messages",
            "https://127.0.0.1:8000/messages",
            "http://127.0.0.1:8001/messages",
            "//evil.example/messages",
        ] {
            let error = resolve_same_origin(base, reference).unwrap_err();
            assert!(error.contains("another origin"), "{reference}: {error}");
        }
    }
}
