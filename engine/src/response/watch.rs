//! Reading the answer to a forwarded request: a call the server failed gives back what it took
//! (refund), and a listing (a `tools/list`, … answer) loses what this caller may not use. JSON
//! answers are held whole (up to a cap) and read at their end; SSE answers are read event by
//! event.

use serde_json::Value;

use super::listing::Listings;
use super::results::ResultGuard;
use super::tools_list::Drift;
use crate::counters::reservations::{http_error_refunds, refund, settle, Reservation};
use crate::host::{Action, Host, Level};
use crate::policy::caller::Caller;
use crate::policy::Policy;
use crate::protocol::header_map;
use crate::protocol::listing::{Listing, ListingKind};
use crate::protocol::sse::SseRewriter;
use crate::request::outcome::{Detection, Guarded};

/// The most of a JSON answer held to read it whole (to refund a failed call, to filter a
/// listing): below Envoy's default per-stream buffer limit (1 MiB), so holding never makes
/// Envoy reset the stream.
pub const MAX_HELD_ANSWER: usize = 512 * 1024;

/// How an answer is being read.
#[derive(Debug, Default)]
enum Reading {
    #[default]
    None,
    /// `application/json`: buffered whole, read and rewritten at its end.
    Json,
    /// `text/event-stream`: read and rewritten event by event as it streams.
    Sse(SseRewriter),
    /// A tools/list answer too large to check against pins that refuse: replaced by an error,
    /// the rest of it dropped as it comes.
    Dropped,
}

/// What reading an answer's body needs from its stream.
pub struct Reader<'a> {
    pub host: &'a mut dyn Host,
    pub policy: &'a Policy,
    /// Whose listings are filtered.
    pub caller: &'a Caller<'a>,
    /// The filter instance, for log lines.
    pub namespace: &'a str,
}

/// What a forwarded request left to watch for in its answer.
#[derive(Debug, Default)]
pub struct Watch {
    /// Forwarded listing requests: their answers lose what this caller may not use.
    listings: Vec<Listing>,
    /// What each forwarded tools/call took: refunded if the upstream fails it.
    reservations: Vec<Reservation>,
    reading: Reading,
    /// Bytes of the answer buffered so far, as last reported.
    body_size: usize,
    /// Listed tools whose definitions differ from their pins, as found.
    drifts: Vec<Drift>,
    /// How many of `drifts` were reported already.
    reported: usize,
    /// Forwarded tool calls whose results their guard reads.
    guarded: Vec<Guarded>,
    /// (tool, detection) in guarded results, as found.
    found: Vec<(String, Detection)>,
    /// How many of `found` were reported already.
    found_reported: usize,
}

impl Watch {
    pub fn new(listings: Vec<Listing>, reservations: Vec<Reservation>) -> Watch {
        Watch {
            listings,
            reservations,
            ..Watch::default()
        }
    }

    /// Guard the results of `guarded` calls too.
    pub fn guarding(mut self, guarded: Vec<Guarded>) -> Watch {
        self.guarded = guarded;
        self
    }

    /// Nothing to watch for: the answer passes unread.
    pub fn idle(&self) -> bool {
        self.listings.is_empty() && self.reservations.is_empty() && self.guarded.is_empty()
    }

    /// Whether the answer may be rewritten (its length may change).
    fn rewrites(&self) -> bool {
        !self.listings.is_empty() || !self.guarded.is_empty()
    }

    /// Refund on an HTTP error; choose how the body is read. `raw`: the serialized header map
    /// (`None` if the host could not give it).
    pub fn on_headers(&mut self, host: &mut dyn Host, namespace: &str, raw: Option<&[u8]>) {
        if self.idle() {
            return;
        }
        let headers = raw.and_then(header_map::decode).unwrap_or_else(|| {
            // Read as no headers: no status, so nothing is refunded (never undercharged), and no
            // content type, so the answer is not rewritten, as an answer in a format the filter
            // does not read; what it lists stays enforced when requested.
            host.log(
                Level::Error,
                &format!(
                    "mcp-policy-filter[{namespace}]: response headers unreadable; answer passed as is"
                ),
            );
            Vec::new()
        });
        let text = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let status = text(":status")
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        let content_type = text("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if status >= 400 && !self.reservations.is_empty() {
            self.on_error_status(host, namespace, status);
        }
        self.reading = if content_type.starts_with("application/json") {
            Reading::Json
        } else if content_type.starts_with("text/event-stream") {
            Reading::Sse(SseRewriter::default())
        } else {
            Reading::None
        };
        if self.rewrites() && !matches!(self.reading, Reading::None) {
            // A listing or a guarded result may be rewritten: its length will change.
            host.remove_response_header("content-length");
        }
    }

    /// The request failed as a whole: nothing it reserved was used — unless the proxy only
    /// stopped waiting for a server that has the call.
    fn on_error_status(&mut self, host: &mut dyn Host, namespace: &str, status: u16) {
        match host.response_code_details() {
            Some(details) if http_error_refunds(status, &details) => {
                for reservation in std::mem::take(&mut self.reservations) {
                    refund_one(host, namespace, &reservation, "HTTP error");
                }
            }
            details => {
                host.log(
                    Level::Debug,
                    &format!(
                        "mcp-policy-filter[{namespace}]: HTTP {status} ({}): the server may have the call, so what it took stays taken",
                        details.as_deref().unwrap_or("details unreadable")
                    ),
                );
                self.reservations.clear();
            }
        }
    }

    pub fn on_body(&mut self, reader: Reader, body_size: usize, end_of_stream: bool) -> Action {
        self.body_size = body_size;
        self.read(reader, body_size, end_of_stream)
    }

    /// Trailers end the answer (HTTP/2): what waits for the end (a held JSON answer, an SSE
    /// tail) is finished here.
    pub fn on_trailers(&mut self, reader: Reader) -> Action {
        let size = match self.reading {
            Reading::Json => self.body_size,
            _ => 0,
        };
        self.read(reader, size, true)
    }

    /// The stream is over. Calls still pending were forwarded and got no error we could see:
    /// the client hung up (a disconnect is not a cancellation in MCP: the tool may still run),
    /// the answer's id was spelled differently, or it came in a form we don't read. Refunds need
    /// positive evidence of failure, so what they took stays taken.
    pub fn close(&mut self) {
        self.reservations.clear();
    }

    fn read(&mut self, reader: Reader, body_size: usize, end_of_stream: bool) -> Action {
        match std::mem::take(&mut self.reading) {
            Reading::None => Action::Continue,
            Reading::Json => {
                self.reading = Reading::Json;
                self.read_json(reader, body_size, end_of_stream)
            }
            Reading::Sse(mut rewriter) => {
                self.read_sse(reader, &mut rewriter, body_size, end_of_stream);
                self.reading = Reading::Sse(rewriter);
                Action::Continue
            }
            Reading::Dropped => {
                if body_size > 0 {
                    reader.host.replace_response_body(body_size, b"");
                }
                self.reading = Reading::Dropped;
                Action::Continue
            }
        }
    }

    /// Every complete event of the chunk: calls it answers with an error are refunded, a
    /// listing in it is rewritten.
    fn read_sse(
        &mut self,
        reader: Reader,
        rewriter: &mut SseRewriter,
        body_size: usize,
        end_of_stream: bool,
    ) {
        let Reader {
            host,
            policy,
            caller,
            namespace,
        } = reader;
        let chunk = host.response_body(body_size);
        let pending = &mut self.reservations;
        let mut refunds = Vec::new();
        let mut problems = Vec::new();
        let mut listings = Listings {
            policy,
            caller,
            listings: &self.listings,
            store: host.store(),
            namespace,
            drifts: &mut self.drifts,
            problems: &mut problems,
        };
        let mut results = ResultGuard {
            policy,
            guarded: &self.guarded,
            found: &mut self.found,
        };
        let mut observe = |message: &Value, text: &str| {
            if let Some(failed) = settle(pending, message) {
                refunds.push(failed);
            }
            results.guard_text(text).or_else(|| {
                listings
                    .filter_message(message)
                    .map(|filtered| filtered.to_string())
            })
        };
        let mut out = rewriter.feed(&chunk, &mut observe);
        if end_of_stream {
            out.extend(rewriter.finish(&mut observe));
        }
        log_problems(host, namespace, &problems);
        for failed in refunds {
            refund_one(host, namespace, &failed, "JSON-RPC error");
        }
        if body_size > 0 || !out.is_empty() {
            host.replace_response_body(body_size, &out);
        }
    }

    fn read_json(&mut self, reader: Reader, body_size: usize, end_of_stream: bool) -> Action {
        let Reader {
            host,
            policy,
            caller,
            namespace,
        } = reader;
        if !end_of_stream {
            if body_size <= MAX_HELD_ANSWER {
                return Action::Pause;
            }
            // Too large to hold (Envoy would reset the stream at its buffer limit): it goes on
            // as is, its calls stay charged (no evidence of failure) and a listing in it is not
            // filtered — unless pins must check a tools/list: then the agent gets an error
            // instead.
            if self.lists_tools() && policy.pins.as_ref().is_some_and(|p| p.mode.refuses()) {
                self.drop_unchecked(host, namespace, body_size);
                return Action::Continue;
            }
            if let Some(call) = self.unguardable(policy) {
                self.drop_unguarded(host, namespace, body_size, &call);
                return Action::Continue;
            }
            if self.rewrites() {
                host.log(
                    Level::Warn,
                    &format!(
                        "mcp-policy-filter[{namespace}]: answer over {MAX_HELD_ANSWER} bytes passed unfiltered and unguarded"
                    ),
                );
            }
            self.reservations.clear();
            self.reading = Reading::None;
            return Action::Continue;
        }
        let body = host.response_body(body_size);
        if !self.rewrites() && !contains(&body, b"\"error\"") {
            // Nothing to rewrite and no JSON-RPC error: every reservation stands, and a large
            // tool result is not parsed for nothing. (An error spelled with escapes is then not
            // refunded: the caller is charged, never undercharged.)
            self.reservations.clear();
            return Action::Continue;
        }
        if !self.reservations.is_empty() {
            self.settle_json(host, namespace, &body);
        }
        let guarded = match self.guarded.is_empty() {
            true => None,
            false => ResultGuard {
                policy,
                guarded: &self.guarded,
                found: &mut self.found,
            }
            .guard_json_body(&body),
        };
        let changed_by_guard = guarded.is_some();
        let body = guarded.unwrap_or(body);
        let mut problems = Vec::new();
        let filtered = match self.listings.is_empty() {
            true => None,
            false => Listings {
                policy,
                caller,
                listings: &self.listings,
                store: host.store(),
                namespace,
                drifts: &mut self.drifts,
                problems: &mut problems,
            }
            .filter_json_body(&body),
        };
        log_problems(host, namespace, &problems);
        match filtered {
            Some(filtered) => host.replace_response_body(body_size, &filtered),
            None if changed_by_guard => host.replace_response_body(body_size, &body),
            None => {}
        }
        Action::Continue
    }

    /// Refund the calls a JSON answer answers with a JSON-RPC error. An answer that is not
    /// JSON answers none: they stay charged.
    fn settle_json(&mut self, host: &mut dyn Host, namespace: &str, body: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let messages = match &value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        };
        for message in messages {
            if let Some(failed) = settle(&mut self.reservations, message) {
                refund_one(host, namespace, &failed, "JSON-RPC error");
            }
        }
    }

    /// A guarded call whose result, too large to hold, must not pass unguarded (its guard's
    /// `failure_mode` is closed).
    fn unguardable(&self, policy: &Policy) -> Option<Guarded> {
        self.guarded
            .iter()
            .find(|call| {
                policy
                    .guard(policy.entry(&call.tool, call.class))
                    .is_some_and(|g| g.results.is_some() && !g.fail_open)
            })
            .cloned()
    }

    /// Replace a result too large to guard (`body_size` bytes so far) by a JSON-RPC error; drop
    /// the rest as it comes.
    fn drop_unguarded(
        &mut self,
        host: &mut dyn Host,
        namespace: &str,
        body_size: usize,
        call: &Guarded,
    ) {
        let problem = format!(
            "the result of tool \"{}\" is over {MAX_HELD_ANSWER} bytes: too large for the policy filter to guard",
            call.tool
        );
        host.log(
            Level::Warn,
            &format!("mcp-policy-filter[{namespace}]: {problem}; answered with an error"),
        );
        let error = serde_json::json!({"jsonrpc": "2.0", "id": call.id,
            "error": {"code": crate::reply::CANNOT_ENFORCE, "message": problem}});
        host.replace_response_body(body_size, error.to_string().as_bytes());
        self.reading = Reading::Dropped;
    }

    /// Detections in guarded results found since the last call.
    pub fn new_found(&mut self) -> &[(String, Detection)] {
        let from = self.found_reported;
        self.found_reported = self.found.len();
        self.found.get(from..).unwrap_or_default()
    }

    /// Every detection in this answer's guarded results.
    pub fn found(&self) -> &[(String, Detection)] {
        &self.found
    }

    /// Replace an unchecked tools/list answer (`body_size` bytes so far) by a JSON-RPC error;
    /// drop the rest as it comes.
    fn drop_unchecked(&mut self, host: &mut dyn Host, namespace: &str, body_size: usize) {
        let problem = format!(
            "the tools/list answer is over {MAX_HELD_ANSWER} bytes: too large for the policy filter to check against its pins"
        );
        host.log(
            Level::Warn,
            &format!("mcp-policy-filter[{namespace}]: {problem}; answered with an error"),
        );
        let id = self
            .listings
            .iter()
            .find(|l| l.kind == ListingKind::Tools)
            .map_or(Value::Null, |l| l.id.clone());
        let error = serde_json::json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": crate::reply::CANNOT_ENFORCE, "message": problem}});
        host.replace_response_body(body_size, error.to_string().as_bytes());
        self.reservations.clear();
        self.reading = Reading::Dropped;
    }

    /// Whether a forwarded tools/list waits for its answer.
    fn lists_tools(&self) -> bool {
        self.listings.iter().any(|l| l.kind == ListingKind::Tools)
    }

    /// Drift found since the last call, and all drift found when `finished`.
    pub fn new_drifts(&mut self) -> &[Drift] {
        let from = self.reported;
        self.reported = self.drifts.len();
        self.drifts.get(from..).unwrap_or_default()
    }

    /// Every drift this answer's listings showed.
    pub fn drifts(&self) -> &[Drift] {
        &self.drifts
    }
}

fn log_problems(host: &mut dyn Host, namespace: &str, problems: &[String]) {
    for problem in problems {
        host.log(
            Level::Error,
            &format!(
                "mcp-policy-filter[{namespace}]: {problem}; the tool was left out of the listing"
            ),
        );
    }
}

fn refund_one(host: &mut dyn Host, namespace: &str, reservation: &Reservation, why: &str) {
    match refund(host.store(), reservation) {
        Err(problem) => host.log(
            Level::Error,
            &format!("mcp-policy-filter[{namespace}]: {problem}"),
        ),
        Ok(()) => host.log(
            Level::Debug,
            &format!(
                "mcp-policy-filter[{namespace}]: refunded request id {} ({why})",
                reservation.id
            ),
        ),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
