//! Test helpers shared by the engine's unit tests, which run natively and on wasm32.

/// `#[test]` natively, `#[wasm_bindgen_test]` on wasm32: one test body, both targets.
#[cfg(not(target_arch = "wasm32"))]
pub use core::prelude::v1::test;
#[cfg(target_arch = "wasm32")]
pub use wasm_bindgen_test::wasm_bindgen_test as test;

pub use crate::counters::memory::MemoryStore;

/// The outcome of a request the engine finished without waiting for anything.
#[allow(clippy::panic)]
pub fn done(step: crate::request::evaluate::Step) -> crate::request::outcome::Outcome {
    match step {
        crate::request::evaluate::Step::Done(outcome) => outcome,
        other => panic!("expected a finished request, got {other:?}"),
    }
}
