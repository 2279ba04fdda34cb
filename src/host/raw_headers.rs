//! A header map fetched from Envoy as the one buffer it serializes, to be read in place by
//! `engine::header_map::decode` (the SDK's getters copy every name and value into its own
//! `String` and `Vec`).

use proxy_wasm::types::MapType;

#[link(wasm_import_module = "env")]
extern "C" {
    // The proxy-wasm ABI call the SDK's `get_map` makes; declared here to keep its buffer.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The serialized map (empty if Envoy has none); `None` if Envoy refuses the call.
pub fn fetch(map: MapType) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success Envoy allocated `size` bytes through the SDK's
    // `proxy_on_memory_allocate` (a leaked boxed slice of `size` bytes: layout `size`, align 1)
    // and wrote the map there; a `Vec<u8>` of length and capacity `size` frees it with that
    // layout, which is how the SDK itself takes such buffers back.
    unsafe {
        if proxy_get_header_map_pairs(map, &mut data, &mut size) != 0 {
            return None;
        }
        if data.is_null() {
            return Some(Vec::new());
        }
        Some(Vec::from_raw_parts(data, size, size))
    }
}
