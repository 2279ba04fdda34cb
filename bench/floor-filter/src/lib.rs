//! The cost floor of a proxy-wasm filter in Envoy, for the benchmark (`bench/run.py`, arms W and
//! H). It decides nothing; what it measures is Envoy's side of running any Wasm filter:
//!
//! - `"empty"`: every callback crosses into the VM and returns at once (arm W);
//! - `"hold-body"`: the least a filter that decides on the body must do, as mcp-policy-filter
//!   does: hold the headers, let Envoy buffer the body, read it once, release the request (arm H).
//!
//! The plugin configuration (a string) picks the mode; anything else is refused at configure.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot { hold_body: false }) });
}}

struct FloorRoot {
    hold_body: bool,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mode = self.get_plugin_configuration().unwrap_or_default();
        match mode.as_slice() {
            b"empty" => self.hold_body = false,
            b"hold-body" => self.hold_body = true,
            _ => return false,
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.hold_body {
            Some(Box::new(HoldBody))
        } else {
            Some(Box::new(Empty))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {}

struct HoldBody;

impl Context for HoldBody {}

impl HttpContext for HoldBody {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        // Read once, as a filter deciding on the body must; `black_box` keeps the read.
        let body = self.get_http_request_body(0, body_size);
        std::hint::black_box(body);
        Action::Continue
    }
}
