//! The hooks Envoy calls (`envoy_dynamic_module_on_*`). Each one turns its callback into one
//! call on the filter (`filter.rs`) and its answer into Envoy's status, through `enter`: a
//! panic never unwinds into Envoy; it fails that request closed (a 500 the agent can read) and
//! every later hook of the stream passes it by. A hook Envoy calls from inside one of its own
//! callbacks never reaches the filter while another hook uses it (`filter::Slot`).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use mcp_policy_engine::Action;

use crate::abi::*;
use crate::config::{self, FilterConfig};
use crate::envoy::{self, EnvoyStream, Headers};
use crate::filter::{holds, Filter, Slot};

/// The ABI version this module was written against (`abi.rs`); a v0.2 Envoy accepts v0.1 modules.
static ABI_VERSION: &std::ffi::CStr = c"v0.1.0";

/// Run `body`; if it panics, `failed` answers instead.
fn guarded<T>(body: impl FnOnce() -> T, failed: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| failed())
}

/// Envoy's pointer to a stream, as what it points to.
///
/// # Safety
/// `slot` must be a pointer `on_http_filter_new` returned that has not been freed.
unsafe fn slot_of<'a>(slot: HttpFilterModulePtr) -> Option<&'a Slot> {
    slot.cast::<Slot>().as_ref()
}

/// Run `body` on the stream's filter: the one way a hook reaches it. If another hook of the
/// stream is running (Envoy called this one from inside a callback), `busy` answers; if an
/// earlier hook panicked, or this one does, `failed` answers (the request refused). Then what
/// Envoy asked for meanwhile happens: the stream's end, and freeing it.
///
/// # Safety
/// As `slot_of`; `slot` may be freed when this returns.
unsafe fn enter<T>(
    slot: HttpFilterModulePtr,
    busy: T,
    failed: T,
    body: impl FnOnce(&mut Filter) -> T,
) -> T {
    let Some(cell) = slot_of(slot) else {
        return failed;
    };
    if cell.running.replace(true) {
        return busy;
    }
    // SAFETY: `running` makes each reference below the only one to the filter while it lives.
    let out = if (*cell.filter.get()).failed {
        failed
    } else {
        catch_unwind(AssertUnwindSafe(|| body(&mut *cell.filter.get()))).unwrap_or_else(|_| {
            fail_closed(&mut *cell.filter.get());
            failed
        })
    };
    if cell.completed.get() {
        complete(&mut *cell.filter.get());
    }
    cell.running.set(false);
    if cell.destroyed.get() {
        drop(Box::from_raw(slot.cast::<Slot>().cast_mut()));
    }
    out
}

/// The stream is over: what it still holds goes back (also after a panic refused it).
fn complete(filter: &mut Filter) {
    guarded(
        || filter.stream.on_done(&mut filter.host),
        || {
            envoy::log(
                LOG_LEVEL_CRITICAL,
                "mcp-policy-filter: internal error closing a stream",
            )
        },
    );
}

/// A panic while deciding: refuse the request (unless it was already answered) and leave the
/// stream alone from now on.
fn fail_closed(filter: &mut Filter) {
    filter.failed = true;
    envoy::log(
        LOG_LEVEL_CRITICAL,
        "mcp-policy-filter: internal error; request refused",
    );
    if filter.host.replied {
        return;
    }
    filter.host.replied = true;
    // A second panic here must not unwind either.
    let envoy = filter.host.envoy;
    let _ = catch_unwind(|| {
        envoy.send_response(
            500,
            &[("content-type", "application/json")],
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the policy filter failed; the request was refused"}}"#,
            "mcp_policy_internal_error",
        );
    });
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
            let slot = Slot::new(config, EnvoyStream::new(filter_envoy));
            Box::into_raw(Box::new(slot)).cast_const().cast::<c_void>()
        },
        std::ptr::null,
    )
}

/// Freed now, or by the hook running when Envoy destroys the stream from inside a callback.
///
/// # Safety
/// `filter` is a pointer `filter_new` returned, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: HttpFilterModulePtr) {
    let Some(slot) = slot_of(filter) else {
        return;
    };
    if slot.running.get() {
        slot.destroyed.set(true);
    } else {
        guarded(
            || drop(Box::from_raw(filter.cast::<Slot>().cast_mut())),
            || (),
        );
    }
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> HeadersStatus {
    let stop = HEADERS_STATUS_STOP_ITERATION;
    enter(filter, stop, stop, |this| {
        let raw = this.host.envoy.header_map(Headers::Request);
        probe::maybe_panic(raw.as_deref(), b"request", &mut this.probe_response);
        let action = this
            .stream
            .on_request_headers(&mut this.host, raw.as_deref(), end_of_stream);
        headers_status(this, action)
    })
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus {
    let stop = BODY_STATUS_STOP_ITERATION_NO_BUFFER;
    enter(filter, stop, stop, |this| {
        let size = this.host.envoy.body_size(Headers::Request);
        let action = this
            .stream
            .on_request_body(&mut this.host, size, end_of_stream);
        body_status(this, action)
    })
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus {
    let stop = TRAILERS_STATUS_STOP_ITERATION;
    enter(filter, stop, stop, |this| {
        let action = this.stream.on_request_trailers(&mut this.host);
        trailers_status(this, action)
    })
}

/// While another hook runs (Envoy's own local reply, sent from inside a callback), the answer is
/// Envoy's and passes.
///
/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    enter(
        filter,
        HEADERS_STATUS_CONTINUE,
        HEADERS_STATUS_STOP_ITERATION,
        |this| {
            if !this.stream.watches_response() {
                return HEADERS_STATUS_CONTINUE;
            }
            let raw = this.host.envoy.header_map(Headers::Response);
            let action = this
                .stream
                .on_response_headers(&mut this.host, raw.as_deref());
            headers_status(this, action)
        },
    )
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    end_of_stream: bool,
) -> BodyStatus {
    enter(
        filter,
        BODY_STATUS_CONTINUE,
        BODY_STATUS_STOP_ITERATION_NO_BUFFER,
        |this| {
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
    )
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> TrailersStatus {
    enter(
        filter,
        TRAILERS_STATUS_CONTINUE,
        TRAILERS_STATUS_STOP_ITERATION,
        |this| {
            let action = this.stream.on_response_trailers(&mut this.host);
            trailers_status(this, action)
        },
    )
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) {
    let Some(slot) = slot_of(filter) else {
        return;
    };
    if slot.running.replace(true) {
        slot.completed.set(true);
        return;
    }
    // SAFETY: `running` makes this the only reference to the filter until it is reset.
    complete(&mut *slot.filter.get());
    slot.running.set(false);
}

// ---------------------------------------------------------------------------------- services

/// The approval service's answer.
///
/// # Safety
/// As `slot_of`; Envoy's headers and chunks are valid for the call.
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
    let Some(slot) = slot_of(filter) else {
        return;
    };
    let answer = guarded(
        || {
            let status = envoy::header_pairs(headers, headers_size)
                .iter()
                .find(|(name, _)| *name == b":status")
                .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse::<u16>().ok());
            match (result, status) {
                (HTTP_CALLOUT_RESULT_SUCCESS, Some(status)) => {
                    let mut body = Vec::new();
                    envoy::append_chunks(body_chunks, body_chunks_size, &mut body);
                    Ok((status, body))
                }
                _ => Err("no answer (unreachable or timed out)".to_owned()),
            }
        },
        || Err("answer unreadable".to_owned()),
    );
    if slot.running.get() {
        // Ended inside `http_callout`: the host reads it there.
        slot.calls
            .borrow_mut()
            .callouts_ended
            .insert(callout_id, answer);
        return;
    }
    enter(filter, (), (), |this| {
        if let Ok(token) = u32::try_from(callout_id) {
            this.stream
                .on_approval_answer(&mut this.host, token, answer);
        }
    });
}

/// # Safety
/// As `slot_of`; Envoy's headers are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _end_stream: bool,
) {
    if let Some(slot) = slot_of(filter) {
        guarded(
            || {
                let mut calls = slot.calls.borrow_mut();
                let call = calls.streams.entry(stream_id).or_default();
                call.on_headers(&envoy::header_pairs(headers, headers_size));
            },
            || (),
        );
    }
}

/// # Safety
/// As `slot_of`; Envoy's chunks are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    _end_stream: bool,
) {
    if let Some(slot) = slot_of(filter) {
        guarded(
            || {
                let mut calls = slot.calls.borrow_mut();
                let call = calls.streams.entry(stream_id).or_default();
                envoy::append_chunks(data, data_count, call.body());
            },
            || (),
        );
    }
}

/// # Safety
/// As `slot_of`; Envoy's trailers are valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
) {
    if let Some(slot) = slot_of(filter) {
        guarded(
            || {
                let mut calls = slot.calls.borrow_mut();
                let call = calls.streams.entry(stream_id).or_default();
                call.on_headers(&envoy::header_pairs(trailers, trailers_size));
            },
            || (),
        );
    }
}

/// The rate-limit call ended: its answer goes to the engine.
///
/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
) {
    let Some(slot) = slot_of(filter) else {
        return;
    };
    let answer = guarded(
        || {
            let call = slot.calls.borrow_mut().streams.remove(&stream_id);
            call.unwrap_or_default().answer()
        },
        || Err("answer unreadable".to_owned()),
    );
    stream_ended(filter, slot, stream_id, answer);
}

/// # Safety
/// As `slot_of`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stream_id: u64,
    reason: HttpStreamResetReason,
) {
    let Some(slot) = slot_of(filter) else {
        return;
    };
    slot.calls.borrow_mut().streams.remove(&stream_id);
    let answer = Err(format!("no answer (stream reset, reason {reason})"));
    stream_ended(filter, slot, stream_id, answer);
}

/// A rate-limit call's answer, to the engine; or, if it ended inside `start_http_stream`, to
/// the host that is starting it.
///
/// # Safety
/// As `enter`.
unsafe fn stream_ended(
    filter: HttpFilterModulePtr,
    slot: &Slot,
    stream_id: u64,
    answer: Result<Vec<u8>, String>,
) {
    if slot.running.get() {
        slot.calls
            .borrow_mut()
            .streams_ended
            .insert(stream_id, answer);
        return;
    }
    enter(filter, (), (), |this| {
        if let Ok(token) = u32::try_from(stream_id) {
            this.stream
                .on_rate_limit_answer(&mut this.host, token, answer);
        }
    });
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
