//! One HTTP stream. POST requests are held, headers included, until the whole body has arrived
//! (this needs `allow_on_headers_stop_iteration: true`); then the engine decides and the request
//! is either released untouched or answered locally. Other methods and all responses stream
//! through without being touched.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use crate::engine::evaluate::{evaluate, Outcome, RequestMeta, Verdict};
use crate::engine::identity::{self, Identity};
use crate::engine::policy::Policy;
use crate::engine::reply::{self, Reply};
use crate::engine::request_headers::{screen, Screening};

use super::attributes::EnvoyRequest;
use super::root::log;
use super::shared_data::EnvoySharedData;

pub struct PolicyStream {
    policy: Rc<Policy>,
    namespace: Rc<str>,
    inspecting: bool,
    done: bool,
    /// Bytes buffered so far, as last reported by the body callback.
    body_size: usize,
    identity: Option<Identity>,
    session: Option<String>,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
}

impl PolicyStream {
    pub fn new(policy: Rc<Policy>, namespace: Rc<str>) -> Self {
        PolicyStream {
            policy,
            namespace,
            inspecting: false,
            done: false,
            body_size: 0,
            identity: None,
            session: None,
            mcp_method: None,
            mcp_name: None,
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

    fn decide(&mut self, body: &[u8]) -> Action {
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let meta = RequestMeta {
            namespace: &self.namespace,
            identity: self.identity.as_ref(),
            session: self.session.as_deref(),
            mcp_method: self.mcp_method.as_deref(),
            mcp_name: self.mcp_name.as_deref(),
            now,
        };
        let Outcome {
            verdict,
            calls,
            problem,
        } = evaluate(&self.policy, body, &meta, &mut EnvoySharedData);
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
            Verdict::Forward => {
                self.done = true;
                Action::Continue
            }
            Verdict::Reply(reply) => self.respond(reply),
        }
    }
}

impl Context for PolicyStream {}

impl HttpContext for PolicyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // Bytes, not strings: the SDK's string getters panic on values that are not UTF-8.
        let method = self
            .get_http_request_header_bytes(":method")
            .and_then(|m| String::from_utf8(m).ok())
            .unwrap_or_default();
        let headers = self.get_http_request_headers_bytes();
        let headers = match screen(&self.policy, &method, &headers, !end_of_stream) {
            Screening::Pass => return Action::Continue,
            Screening::Refuse(reply) => return self.respond(reply),
            Screening::Inspect(headers) => headers,
        };
        self.inspecting = true;
        self.identity = identity::resolve(
            &self.policy.identity_sources,
            &EnvoyRequest { headers: &headers },
        );
        self.session = headers.get("mcp-session-id").map(str::to_owned);
        self.mcp_method = headers.get("mcp-method").map(str::to_owned);
        self.mcp_name = headers.get("mcp-name").map(str::to_owned);
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
            return self.respond(reply::too_large(self.policy.max_body_bytes));
        }
        if !end_of_stream {
            // Keep buffering; Envoy hands us the accumulated body at end of stream.
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
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
}
