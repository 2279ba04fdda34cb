//! Where a request's time goes inside the filter, for `make bench-phases`: built only with the
//! `phase-timing` feature, which logs the mean µs per request of each phase every
//! `REPORT_EVERY` requests (Envoy log, warning level). Without the feature every call here is
//! empty and compiles away; the shipped .wasm never reads the clock for it. The same builds
//! count heap allocations in the VM (Envoy's copies into it included) and log them per request.

pub use mcp_policy_engine::Phase;

#[cfg(feature = "phase-timing")]
mod enabled {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    use super::Phase;

    const PHASES: [&str; 9] = [
        "headers_fetch",
        "headers_read",
        "body_fetch",
        "evaluate",
        "audit_record",
        "audit_store",
        "metrics",
        "response_headers",
        "response_body",
    ];
    const REPORT_EVERY: u64 = 20_000;

    /// Every allocation and reallocation in the VM, whoever asked for it.
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    fn count() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }

    struct CountingAllocator;

    // SAFETY: forwards every call unchanged to the system allocator; only counts.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            System.alloc(layout)
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            System.alloc_zeroed(layout)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static COUNTING_ALLOCATOR: CountingAllocator = CountingAllocator;

    thread_local! {
        static TOTALS: RefCell<([u64; 9], u64)> = const { RefCell::new(([0; 9], 0)) };
    }

    fn index(phase: Phase) -> usize {
        match phase {
            Phase::HeadersFetch => 0,
            Phase::HeadersRead => 1,
            Phase::BodyFetch => 2,
            Phase::Evaluate => 3,
            Phase::AuditRecord => 4,
            Phase::AuditStore => 5,
            Phase::Metrics => 6,
            Phase::ResponseHeaders => 7,
            Phase::ResponseBody => 8,
        }
    }

    pub fn now() -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0))
    }

    pub fn mark(phase: Phase, since: u64) -> u64 {
        let now = now();
        TOTALS.with(|t| {
            if let Some(total) = t.borrow_mut().0.get_mut(index(phase)) {
                *total += now.saturating_sub(since);
            }
        });
        now
    }

    pub fn request_done() {
        TOTALS.with(|t| {
            let mut t = t.borrow_mut();
            t.1 += 1;
            if t.1 < REPORT_EVERY {
                return;
            }
            // Every clock read is itself a host call: measure it, so readers can subtract it.
            let start = now();
            for _ in 0..99 {
                now();
            }
            let clock = now().saturating_sub(start) / 100;
            let mut means: Vec<String> = PHASES
                .iter()
                .zip(t.0.iter())
                .map(|(name, total)| format!("{name}={:.1}", *total as f64 / t.1 as f64 / 1e3))
                .collect();
            let allocations = ALLOCATIONS.swap(0, Ordering::Relaxed);
            means.push(format!(
                "allocations={:.1}",
                allocations as f64 / t.1 as f64
            ));
            let _ = hostcalls::log(
                LogLevel::Warn,
                &format!(
                    "mcp-policy-filter phase µs/request over {} requests: {} (clock read {:.1})",
                    t.1,
                    means.join(" "),
                    clock as f64 / 1e3
                ),
            );
            *t = ([0; 9], 0);
        });
    }
}

#[cfg(feature = "phase-timing")]
pub use enabled::{mark, now, request_done};

#[cfg(not(feature = "phase-timing"))]
#[inline(always)]
pub fn now() -> u64 {
    0
}

#[cfg(not(feature = "phase-timing"))]
#[inline(always)]
pub fn mark(_phase: Phase, _since: u64) -> u64 {
    0
}

#[cfg(not(feature = "phase-timing"))]
#[inline(always)]
pub fn request_done() {}
