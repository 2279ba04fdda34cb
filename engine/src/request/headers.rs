//! What the request headers allow before any body is read. Only POST carries MCP messages; the
//! headers the filter relies on must be unambiguous (one value each, valid UTF-8) and the body
//! must be something the filter reads exactly as the server will: JSON in UTF-8, uncompressed.

use crate::policy::identity::IdentitySource;
use crate::policy::Policy;
use crate::reply::{self, Reply};

/// The request headers the filter uses, each present at most once, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    values: Vec<(String, String)>,
}

impl RequestHeaders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The session of a POST to the legacy HTTP+SSE transport's message endpoint
    /// (`/messages?sessionId=…`, or `session_id` as the Python SDK names it): the call's answer
    /// goes to that session's SSE stream, not to this response.
    pub fn legacy_session(&self) -> Option<&str> {
        self.get(LEGACY_SESSION)
    }
}

/// Where `RequestHeaders` keeps the legacy transport's session id; a client cannot send a header
/// with this name (names starting with `:` are HTTP/2 pseudo-headers).
const LEGACY_SESSION: &str = ":legacy-session";
/// Compared without regard to case: the TypeScript SDK writes `sessionId`, the Python SDK
/// `session_id`, the Go SDK `sessionid`.
const LEGACY_SESSION_PARAMS: [&str; 2] = ["sessionid", "session_id"];

/// The legacy session id in a request path's query; an error if it is given more than once.
fn legacy_session_of(path: &str) -> Result<Option<String>, String> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut found: Option<String> = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Servers decode the query (`session%5Fid=%61bc` is `session_id=abc`): so must we, or
        // one session could be counted under several spellings of its id.
        // A key that does not decode cannot name the session parameter.
        let Ok(key) = form_decode(key) else {
            continue;
        };
        if LEGACY_SESSION_PARAMS.contains(&key.to_ascii_lowercase().as_str()) {
            if found.is_some() {
                return Err(
                    "the session id is given more than once in the query (sessionId / session_id, in any case)"
                        .to_owned(),
                );
            }
            found = Some(form_decode(value)?);
        }
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` decoding of one query component, as servers' query
/// parsers do it: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn form_decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest
                    .get(..2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("the query holds a malformed escape in {text:?}"))?;
                bytes.push(hex);
                rest = rest.get(2..).unwrap_or_default();
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("the query component {text:?} is not UTF-8"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screening {
    /// A POST: hold it and decide on its body, with these headers.
    Inspect(RequestHeaders),
    /// Not an MCP message (GET stream, DELETE, …): let it through untouched.
    Pass,
    /// Answer now; nothing goes upstream.
    Refuse(Reply),
}

/// Request headers taken off a POST the filter decides, before it goes upstream:
/// - `accept-encoding`: the answer is read (to refund a failed call, to filter a tools/list),
///   so the server must not compress it;
/// - Envoy's own retry and timeout overrides: a charge is for one run of the call, and a client
///   must not make Envoy run it again (retries) or give up early (a timeout commits what the
///   call took, but the retry after it would run the call again for one charge). A route's own
///   `retry_policy` and timeouts are the operator's, and stay.
pub const REMOVED_FROM_DECIDED_POSTS: [&str; 10] = [
    "accept-encoding",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Which of `REMOVED_FROM_DECIDED_POSTS` the request carries (lower-case names, as Envoy gives
/// them), each once.
pub fn to_remove<'a>(headers: &[(&str, &[u8])]) -> Vec<&'a str> {
    REMOVED_FROM_DECIDED_POSTS
        .iter()
        .copied()
        .filter(|removed| headers.iter().any(|(name, _)| name == removed))
        .collect()
}

const MCP_HEADERS: [&str; 3] = ["mcp-session-id", "mcp-method", "mcp-name"];
const BODY_HEADERS: [&str; 3] = ["content-type", "content-encoding", "content-length"];

fn relevant(policy: &Policy, name: &str) -> bool {
    MCP_HEADERS.contains(&name)
        || BODY_HEADERS.contains(&name)
        || policy
            .identity_sources
            .iter()
            .any(|s| matches!(s, IdentitySource::Header { name: n, .. } if n == name))
}

/// `headers` as Envoy hands them over (lower-case names, raw values); `has_body` is false when
/// the headers end the request.
pub fn screen(
    policy: &Policy,
    method: &str,
    headers: &[(&str, &[u8])],
    has_body: bool,
) -> Screening {
    if method != "POST" {
        if has_body {
            return Screening::Refuse(reply::refused_request(
                405,
                format!("only POST requests carry MCP messages; a {method} request with a body is not accepted"),
            ));
        }
        return Screening::Pass;
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for &(name, raw) in headers.iter().filter(|(n, _)| relevant(policy, n)) {
        if values.iter().any(|(n, _)| n == name) {
            // Proxies and servers disagree on which of several values counts.
            return Screening::Refuse(reply::refused_request(
                400,
                format!("header {name} appears more than once"),
            ));
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            return Screening::Refuse(reply::refused_request(
                400,
                format!("header {name} is not valid UTF-8"),
            ));
        };
        values.push((name.to_owned(), text.to_owned()));
    }
    let path = headers
        .iter()
        .find(|(n, _)| *n == ":path")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .unwrap_or_default();
    match legacy_session_of(path) {
        Err(problem) => return Screening::Refuse(reply::refused_request(400, problem)),
        Ok(Some(_)) if values.iter().any(|(n, _)| n == "mcp-session-id") => {
            return Screening::Refuse(reply::refused_request(
                400,
                "a request to the legacy message endpoint must not also carry Mcp-Session-Id"
                    .into(),
            ))
        }
        Ok(Some(session)) => values.push((LEGACY_SESSION.to_owned(), session)),
        Ok(None) => {}
    }
    let headers = RequestHeaders { values };

    if let Some(encoding) = headers.get("content-encoding").map(str::trim) {
        if !encoding.eq_ignore_ascii_case("identity") {
            return Screening::Refuse(reply::refused_request(
                415,
                format!("content-encoding {encoding:?} is not accepted: request bodies are inspected uncompressed"),
            ));
        }
    }
    if !is_utf8_json(headers.get("content-type")) {
        return Screening::Refuse(reply::refused_request(
            415,
            format!(
                "content-type must be application/json (UTF-8), got {:?}",
                headers.get("content-type").unwrap_or("nothing")
            ),
        ));
    }
    let declared = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > policy.max_body_bytes) {
        return Screening::Refuse(reply::too_large(policy.max_body_bytes));
    }
    Screening::Inspect(headers)
}

/// `application/json`, optionally with `charset=utf-8`: any other charset would let the server
/// decode different text than the filter read (UTF-7 can hide a method name).
fn is_utf8_json(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| {
        let (key, val) = param.split_once('=').unwrap_or((param, ""));
        !key.trim().eq_ignore_ascii_case("charset")
            || val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::test;

    fn policy() -> Policy {
        load_policy(br#"{"version":"1","max_body_bytes":100,"identity":{"sources":[{"header":"x-agent-id"},{"header":"x-api-key","secret":true}]}}"#).unwrap()
    }

    fn headers<'a>(list: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
        list.to_vec()
    }

    const JSON: (&str, &[u8]) = ("content-type", b"application/json");

    fn refused_status(screening: Screening) -> u16 {
        match screening {
            Screening::Refuse(reply) => reply.status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn encodings_and_envoy_retry_and_timeout_overrides_are_taken_off() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("accept", b"application/json"),
            ("x-envoy-retry-on", b"5xx"),
            ("accept-encoding", b"gzip"),
            ("x-envoy-max-retries", b"3"),
            ("x-envoy-retry-on", b"reset"),
            ("x-envoy-upstream-rq-timeout-ms", b"1"),
            ("x-envoy-original-path", b"/x"),
        ];
        assert_eq!(
            to_remove(&headers),
            vec![
                "accept-encoding",
                "x-envoy-retry-on",
                "x-envoy-max-retries",
                "x-envoy-upstream-rq-timeout-ms"
            ]
        );
        assert!(to_remove(&[("content-type", b"application/json")]).is_empty());
    }

    #[test]
    fn a_post_is_inspected_with_its_headers() {
        let h = headers(&[
            JSON,
            ("x-agent-id", b"a"),
            ("mcp-session-id", b"s"),
            ("user-agent", b"\xff"),
        ]);
        let Screening::Inspect(got) = screen(&policy(), "POST", &h, true) else {
            panic!()
        };
        assert_eq!(
            (got.get("x-agent-id"), got.get("mcp-session-id")),
            (Some("a"), Some("s"))
        );
        // Headers the filter does not use are not its business, whatever their bytes.
        assert_eq!(got.get("user-agent"), None);
    }

    #[test]
    fn other_methods_pass_unless_they_carry_a_body() {
        assert_eq!(screen(&policy(), "GET", &[], false), Screening::Pass);
        assert_eq!(
            screen(
                &policy(),
                "DELETE",
                &headers(&[("mcp-session-id", b"s")]),
                false
            ),
            Screening::Pass
        );
        for method in ["PUT", "PATCH", "GET", "DELETE"] {
            assert_eq!(
                refused_status(screen(&policy(), method, &headers(&[JSON]), true)),
                405,
                "{method}"
            );
        }
    }

    #[test]
    fn ambiguous_or_undecodable_headers_are_refused() {
        let twice = headers(&[JSON, ("x-agent-id", b"a"), ("x-agent-id", b"b")]);
        assert_eq!(refused_status(screen(&policy(), "POST", &twice, true)), 400);
        let binary = headers(&[JSON, ("x-api-key", b"\xff\xfe")]);
        assert_eq!(
            refused_status(screen(&policy(), "POST", &binary, true)),
            400
        );
        let two_methods = headers(&[
            JSON,
            ("mcp-method", b"tools/list"),
            ("mcp-method", b"tools/call"),
        ]);
        assert_eq!(
            refused_status(screen(&policy(), "POST", &two_methods, true)),
            400
        );
    }

    #[test]
    fn only_uncompressed_utf8_json_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
            "application/json; foo=bar",
        ] {
            assert!(
                matches!(
                    screen(
                        &policy(),
                        "POST",
                        &headers(&[("content-type", ok.as_bytes())]),
                        true
                    ),
                    Screening::Inspect(_)
                ),
                "{ok}"
            );
        }
        for bad in [
            "application/json; charset=utf-7",
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
        ] {
            assert_eq!(
                refused_status(screen(
                    &policy(),
                    "POST",
                    &headers(&[("content-type", bad.as_bytes())]),
                    true
                )),
                415,
                "{bad}"
            );
        }
        assert_eq!(
            refused_status(screen(&policy(), "POST", &[], true)),
            415,
            "missing content-type"
        );
        let gzip = headers(&[JSON, ("content-encoding", b"gzip")]);
        assert_eq!(refused_status(screen(&policy(), "POST", &gzip, true)), 415);
        let identity = headers(&[JSON, ("content-encoding", b"identity")]);
        assert!(matches!(
            screen(&policy(), "POST", &identity, true),
            Screening::Inspect(_)
        ));
    }

    #[test]
    fn the_legacy_transport_session_comes_from_the_query() {
        let post = |path: &str, extra: &[(&str, &[u8])]| {
            let mut list = vec![JSON, (":path", path.as_bytes())];
            list.extend_from_slice(extra);
            screen(&policy(), "POST", &headers(&list), true)
        };
        for (path, session) in [
            ("/messages?sessionId=abc", Some("abc")),
            ("/messages/?session_id=0f9e&x=1", Some("0f9e")),
            ("/mcp", None),
            ("/mcp?sessionIdx=1", None),
        ] {
            let Screening::Inspect(got) = post(path, &[]) else {
                panic!("{path}")
            };
            assert_eq!(got.legacy_session(), session, "{path}");
        }
        assert_eq!(
            refused_status(post("/messages?sessionId=a&session_id=b", &[])),
            400
        );
        // Spelled with escapes, it is the same session (and the same parameter) to the server.
        for path in [
            "/messages?session_id=%61bc",
            "/messages?session%5Fid=abc",
            "/m?sessionId=a%62c",
        ] {
            let Screening::Inspect(got) = post(path, &[]) else {
                panic!("{path}")
            };
            assert_eq!(got.legacy_session(), Some("abc"), "{path}");
        }
        for twice in [
            "/messages?session_id=a&session%5Fid=b",
            "/messages?sessionId=a&sessionid=b",
        ] {
            assert_eq!(refused_status(post(twice, &[])), 400, "{twice}");
        }
        for malformed in ["/m?session_id=%zz", "/m?session_id=%6", "/m?session_id=%ff"] {
            assert_eq!(refused_status(post(malformed, &[])), 400, "{malformed}");
        }
        assert_eq!(
            refused_status(post("/messages?sessionId=a", &[("mcp-session-id", b"a")])),
            400
        );
        // A client cannot smuggle the legacy session in as a header of that name.
        let smuggled = headers(&[JSON, (":legacy-session", b"x")]);
        let Screening::Inspect(got) = screen(&policy(), "POST", &smuggled, true) else {
            panic!()
        };
        assert_eq!(got.legacy_session(), None);
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let big = headers(&[JSON, ("content-length", b"101")]);
        assert_eq!(refused_status(screen(&policy(), "POST", &big, true)), 413);
        let fine = headers(&[JSON, ("content-length", b"100")]);
        assert!(matches!(
            screen(&policy(), "POST", &fine, true),
            Screening::Inspect(_)
        ));
    }
}
