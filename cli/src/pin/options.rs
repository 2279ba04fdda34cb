//! The command line of `mcp-policy pin`.

use std::time::Duration;

use ureq::http::{HeaderName, HeaderValue};

pub const USAGE: &str = "mcp-policy pin URL [--header NAME:VALUE]... \
     [--mode enforce|report|first_seen] [--transport http|sse] [--timeout SECONDS]";

/// Headers each transport sets itself; a caller's would be sent twice or break the exchange.
const TRANSPORT_HEADERS: [&str; 6] = [
    "accept",
    "content-type",
    "content-length",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
];

const MODES: [&str; 3] = ["enforce", "report", "first_seen"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05).
    LegacySse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub mode: String,
    /// `None`: chosen from the URL.
    pub transport: Option<TransportKind>,
    pub timeout: Duration,
}

/// Parse the arguments after `pin`.
pub fn parse(args: &[&str]) -> Result<Options, String> {
    let mut url = None;
    let mut options = Options {
        url: String::new(),
        headers: Vec::new(),
        mode: "enforce".to_owned(),
        transport: None,
        timeout: Duration::from_secs(10),
    };
    let mut it = args.iter().copied();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            if url.replace(arg).is_some() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg {
            "--header" => options.headers.push(header(value)?),
            "--mode" => options.mode = mode(value)?,
            "--transport" => options.transport = Some(transport(value)?),
            "--timeout" => options.timeout = timeout(value)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    options.url = url.ok_or("the server's URL is missing")?.to_owned();
    if !(options.url.starts_with("http://") || options.url.starts_with("https://")) {
        return Err(format!("{}: not an http:// or https:// URL", options.url));
    }
    Ok(options)
}

/// `NAME:VALUE`, the value trimmed, both valid in HTTP.
fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header {text:?}: expected NAME:VALUE"))?;
    let (name, value) = (name.trim(), value.trim());
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("--header {text:?}: {name:?} is not a header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("--header {text:?}: the value is not a valid header value"))?;
    if TRANSPORT_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("--header {name}: set by the transport itself"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn mode(text: &str) -> Result<String, String> {
    if MODES.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "--mode {text:?}: expected enforce, report or first_seen"
        ))
    }
}

fn transport(text: &str) -> Result<TransportKind, String> {
    match text {
        "http" => Ok(TransportKind::StreamableHttp),
        "sse" => Ok(TransportKind::LegacySse),
        _ => Err(format!("--transport {text:?}: expected http or sse")),
    }
}

fn timeout(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("--timeout {text:?}: expected seconds, more than 0 and at most 3600")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_option() {
        let plain = parse(&["http://127.0.0.1:1/mcp"]).unwrap();
        assert_eq!(plain.mode, "enforce");
        assert_eq!(plain.transport, None);
        assert_eq!(plain.timeout, Duration::from_secs(10));
        assert!(plain.headers.is_empty());

        let full = parse(&[
            "--header",
            "authorization: Bearer a:b",
            "https://example.com/sse",
            "--header",
            "x-agent-id:pinner",
            "--mode",
            "first_seen",
            "--transport",
            "http",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(full.url, "https://example.com/sse");
        assert_eq!(
            full.headers,
            vec![
                ("authorization".to_owned(), "Bearer a:b".to_owned()),
                ("x-agent-id".to_owned(), "pinner".to_owned())
            ]
        );
        assert_eq!(full.mode, "first_seen");
        assert_eq!(full.transport, Some(TransportKind::StreamableHttp));
        assert_eq!(full.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for args in [
            &[][..],
            &["ftp://example.com/mcp"],
            &["http://a/mcp", "http://b/mcp"],
            &["http://a/mcp", "--mode", "audit"],
            &["http://a/mcp", "--mode"],
            &["http://a/mcp", "--transport", "ws"],
            &["http://a/mcp", "--timeout", "0"],
            &["http://a/mcp", "--timeout", "soon"],
            &["http://a/mcp", "--header", "no-colon"],
            &["http://a/mcp", "--header", "bad name: x"],
            &["http://a/mcp", "--header", "Accept: */*"],
            &["http://a/mcp", "--header", "x: line\nbreak"],
            &["http://a/mcp", "--verbose", "yes"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
