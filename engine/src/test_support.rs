//! Test helpers shared by the engine's unit tests, which run natively and on wasm32.

/// `#[test]` natively, `#[wasm_bindgen_test]` on wasm32: one test body, both targets.
#[cfg(not(target_arch = "wasm32"))]
pub use core::prelude::v1::test;
#[cfg(target_arch = "wasm32")]
pub use wasm_bindgen_test::wasm_bindgen_test as test;

pub use crate::counters::memory::MemoryStore;
