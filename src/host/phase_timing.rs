//! Where a request's time goes inside the filter, for `make bench-phases`: built only with the
//! `phase-timing` feature, which logs the mean µs per request of each phase every
//! `REPORT_EVERY` requests (Envoy log, warning level). Without the feature every call here is
//! empty and compiles away; the shipped .wasm never reads the clock for it. The same builds
//! count heap allocations in the VM (Envoy's copies into it included) and log them per request.

#[derive(Clone, Copy)]
pub enum Phase {
    /// One host call for all request headers.
    HeadersFetch = 0,
    /// Decoding the headers Envoy handed over; screening, identity and session from them.
    HeadersRead,
    /// One host call for the buffered body.
    BodyFetch,
    /// The engine's decision, counters included.
    Evaluate,
    /// The same decision made again at once (`phase-timing` builds only): caches warm.
    EvaluateAgain,
    /// Building the audit record (the arguments' SHA-256 included).
    AuditRecord,
    /// Handing the record to Envoy as filter state.
    AuditStore,
    Metrics,
    ResponseHeaders,
    ResponseBody,
}

#[cfg(feature = "phase-timing")]
mod enabled {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    use super::Phase;

    const PHASES: [&str; 10] = [
        "headers_fetch",
        "headers_read",
        "body_fetch",
        "evaluate",
        "evaluate_again_warm",
        "audit_record",
        "audit_store",
        "metrics",
        "response_headers",
        "response_body",
    ];
    const REPORT_EVERY: u64 = 20_000;

    /// Every allocation and reallocation in the VM, whoever asked for it, except in
    /// `not_counted` (the measurement's own extra work).
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
    static COUNTING: AtomicBool = AtomicBool::new(true);

    fn count() {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn not_counted<T>(work: impl FnOnce() -> T) -> T {
        let was_counting = COUNTING.swap(false, Ordering::Relaxed);
        let result = work();
        COUNTING.store(was_counting, Ordering::Relaxed);
        result
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
        static TOTALS: RefCell<([u64; 10], u64)> = const { RefCell::new(([0; 10], 0)) };
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
            if let Some(total) = t.borrow_mut().0.get_mut(phase as usize) {
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
            *t = ([0; 10], 0);
        });
    }
}

#[cfg(feature = "phase-timing")]
pub use enabled::{mark, not_counted, now, request_done};

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

#[cfg(not(feature = "phase-timing"))]
#[inline(always)]
pub fn not_counted<T>(work: impl FnOnce() -> T) -> T {
    work()
}
