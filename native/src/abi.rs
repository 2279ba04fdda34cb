//! Hand-written FFI declarations for the part of Envoy's dynamic-module ABI that an HTTP filter
//! uses (`envoy.filters.http.dynamic_modules`).
//!
//! Reference: `source/extensions/dynamic_modules/abi/abi.h` in envoyproxy/envoy at commit
//! 0199da4a13cb999df12ad32db7d03942cfbf9abb (header ABI "v0.1.0"). The pinned Envoy 1.40.0 binary
//! reports ABI "v0.2.0" and, per the header's compatibility rule, accepts v0.1.y modules. Every
//! `envoy_dynamic_module_callback_*` symbol declared below was checked against
//! `nm -D --defined-only` of the 1.40.0 binary, and every hook alias against the
//! `envoy_dynamic_module_on_*` names the binary looks up (`strings`).
//!
//! Conventions (these hold for the whole ABI):
//! * Enumerations are plain C `enum`s, i.e. a C `int`-sized value. They are modelled as `u32`
//!   aliases plus constants, never as Rust `enum`s, so an unexpected value coming from Envoy can
//!   not be undefined behaviour.
//! * `EnvoyBuffer` / `EnvoyHttpHeader` point into Envoy-owned memory. Unless a callback says
//!   otherwise they stay valid only until the current hook returns, and any mutating callback on
//!   the same object (set header, drain/append body, ...) may invalidate them earlier.
//! * `ModuleBuffer` / `ModuleHttpHeader` point into module memory; Envoy copies what it needs
//!   before the callback returns, so they only have to live for the duration of the call.
//! * Envoy never unwinds into the module and the module must never unwind into Envoy: every
//!   exported hook has to catch panics (`std::panic::catch_unwind`) and turn them into a safe
//!   return value.
#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_void};

// =================================================================================================
// Opaque pointers
// =================================================================================================

/// Envoy's per-filter-configuration object (`DynamicModuleHttpFilterConfig`). Handed to
/// `on_http_filter_config_new`; valid until `on_http_filter_config_destroy` returns. Used for
/// metric definitions and config-level callouts/streams.
pub type HttpFilterConfigEnvoyPtr = *mut c_void;
/// The module's configuration object, returned from `on_http_filter_config_new`. Owned by the
/// module; released in `on_http_filter_config_destroy`.
pub type HttpFilterConfigModulePtr = *const c_void;
/// The module's per-route configuration object, returned from
/// `on_http_filter_per_route_config_new`.
pub type HttpFilterPerRouteConfigModulePtr = *const c_void;
/// Envoy's per-stream filter object (`DynamicModuleHttpFilter`). Valid from `on_http_filter_new`
/// until `on_http_filter_destroy`; every per-request callback takes it.
pub type HttpFilterEnvoyPtr = *mut c_void;
/// The module's per-stream filter object, returned from `on_http_filter_new`.
pub type HttpFilterModulePtr = *const c_void;
/// Null-terminated ABI version string returned from `on_program_init`.
pub type AbiVersionModulePtr = *const c_char;

// =================================================================================================
// Buffers and headers
// =================================================================================================

/// A byte range owned by Envoy (read-only for the module).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    /// An empty buffer suitable as an out-parameter.
    pub const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A byte range owned by the module and lent to Envoy for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    /// The null buffer (for `set_header` this means "remove the header").
    pub const NULL: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// Borrow a byte slice. The slice must outlive the callback it is passed to.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

/// One header (name and value) stored in an Envoy header map.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    /// A zeroed entry, used to pre-size out-arrays.
    pub const EMPTY: Self = Self {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// One header (name and value) built by the module, e.g. for local replies and callouts.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl ModuleHttpHeader {
    /// Borrow a name/value pair; both must outlive the callback they are passed to.
    pub fn new(key: &[u8], value: &[u8]) -> Self {
        Self {
            key_ptr: key.as_ptr().cast(),
            key_length: key.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

// =================================================================================================
// Enumerations (C enums => u32 + constants)
// =================================================================================================

/// Which header map a header callback addresses.
pub type HeaderType = u32;
pub const HEADER_TYPE_REQUEST_HEADERS: HeaderType = 0;
pub const HEADER_TYPE_REQUEST_TRAILERS: HeaderType = 1;
pub const HEADER_TYPE_RESPONSE_HEADERS: HeaderType = 2;
pub const HEADER_TYPE_RESPONSE_TRAILERS: HeaderType = 3;

/// Which body buffer a body callback addresses.
///
/// * `Received*` is the data frame Envoy handed to the *current* body hook. It exists only while
///   `on_http_filter_request_body` / `on_http_filter_response_body` is running.
/// * `Buffered*` is what the filter chain has accumulated so far because this (or an earlier)
///   filter returned `StopIterationAndBuffer`. It is reachable from any hook.
///
/// Observed on 1.40: when the body hook returned `StopIterationAndBuffer` for earlier chunks,
/// Envoy moves the final (end_of_stream) chunk into the buffered body before calling the hook,
/// so at end of stream `Buffered*` holds the whole body and `Received*` is empty. When nothing was
/// buffered (single chunk with end_of_stream) `Buffered*` is unavailable and `Received*` holds it.
/// Reading buffered-then-received covers both cases.
pub type BodyType = u32;
pub const BODY_TYPE_RECEIVED_REQUEST: BodyType = 0;
pub const BODY_TYPE_BUFFERED_REQUEST: BodyType = 1;
pub const BODY_TYPE_RECEIVED_RESPONSE: BodyType = 2;
pub const BODY_TYPE_BUFFERED_RESPONSE: BodyType = 3;

/// Log level; mirrors spdlog's level numbering.
pub type LogLevel = u32;
pub const LOG_LEVEL_TRACE: LogLevel = 0;
pub const LOG_LEVEL_DEBUG: LogLevel = 1;
pub const LOG_LEVEL_INFO: LogLevel = 2;
pub const LOG_LEVEL_WARN: LogLevel = 3;
pub const LOG_LEVEL_ERROR: LogLevel = 4;
pub const LOG_LEVEL_CRITICAL: LogLevel = 5;
pub const LOG_LEVEL_OFF: LogLevel = 6;

/// Return value of `on_http_filter_request_headers` / `on_http_filter_response_headers`.
/// Numerically identical to Envoy's `FilterHeadersStatus` (Envoy casts it straight through).
pub type HeadersStatus = u32;
/// Pass the headers on to the next filter.
pub const HEADERS_STATUS_CONTINUE: HeadersStatus = 0;
/// Hold the headers; body data keeps flowing into this filter's body hook. Resume with
/// `continue_decoding` / `continue_encoding`.
pub const HEADERS_STATUS_STOP_ITERATION: HeadersStatus = 1;
/// Continue, but do not end the stream even if the headers carried end_of_stream.
pub const HEADERS_STATUS_CONTINUE_AND_DONT_END_STREAM: HeadersStatus = 2;
/// Hold headers and buffer all following data/trailers until continued (subject to the buffer
/// limit; overflow produces a 413/500 from Envoy).
pub const HEADERS_STATUS_STOP_ALL_ITERATION_AND_BUFFER: HeadersStatus = 3;
/// Like the above but applies watermark back-pressure instead of failing on overflow.
pub const HEADERS_STATUS_STOP_ALL_ITERATION_AND_WATERMARK: HeadersStatus = 4;

/// Return value of `on_http_filter_request_body` / `on_http_filter_response_body`.
/// Numerically identical to Envoy's `FilterDataStatus`.
pub type BodyStatus = u32;
/// Pass this chunk (and any buffered data, plus held headers) downstream in the chain.
pub const BODY_STATUS_CONTINUE: BodyStatus = 0;
/// Keep the chunk in the filter chain's buffer and do not pass anything on yet.
pub const BODY_STATUS_STOP_ITERATION_AND_BUFFER: BodyStatus = 1;
/// Buffer, but apply watermark back-pressure once the buffer limit is hit.
pub const BODY_STATUS_STOP_ITERATION_AND_WATERMARK: BodyStatus = 2;
/// Do not pass on and do not buffer (the chunk is dropped from the chain's view).
pub const BODY_STATUS_STOP_ITERATION_NO_BUFFER: BodyStatus = 3;

/// Return value of `on_http_filter_request_trailers` / `on_http_filter_response_trailers`.
pub type TrailersStatus = u32;
pub const TRAILERS_STATUS_CONTINUE: TrailersStatus = 0;
pub const TRAILERS_STATUS_STOP_ITERATION: TrailersStatus = 1;

/// Return value of `on_http_filter_local_reply`.
pub type LocalReplyStatus = u32;
/// Let Envoy send the local reply.
pub const LOCAL_REPLY_STATUS_CONTINUE: LocalReplyStatus = 0;
/// Reset the stream instead of sending the local reply.
pub const LOCAL_REPLY_STATUS_CONTINUE_AND_RESET_STREAM: LocalReplyStatus = 1;

/// Immediate result of starting a callout or a stream.
pub type HttpCalloutInitResult = u32;
pub const HTTP_CALLOUT_INIT_SUCCESS: HttpCalloutInitResult = 0;
/// `:method`, `:path` or `host` missing from the request headers.
pub const HTTP_CALLOUT_INIT_MISSING_REQUIRED_HEADERS: HttpCalloutInitResult = 1;
pub const HTTP_CALLOUT_INIT_CLUSTER_NOT_FOUND: HttpCalloutInitResult = 2;
pub const HTTP_CALLOUT_INIT_DUPLICATE_CALLOUT_ID: HttpCalloutInitResult = 3;
/// The async client refused (e.g. no healthy host).
pub const HTTP_CALLOUT_INIT_CANNOT_CREATE_REQUEST: HttpCalloutInitResult = 4;

/// Final result delivered to the `*_http_callout_done` hooks.
pub type HttpCalloutResult = u32;
pub const HTTP_CALLOUT_RESULT_SUCCESS: HttpCalloutResult = 0;
pub const HTTP_CALLOUT_RESULT_RESET: HttpCalloutResult = 1;
pub const HTTP_CALLOUT_RESULT_EXCEED_RESPONSE_BUFFER_LIMIT: HttpCalloutResult = 2;

/// Reason delivered to the `*_http_stream_reset` hooks (mirrors the async client's reset reasons).
pub type HttpStreamResetReason = u32;
pub const HTTP_STREAM_RESET_CONNECTION_FAILURE: HttpStreamResetReason = 0;
pub const HTTP_STREAM_RESET_CONNECTION_TERMINATION: HttpStreamResetReason = 1;
pub const HTTP_STREAM_RESET_LOCAL_RESET: HttpStreamResetReason = 2;
pub const HTTP_STREAM_RESET_LOCAL_REFUSED_STREAM_RESET: HttpStreamResetReason = 3;
pub const HTTP_STREAM_RESET_OVERFLOW: HttpStreamResetReason = 4;
pub const HTTP_STREAM_RESET_REMOTE_RESET: HttpStreamResetReason = 5;
pub const HTTP_STREAM_RESET_REMOTE_REFUSED_STREAM_RESET: HttpStreamResetReason = 6;
pub const HTTP_STREAM_RESET_PROTOCOL_ERROR: HttpStreamResetReason = 7;

/// Result of the metric callbacks.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;
/// Unknown id (wrong config, or an id from a different kind of metric).
pub const METRICS_NOT_FOUND: MetricsResult = 1;
/// Number of label values differs from the number of label names given at definition.
pub const METRICS_INVALID_LABELS: MetricsResult = 2;
/// Metric definition attempted after stat creation was frozen (i.e. after config_new returned).
pub const METRICS_FROZEN: MetricsResult = 3;

/// Where `get_metadata_*` reads from.
pub type MetadataSource = u32;
/// The stream's dynamic metadata (what other filters, e.g. jwt_authn, wrote).
pub const METADATA_SOURCE_DYNAMIC: MetadataSource = 0;
pub const METADATA_SOURCE_ROUTE: MetadataSource = 1;
pub const METADATA_SOURCE_CLUSTER: MetadataSource = 2;
pub const METADATA_SOURCE_HOST: MetadataSource = 3;
pub const METADATA_SOURCE_HOST_LOCALITY: MetadataSource = 4;

/// Attribute selector for `get_attribute_*` (Envoy's attribute vocabulary, in header order).
/// Only the ones this project reads are named; the ordinals come from the header's enum order.
pub type AttributeId = u32;
/// `request.path` (string).
pub const ATTRIBUTE_REQUEST_PATH: AttributeId = 0;
/// `request.host` (string).
pub const ATTRIBUTE_REQUEST_HOST: AttributeId = 2;
/// `request.method` (string).
pub const ATTRIBUTE_REQUEST_METHOD: AttributeId = 4;
/// `request.id` — the `x-request-id` value (string).
pub const ATTRIBUTE_REQUEST_ID: AttributeId = 9;
/// `response.code` (int).
pub const ATTRIBUTE_RESPONSE_CODE: AttributeId = 15;
/// `response.code_details` (string; only set once a response was produced).
pub const ATTRIBUTE_RESPONSE_CODE_DETAILS: AttributeId = 16;
/// `source.address` — downstream remote address `ip:port` (string).
pub const ATTRIBUTE_SOURCE_ADDRESS: AttributeId = 24;
/// `connection.mtls` (bool).
pub const ATTRIBUTE_CONNECTION_MTLS: AttributeId = 29;
/// `connection.dns_san_peer_certificate` — first DNS SAN of the client cert (string).
pub const ATTRIBUTE_CONNECTION_DNS_SAN_PEER_CERTIFICATE: AttributeId = 35;
/// `connection.uri_san_peer_certificate` — first URI SAN of the client cert, e.g. a SPIFFE id
/// (string; false when the downstream is not TLS or presented no URI SAN).
pub const ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE: AttributeId = 37;

// =================================================================================================
// Callbacks exported by Envoy (all verified present in the 1.40.0 binary)
// =================================================================================================

extern "C" {
    // ----------------------------------------------------------------- logging / process

    /// Write `message` to Envoy's log under the `dynamic_modules` logger id.
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    /// Cheap check whether `level` would be emitted; use it to skip formatting.
    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    /// Number of worker threads (`--concurrency`). Main thread only (config_new / program_init);
    /// returns 0 (and trips an Envoy bug report) elsewhere.
    pub fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    /// True when Envoy runs with `--mode validate`. Main thread only.
    pub fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    /// Index of the worker thread that owns this stream (0-based, < concurrency).
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        filter: HttpFilterEnvoyPtr,
    ) -> u32;

    // ----------------------------------------------------------------- headers / trailers

    /// Number of entries in the selected header map (0 if that map does not exist yet).
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: HttpFilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    /// Copy every entry of the selected map into `result_headers`, which must have room for
    /// `get_headers_size` entries. Returns false when the map is unavailable.
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: HttpFilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// Look up the `index`-th value of header `key` (case-insensitive; Envoy lower-cases).
    /// `optional_size` (nullable) receives how many values exist. Returns false when the map
    /// is unavailable or `index` is out of range (then `result` is set to null/0).
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: HttpFilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// Replace all values of `key` with `value`. Passing a value whose `ptr` is null REMOVES the
    /// header (this is the removal API; there is no separate remove callback). Returns false if
    /// the map is not available in the current phase.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: HttpFilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Append one more value for `key`, keeping existing ones.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: HttpFilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // ----------------------------------------------------------------- body

    /// Total byte count of the selected body buffer (0 if unavailable).
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: HttpFilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    /// Number of slices the selected body buffer is made of.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: HttpFilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    /// Fill `result` (room for `get_body_chunks_size` entries) with the slices of the selected
    /// body buffer, in order. Returns false if that buffer does not exist in this phase.
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: HttpFilterEnvoyPtr,
        body_type: BodyType,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Remove `number_of_bytes` from the front of the selected buffer (all of it if larger).
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: HttpFilterEnvoyPtr,
        body_type: BodyType,
        number_of_bytes: usize,
    ) -> bool;

    /// Append `data` to the end of the selected buffer.
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: HttpFilterEnvoyPtr,
        body_type: BodyType,
        data: ModuleBuffer,
    ) -> bool;

    /// True when the chunk in the current request body hook *is* the buffer that an earlier
    /// filter accumulated and then released (so "received" already holds the whole body).
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: HttpFilterEnvoyPtr,
    ) -> bool;

    /// Response-side counterpart of `received_buffered_request_body`.
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(
        filter: HttpFilterEnvoyPtr,
    ) -> bool;

    // ----------------------------------------------------------------- local reply / resume

    /// Send a local reply (`sendLocalReply`) downstream: status, extra headers, body and an
    /// optional response-code-details string (null buffer = Envoy uses "dynamic_module").
    /// Verified on 1.40 from the request-headers hook, the request-body hook and the
    /// callout-done hook. Afterwards the calling hook should return a Stop* status
    /// (`StopIteration` from headers, `StopIterationNoBuffer` from body); Envoy then skips this
    /// filter's response hooks for the local reply.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: HttpFilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// Resume a request that a hook paused with a Stop* status (no-op if not paused).
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: HttpFilterEnvoyPtr);

    /// Resume a response that a hook paused with a Stop* status (no-op if not paused).
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(filter: HttpFilterEnvoyPtr);

    // ----------------------------------------------------------------- one-shot HTTP callout

    /// Send a buffered request to `cluster_name`. `headers` must include `:method`, `:path` and
    /// `host` (`:authority`). `timeout_milliseconds` is in ms. On success `callout_id_out`
    /// receives the id later passed to `on_http_filter_http_callout_done`.
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: HttpFilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> HttpCalloutInitResult;

    // ----------------------------------------------------------------- streaming HTTP (gRPC)

    /// Open a streaming request to `cluster_name` (same header requirements as the callout).
    /// `end_stream` = true ends the request with `body` (or with the headers if `body` is
    /// empty); false leaves it open for `http_stream_send_data` / `http_stream_send_trailers`.
    /// `timeout_milliseconds` = 0 means no timeout. `stream_id_out` receives the id used by the
    /// `on_http_filter_http_stream_*` hooks and the send/reset callbacks.
    pub fn envoy_dynamic_module_callback_http_filter_start_http_stream(
        filter: HttpFilterEnvoyPtr,
        stream_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        end_stream: bool,
        timeout_milliseconds: u64,
    ) -> HttpCalloutInitResult;

    /// Send more request body on an open stream; `end_stream` closes the request side.
    pub fn envoy_dynamic_module_callback_http_stream_send_data(
        filter: HttpFilterEnvoyPtr,
        stream_id: u64,
        data: ModuleBuffer,
        end_stream: bool,
    ) -> bool;

    /// Send request trailers; this also closes the request side.
    pub fn envoy_dynamic_module_callback_http_stream_send_trailers(
        filter: HttpFilterEnvoyPtr,
        stream_id: u64,
        trailers: *mut ModuleHttpHeader,
        trailers_size: usize,
    ) -> bool;

    /// Cancel an open stream; `on_http_filter_http_stream_reset` follows and the id is dead.
    pub fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter: HttpFilterEnvoyPtr,
        stream_id: u64,
    );

    // ----------------------------------------------------------------- filter state / metadata

    /// Store `value` as a plain string object (`StringAccessor`) in the stream's filter state
    /// under `key`. Fails if the key exists and is read-only.
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: HttpFilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Set `ns`.`key` = string `value` in the stream's dynamic metadata (overwrites).
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter: HttpFilterEnvoyPtr,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );

    /// Read `ns`.`key` from the selected metadata when that value is a string. Only top-level
    /// fields of the namespace Struct are addressable: a nested Struct/list value returns false.
    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: HttpFilterEnvoyPtr,
        source: MetadataSource,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Read a string-valued attribute (see the `ATTRIBUTE_*` constants). False when the
    /// attribute is unavailable, not a string, or not implemented.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: HttpFilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    // ----------------------------------------------------------------- metrics

    /// Define a counter on the filter config (call it from `on_http_filter_config_new`; later
    /// calls return `METRICS_FROZEN`). `label_names` may be null when `label_names_length` is 0.
    /// `counter_id_out` receives the id for the increment callbacks.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: HttpFilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id_out: *mut usize,
    ) -> MetricsResult;

    /// Increment a counter from a stream context; the number of label values must equal the
    /// number of label names used at definition.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: HttpFilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// Increment a counter with only the config pointer (no stream needed).
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: HttpFilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}

// =================================================================================================
// Hooks the module exports (`envoy_dynamic_module_on_*`)
// =================================================================================================
//
// Names the 1.40.0 binary looks up for an HTTP filter module (from `strings`), and what a
// `--mode validate` run against 1.40.0 showed about which must exist ("Failed to resolve symbol"
// rejects the filter config when a REQUIRED one is missing):
//
//   envoy_dynamic_module_on_program_init                             REQUIRED (dlopen time)
//   envoy_dynamic_module_on_http_filter_config_new                   REQUIRED
//   envoy_dynamic_module_on_http_filter_config_destroy               REQUIRED
//   envoy_dynamic_module_on_http_filter_new                          REQUIRED
//   envoy_dynamic_module_on_http_filter_request_headers              REQUIRED
//   envoy_dynamic_module_on_http_filter_request_body                 REQUIRED
//   envoy_dynamic_module_on_http_filter_request_trailers             REQUIRED
//   envoy_dynamic_module_on_http_filter_response_headers             REQUIRED
//   envoy_dynamic_module_on_http_filter_response_body                REQUIRED
//   envoy_dynamic_module_on_http_filter_response_trailers            REQUIRED
//   envoy_dynamic_module_on_http_filter_stream_complete              REQUIRED
//   envoy_dynamic_module_on_http_filter_destroy                      REQUIRED
//   envoy_dynamic_module_on_http_filter_http_callout_done            export (not isolated in test)
//   envoy_dynamic_module_on_http_filter_local_reply                  export (not isolated in test)
//   envoy_dynamic_module_on_http_filter_http_stream_headers          REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_http_stream_data             REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_http_stream_trailers         REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_http_stream_complete         REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_http_stream_reset            REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_scheduled                    REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark  REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark   REQUIRED (verified)
//   envoy_dynamic_module_on_http_filter_config_scheduled             optional (config loaded without it)
//   envoy_dynamic_module_on_http_filter_config_http_callout_done     optional
//   envoy_dynamic_module_on_http_filter_config_http_stream_headers   optional
//   envoy_dynamic_module_on_http_filter_config_http_stream_data      optional
//   envoy_dynamic_module_on_http_filter_config_http_stream_trailers  optional
//   envoy_dynamic_module_on_http_filter_config_http_stream_complete  optional
//   envoy_dynamic_module_on_http_filter_config_http_stream_reset     optional
//   envoy_dynamic_module_on_http_filter_per_route_config_new         optional unless a route uses
//   envoy_dynamic_module_on_http_filter_per_route_config_destroy     DynamicModuleFilterPerRoute
//
// Simplest: export all of them, with no-op bodies where unused.
// Check each export with e.g. `const _: OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;`

/// Called once on the main thread right after dlopen. Return a pointer to a static
/// NUL-terminated ABI version string; null makes Envoy unload the module. 1.40.0 logs
/// "ABI version v0.2.0 matched" for `c"v0.2.0"` (verified) and a "deprecated" warning for an
/// older compatible version such as "v0.1.0".
pub type OnProgramInit = unsafe extern "C" fn() -> AbiVersionModulePtr;

/// Main thread, once per filter configuration (listener/ECDS load). `name` = `filter_name`,
/// `config` = the unwrapped `filter_config` bytes. Null rejects the configuration.
pub type OnHttpFilterConfigNew = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> HttpFilterConfigModulePtr;

/// Envoy dropped the configuration (may run on the main thread after workers stop using it).
pub type OnHttpFilterConfigDestroy = unsafe extern "C" fn(config: HttpFilterConfigModulePtr);

/// Per-route configuration (`DynamicModuleFilterPerRoute`); null rejects the route config.
pub type OnHttpFilterPerRouteConfigNew = unsafe extern "C" fn(
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> HttpFilterPerRouteConfigModulePtr;

pub type OnHttpFilterPerRouteConfigDestroy =
    unsafe extern "C" fn(config: HttpFilterPerRouteConfigModulePtr);

/// Worker thread, once per HTTP stream. Null fails the stream.
pub type OnHttpFilterNew = unsafe extern "C" fn(
    config: HttpFilterConfigModulePtr,
    filter_envoy: HttpFilterEnvoyPtr,
) -> HttpFilterModulePtr;

pub type OnHttpFilterRequestHeaders = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> HeadersStatus;

pub type OnHttpFilterRequestBody = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus;

pub type OnHttpFilterRequestTrailers = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus;

pub type OnHttpFilterResponseHeaders = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> HeadersStatus;

pub type OnHttpFilterResponseBody = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus;

pub type OnHttpFilterResponseTrailers = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus;

/// Stream finished (before access logs are written and before destroy). Attributes such as
/// `response.code_details` are final here.
pub type OnHttpFilterStreamComplete =
    unsafe extern "C" fn(filter_envoy: HttpFilterEnvoyPtr, filter: HttpFilterModulePtr);

/// Free the per-stream object. `filter_envoy` must not be used after this.
pub type OnHttpFilterDestroy = unsafe extern "C" fn(filter: HttpFilterModulePtr);

/// Result of a one-shot callout. `headers`/`body_chunks` are null/0 on failure and valid only
/// during the call.
pub type OnHttpFilterHttpCalloutDone = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    callout_id: u64,
    result: HttpCalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
);

pub type OnHttpFilterHttpStreamHeaders = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    end_stream: bool,
);

pub type OnHttpFilterHttpStreamData = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    end_stream: bool,
);

pub type OnHttpFilterHttpStreamTrailers = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
);

pub type OnHttpFilterHttpStreamComplete = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
);

pub type OnHttpFilterHttpStreamReset = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    reason: HttpStreamResetReason,
);

/// Delivered on the stream's worker after a scheduler commit (scheduler callbacks not bound here).
pub type OnHttpFilterScheduled = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    event_id: u64,
);

/// Delivered on the main thread after a config-scheduler commit.
pub type OnHttpFilterConfigScheduled = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    event_id: u64,
);

pub type OnHttpFilterConfigHttpCalloutDone = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    callout_id: u64,
    result: HttpCalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
);

pub type OnHttpFilterConfigHttpStreamHeaders = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    end_stream: bool,
);

pub type OnHttpFilterConfigHttpStreamData = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    end_stream: bool,
);

pub type OnHttpFilterConfigHttpStreamTrailers = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
);

pub type OnHttpFilterConfigHttpStreamComplete = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    stream_id: u64,
);

pub type OnHttpFilterConfigHttpStreamReset = unsafe extern "C" fn(
    config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    stream_id: u64,
    reason: HttpStreamResetReason,
);

/// Only meaningful for terminal filters (downstream write back-pressure).
pub type OnHttpFilterDownstreamAboveWriteBufferHighWatermark =
    unsafe extern "C" fn(filter_envoy: HttpFilterEnvoyPtr, filter: HttpFilterModulePtr);

pub type OnHttpFilterDownstreamBelowWriteBufferLowWatermark =
    unsafe extern "C" fn(filter_envoy: HttpFilterEnvoyPtr, filter: HttpFilterModulePtr);

/// A local reply is about to be sent on this stream (by any filter, including this one).
/// `details` is the response-code-details string.
pub type OnHttpFilterLocalReply = unsafe extern "C" fn(
    filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    response_code: u32,
    details: EnvoyBuffer,
    reset_imminent: bool,
) -> LocalReplyStatus;
