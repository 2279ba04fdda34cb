//! What the engine needs from the proxy it runs in. A host (the proxy-wasm filter, a native
//! Envoy module, a test's fake) implements `Host`; the engine's `Stream` calls it to read what
//! Envoy holds and to act: answer, release, call a service, store the audit record, count, log.

use crate::counters::CasStore;
use crate::reply::Reply;

/// What the host does with the request or answer after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let it go on.
    Continue,
    /// Hold it (the host buffers; a later callback or `Host::resume_request` releases it).
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// A metric increment (`report::stats::Stats` names it as an Envoy stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric<'a> {
    /// One `tools/call` decision (`tool` is `Policy::metric_label`, `none` for a request
    /// refused before a call was read).
    ToolCall { tool: &'a str, decision: &'a str },
    /// One decision of a `resources`, `prompts` or `methods` block: `method` is an MCP method
    /// name or `other`, `target` the label `Targets::metric_label` bounds by the policy.
    Request {
        method: &'a str,
        target: &'a str,
        decision: &'a str,
    },
    /// One answer (or failure) of a rate-limit service: `ok`, `over_limit`, `error`.
    ServiceAnswer { service: &'a str, result: &'a str },
    /// A policy the filter refused (at start or on an update).
    ConfigFailure,
    /// A detector of a guard found something in one direction of a call (`tool` as
    /// `Policy::metric_label` bounds it; detectors are the policy's): one per call and detector.
    GuardDetection {
        tool: &'a str,
        detector: &'a str,
        direction: &'a str,
        action: &'a str,
    },
    /// A listed tool whose definition differs from its pin, or has none (`tool` as
    /// `Policy::metric_label` bounds it).
    ToolDrift { tool: &'a str },
}

/// Where a request's time goes, for hosts that measure it (`make bench-phases`). Each mark ends
/// the phase named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    HeadersFetch,
    HeadersRead,
    BodyFetch,
    Evaluate,
    AuditRecord,
    AuditStore,
    Metrics,
    ResponseHeaders,
    ResponseBody,
}

pub trait Host {
    /// Unix time, seconds.
    fn now(&self) -> u64;
    /// The counters' compare-and-swap store (Envoy's shared data).
    fn store(&mut self) -> &mut dyn CasStore;

    /// The first `size` bytes of the buffered request body.
    fn request_body(&mut self, size: usize) -> Vec<u8>;
    fn remove_request_header(&mut self, name: &str);
    /// Answer the request here: nothing reaches the upstream.
    fn reply(&mut self, reply: &Reply);
    /// Release a request held while a service was asked.
    fn resume_request(&mut self);

    /// The first `size` bytes of the buffered answer (or of its current chunk, when streaming).
    fn response_body(&mut self, size: usize) -> Vec<u8>;
    /// Replace those `size` bytes with `body`.
    fn replace_response_body(&mut self, size: usize, body: &[u8]);
    fn remove_response_header(&mut self, name: &str);
    /// Why the proxy answered with an error status (Envoy's `response.code_details`), if known.
    fn response_code_details(&mut self) -> Option<String>;

    /// Ask a rate-limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`,
    /// `request` serialized). The answer comes back through `Stream::on_rate_limit_answer` with
    /// the token returned here.
    fn call_rate_limit_service(
        &mut self,
        cluster: &str,
        request: &[u8],
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// POST `body` (JSON) to the approval service's `path`. The answer comes back through
    /// `Stream::on_approval_answer` with the token returned here.
    fn call_approval_service(
        &mut self,
        cluster: &str,
        path: &str,
        body: &[u8],
        timeout_seconds: u64,
    ) -> Result<u32, String>;

    /// Keep the request's audit record where the access log finds it.
    fn store_audit_record(&mut self, record: &str) -> Result<(), String>;
    fn count(&mut self, metric: Metric<'_>);
    fn log(&mut self, level: Level, message: &str);

    /// A verified JWT claim (string), for identity sources.
    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String>;
    /// The peer certificate's URI SAN, for identity sources.
    fn peer_uri_san(&self) -> Option<String>;

    /// `phase` just ended (called only in builds with the `phase-timing` feature).
    fn mark(&mut self, _phase: Phase) {}
}

/// Tell `host` that `phase` ended, in builds that time phases (`make bench-phases`); nothing,
/// not even the call, in the others.
#[inline(always)]
pub(crate) fn mark(host: &mut dyn Host, phase: Phase) {
    if cfg!(feature = "phase-timing") {
        host.mark(phase);
    }
}
