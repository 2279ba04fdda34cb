//! One HTTP stream: each proxy-wasm callback becomes one call into the engine's `Stream`, with
//! what Envoy holds for it read here (header maps, service answers).

use std::rc::Rc;
use std::sync::Arc;

use mcp_policy_engine::Policy;
use mcp_policy_engine::Stream;
use mcp_policy_engine::{Action as Next, Phase};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use mcp_policy_engine::Host;

use super::envoy::EnvoyHost;
use super::phase_timing as timing;
use super::raw_headers;

pub struct PolicyStream {
    stream: Stream,
    host: EnvoyHost,
}

impl PolicyStream {
    pub fn new(policy: Arc<Policy>, namespace: Rc<str>) -> Self {
        PolicyStream {
            stream: Stream::new(policy, Arc::from(&*namespace)),
            host: EnvoyHost::new(namespace),
        }
    }
}

fn action(next: Next) -> Action {
    match next {
        Next::Continue => Action::Continue,
        Next::Pause => Action::Pause,
    }
}

/// The `:status` of a serialized header map.
fn status_of(raw: &[u8]) -> Option<u16> {
    mcp_policy_engine::wire::header_map::decode(raw)?
        .iter()
        .find(|(name, _)| *name == ":status")
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .and_then(|value| value.parse::<u16>().ok())
}

impl Context for PolicyStream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // No `:status` means no answer: the call failed, timed out or was reset. A failed call
        // has no headers at all, and asking Envoy for one then is an error the SDK's getter
        // panics on (the VM would stop): so the map is read whole, in place, only if there is one.
        let raw = (num_headers > 0)
            .then(|| raw_headers::fetch(MapType::HttpCallResponseHeaders))
            .flatten();
        let answer = match raw.as_deref().and_then(status_of) {
            None => Err("no answer (unreachable or timed out)".to_owned()),
            Some(status) => {
                match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
                    Ok(body) => Ok((status, body.unwrap_or_default())),
                    Err(status) => Err(format!("answer unreadable: {status:?}")),
                }
            }
        };
        self.stream
            .on_approval_answer(&mut self.host, token_id, answer);
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let answer = if status_code == 0 {
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
        self.stream
            .on_rate_limit_answer(&mut self.host, token_id, answer);
    }
}

impl HttpContext for PolicyStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One host call for every header (each call into Envoy costs more than the lookups),
        // read in place. Values as bytes: they need not be UTF-8.
        self.host.start_phase();
        let raw = raw_headers::fetch(MapType::HttpRequestHeaders);
        self.host.mark(Phase::HeadersFetch);
        action(
            self.stream
                .on_request_headers(&mut self.host, raw.as_deref(), end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.host.start_phase();
        action(
            self.stream
                .on_request_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.stream.on_request_trailers(&mut self.host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.stream.watches_response() {
            return Action::Continue;
        }
        self.host.start_phase();
        let raw = raw_headers::fetch(MapType::HttpResponseHeaders);
        action(
            self.stream
                .on_response_headers(&mut self.host, raw.as_deref()),
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.host.start_phase();
        action(
            self.stream
                .on_response_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.stream.on_response_trailers(&mut self.host))
    }

    fn on_log(&mut self) {
        self.stream.on_done(&mut self.host);
        if self.stream.inspected() {
            timing::request_done();
        }
    }
}
