//! Safe calls into Envoy for one HTTP stream: each wraps one ABI callback (`abi.rs`), copies what
//! Envoy lends (its buffers live only until the hook returns) and turns failures into values.

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, HttpFilterEnvoyPtr, ModuleBuffer};

/// Envoy's side of one HTTP stream: valid from `on_http_filter_new` to `on_http_filter_destroy`,
/// used only on the worker thread that owns the stream.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyStream(HttpFilterEnvoyPtr);

/// A borrowed slice of Envoy's memory, or nothing for a null pointer.
///
/// # Safety
/// `ptr` must point to `length` readable bytes that outlive `'a` (Envoy guarantees it until the
/// current hook returns).
pub unsafe fn lent<'a>(ptr: *const std::ffi::c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr.cast::<u8>(), length)
    }
}

/// Header pairs lent by Envoy, as `(name, value)` slices.
///
/// # Safety
/// As `lent`, for `count` headers at `headers`.
pub unsafe fn header_pairs<'a>(
    headers: *const EnvoyHttpHeader,
    count: usize,
) -> Vec<(&'a [u8], &'a [u8])> {
    if headers.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(headers, count)
        .iter()
        .map(|h| {
            (
                lent(h.key_ptr, h.key_length),
                lent(h.value_ptr, h.value_length),
            )
        })
        .collect()
}

/// Envoy's buffers lent as a list, concatenated into `out`.
///
/// # Safety
/// As `lent`, for `count` buffers at `chunks`.
pub unsafe fn append_chunks(chunks: *const EnvoyBuffer, count: usize, out: &mut Vec<u8>) {
    if chunks.is_null() {
        return;
    }
    for chunk in std::slice::from_raw_parts(chunks, count) {
        out.extend_from_slice(lent(chunk.ptr, chunk.length));
    }
}

/// Request headers or response headers.
#[derive(Debug, Clone, Copy)]
pub enum Headers {
    Request,
    Response,
}

impl Headers {
    fn kind(self) -> abi::HeaderType {
        match self {
            Headers::Request => abi::HEADER_TYPE_REQUEST_HEADERS,
            Headers::Response => abi::HEADER_TYPE_RESPONSE_HEADERS,
        }
    }

    /// The body that goes with these headers: (what was held, what just arrived).
    fn bodies(self) -> [abi::BodyType; 2] {
        match self {
            Headers::Request => [
                abi::BODY_TYPE_BUFFERED_REQUEST,
                abi::BODY_TYPE_RECEIVED_REQUEST,
            ],
            Headers::Response => [
                abi::BODY_TYPE_BUFFERED_RESPONSE,
                abi::BODY_TYPE_RECEIVED_RESPONSE,
            ],
        }
    }
}

impl EnvoyStream {
    pub fn new(ptr: HttpFilterEnvoyPtr) -> EnvoyStream {
        EnvoyStream(ptr)
    }

    /// Every header, serialized as the engine reads them (`wire::header_map`): one call for
    /// the count, one for the whole map.
    pub fn header_map(self, which: Headers) -> Option<Vec<u8>> {
        // SAFETY: the pointer is this stream's; the array is sized as Envoy says and read
        // before the hook returns.
        unsafe {
            let count =
                abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, which.kind());
            let mut headers = vec![EnvoyHttpHeader::EMPTY; count];
            if count > 0
                && !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.0,
                    which.kind(),
                    headers.as_mut_ptr(),
                )
            {
                return None;
            }
            let pairs = header_pairs(headers.as_ptr(), count);
            Some(mcp_policy_engine::wire::header_map::encode(&pairs))
        }
    }

    pub fn remove_header(self, which: Headers, name: &str) {
        // SAFETY: a null value removes the header; `name` outlives the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.0,
                which.kind(),
                ModuleBuffer::from_bytes(name.as_bytes()),
                ModuleBuffer::NULL,
            );
        }
    }

    /// The body's buffers to read: what was held, then what just arrived; or only what arrived
    /// when that is the body an earlier filter held and released (then both name one buffer).
    fn parts(self, which: Headers) -> &'static [abi::BodyType] {
        // SAFETY: the pointer is this stream's.
        let released = unsafe {
            match which {
                Headers::Request => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0)
                }
                Headers::Response => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_response_body(self.0)
                }
            }
        };
        match (which, released) {
            (Headers::Request, true) => &[abi::BODY_TYPE_RECEIVED_REQUEST],
            (Headers::Response, true) => &[abi::BODY_TYPE_RECEIVED_RESPONSE],
            (Headers::Request, false) => &[
                abi::BODY_TYPE_BUFFERED_REQUEST,
                abi::BODY_TYPE_RECEIVED_REQUEST,
            ],
            (Headers::Response, false) => &[
                abi::BODY_TYPE_BUFFERED_RESPONSE,
                abi::BODY_TYPE_RECEIVED_RESPONSE,
            ],
        }
    }

    /// Bytes of the body held so far plus the part that just arrived.
    pub fn body_size(self, which: Headers) -> usize {
        self.parts(which)
            .iter()
            // SAFETY: the pointer is this stream's.
            .map(|kind| unsafe {
                abi::envoy_dynamic_module_callback_http_get_body_size(self.0, *kind)
            })
            .sum()
    }

    /// The first `size` bytes of the body (held, then just arrived), copied.
    pub fn body(self, which: Headers, size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.min(self.body_size(which)));
        for kind in self.parts(which) {
            // SAFETY: the chunk array is sized as Envoy says and copied before the hook returns.
            unsafe {
                let count =
                    abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, *kind);
                if count == 0 {
                    continue;
                }
                let mut chunks = vec![EnvoyBuffer::EMPTY; count];
                if abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.0,
                    *kind,
                    chunks.as_mut_ptr(),
                ) {
                    append_chunks(chunks.as_ptr(), count, &mut out);
                }
            }
        }
        out.truncate(size);
        out
    }

    /// Replace the first `size` bytes of the body with `replacement`: the whole body is taken
    /// out and written back where it was (held, or just arrived; in a trailers hook, where only
    /// the held body can take bytes, there).
    pub fn replace_body(self, which: Headers, size: usize, replacement: &[u8]) {
        let whole = self.body(which, usize::MAX);
        let rest = whole.get(size..).unwrap_or_default();
        let parts = self.parts(which);
        // SAFETY: the pointer is this stream's; the module buffers outlive the calls.
        unsafe {
            let mut target = None;
            for kind in parts {
                let present = abi::envoy_dynamic_module_callback_http_get_body_size(self.0, *kind);
                if present > 0 {
                    abi::envoy_dynamic_module_callback_http_drain_body(self.0, *kind, present);
                    target.get_or_insert(*kind);
                }
            }
            let [held, arrived] = which.bodies();
            let mut order = vec![target.unwrap_or(arrived), arrived, held];
            order.dedup();
            for kind in order {
                let written = abi::envoy_dynamic_module_callback_http_append_body(
                    self.0,
                    kind,
                    ModuleBuffer::from_bytes(replacement),
                );
                if written {
                    if !rest.is_empty() {
                        abi::envoy_dynamic_module_callback_http_append_body(
                            self.0,
                            kind,
                            ModuleBuffer::from_bytes(rest),
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Answer the request here; `details` is Envoy's `response.code_details`.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut headers: Vec<abi::ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| abi::ModuleHttpHeader::new(k.as_bytes(), v.as_bytes()))
            .collect();
        // SAFETY: every buffer outlives the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::from_bytes(body),
                ModuleBuffer::from_bytes(details.as_bytes()),
            );
        }
    }

    pub fn continue_request(self) {
        // SAFETY: the pointer is this stream's.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// A request to `cluster` with one answer (`on_http_filter_http_callout_done`): its id.
    pub fn callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, String> {
        let mut headers = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: every buffer outlives the call; Envoy copies them and writes `id`.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::from_bytes(cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::from_bytes(body),
                timeout_ms,
            )
        };
        started(result, id)
    }

    /// A stream to `cluster` sending `headers` and `body` (then ending): its answer arrives
    /// through the `on_http_filter_http_stream_*` hooks, with the id returned here.
    pub fn start_stream(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, String> {
        let mut headers = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: every buffer outlives the call; Envoy copies them and writes `id`.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_start_http_stream(
                self.0,
                &mut id,
                ModuleBuffer::from_bytes(cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::from_bytes(body),
                true,
                timeout_ms,
            )
        };
        started(result, id)
    }

    /// Keep `value` under `key` for the access log (`%FILTER_STATE(key:PLAIN)%`).
    pub fn set_filter_state(self, key: &str, value: &[u8]) -> bool {
        // SAFETY: the buffers outlive the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::from_bytes(key.as_bytes()),
                ModuleBuffer::from_bytes(value),
            )
        }
    }

    /// A string attribute of the stream (`abi::ATTRIBUTE_*`), if Envoy has one.
    pub fn attribute(self, id: abi::AttributeId) -> Option<String> {
        let mut value = EnvoyBuffer::EMPTY;
        // SAFETY: the value is copied before the hook returns.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0, id, &mut value,
            )
            .then(|| String::from_utf8_lossy(lent(value.ptr, value.length)).into_owned())
        }
    }

    /// Add 1 to counter `id` (defined with as many labels as `labels` has values).
    pub fn increment(self, id: usize, labels: &[&str]) {
        let mut labels: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::from_bytes(l.as_bytes()))
            .collect();
        // SAFETY: the label buffers outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                labels.as_mut_ptr(),
                labels.len(),
                1,
            );
        }
    }
}

fn module_headers(headers: &[(&str, &str)]) -> Vec<abi::ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| abi::ModuleHttpHeader::new(k.as_bytes(), v.as_bytes()))
        .collect()
}

fn started(result: abi::HttpCalloutInitResult, id: u64) -> Result<u64, String> {
    match result {
        abi::HTTP_CALLOUT_INIT_SUCCESS => Ok(id),
        abi::HTTP_CALLOUT_INIT_MISSING_REQUIRED_HEADERS => Err("missing required headers".into()),
        abi::HTTP_CALLOUT_INIT_CLUSTER_NOT_FOUND => Err("cluster not found".into()),
        abi::HTTP_CALLOUT_INIT_DUPLICATE_CALLOUT_ID => Err("duplicate call id".into()),
        abi::HTTP_CALLOUT_INIT_CANNOT_CREATE_REQUEST => Err("cannot create the request".into()),
        other => Err(format!("not started ({other})")),
    }
}

/// Write `message` to Envoy's log at `level`.
pub fn log(level: abi::LogLevel, message: &str) {
    // SAFETY: the buffer outlives the call.
    unsafe {
        abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::from_bytes(message.as_bytes()));
    }
}
