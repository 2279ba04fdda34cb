//! One HTTP stream. POST requests are held, headers included, until the whole body has arrived
//! (this needs `allow_on_headers_stop_iteration: true`); then the engine decides and the request
//! is either released untouched or answered locally. Other methods and all responses stream
//! through without being touched.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use mcp_policy_engine::counters::reservations::{http_error_refunds, refund, settle, Reservation};
use mcp_policy_engine::policy::caller::Caller;
use mcp_policy_engine::policy::identity::{self, Identity};
use mcp_policy_engine::policy::{Policy, RefusalMode};
use mcp_policy_engine::protocol::header_map;
use mcp_policy_engine::protocol::ratelimit::Response;
use mcp_policy_engine::protocol::sse::SseRewriter;
use mcp_policy_engine::reply::{self, Refusal, Reply};
use mcp_policy_engine::report::audit::{self, AuditContext};
use mcp_policy_engine::request::evaluate::{evaluate, RequestMeta, Step};
use mcp_policy_engine::request::headers::{self, screen, Screening};
use mcp_policy_engine::request::outcome::{Outcome, Verdict};
use mcp_policy_engine::request::remote::AwaitingServices;
use mcp_policy_engine::response::tools_list::{filter_json_body, filter_message};
use mcp_policy_engine::services::approval::{self, Answer, ApprovalQuery, Approved};
use mcp_policy_engine::services::rate_limit;
use mcp_policy_engine::services::rate_limit::ServiceQuery;

use super::attributes::EnvoyRequest;
use super::metrics::{count_call, count_service_answer};
use super::phase_timing::{self as timing, Phase};
use super::raw_headers;
use super::root::log;
use super::shared_data::EnvoySharedData;

pub struct PolicyStream {
    policy: Rc<Policy>,
    namespace: Rc<str>,
    inspecting: bool,
    done: bool,
    /// Bytes buffered so far, as last reported by the body callback.
    body_size: usize,
    /// The same for the answer.
    response_body_size: usize,
    identity: Option<Identity>,
    session: Option<String>,
    /// A POST to the legacy HTTP+SSE transport's message endpoint.
    legacy_sse: bool,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    request_id: Option<String>,
    /// Ids of forwarded tools/list requests: their answers lose the tools this caller may not call.
    tools_list_ids: Vec<serde_json::Value>,
    /// What each forwarded tools/call took: refunded if the upstream fails it.
    reservations: Vec<Reservation>,
    inspection: Inspection,
    /// A request held for rate-limit services' answers, and those answers as they come.
    awaiting: Option<Box<AwaitingServices>>,
    /// gRPC call token and the query (index) it carries.
    service_calls: Vec<(u32, usize)>,
    service_answers: Vec<Option<Result<Response, String>>>,
    /// Seconds (Unix) when the request was evaluated, for its audit record.
    decided_at: u64,
    /// The HTTP call asking the approval service, and what it asks.
    approval_call: Option<(u32, Box<ApprovalQuery>)>,
}

const RATE_LIMIT_SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
const SHOULD_RATE_LIMIT: &str = "ShouldRateLimit";

/// How an answer is being read (to settle reservations) and rewritten (tools/list).
enum Inspection {
    None,
    /// `application/json`: buffered whole, read and rewritten at its end.
    Json,
    /// `text/event-stream`: read and rewritten event by event as it streams.
    Sse(SseRewriter),
}

impl PolicyStream {
    pub fn new(policy: Rc<Policy>, namespace: Rc<str>) -> Self {
        PolicyStream {
            policy,
            namespace,
            inspecting: false,
            done: false,
            body_size: 0,
            response_body_size: 0,
            identity: None,
            session: None,
            legacy_sse: false,
            mcp_method: None,
            mcp_name: None,
            request_id: None,
            tools_list_ids: Vec::new(),
            reservations: Vec::new(),
            inspection: Inspection::None,
            awaiting: None,
            service_calls: Vec::new(),
            service_answers: Vec::new(),
            decided_at: 0,
            approval_call: None,
        }
    }

    fn respond(&mut self, reply: Reply) -> Action {
        self.done = true;
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        self.send_http_response(
            u32::from(reply.status),
            headers,
            Some(reply.body.as_bytes()),
        );
        Action::Pause
    }

    fn unix_seconds(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Refused before the engine read a message (method, content type, headers, size): counted
    /// and audited like every other refusal.
    fn refuse_request(&mut self, reply: Reply) -> Action {
        self.decided_at = self.unix_seconds();
        self.conclude(Outcome::refused(reply, Vec::new()))
    }

    fn decide(&mut self, body: &[u8]) -> Action {
        let started = timing::now();
        let outcome = self.evaluate(body, None);
        let started = timing::mark(Phase::Evaluate, started);
        if cfg!(feature = "phase-timing") {
            // The same decision again, its caches warm: how much of the first was cold misses.
            // (Measurement only: with a limit, this counts the call twice.)
            timing::not_counted(|| drop(self.evaluate(body, None)));
            timing::mark(Phase::EvaluateAgain, started);
        }
        self.proceed(outcome)
    }

    /// The engine's decision on `body`; `approved`: a human approved the call with this digest.
    fn evaluate(&mut self, body: &[u8], approved: Option<Approved>) -> Step {
        let now = self.unix_seconds();
        let meta = RequestMeta {
            namespace: &self.namespace,
            identity: self.identity.as_ref(),
            session: self.session.as_deref(),
            mcp_method: self.mcp_method.as_deref(),
            mcp_name: self.mcp_name.as_deref(),
            now,
            legacy_sse: self.legacy_sse,
            approved,
        };
        self.decided_at = now;
        evaluate(&self.policy, body, &meta, &mut EnvoySharedData)
    }

    /// Ask the approval service about `query` and hold the request. `Some`: it could not be
    /// asked, and the call is refused (fail closed).
    fn ask_approval(&mut self, query: Box<ApprovalQuery>) -> Option<Outcome> {
        let Some(settings) = self.policy.approval.as_ref() else {
            let refusal = Refusal::ApprovalUnavailable {
                tool: query.tool.clone(),
                problem: "the policy names no approval service".to_owned(),
            };
            return Some(Outcome::approval_refused(
                *query,
                &refusal,
                self.refusal_mode(),
            ));
        };
        let headers = vec![
            (":method", "POST"),
            (":path", approval::CHECK_PATH),
            (":authority", settings.cluster.as_str()),
            ("content-type", "application/json"),
        ];
        // The service holds its answer up to `hold_seconds`; a little more for the network.
        let timeout = Duration::from_secs(settings.hold_seconds + 5);
        match hostcalls::dispatch_http_call(
            &settings.cluster,
            headers,
            Some(query.request.as_bytes()),
            Vec::new(),
            timeout,
        ) {
            Ok(token) => {
                self.approval_call = Some((token, query));
                None
            }
            Err(status) => {
                let refusal = Refusal::ApprovalUnavailable {
                    tool: query.tool.clone(),
                    problem: format!("cannot call cluster \"{}\": {status:?}", settings.cluster),
                };
                Some(Outcome::approval_refused(
                    *query,
                    &refusal,
                    self.refusal_mode(),
                ))
            }
        }
    }

    fn refusal_mode(&self) -> RefusalMode {
        if self.legacy_sse {
            RefusalMode::Http
        } else {
            self.policy.refusal_mode
        }
    }

    /// Act on a step: ask rate-limit services or the approval service (and hold the request),
    /// or conclude.
    fn proceed(&mut self, step: Step) -> Action {
        let outcome = match step {
            Step::AwaitServices(awaiting) => match self.ask_services(awaiting) {
                Some(outcome) => outcome,
                None => return Action::Pause,
            },
            Step::AwaitApproval(query) => match self.ask_approval(query) {
                Some(outcome) => outcome,
                None => return Action::Pause,
            },
            Step::Done(outcome) => outcome,
        };
        self.conclude(outcome)
    }

    /// Record the decision, and forward or answer.
    fn conclude(&mut self, outcome: Outcome) -> Action {
        let now = self.decided_at;
        let audit_context = AuditContext {
            time: now,
            request_id: self.request_id.as_deref(),
            server: &self.namespace,
            identity: self.identity.as_ref(),
            session: self.session.as_deref(),
        };
        let started = timing::now();
        let record = audit::record(&self.policy, &audit_context, &outcome);
        let started = timing::mark(Phase::AuditRecord, started);
        if let Some(record) = record {
            // Envoy keeps it as filter state `wasm.mcp_policy_audit`, for the access log.
            if let Err(status) =
                hostcalls::set_property(vec!["mcp_policy_audit"], Some(record.as_bytes()))
            {
                log(
                    LogLevel::Warn,
                    &format!(
                        "mcp-policy-filter[{}]: audit record not stored: {status:?}",
                        self.namespace
                    ),
                );
            }
        }
        let started = timing::mark(Phase::AuditStore, started);
        for call in &outcome.calls {
            count_call(
                &self.namespace,
                self.policy.metric_label(&call.tool),
                call.decision,
            );
        }
        if outcome.calls.is_empty() && matches!(outcome.verdict, Verdict::Reply(_)) {
            count_call(&self.namespace, "none", "invalid");
        }
        timing::mark(Phase::Metrics, started);
        let Outcome {
            verdict,
            calls,
            problem,
            tools_list_ids,
            reservations,
            ..
        } = outcome;
        if let Some(problem) = problem {
            log(
                LogLevel::Error,
                &format!("mcp-policy-filter[{}]: {problem}", self.namespace),
            );
        }
        let caller = self
            .identity
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), Identity::display);
        for call in calls.iter().filter(|c| c.decision != "allowed") {
            log(
                LogLevel::Info,
                &format!(
                    "mcp-policy-filter[{}]: tools/call {:?} by {caller:?} {} {}",
                    self.namespace, call.tool, call.decision, call.detail
                ),
            );
        }
        match verdict {
            Verdict::Forward if self.legacy_sse => {
                // Legacy HTTP+SSE: this response is only "202 Accepted"; the answers travel on
                // the session's SSE stream. What the calls took is committed now: refunding when
                // this response carries no answer would let every legacy call through uncounted.
                // A tools/list answer is still filtered should it come here after all: a server
                // that ignores the legacy query answers in this response.
                self.done = true;
                self.tools_list_ids = tools_list_ids;
                Action::Continue
            }
            Verdict::Forward => {
                self.done = true;
                self.tools_list_ids = tools_list_ids;
                self.reservations = reservations;
                Action::Continue
            }
            Verdict::Reply(reply) => self.respond(reply),
        }
    }

    /// Send each query. `None`: the request waits for the answers; `Some`: every query failed to
    /// go out and the decision is already made.
    fn ask_services(&mut self, awaiting: Box<AwaitingServices>) -> Option<Outcome> {
        self.service_answers = vec![None; awaiting.queries.len()];
        self.service_calls.clear();
        for (index, query) in awaiting.queries.iter().enumerate() {
            let Some(service) = self.policy.rate_limit_services.get(query.service) else {
                continue;
            };
            match hostcalls::dispatch_grpc_call(
                &service.cluster,
                RATE_LIMIT_SERVICE,
                SHOULD_RATE_LIMIT,
                Vec::new(),
                Some(&query.request),
                Duration::from_millis(service.timeout_ms),
            ) {
                Ok(token) => self.service_calls.push((token, index)),
                Err(status) => {
                    count_service_answer(&self.namespace, &service.name, "error");
                    if let Some(slot) = self.service_answers.get_mut(index) {
                        *slot = Some(Err(format!(
                            "cannot call cluster \"{}\": {status:?}",
                            service.cluster
                        )));
                    }
                }
            }
        }
        self.awaiting = Some(awaiting);
        self.finish_if_answered()
    }

    /// Once every query has its answer: the decision.
    fn finish_if_answered(&mut self) -> Option<Outcome> {
        if self.service_answers.iter().any(Option::is_none) {
            return None;
        }
        let awaiting = self.awaiting.take()?;
        let answers = std::mem::take(&mut self.service_answers)
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err("no answer".to_owned())))
            .collect();
        Some(awaiting.resume(&self.policy, answers, &mut EnvoySharedData))
    }
}

impl Context for PolicyStream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((token, query)) = self.approval_call.take() else {
            return;
        };
        if token != token_id {
            self.approval_call = Some((token, query));
            return;
        }
        // No `:status` means no answer: the call failed, timed out or was reset. A failed call
        // has no headers at all, and asking Envoy for one then is an error the SDK's getter
        // panics on (the VM would stop): so the map is read whole, in place, only if there is one.
        let raw = (num_headers > 0)
            .then(|| raw_headers::fetch(MapType::HttpCallResponseHeaders))
            .flatten();
        let status = raw
            .as_deref()
            .and_then(header_map::decode)
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|(name, _)| *name == ":status")
                    .and_then(|(_, value)| std::str::from_utf8(value).ok())
                    .and_then(|value| value.parse::<u16>().ok())
            });
        let answer = match status {
            None => Err("no answer (unreachable or timed out)".to_owned()),
            Some(status) => {
                match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
                    Ok(body) => Ok((status, body.unwrap_or_default())),
                    Err(status) => Err(format!("answer unreadable: {status:?}")),
                }
            }
        };
        let outcome = match approval::read_answer(&query.tool, answer) {
            Answer::Approved { note } => {
                let body = self
                    .get_http_request_body(0, self.body_size)
                    .unwrap_or_default();
                let approved = Approved {
                    digest: &query.digest,
                    note: &note,
                };
                self.evaluate(&body, Some(approved))
            }
            Answer::Refused(refusal) => Step::Done(Outcome::approval_refused(
                *query,
                &refusal,
                self.refusal_mode(),
            )),
        };
        if let Action::Continue = self.proceed(outcome) {
            self.resume_http_request();
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(position) = self.service_calls.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, index) = self.service_calls.swap_remove(position);
        let query = self.awaiting.as_ref().and_then(|a| a.queries.get(index));
        let descriptors = query.map_or(0, ServiceQuery::descriptors);
        let service = query
            .and_then(|q| self.policy.rate_limit_services.get(q.service))
            .map_or_else(String::new, |s| s.name.clone());
        let answer = if status_code == 0 {
            // Read through hostcalls: the SDK's getter panics on a host error.
            match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size) {
                Ok(bytes) => Ok(bytes.unwrap_or_default()),
                Err(status) => Err(format!("answer unreadable: {status:?}")),
            }
        } else {
            let message = hostcalls::get_grpc_status()
                .ok()
                .and_then(|(_, message)| message)
                .unwrap_or_default();
            // 4 = DEADLINE_EXCEEDED (our timeout), 14 = UNAVAILABLE (nobody listening).
            Err(format!("gRPC status {status_code} {message}")
                .trim_end()
                .to_owned())
        };
        let answer = rate_limit::read_answer(answer, descriptors);
        let result = rate_limit::answer_label(&answer);
        count_service_answer(&self.namespace, &service, result);
        if let Some(slot) = self.service_answers.get_mut(index) {
            *slot = Some(answer);
        }
        let Some(outcome) = self.finish_if_answered() else {
            return;
        };
        if let Action::Continue = self.conclude(outcome) {
            self.resume_http_request();
        }
    }
}

impl HttpContext for PolicyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One host call for every header (each call into Envoy costs more than the lookups),
        // read in place. Values as bytes: they need not be UTF-8.
        let started = timing::now();
        let raw = raw_headers::fetch(MapType::HttpRequestHeaders);
        let started = timing::mark(Phase::HeadersFetch, started);
        let Some(all_headers) = raw.as_deref().and_then(header_map::decode) else {
            // Envoy always has request headers to give: fail closed if it does not.
            log(
                LogLevel::Error,
                &format!(
                    "mcp-policy-filter[{}]: request headers unreadable; request refused",
                    self.namespace
                ),
            );
            return self.refuse_request(reply::refused_request(
                500,
                "the policy filter could not read the request headers".to_owned(),
            ));
        };
        let header_text = |name: &str| {
            all_headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let method = header_text(":method").unwrap_or_default();
        let request_id = header_text("x-request-id").map(str::to_owned);
        let headers = match screen(&self.policy, method, &all_headers, !end_of_stream) {
            Screening::Pass => return Action::Continue,
            Screening::Refuse(reply) => {
                self.request_id = request_id;
                return self.refuse_request(reply);
            }
            Screening::Inspect(headers) => headers,
        };
        self.inspecting = true;
        // Encodings and Envoy's retry and timeout overrides (see `REMOVED_FROM_DECIDED_POSTS`):
        // one host call per header present, and most requests carry none of them.
        for name in headers::to_remove(&all_headers) {
            self.set_http_request_header(name, None);
        }
        self.identity = identity::resolve(
            &self.policy.identity_sources,
            &EnvoyRequest { headers: &headers },
        );
        // The legacy HTTP+SSE transport names its session in the message endpoint's query.
        self.legacy_sse = headers.legacy_session().is_some();
        self.session = headers
            .get("mcp-session-id")
            .or(headers.legacy_session())
            .map(str::to_owned);
        self.mcp_method = headers.get("mcp-method").map(str::to_owned);
        self.mcp_name = headers.get("mcp-name").map(str::to_owned);
        self.request_id = request_id;
        timing::mark(Phase::HeadersRead, started);
        if end_of_stream {
            return self.decide(&[]);
        }
        // Hold the headers too: nothing reaches the upstream before the verdict.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.inspecting || self.done {
            return Action::Continue;
        }
        self.body_size = body_size;
        if body_size as u64 > self.policy.max_body_bytes {
            return self.refuse_request(reply::too_large(self.policy.max_body_bytes));
        }
        if !end_of_stream {
            // Keep buffering; Envoy hands us the accumulated body at end of stream.
            return Action::Pause;
        }
        let started = timing::now();
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        timing::mark(Phase::BodyFetch, started);
        self.decide(&body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.inspecting || self.done {
            return Action::Continue;
        }
        // Trailers end the request: the body is complete even though no body callback said so.
        let body = self
            .get_http_request_body(0, self.body_size)
            .unwrap_or_default();
        self.decide(&body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.tools_list_ids.is_empty() && self.reservations.is_empty() {
            return Action::Continue;
        }
        let started = timing::now();
        let action = self.inspect_response_headers();
        timing::mark(Phase::ResponseHeaders, started);
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body_size = body_size;
        let started = timing::now();
        // Taken out for the call so the rewriter and the host calls on `self` do not overlap.
        let mut inspection = std::mem::replace(&mut self.inspection, Inspection::None);
        let mut pending = std::mem::take(&mut self.reservations);
        let action = self.inspect_response(&mut inspection, &mut pending, body_size, end_of_stream);
        self.inspection = inspection;
        self.reservations = pending;
        timing::mark(Phase::ResponseBody, started);
        action
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the answer (HTTP/2, gRPC-style): no body callback said end of stream, so
        // what waits for the end (a held JSON answer, an SSE tail) is finished here.
        let mut inspection = std::mem::replace(&mut self.inspection, Inspection::None);
        let mut pending = std::mem::take(&mut self.reservations);
        let size = match inspection {
            Inspection::Json => self.response_body_size,
            _ => 0,
        };
        let action = self.inspect_response(&mut inspection, &mut pending, size, true);
        self.reservations = pending;
        action
    }

    fn on_log(&mut self) {
        // The stream is over. Calls still pending were forwarded and got no error we could see:
        // the client hung up (a disconnect is not a cancellation in MCP: the tool may still
        // run), the answer's id was spelled differently, or it came in a form we don't read.
        // Refunds need positive evidence of failure, so what they took stays taken.
        self.reservations.clear();
        // A request still waiting for rate-limit services was never forwarded: what it took
        // locally goes back (their late answers are dropped with the stream).
        if let Some(awaiting) = self.awaiting.take() {
            if let Some(problem) = awaiting.abandon(&mut EnvoySharedData) {
                log(
                    LogLevel::Error,
                    &format!("mcp-policy-filter[{}]: {problem}", self.namespace),
                );
            }
        }
        if self.inspecting {
            timing::request_done();
        }
    }
}

impl PolicyStream {
    /// Refund on an HTTP error; choose how the body is read (to settle reservations, to filter a
    /// tools/list answer).
    fn inspect_response_headers(&mut self) -> Action {
        // One host call for both headers (each call into Envoy costs more than the lookups).
        let raw = raw_headers::fetch(MapType::HttpResponseHeaders);
        let headers = raw
            .as_deref()
            .and_then(header_map::decode)
            .unwrap_or_else(|| {
                // Read as no headers: no status, so nothing is refunded (never undercharged), and
                // no content type, so the answer is not rewritten, as an answer in a format the
                // filter does not read; its tools stay enforced when called.
                log(
                    LogLevel::Error,
                    &format!(
                        "mcp-policy-filter[{}]: response headers unreadable; answer passed as is",
                        self.namespace
                    ),
                );
                Vec::new()
            });
        let header_text = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let status = header_text(":status")
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        if status >= 400 && !self.reservations.is_empty() {
            // The request failed as a whole: nothing it reserved was used — unless Envoy only
            // stopped waiting for a server that has the call.
            let details = hostcalls::get_property(vec!["response", "code_details"])
                .ok()
                .flatten()
                .and_then(|d| String::from_utf8(d).ok());
            match details {
                Some(details) if http_error_refunds(status, &details) => {
                    self.refund_pending("HTTP error");
                }
                details => {
                    log(
                        LogLevel::Debug,
                        &format!(
                            "mcp-policy-filter[{}]: HTTP {status} ({}): the server may have the call, so what it took stays taken",
                            self.namespace,
                            details.as_deref().unwrap_or("details unreadable")
                        ),
                    );
                    self.reservations.clear();
                }
            }
        }
        let content_type = header_text("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        self.inspection = if content_type.starts_with("application/json") {
            Inspection::Json
        } else if content_type.starts_with("text/event-stream") {
            Inspection::Sse(SseRewriter::default())
        } else {
            Inspection::None
        };
        if !self.tools_list_ids.is_empty() && !matches!(self.inspection, Inspection::None) {
            // A tools/list answer may be rewritten: its length will change.
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn refund_pending(&mut self, why: &str) {
        for reservation in std::mem::take(&mut self.reservations) {
            self.refund(&reservation, why);
        }
    }

    fn refund(&self, reservation: &Reservation, why: &str) {
        if let Err(problem) = refund(&mut EnvoySharedData, reservation) {
            log(
                LogLevel::Error,
                &format!("mcp-policy-filter[{}]: {problem}", self.namespace),
            );
        } else {
            log(
                LogLevel::Debug,
                &format!(
                    "mcp-policy-filter[{}]: refunded tools/call id {} ({why})",
                    self.namespace, reservation.id
                ),
            );
        }
    }

    /// Settle reservations answered by `message`, and filter it if it answers a tools/list.
    fn observe(
        &self,
        caller: &Caller,
        pending: &mut Vec<Reservation>,
        message: &serde_json::Value,
    ) -> Option<serde_json::Value> {
        if let Some(failed) = settle(pending, message) {
            self.refund(&failed, "JSON-RPC error");
        }
        filter_message(&self.policy, caller, &self.tools_list_ids, message)
    }

    fn inspect_response(
        &self,
        inspection: &mut Inspection,
        pending: &mut Vec<Reservation>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let caller = Caller::new(&self.policy, self.identity.as_ref());
        match inspection {
            Inspection::None => Action::Continue,
            Inspection::Json => {
                if !end_of_stream {
                    if body_size <= MAX_HELD_ANSWER {
                        return Action::Pause;
                    }
                    // Too large to hold (Envoy would reset the stream at its buffer limit): it
                    // goes on as is, its calls stay charged (no evidence of failure) and a
                    // tools/list in it is not filtered.
                    if !self.tools_list_ids.is_empty() {
                        log(
                            LogLevel::Warn,
                            &format!(
                                "mcp-policy-filter[{}]: answer over {MAX_HELD_ANSWER} bytes passed unfiltered",
                                self.namespace
                            ),
                        );
                    }
                    pending.clear();
                    *inspection = Inspection::None;
                    return Action::Continue;
                }
                let body = self
                    .get_http_response_body(0, body_size)
                    .unwrap_or_default();
                if self.tools_list_ids.is_empty() && !contains(&body, b"\"error\"") {
                    // Nothing to rewrite and no JSON-RPC error: every reservation stands, and a
                    // large tool result is not parsed for nothing. (An error spelled with escapes
                    // is then not refunded: the caller is charged, never undercharged.)
                    pending.clear();
                    return Action::Continue;
                }
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    // Not a JSON-RPC answer: pending calls count as unanswered (they stay charged).
                    return Action::Continue;
                };
                let messages = match &value {
                    serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    single => vec![single],
                };
                for message in messages {
                    if let Some(failed) = settle(pending, message) {
                        self.refund(&failed, "JSON-RPC error");
                    }
                }
                if let Some(filtered) =
                    filter_json_body(&self.policy, &caller, &self.tools_list_ids, &body)
                {
                    self.set_http_response_body(0, body_size, &filtered);
                }
                Action::Continue
            }
            Inspection::Sse(rewriter) => {
                let chunk = self
                    .get_http_response_body(0, body_size)
                    .unwrap_or_default();
                let mut observe = |m: &serde_json::Value| self.observe(&caller, pending, m);
                let mut out = rewriter.feed(&chunk, &mut observe);
                if end_of_stream {
                    out.extend(rewriter.finish(&mut observe));
                }
                if body_size > 0 || !out.is_empty() {
                    self.set_http_response_body(0, body_size, &out);
                }
                Action::Continue
            }
        }
    }
}

/// The most of a JSON answer held to read it whole (to refund a failed call, to filter a
/// tools/list): below Envoy's default per-stream buffer limit (1 MiB), so holding never makes
/// Envoy reset the stream.
const MAX_HELD_ANSWER: usize = 512 * 1024;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
