//! Call accounting: what really arrived at a sample server's `/mcp` endpoint.
//!
//! Tests behind the policy filter use these numbers to prove that a blocked call never reached
//! the upstream and that an allowed one did, byte for byte.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;

/// How many recent POSTs are kept (oldest dropped first).
pub const RECENT_POSTS_CAPACITY: usize = 200;

/// One POST to `/mcp` as it arrived.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordedPost {
    /// Request headers, names lowercased; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The raw body, decoded as UTF-8 (lossy).
    pub body: String,
}

/// Counters and the ring of recent POSTs; shared by the middleware and the `/stats` handlers.
#[derive(Debug)]
pub struct Stats {
    server: String,
    stateless: bool,
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    posts: u64,
    gets: u64,
    deletes: u64,
    others: u64,
    tool_calls: BTreeMap<String, u64>,
    resource_reads: BTreeMap<String, u64>,
    resource_subscribes: BTreeMap<String, u64>,
    resource_unsubscribes: BTreeMap<String, u64>,
    prompt_gets: BTreeMap<String, u64>,
    methods: BTreeMap<String, u64>,
    recent_posts: VecDeque<RecordedPost>,
}

/// The JSON document served by `GET /stats`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Which sample server this is (`wechat` or `notify`).
    pub server: String,
    /// Whether the server runs rmcp's stateless mode.
    pub stateless: bool,
    /// POST requests to `/mcp`, parseable or not.
    pub posts: u64,
    /// GET requests to `/mcp`.
    pub gets: u64,
    /// DELETE requests to `/mcp`.
    pub deletes: u64,
    /// Requests to `/mcp` with any other method (PUT, PATCH, ...).
    pub others: u64,
    /// Every request to `/mcp` that arrived, whatever its method.
    pub requests: u64,
    /// `tools/call` requests per tool name (`params.name`).
    pub tool_calls: BTreeMap<String, u64>,
    /// Sum of `tool_calls`.
    pub tool_calls_total: u64,
    /// `resources/read` requests per URI (`params.uri`).
    pub resource_reads: BTreeMap<String, u64>,
    /// `resources/subscribe` requests per URI (`params.uri`).
    pub resource_subscribes: BTreeMap<String, u64>,
    /// `resources/unsubscribe` requests per URI (`params.uri`).
    pub resource_unsubscribes: BTreeMap<String, u64>,
    /// `prompts/get` requests per prompt name (`params.name`).
    pub prompt_gets: BTreeMap<String, u64>,
    /// JSON-RPC requests and notifications per `method` (including `tools/call`).
    pub methods: BTreeMap<String, u64>,
    /// The last POSTs, oldest first.
    pub recent_posts: Vec<RecordedPost>,
}

impl Stats {
    /// Empty accounting for the server named `server`.
    pub fn new(server: impl Into<String>, stateless: bool) -> Self {
        Self {
            server: server.into(),
            stateless,
            inner: Mutex::new(Counters::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters for a test stand-in, so a poisoned lock is simply taken over.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Account one POST to `/mcp` with its headers and raw body.
    pub fn record_post(&self, headers: &HeaderMap, body: &[u8]) {
        let recorded = RecordedPost {
            headers: header_map(headers),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let parsed = serde_json::from_slice::<Value>(body).ok();
        let mut counters = self.lock();
        counters.posts += 1;
        if let Some(value) = parsed {
            for message in jsonrpc_messages(&value) {
                count_message(&mut counters, message);
            }
        }
        if counters.recent_posts.len() >= RECENT_POSTS_CAPACITY {
            counters.recent_posts.pop_front();
        }
        counters.recent_posts.push_back(recorded);
    }

    /// Account one GET to `/mcp`.
    pub fn record_get(&self) {
        self.lock().gets += 1;
    }

    /// Account one DELETE to `/mcp`.
    pub fn record_delete(&self) {
        self.lock().deletes += 1;
    }

    /// Account one request to `/mcp` with a method MCP does not use.
    pub fn record_other(&self) {
        self.lock().others += 1;
    }

    /// Zero every counter and forget the recent POSTs.
    pub fn reset(&self) {
        *self.lock() = Counters::default();
    }

    /// A consistent copy of everything, for `GET /stats`.
    pub fn snapshot(&self) -> StatsSnapshot {
        let counters = self.lock();
        StatsSnapshot {
            server: self.server.clone(),
            stateless: self.stateless,
            posts: counters.posts,
            gets: counters.gets,
            deletes: counters.deletes,
            others: counters.others,
            requests: counters.posts + counters.gets + counters.deletes + counters.others,
            tool_calls: counters.tool_calls.clone(),
            tool_calls_total: counters.tool_calls.values().sum(),
            resource_reads: counters.resource_reads.clone(),
            resource_subscribes: counters.resource_subscribes.clone(),
            resource_unsubscribes: counters.resource_unsubscribes.clone(),
            prompt_gets: counters.prompt_gets.clone(),
            methods: counters.methods.clone(),
            recent_posts: counters.recent_posts.iter().cloned().collect(),
        }
    }
}

/// The JSON-RPC messages in a body: the object itself, or every element of a batch array.
fn jsonrpc_messages(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    }
}

fn count_message(counters: &mut Counters, message: &Value) {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return;
    };
    *counters.methods.entry(method.to_owned()).or_default() += 1;
    let (per_target, target_param) = match method {
        "tools/call" => (&mut counters.tool_calls, "name"),
        "resources/read" => (&mut counters.resource_reads, "uri"),
        "resources/subscribe" => (&mut counters.resource_subscribes, "uri"),
        "resources/unsubscribe" => (&mut counters.resource_unsubscribes, "uri"),
        "prompts/get" => (&mut counters.prompt_gets, "name"),
        _ => return,
    };
    if let Some(target) = message
        .get("params")
        .and_then(|params| params.get(target_param))
        .and_then(Value::as_str)
    {
        *per_target.entry(target.to_owned()).or_default() += 1;
    }
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        // `HeaderName` is always lowercase already; lowercase again to make the contract explicit.
        let name = name.as_str().to_ascii_lowercase();
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name)
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("X-Agent-Id", HeaderValue::from_static("agent-7"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers
    }

    #[test]
    fn counts_tool_calls_in_objects_and_batches() {
        let stats = Stats::new("wechat", false);
        stats.record_post(
            &headers(),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wechat_mass_send","arguments":{}}}"#,
        );
        stats.record_post(
            &HeaderMap::new(),
            br#"[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wechat_mass_send"}},
                {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"wechat_mass_delete"}},
                {"jsonrpc":"2.0","id":4,"method":"tools/list"},
                {"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":7}},
                "junk"]"#,
        );
        let snap = stats.snapshot();
        assert_eq!(snap.posts, 2);
        assert_eq!(snap.tool_calls.get("wechat_mass_send"), Some(&2));
        assert_eq!(snap.tool_calls.get("wechat_mass_delete"), Some(&1));
        assert_eq!(snap.tool_calls_total, 3);
        assert_eq!(snap.methods.get("tools/call"), Some(&4));
        assert_eq!(snap.methods.get("tools/list"), Some(&1));
        let first = snap
            .recent_posts
            .first()
            .map(|p| p.headers.clone())
            .unwrap_or_default();
        assert_eq!(first.get("x-agent-id").map(String::as_str), Some("agent-7"));
        assert_eq!(first.get("x-multi").map(String::as_str), Some("a, b"));
    }

    #[test]
    fn counts_resource_and_prompt_requests_per_target() {
        let stats = Stats::new("wechat", false);
        stats.record_post(
            &HeaderMap::new(),
            br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"wechat://account/profile"}},
                {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"wechat://account/profile"}},
                {"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"wechat://drafts/welcome"}},
                {"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":{"uri":"wechat://drafts/welcome"}},
                {"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"draft_campaign"}},
                {"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"uri":"not a name"}}]"#,
        );
        let snap = stats.snapshot();
        let one = |uri: &str| BTreeMap::from([(uri.to_owned(), 1)]);
        assert_eq!(
            snap.resource_reads,
            BTreeMap::from([("wechat://account/profile".to_owned(), 2)])
        );
        assert_eq!(snap.resource_subscribes, one("wechat://drafts/welcome"));
        assert_eq!(snap.resource_unsubscribes, one("wechat://drafts/welcome"));
        assert_eq!(snap.prompt_gets, one("draft_campaign"));
        assert_eq!(snap.methods.get("prompts/get"), Some(&2));
        assert_eq!(snap.tool_calls_total, 0);
        stats.reset();
        let snap = stats.snapshot();
        assert!(snap.resource_reads.is_empty() && snap.prompt_gets.is_empty());
    }

    #[test]
    fn unparseable_bodies_still_count_as_posts() {
        let stats = Stats::new("notify", true);
        stats.record_post(&HeaderMap::new(), b"\xff\xfe not json");
        let snap = stats.snapshot();
        assert_eq!(snap.posts, 1);
        assert_eq!(snap.tool_calls_total, 0);
        assert_eq!(snap.recent_posts.len(), 1);
    }

    #[test]
    fn ring_keeps_the_last_200_and_reset_clears() {
        let stats = Stats::new("wechat", false);
        for i in 0..(RECENT_POSTS_CAPACITY + 5) {
            stats.record_post(&HeaderMap::new(), i.to_string().as_bytes());
        }
        stats.record_get();
        stats.record_delete();
        stats.record_other();
        let snap = stats.snapshot();
        assert_eq!(snap.posts, (RECENT_POSTS_CAPACITY + 5) as u64);
        assert_eq!(snap.requests, (RECENT_POSTS_CAPACITY + 8) as u64);
        assert_eq!(snap.recent_posts.len(), RECENT_POSTS_CAPACITY);
        assert_eq!(
            snap.recent_posts.first().map(|p| p.body.as_str()),
            Some("5")
        );
        assert_eq!((snap.gets, snap.deletes, snap.others), (1, 1, 1));
        stats.reset();
        let snap = stats.snapshot();
        assert_eq!(
            (
                snap.posts,
                snap.gets,
                snap.deletes,
                snap.others,
                snap.requests
            ),
            (0, 0, 0, 0, 0)
        );
        assert!(snap.recent_posts.is_empty());
    }
}
