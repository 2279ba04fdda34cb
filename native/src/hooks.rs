//! The hooks Envoy calls (`envoy_dynamic_module_on_*`). Each one turns its callback into one
//! call on the filter (`filter.rs`) and its answer into Envoy's status, inside `guarded`: a
//! panic never unwinds into Envoy; it fails that request closed (a 500 the agent can read) and
//! every later hook of the stream passes it by.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mcp_policy_engine::Action;

use crate::abi::*;
use crate::config::{self, FilterConfig};
use crate::envoy::{self, EnvoyStream, Headers};
use crate::filter::{holds, Filter};
use crate::rate_limit::GrpcCall;

/// The ABI version this module was written against (`abi.rs`); a v0.2 Envoy accepts v0.1 modules.
static ABI_VERSION: &std::ffi::CStr = c"v0.1.0";

/// Run `body`; if it panics, `failed` answers instead.
fn guarded<T>(body: impl FnOnce() -> T, failed: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| failed())
}

/// The filter behind Envoy's pointer, unless an earlier hook of its stream panicked.
///
/// # Safety
/// `filter` must be a pointer `on_http_filter_new` returned and Envoy has not destroyed.
unsafe fn filter_of<'a>(filter: HttpFilterModulePtr) -> Option<&'a mut Filter> {
    let filter = filter.cast::<Filter>().cast_mut().as_mut()?;
    (!filter.failed).then_some(filter)
}

/// A panic while deciding: refuse the request (unless it was already answered) and leave the
/// stream alone from now on.
///
/// # Safety
/// As `filter_of`.
unsafe fn fail_closed(filter: HttpFilterModulePtr) {
    let Some(filter) = filter.cast::<Filter>().cast_mut().as_mut() else {
        return;
    };
    filter.failed = true;
    envoy::log(
        LOG_LEVEL_CRITICAL,
        "mcp-policy-filter: internal error; request refused",
    );
    // A second panic here must not unwind either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !filter.host.replied {
            filter.host.replied = true;
            filter.host.envoy.send_response(
                500,
                &[("content-type", "application/json")],
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the policy filter failed; the request was refused"}}"#,
                "mcp_policy_internal_error",
            );
        }
    }));
}

fn headers_status(filter: &Filter, action: Action) -> HeadersStatus {
    if holds(action) || filter.host.replied {
        HEADERS_STATUS_STOP_ITERATION
    } else {
        HEADERS_STATUS_CONTINUE
    }
}

fn body_status(filter: &Filter, action: Action) -> BodyStatus {
    if filter.host.replied {
        BODY_STATUS_STOP_ITERATION_NO_BUFFER
    } else if holds(action) {
        BODY_STATUS_STOP_ITERATION_AND_BUFFER
    } else {
        BODY_STATUS_CONTINUE
    }
}

fn trailers_status(filter: &Filter, action: Action) -> TrailersStatus {
    if holds(action) || filter.host.replied {
        TRAILERS_STATUS_STOP_ITERATION
    } else {
        TRAILERS_STATUS_CONTINUE
    }
}

// ---------------------------------------------------------------------------------- program

/// # Safety
/// Called by Envoy once, when it loads the module.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_program_init() -> AbiVersionModulePtr {
    // A panic's message goes to Envoy's log (the hook that caught it then refuses the request),
    // not to Envoy's stderr.
    std::panic::set_hook(Box::new(|info| {
        envoy::log(LOG_LEVEL_CRITICAL, &format!("mcp-policy-filter: {info}"));
    }));
    ABI_VERSION.as_ptr()
}

// ---------------------------------------------------------------------------------- configuration

/// # Safety
/// Envoy's buffers are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: HttpFilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> HttpFilterConfigModulePtr {
    let name = String::from_utf8_lossy(envoy::lent(name.ptr, name.length)).into_owned();
    let text = envoy::lent(config.ptr, config.length);
    guarded(
        || match config::load(&name, text, config::salt_seed()) {
            Ok(policy) => {
                envoy::log(
                    LOG_LEVEL_INFO,
                    &format!("mcp-policy-filter[{name}]: {}", policy.summary()),
                );
                let counters = config::define_counters(config_envoy);
                config::serve(&name, config_envoy, counters);
                let config = FilterConfig {
                    policy: Arc::new(policy),
                    namespace: Arc::from(name.as_str()),
                    counters,
                    envoy: config_envoy as usize,
                };
                Arc::into_raw(Arc::new(config)).cast::<c_void>()
            }
            Err(e) => {
                envoy::log(
                    LOG_LEVEL_CRITICAL,
                    &format!("mcp-policy-filter[{name}]: {e}"),
                );
                config::count_failure(&name);
                std::ptr::null()
            }
        },
        || {
            envoy::log(
                LOG_LEVEL_CRITICAL,
                &format!("mcp-policy-filter[{name}]: internal error loading the policy"),
            );
            std::ptr::null()
        },
    )
}

/// # Safety
/// `config` is a pointer `config_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: HttpFilterConfigModulePtr,
) {
    if !config.is_null() {
        guarded(
            || {
                let config = Arc::from_raw(config.cast::<FilterConfig>());
                config::retire(&config.namespace, config.envoy);
            },
            || (),
        );
    }
}

/// Per-route configuration is not supported: routes switch an instance on or off instead.
///
/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> HttpFilterPerRouteConfigModulePtr {
    envoy::log(
        LOG_LEVEL_ERROR,
        "mcp-policy-filter: per-route configuration is not supported; give each policy its own filter instance",
    );
    std::ptr::null()
}

/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: HttpFilterPerRouteConfigModulePtr,
) {
}

// ---------------------------------------------------------------------------------- streams

/// # Safety
/// `config` is a live pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: HttpFilterConfigModulePtr,
    filter_envoy: HttpFilterEnvoyPtr,
) -> HttpFilterModulePtr {
    if config.is_null() {
        return std::ptr::null();
    }
    guarded(
        || {
            let config = config.cast::<FilterConfig>();
            Arc::increment_strong_count(config);
            let config = Arc::from_raw(config);
            let filter = Filter::new(config, EnvoyStream::new(filter_envoy));
            Box::into_raw(Box::new(filter))
                .cast_const()
                .cast::<c_void>()
        },
        std::ptr::null,
    )
}

/// # Safety
/// `filter` is a pointer `filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: HttpFilterModulePtr) {
    if !filter.is_null() {
        guarded(
            || drop(Box::from_raw(filter.cast::<Filter>().cast_mut())),
            || (),
        );
    }
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> HeadersStatus {
    let Some(this) = filter_of(filter) else {
        return HEADERS_STATUS_STOP_ITERATION;
    };
    guarded(
        || {
            let raw = this.host.envoy.header_map(Headers::Request);
            probe::maybe_panic(raw.as_deref(), b"request", &mut this.probe_response);
            let action =
                this.stream
                    .on_request_headers(&mut this.host, raw.as_deref(), end_of_stream);
            headers_status(this, action)
        },
        || {
            fail_closed(filter);
            HEADERS_STATUS_STOP_ITERATION
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus {
    let Some(this) = filter_of(filter) else {
        return BODY_STATUS_STOP_ITERATION_NO_BUFFER;
    };
    guarded(
        || {
            let size = this.host.envoy.body_size(Headers::Request);
            let action = this
                .stream
                .on_request_body(&mut this.host, size, end_of_stream);
            body_status(this, action)
        },
        || {
            fail_closed(filter);
            BODY_STATUS_STOP_ITERATION_NO_BUFFER
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus {
    let Some(this) = filter_of(filter) else {
        return TRAILERS_STATUS_STOP_ITERATION;
    };
    guarded(
        || {
            let action = this.stream.on_request_trailers(&mut this.host);
            trailers_status(this, action)
        },
        || {
            fail_closed(filter);
            TRAILERS_STATUS_STOP_ITERATION
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    let Some(this) = filter_of(filter) else {
        return HEADERS_STATUS_STOP_ITERATION;
    };
    guarded(
        || {
            if !this.stream.watches_response() {
                return HEADERS_STATUS_CONTINUE;
            }
            let raw = this.host.envoy.header_map(Headers::Response);
            let action = this
                .stream
                .on_response_headers(&mut this.host, raw.as_deref());
            headers_status(this, action)
        },
        || {
            fail_closed(filter);
            HEADERS_STATUS_STOP_ITERATION
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus {
    let Some(this) = filter_of(filter) else {
        return BODY_STATUS_STOP_ITERATION_NO_BUFFER;
    };
    guarded(
        || {
            if !this.stream.watches_response() {
                return BODY_STATUS_CONTINUE;
            }
            let size = this.host.envoy.body_size(Headers::Response);
            probe::maybe_panic(None, b"", &mut this.probe_response);
            let action = this
                .stream
                .on_response_body(&mut this.host, size, end_of_stream);
            body_status(this, action)
        },
        || {
            fail_closed(filter);
            BODY_STATUS_STOP_ITERATION_NO_BUFFER
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus {
    let Some(this) = filter_of(filter) else {
        return TRAILERS_STATUS_STOP_ITERATION;
    };
    guarded(
        || {
            let action = this.stream.on_response_trailers(&mut this.host);
            trailers_status(this, action)
        },
        || {
            fail_closed(filter);
            TRAILERS_STATUS_STOP_ITERATION
        },
    )
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || this.stream.on_done(&mut this.host),
            || {
                envoy::log(
                    LOG_LEVEL_CRITICAL,
                    "mcp-policy-filter: internal error closing a stream",
                )
            },
        );
    }
}

// ---------------------------------------------------------------------------------- services

/// The approval service's answer.
///
/// # Safety
/// As `filter_of`; Envoy's headers and chunks are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    callout_id: u64,
    result: HttpCalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    let Some(this) = filter_of(filter) else {
        return;
    };
    guarded(
        || {
            let status = envoy::header_pairs(headers, headers_size)
                .iter()
                .find(|(name, _)| *name == b":status")
                .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok());
            let answer = match (result, status) {
                (HTTP_CALLOUT_RESULT_SUCCESS, Some(status)) => {
                    let mut body = Vec::new();
                    envoy::append_chunks(body_chunks, body_chunks_size, &mut body);
                    Ok((status, body))
                }
                _ => Err("no answer (unreachable or timed out)".to_owned()),
            };
            let Ok(token) = u32::try_from(callout_id) else {
                return;
            };
            this.stream
                .on_approval_answer(&mut this.host, token, answer);
        },
        || fail_closed(filter),
    );
}

/// # Safety
/// As `filter_of`; Envoy's headers are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _end_stream: bool,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || {
                let call = this
                    .calls
                    .entry(stream_id)
                    .or_insert_with(GrpcCall::default);
                call.on_headers(&envoy::header_pairs(headers, headers_size));
            },
            || fail_closed(filter),
        );
    }
}

/// # Safety
/// As `filter_of`; Envoy's chunks are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    _end_stream: bool,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || {
                let call = this
                    .calls
                    .entry(stream_id)
                    .or_insert_with(GrpcCall::default);
                envoy::append_chunks(data, data_count, call.body());
            },
            || fail_closed(filter),
        );
    }
}

/// # Safety
/// As `filter_of`; Envoy's trailers are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || {
                let call = this
                    .calls
                    .entry(stream_id)
                    .or_insert_with(GrpcCall::default);
                call.on_headers(&envoy::header_pairs(trailers, trailers_size));
            },
            || fail_closed(filter),
        );
    }
}

/// The rate-limit call ended: its answer goes to the engine.
///
/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || {
                let answer = this.calls.remove(&stream_id).unwrap_or_default().answer();
                rate_limit_answer(this, stream_id, answer);
            },
            || fail_closed(filter),
        );
    }
}

/// # Safety
/// As `filter_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    reason: HttpStreamResetReason,
) {
    if let Some(this) = filter_of(filter) {
        guarded(
            || {
                this.calls.remove(&stream_id);
                let answer = Err(format!("no answer (stream reset, reason {reason})"));
                rate_limit_answer(this, stream_id, answer);
            },
            || fail_closed(filter),
        );
    }
}

fn rate_limit_answer(filter: &mut Filter, stream_id: u64, answer: Result<Vec<u8>, String>) {
    if let Ok(token) = u32::try_from(stream_id) {
        filter
            .stream
            .on_rate_limit_answer(&mut filter.host, token, answer);
    }
}

/// Test builds only: panic where a request asks (`x-mcp-policy-panic: request` in the request
/// headers hook, `…: response` in the response body hook).
mod probe {
    #[cfg(feature = "panic-probe")]
    #[allow(clippy::panic)]
    pub fn maybe_panic(headers: Option<&[u8]>, at: &[u8], response: &mut bool) {
        let asked = headers
            .and_then(mcp_policy_engine::wire::header_map::decode)
            .and_then(|all| {
                all.into_iter()
                    .find(|(name, _)| *name == "x-mcp-policy-panic")
                    .map(|(_, value)| value.to_vec())
            });
        if asked.as_deref() == Some(b"response") {
            *response = true;
        }
        if asked.as_deref() == Some(at) || (headers.is_none() && *response) {
            panic!("panic probe");
        }
    }

    #[cfg(not(feature = "panic-probe"))]
    #[inline(always)]
    pub fn maybe_panic(_headers: Option<&[u8]>, _at: &[u8], _response: &mut bool) {}
}

// ---------------------------------------------------------------------------------- unused

/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _event_id: u64,
) {
}

/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
) {
}

/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
) {
}

/// # Safety
/// Nothing is read.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> LocalReplyStatus {
    LOCAL_REPLY_STATUS_CONTINUE
}

// The exported hooks have exactly the ABI's signatures.
const _: OnProgramInit = envoy_dynamic_module_on_program_init;
const _: OnHttpFilterConfigNew = envoy_dynamic_module_on_http_filter_config_new;
const _: OnHttpFilterConfigDestroy = envoy_dynamic_module_on_http_filter_config_destroy;
const _: OnHttpFilterPerRouteConfigNew = envoy_dynamic_module_on_http_filter_per_route_config_new;
const _: OnHttpFilterPerRouteConfigDestroy =
    envoy_dynamic_module_on_http_filter_per_route_config_destroy;
const _: OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;
const _: OnHttpFilterDestroy = envoy_dynamic_module_on_http_filter_destroy;
const _: OnHttpFilterRequestHeaders = envoy_dynamic_module_on_http_filter_request_headers;
const _: OnHttpFilterRequestBody = envoy_dynamic_module_on_http_filter_request_body;
const _: OnHttpFilterRequestTrailers = envoy_dynamic_module_on_http_filter_request_trailers;
const _: OnHttpFilterResponseHeaders = envoy_dynamic_module_on_http_filter_response_headers;
const _: OnHttpFilterResponseBody = envoy_dynamic_module_on_http_filter_response_body;
const _: OnHttpFilterResponseTrailers = envoy_dynamic_module_on_http_filter_response_trailers;
const _: OnHttpFilterStreamComplete = envoy_dynamic_module_on_http_filter_stream_complete;
const _: OnHttpFilterHttpCalloutDone = envoy_dynamic_module_on_http_filter_http_callout_done;
const _: OnHttpFilterHttpStreamHeaders = envoy_dynamic_module_on_http_filter_http_stream_headers;
const _: OnHttpFilterHttpStreamData = envoy_dynamic_module_on_http_filter_http_stream_data;
const _: OnHttpFilterHttpStreamTrailers = envoy_dynamic_module_on_http_filter_http_stream_trailers;
const _: OnHttpFilterHttpStreamComplete = envoy_dynamic_module_on_http_filter_http_stream_complete;
const _: OnHttpFilterHttpStreamReset = envoy_dynamic_module_on_http_filter_http_stream_reset;
const _: OnHttpFilterScheduled = envoy_dynamic_module_on_http_filter_scheduled;
const _: OnHttpFilterDownstreamAboveWriteBufferHighWatermark =
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark;
const _: OnHttpFilterDownstreamBelowWriteBufferLowWatermark =
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark;
const _: OnHttpFilterLocalReply = envoy_dynamic_module_on_http_filter_local_reply;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_fallback() {
        let answer = guarded(|| -> u32 { panic!("boom") }, || 7);
        assert_eq!(answer, 7);
        assert_eq!(guarded(|| 1, || 7), 1);
    }
}
