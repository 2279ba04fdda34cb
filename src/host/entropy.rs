//! An unpredictable 64-bit value for the counter salt. Envoy's Wasm host implements WASI's
//! `random_get` (backed by its own random generator); should that ever fail, the clock's
//! nanoseconds still keep the salt unknown to callers.

use proxy_wasm::hostcalls;
use std::time::UNIX_EPOCH;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, buf_len: usize) -> u16;
}

pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the host writes exactly `bytes.len()` bytes into the buffer we own.
    let status = unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) };
    let clock = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    if status == 0 {
        u64::from_le_bytes(bytes) ^ clock
    } else {
        clock
    }
}
