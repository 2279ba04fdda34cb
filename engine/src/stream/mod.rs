//! One HTTP stream through the filter, as the host's callbacks drive it. POST requests are held,
//! headers included, until the whole body has arrived; then the engine decides, maybe after
//! asking rate-limit services or the approval service, and the request is either released
//! untouched or answered here. Other methods stream through. The answer to a forwarded request
//! is watched for failed calls (refunds) and listings (`tools/list`, … answers, rewritten).

use std::sync::Arc;

use crate::host::{mark, Action, Host, Level, Metric, Phase};
use crate::policy::caller::Caller;
use crate::policy::identity::{self, Identity, RequestAttributes};
use crate::policy::{Policy, RefusalMode};
use crate::protocol::approval_check::CHECK_PATH;
use crate::protocol::header_map;
use crate::protocol::ratelimit::Response;
use crate::reply::{self, PendingAnswer, Refusal, Reply};
use crate::report::{self, audit::AuditContext};
use crate::request::elicitation;
use crate::request::evaluate::{evaluate, RequestMeta, Step};
use crate::request::headers::{self, screen, RequestHeaders, Screening};
use crate::request::outcome::{Outcome, Verdict};
use crate::request::remote::AwaitingServices;
use crate::response::watch::{Reader, Watch};
use crate::services::approval::{self, Answer, ApprovalQuery, Approved};
use crate::services::rate_limit;

/// Where the request stands.
#[derive(Debug, Default)]
enum State {
    /// Not (or no longer) held: everything passes.
    #[default]
    Passing,
    /// A POST held until its body is complete.
    Holding,
    /// Held until every rate-limit service asked has answered.
    AwaitingServices(Box<Waiting>),
    /// Held until the approval service answers the call with this token.
    AwaitingApproval {
        token: u32,
        query: Box<ApprovalQuery>,
    },
}

/// A request waiting for rate-limit services, and their answers as they come.
#[derive(Debug)]
struct Waiting {
    awaiting: AwaitingServices,
    /// Call token and the query (index) it carries.
    calls: Vec<(u32, usize)>,
    answers: Vec<Option<Result<Response, String>>>,
}

/// What the request headers said about the caller and the call.
#[derive(Debug, Default)]
struct Request {
    identity: Option<Identity>,
    session: Option<String>,
    /// A POST to the legacy HTTP+SSE transport's message endpoint.
    legacy_sse: bool,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    request_id: Option<String>,
}

pub struct Stream {
    policy: Arc<Policy>,
    namespace: Arc<str>,
    state: State,
    /// Whether the request was held to be decided.
    inspected: bool,
    request: Request,
    /// Bytes of the request body buffered so far, as last reported.
    body_size: usize,
    /// When the request was decided (Unix seconds), for its audit record.
    decided_at: u64,
    watch: Watch,
    /// The decision whose audit record is stored again once guarded results are read.
    recorded: Option<Box<Outcome>>,
    /// The request is an `initialize` whose client takes URL-mode elicitation: its session,
    /// named in the answer's headers, is remembered.
    declares_url_mode: bool,
}

/// The request's headers and the host's attributes, as identity sources read them.
struct Attributes<'a> {
    headers: &'a RequestHeaders,
    host: &'a dyn Host,
}

impl RequestAttributes for Attributes<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(str::to_owned)
    }

    fn jwt_claim(&self, metadata_key: &str, path: &[String]) -> Option<String> {
        self.host.jwt_claim(metadata_key, path)
    }

    fn peer_uri_san(&self) -> Option<String> {
        self.host.peer_uri_san()
    }
}

impl Stream {
    pub fn new(policy: Arc<Policy>, namespace: Arc<str>) -> Stream {
        Stream {
            policy,
            namespace,
            state: State::Passing,
            inspected: false,
            request: Request::default(),
            body_size: 0,
            decided_at: 0,
            watch: Watch::default(),
            recorded: None,
            declares_url_mode: false,
        }
    }

    /// Whether this stream's request was held to be decided.
    pub fn inspected(&self) -> bool {
        self.inspected
    }

    /// `raw`: the request headers as the host serialized them (`None` if it could not).
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn Host,
        raw: Option<&[u8]>,
        end_of_stream: bool,
    ) -> Action {
        let Some(all) = raw.and_then(header_map::decode) else {
            // Envoy always has request headers to give: fail closed if it does not.
            self.log(
                host,
                Level::Error,
                "request headers unreadable; request refused",
            );
            return self.refuse_request(
                host,
                reply::refused_request(
                    500,
                    "the policy filter could not read the request headers".to_owned(),
                ),
            );
        };
        let text = |name: &str| {
            all.iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let method = text(":method").unwrap_or_default();
        self.request.request_id = text("x-request-id").map(str::to_owned);
        let headers = match screen(&self.policy, method, &all, !end_of_stream) {
            Screening::Pass => return Action::Continue,
            Screening::Refuse(reply) => return self.refuse_request(host, reply),
            Screening::Inspect(headers) => headers,
        };
        self.inspected = true;
        self.state = State::Holding;
        // Encodings and Envoy's retry and timeout overrides: one host call per header present,
        // and most requests carry none of them.
        for name in headers::to_remove(&all) {
            host.remove_request_header(name);
        }
        self.read_request_headers(host, &headers);
        mark(host, Phase::HeadersRead);
        if end_of_stream {
            return self.decide(host, &[]);
        }
        // Hold the headers too: nothing reaches the upstream before the verdict.
        Action::Pause
    }

    fn read_request_headers(&mut self, host: &dyn Host, headers: &RequestHeaders) {
        let attributes = Attributes { headers, host };
        self.request.identity = identity::resolve(&self.policy.identity_sources, &attributes);
        // The legacy HTTP+SSE transport names its session in the message endpoint's query.
        self.request.legacy_sse = headers.legacy_session().is_some();
        self.request.session = headers
            .get("mcp-session-id")
            .or(headers.legacy_session())
            .map(str::to_owned);
        self.request.mcp_method = headers.get("mcp-method").map(str::to_owned);
        self.request.mcp_name = headers.get("mcp-name").map(str::to_owned);
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !matches!(self.state, State::Holding) {
            return Action::Continue;
        }
        self.body_size = body_size;
        if body_size as u64 > self.policy.max_body_bytes {
            return self.refuse_request(host, reply::too_large(self.policy.max_body_bytes));
        }
        if !end_of_stream {
            // Keep buffering; the host hands over the accumulated body at end of stream.
            return Action::Pause;
        }
        let body = host.request_body(body_size);
        mark(host, Phase::BodyFetch);
        self.decide(host, &body)
    }

    /// Trailers end the request: the body is complete even though no body callback said so.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if !matches!(self.state, State::Holding) {
            return Action::Continue;
        }
        let body = host.request_body(self.body_size);
        self.decide(host, &body)
    }

    /// The approval service's answer to the call with `token`: its HTTP status and body, or
    /// why there is none.
    pub fn on_approval_answer(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        answer: Result<(u16, Vec<u8>), String>,
    ) {
        let query = match std::mem::take(&mut self.state) {
            State::AwaitingApproval {
                token: asked,
                query,
            } if asked == token => query,
            other => {
                self.state = other;
                return;
            }
        };
        let step = match approval::read_answer(&query.tool, answer) {
            Answer::Approved { note } => {
                let body = host.request_body(self.body_size);
                let approved = Approved {
                    digest: &query.digest,
                    note: &note,
                };
                self.evaluate(host, &body, Some(approved))
            }
            Answer::Refused(refusal) => {
                let refusal = self.shaped(host, refusal);
                Step::Done(Outcome::approval_refused(
                    *query,
                    &refusal,
                    self.refusal_mode(),
                ))
            }
        };
        if self.proceed(host, step) == Action::Continue {
            host.resume_request();
        }
    }

    /// A pending approval, as the client can best act on it: an `input_required` result when
    /// the request's own capabilities declare URL-mode elicitation (2026-07-28), the
    /// URL-elicitation-required error when its session's `initialize` did (2025-11-25).
    fn shaped(&self, host: &mut dyn Host, refusal: Refusal) -> Refusal {
        let Refusal::ApprovalPending {
            tool,
            approval_id,
            approve_url,
            ..
        } = refusal
        else {
            return refusal;
        };
        let answer = if elicitation::requests_url_mode(&host.request_body(self.body_size)) {
            PendingAnswer::InputRequired
        } else if self.request.session.as_deref().is_some_and(|session| {
            elicitation::remembered(&self.policy, host.store(), &self.namespace, session)
        }) {
            PendingAnswer::UrlElicitation
        } else {
            PendingAnswer::Plain
        };
        Refusal::ApprovalPending {
            tool,
            approval_id,
            approve_url,
            answer,
        }
    }

    /// A rate-limit service's answer to the call with `token`: the serialized
    /// `RateLimitResponse`, or why there is none (gRPC status, timeout).
    pub fn on_rate_limit_answer(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        answer: Result<Vec<u8>, String>,
    ) {
        let State::AwaitingServices(waiting) = &mut self.state else {
            return;
        };
        let Some(position) = waiting.calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, index) = waiting.calls.swap_remove(position);
        let query = waiting.awaiting.queries.get(index);
        let descriptors = query.map_or(0, |q| q.descriptors());
        let service = query
            .and_then(|q| self.policy.rate_limit_services.get(q.service))
            .map_or("", |s| s.name.as_str());
        let answer = rate_limit::read_answer(answer, descriptors);
        host.count(Metric::ServiceAnswer {
            service,
            result: rate_limit::answer_label(&answer),
        });
        if let Some(slot) = waiting.answers.get_mut(index) {
            *slot = Some(answer);
        }
        let Some(outcome) = self.finish_if_answered(host) else {
            return;
        };
        if self.conclude(host, outcome) == Action::Continue {
            host.resume_request();
        }
    }

    /// Whether the answer is read at all: if not, its headers need not be fetched.
    pub fn watches_response(&self) -> bool {
        !self.watch.idle() || self.declares_url_mode
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host, raw: Option<&[u8]>) -> Action {
        if self.declares_url_mode {
            self.remember_url_mode(host, raw);
        }
        self.watch.on_headers(host, &self.namespace, raw);
        mark(host, Phase::ResponseHeaders);
        Action::Continue
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let caller = Caller::new(&self.policy, self.request.identity.as_ref());
        let reader = Reader {
            host: &mut *host,
            policy: &self.policy,
            caller: &caller,
            namespace: &self.namespace,
        };
        let action = self.watch.on_body(reader, body_size, end_of_stream);
        self.report_answer(host, end_of_stream);
        mark(host, Phase::ResponseBody);
        action
    }

    pub fn on_response_trailers(&mut self, host: &mut dyn Host) -> Action {
        let caller = Caller::new(&self.policy, self.request.identity.as_ref());
        let action = self.watch.on_trailers(Reader {
            host: &mut *host,
            policy: &self.policy,
            caller: &caller,
            namespace: &self.namespace,
        });
        self.report_answer(host, true);
        action
    }

    /// The answer to an `initialize` that declared URL-mode elicitation names its session:
    /// remember it, for the shape of approval answers.
    fn remember_url_mode(&mut self, host: &mut dyn Host, raw: Option<&[u8]>) {
        let headers = raw.and_then(header_map::decode).unwrap_or_default();
        let session = headers
            .iter()
            .find(|(name, _)| *name == "mcp-session-id")
            .and_then(|(_, value)| std::str::from_utf8(value).ok());
        if let Some(session) = session {
            if let Err(problem) =
                elicitation::remember(&self.policy, host.store(), &self.namespace, session)
            {
                self.log(
                    host,
                    Level::Warn,
                    &format!("session not remembered for URL elicitation: {problem}"),
                );
            }
        }
    }

    /// Report what the answer showed: drift in listings, detections in guarded results.
    fn report_answer(&mut self, host: &mut dyn Host, finished: bool) {
        self.report_found(host, finished);
        self.report_drift(host, finished);
    }

    /// Count what guards found in results as it is found; once the answer is `finished`, store
    /// the request's audit record again, its calls carrying what was found.
    fn report_found(&mut self, host: &mut dyn Host, finished: bool) {
        for (tool, found) in self.watch.new_found().to_vec() {
            host.count(Metric::GuardDetection {
                tool: self.policy.metric_label(&tool),
                detector: &found.detector,
                direction: found.direction.as_str(),
                action: found.action.as_str(),
            });
        }
        if !finished || self.watch.found().is_empty() {
            return;
        }
        let Some(mut recorded) = self.recorded.take() else {
            return;
        };
        for (tool, found) in self.watch.found() {
            if let Some(call) = recorded.calls.iter_mut().find(|c| c.target.name() == tool) {
                call.detections.push(found.clone());
            }
        }
        let context = AuditContext {
            time: self.decided_at,
            request_id: self.request.request_id.as_deref(),
            server: &self.namespace,
            identity: self.request.identity.as_ref(),
            session: self.request.session.as_deref(),
        };
        report::store_record(host, &self.policy, &context, &recorded);
    }

    /// Report what listings in the answer showed that differs from pins; its audit record once
    /// the answer is `finished`.
    fn report_drift(&mut self, host: &mut dyn Host, finished: bool) {
        let new = self.watch.new_drifts().to_vec();
        if new.is_empty() && !finished {
            return;
        }
        let context = AuditContext {
            time: host.now(),
            request_id: self.request.request_id.as_deref(),
            server: &self.namespace,
            identity: self.request.identity.as_ref(),
            session: self.request.session.as_deref(),
        };
        let all = finished.then(|| self.watch.drifts());
        report::publish_drift(host, &self.policy, &context, &new, all);
    }

    /// The stream is over (completed, reset or abandoned).
    pub fn on_done(&mut self, host: &mut dyn Host) {
        self.watch.close();
        // A request still waiting for rate-limit services was never forwarded: what it took
        // locally goes back (their late answers are dropped with the stream).
        if let State::AwaitingServices(waiting) = std::mem::take(&mut self.state) {
            if let Some(problem) = waiting.awaiting.abandon(host.store()) {
                self.log(host, Level::Error, &problem);
            }
        }
    }

    fn refusal_mode(&self) -> RefusalMode {
        if self.request.legacy_sse {
            RefusalMode::Http
        } else {
            self.policy.refusal_mode
        }
    }

    fn log(&self, host: &mut dyn Host, level: Level, message: &str) {
        host.log(
            level,
            &format!("mcp-policy-filter[{}]: {message}", self.namespace),
        );
    }

    /// Refused before the engine read a message (method, content type, headers, size): counted
    /// and audited like every other refusal.
    fn refuse_request(&mut self, host: &mut dyn Host, reply: Reply) -> Action {
        self.decided_at = host.now();
        self.conclude(host, Outcome::refused(reply, Vec::new()))
    }

    fn decide(&mut self, host: &mut dyn Host, body: &[u8]) -> Action {
        // Only a policy that asks for approvals answers differently for URL-mode clients, and
        // only a request without a session can be the `initialize` that declares it.
        self.declares_url_mode = self.policy.approval.is_some()
            && self.request.session.is_none()
            && contains(body, b"\"initialize\"")
            && elicitation::declares_url_mode(body);
        let step = self.evaluate(host, body, None);
        mark(host, Phase::Evaluate);
        self.proceed(host, step)
    }

    /// The engine's decision on `body`; `approved`: a human approved the call with this digest.
    fn evaluate(&mut self, host: &mut dyn Host, body: &[u8], approved: Option<Approved>) -> Step {
        let now = host.now();
        self.decided_at = now;
        let meta = RequestMeta {
            namespace: &self.namespace,
            identity: self.request.identity.as_ref(),
            session: self.request.session.as_deref(),
            mcp_method: self.request.mcp_method.as_deref(),
            mcp_name: self.request.mcp_name.as_deref(),
            now,
            legacy_sse: self.request.legacy_sse,
            approved,
        };
        evaluate(&self.policy, body, &meta, host.store())
    }

    /// Ask the services a step waits for (and hold the request), or conclude.
    fn proceed(&mut self, host: &mut dyn Host, step: Step) -> Action {
        let outcome = match step {
            Step::Done(outcome) => outcome,
            Step::AwaitServices(awaiting) => match self.ask_services(host, *awaiting) {
                Some(outcome) => outcome,
                None => return Action::Pause,
            },
            Step::AwaitApproval(query) => match self.ask_approval(host, query) {
                Some(outcome) => outcome,
                None => return Action::Pause,
            },
        };
        self.conclude(host, outcome)
    }

    /// Ask the approval service about `query` and hold the request. `Some`: it could not be
    /// asked, and the call is refused (fail closed).
    fn ask_approval(&mut self, host: &mut dyn Host, query: Box<ApprovalQuery>) -> Option<Outcome> {
        let mode = self.refusal_mode();
        let Some(settings) = self.policy.approval.as_ref() else {
            let refusal = Refusal::ApprovalUnavailable {
                tool: query.tool.clone(),
                problem: "the policy names no approval service".to_owned(),
            };
            return Some(Outcome::approval_refused(*query, &refusal, mode));
        };
        // The service holds its answer up to `hold_seconds`; a little more for the network.
        let timeout = settings.hold_seconds + 5;
        match host.call_approval_service(
            &settings.cluster,
            CHECK_PATH,
            query.request.as_bytes(),
            timeout,
        ) {
            Ok(token) => {
                self.state = State::AwaitingApproval { token, query };
                None
            }
            Err(problem) => {
                let refusal = Refusal::ApprovalUnavailable {
                    tool: query.tool.clone(),
                    problem: format!("cannot call cluster \"{}\": {problem}", settings.cluster),
                };
                Some(Outcome::approval_refused(*query, &refusal, mode))
            }
        }
    }

    /// Send each query. `None`: the request waits for the answers; `Some`: every query failed
    /// to go out and the decision is already made.
    fn ask_services(&mut self, host: &mut dyn Host, awaiting: AwaitingServices) -> Option<Outcome> {
        let mut waiting = Waiting {
            answers: (0..awaiting.queries.len()).map(|_| None).collect(),
            calls: Vec::new(),
            awaiting,
        };
        for (index, query) in waiting.awaiting.queries.iter().enumerate() {
            let Some(service) = self.policy.rate_limit_services.get(query.service) else {
                continue;
            };
            match host.call_rate_limit_service(&service.cluster, &query.request, service.timeout_ms)
            {
                Ok(token) => waiting.calls.push((token, index)),
                Err(problem) => {
                    host.count(Metric::ServiceAnswer {
                        service: &service.name,
                        result: "error",
                    });
                    if let Some(slot) = waiting.answers.get_mut(index) {
                        *slot = Some(Err(format!(
                            "cannot call cluster \"{}\": {problem}",
                            service.cluster
                        )));
                    }
                }
            }
        }
        self.state = State::AwaitingServices(Box::new(waiting));
        self.finish_if_answered(host)
    }

    /// Once every query has its answer: the decision.
    fn finish_if_answered(&mut self, host: &mut dyn Host) -> Option<Outcome> {
        let State::AwaitingServices(waiting) = &self.state else {
            return None;
        };
        if waiting.answers.iter().any(Option::is_none) {
            return None;
        }
        let State::AwaitingServices(waiting) = std::mem::take(&mut self.state) else {
            return None;
        };
        let Waiting {
            awaiting, answers, ..
        } = *waiting;
        let answers = answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err("no answer".to_owned())))
            .collect();
        Some(awaiting.resume(&self.policy, answers, host.store()))
    }

    /// Report the decision, then forward or answer.
    fn conclude(&mut self, host: &mut dyn Host, outcome: Outcome) -> Action {
        self.state = State::Passing;
        let context = AuditContext {
            time: self.decided_at,
            request_id: self.request.request_id.as_deref(),
            server: &self.namespace,
            identity: self.request.identity.as_ref(),
            session: self.request.session.as_deref(),
        };
        report::publish(host, &self.policy, &context, &outcome);
        if !outcome.guarded.is_empty() && !self.request.legacy_sse {
            // Kept to record what the guard finds in the results, once the answer is read.
            self.recorded = Some(Box::new(outcome.clone()));
        }
        let Outcome {
            verdict,
            listings,
            reservations,
            guarded,
            ..
        } = outcome;
        match verdict {
            Verdict::Forward if self.request.legacy_sse => {
                // Legacy HTTP+SSE: this response is only "202 Accepted"; the answers travel on
                // the session's SSE stream. What the calls took is committed now: refunding when
                // this response carries no answer would let every legacy call through uncounted.
                // A listing is still filtered should it come here after all: a server that
                // ignores the legacy query answers in this response.
                self.watch = Watch::new(listings, Vec::new());
                Action::Continue
            }
            Verdict::Forward => {
                self.watch = Watch::new(listings, reservations).guarding(guarded);
                Action::Continue
            }
            Verdict::Reply(reply) => {
                host.reply(&reply);
                Action::Pause
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
