//! Plain HTTP clients for the raw tests: reqwest for ordinary requests, and a hand-written
//! HTTP/1.1 writer for bodies that must arrive in exactly the pieces the test chooses.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mcp_policy_sample::deployment::dechunk;
use serde_json::Value;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

pub const MCP_ACCEPT: &str = "application/json, text/event-stream";

/// POST a body to an MCP endpoint the way an MCP client does, plus `extra` headers.
pub async fn post(url: &str, body: impl Into<reqwest::Body>, extra: &[(&str, &str)]) -> Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(body);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    collect(response).await
}

pub async fn request(method: &str, url: &str, extra: &[(&str, &str)]) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = reqwest::Client::new().request(method, url);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    collect(
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}")),
    )
    .await
}

async fn collect(response: reqwest::Response) -> Response {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response.text().await.unwrap_or_default();
    Response {
        status,
        headers,
        body,
    }
}

pub fn tools_call(id: u64, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

/// POST with `Transfer-Encoding: chunked`, writing each chunk separately (with a pause, so Envoy
/// reads them as separate pieces), then read the whole response (`Connection: close`).
pub fn post_chunked(port: u16, path: &str, chunks: &[&[u8]], extra: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: {MCP_ACCEPT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    for chunk in chunks {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("write");
        stream.write_all(chunk).expect("write");
        stream.write_all(b"\r\n").expect("write");
        stream.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(3));
    }
    stream.write_all(b"0\r\n\r\n").expect("write end");
    read_response(&mut stream)
}

/// Send raw bytes as the whole request and read the response (the request must say
/// `Connection: close`).
pub fn raw_exchange(port: u16, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> Response {
    // Read until the response is complete rather than until the connection closes: after a
    // local reply Envoy holds the connection open for its delayed-close timeout (1 s).
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    while !response_complete(&raw) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// Whether `raw` holds a whole HTTP/1.1 response: headers, then `content-length` bytes or the
/// last chunk. Without either, only the connection's end says it is complete.
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(length) => body.len() >= length,
        None => false,
    }
}
