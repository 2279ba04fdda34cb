//! Fixed-window counters over a compare-and-swap key/value store (Envoy shared data in the
//! filter, an in-memory map in tests). One key per (counter, scope value) holds the window start
//! and the count together, so a read-modify-write is a single CAS: no separate get/set race.

use std::fmt;

use super::window::Window;

/// Result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Stored,
    /// Someone else wrote the key since our read.
    CasMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host's key/value store with Envoy shared-data semantics: `get` returns the value and its
/// CAS token; `set` with a non-zero CAS stores only if the key's token still matches. Note
/// Envoy's quirk, which `CREATE_CAS` works around: a `set` on an absent key always succeeds,
/// whatever the CAS.
pub trait CasStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError>;
}

/// CAS used to create a key we saw absent. If another worker created the key in between, its
/// token (allocated from 1 upwards) will not be this value, so our write is refused and we retry
/// against the existing key instead of overwriting its count. A CAS of 0 would mean
/// "unconditional" and lose that other worker's increment.
pub const CREATE_CAS: u32 = u32::MAX;

/// Bound on read-modify-write attempts per operation. Contention is between Envoy worker threads
/// only, so a handful of retries is plenty; running out means something is badly wrong and the
/// caller fails closed.
pub const MAX_CAS_ATTEMPTS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    pub window_start: u64,
    pub count: u64,
}

const STATE_LEN: usize = 16;

impl CounterState {
    pub fn encode(self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        let (start, count) = out.split_at_mut(8);
        start.copy_from_slice(&self.window_start.to_le_bytes());
        count.copy_from_slice(&self.count.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<CounterState> {
        let start: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let count: [u8; 8] = bytes.get(8..STATE_LEN)?.try_into().ok()?;
        (bytes.len() == STATE_LEN).then(|| CounterState {
            window_start: u64::from_le_bytes(start),
            count: u64::from_le_bytes(count),
        })
    }
}

/// Why a counter could not be consulted. The call is then refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    Store(StoreError),
    /// Every CAS attempt lost a race.
    CasExhausted {
        attempts: usize,
    },
    /// The key holds something this filter did not write.
    Corrupt {
        len: usize,
    },
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterError::Store(e) => write!(f, "shared data error: {e}"),
            CounterError::CasExhausted { attempts } => {
                write!(f, "compare-and-swap gave up after {attempts} attempts")
            }
            CounterError::Corrupt { len } => {
                write!(f, "counter value of {len} bytes is not a counter state")
            }
        }
    }
}

impl From<StoreError> for CounterError {
    fn from(e: StoreError) -> Self {
        CounterError::Store(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// `cost` was added; the window now holds `count`.
    Granted { window_start: u64, count: u64 },
    /// Not enough room left in this window; nothing was changed.
    Exhausted {
        count: u64,
        retry_after_seconds: u64,
    },
}

fn read(store: &mut dyn CasStore, key: &str) -> Result<Option<(CounterState, u32)>, CounterError> {
    match store.get(key)? {
        None => Ok(None),
        Some((bytes, cas)) => match CounterState::decode(&bytes) {
            Some(state) => Ok(Some((state, cas))),
            None => Err(CounterError::Corrupt { len: bytes.len() }),
        },
    }
}

/// The count at `key` in the window containing `now` (0 when absent or from another window).
pub fn current(
    store: &mut dyn CasStore,
    key: &str,
    window: Window,
    now: u64,
) -> Result<u64, CounterError> {
    let start = window.start_of(now);
    Ok(match read(store, key)? {
        Some((state, _))
            if state.window_start >= start && state.window_start <= start + window.seconds() =>
        {
            state.count
        }
        _ => 0,
    })
}

/// Add `cost` to the counter at `key` if that keeps it within `max` for the window containing
/// `now`. A key left over from an earlier window counts as empty (automatic reset).
pub fn try_acquire(
    store: &mut dyn CasStore,
    key: &str,
    window: Window,
    max: u64,
    cost: u64,
    now: u64,
) -> Result<Acquire, CounterError> {
    let current_start = window.start_of(now);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (state, cas) = match read(store, key)? {
            None => (
                CounterState {
                    window_start: current_start,
                    count: 0,
                },
                CREATE_CAS,
            ),
            // A start just ahead of ours means another worker's clock already crossed the
            // boundary: that newer window is the one to count in. Further ahead than one window
            // is a clock that stepped back: the stored count is stale, not a lockout.
            Some((state, cas))
                if state.window_start >= current_start
                    && state.window_start <= current_start + window.seconds() =>
            {
                (state, cas)
            }
            Some((_, cas)) => (
                CounterState {
                    window_start: current_start,
                    count: 0,
                },
                cas,
            ),
        };
        if state.count.saturating_add(cost) > max {
            let retry_after_seconds = (state.window_start + window.seconds())
                .saturating_sub(now)
                .max(1);
            return Ok(Acquire::Exhausted {
                count: state.count,
                retry_after_seconds,
            });
        }
        let next = CounterState {
            window_start: state.window_start,
            count: state.count + cost,
        };
        if store.set(key, &next.encode(), cas)? == SetOutcome::Stored {
            return Ok(Acquire::Granted {
                window_start: next.window_start,
                count: next.count,
            });
        }
    }
    Err(CounterError::CasExhausted {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

/// Give back `cost` taken by `try_acquire` in the window starting at `window_start` (a batch
/// that was refused after some of its counters had been taken). Nothing to do once that window
/// has passed: the count has reset anyway.
pub fn release(
    store: &mut dyn CasStore,
    key: &str,
    window_start: u64,
    cost: u64,
) -> Result<(), CounterError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((state, cas)) = read(store, key)? else {
            return Ok(());
        };
        if state.window_start != window_start {
            return Ok(());
        }
        let next = CounterState {
            window_start,
            count: state.count.saturating_sub(cost),
        };
        if store.set(key, &next.encode(), cas)? == SetOutcome::Stored {
            return Ok(());
        }
    }
    Err(CounterError::CasExhausted {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{test, MemoryStore};

    const KEY: &str = "k";

    #[test]
    fn counts_up_to_max_then_refuses_with_time_to_reset() {
        let mut store = MemoryStore::default();
        let now = 120 + 15;
        for expected in 1..=3 {
            let got = try_acquire(&mut store, KEY, Window::MINUTE, 3, 1, now).unwrap();
            assert_eq!(
                got,
                Acquire::Granted {
                    window_start: 120,
                    count: expected
                }
            );
        }
        let refused = try_acquire(&mut store, KEY, Window::MINUTE, 3, 1, now).unwrap();
        assert_eq!(
            refused,
            Acquire::Exhausted {
                count: 3,
                retry_after_seconds: 45
            }
        );
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let mut store = MemoryStore::default();
        for _ in 0..2 {
            try_acquire(&mut store, KEY, Window::MINUTE, 2, 1, 59).unwrap();
        }
        assert!(matches!(
            try_acquire(&mut store, KEY, Window::MINUTE, 2, 1, 59).unwrap(),
            Acquire::Exhausted { .. }
        ));
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 2, 1, 60).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: 60,
                count: 1
            }
        );
    }

    #[test]
    fn a_count_from_far_in_the_future_is_stale_not_a_lockout() {
        let mut store = MemoryStore::default();
        let later = 10_000 * 60;
        try_acquire(&mut store, KEY, Window::MINUTE, 1, 1, later).unwrap();
        // The clock steps back an hour: the count kept for "later" must not block for an hour.
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 1, 1, later - 3600).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: later - 3600,
                count: 1
            }
        );
        // One window ahead is a worker that already crossed the boundary: count in its window.
        try_acquire(&mut store, KEY, Window::MINUTE, 2, 1, later + 60).unwrap();
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 2, 1, later + 59).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: later + 60,
                count: 2
            }
        );
    }

    #[test]
    fn cost_above_what_is_left_is_refused_whole() {
        let mut store = MemoryStore::default();
        try_acquire(&mut store, KEY, Window::MINUTE, 5, 4, 0).unwrap();
        let refused = try_acquire(&mut store, KEY, Window::MINUTE, 5, 2, 0).unwrap();
        assert!(matches!(refused, Acquire::Exhausted { count: 4, .. }));
        assert_eq!(store.state(KEY).unwrap().count, 4);
    }

    #[test]
    fn release_gives_back_only_within_the_same_window() {
        let mut store = MemoryStore::default();
        try_acquire(&mut store, KEY, Window::MINUTE, 5, 3, 10).unwrap();
        release(&mut store, KEY, 0, 2).unwrap();
        assert_eq!(store.state(KEY).unwrap().count, 1);
        release(&mut store, KEY, 60, 1).unwrap();
        assert_eq!(store.state(KEY).unwrap().count, 1);
    }

    #[test]
    fn a_lost_race_is_retried_against_the_winner() {
        let mut store = MemoryStore::default();
        try_acquire(&mut store, KEY, Window::MINUTE, 10, 1, 0).unwrap();
        // Another worker increments between each of our reads and writes, twice.
        store.interfere_times = 2;
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 10, 1, 0).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: 0,
                count: 4
            }
        );
    }

    #[test]
    fn concurrent_creation_does_not_lose_an_increment() {
        // Both workers saw the key absent; the other one creates it first. Envoy would accept a
        // CAS of 0 on the now-existing key and overwrite the other worker's count.
        let mut store = MemoryStore::default();
        store.interfere_times = 1;
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 10, 1, 0).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: 0,
                count: 2
            }
        );
    }

    #[test]
    fn endless_contention_gives_up_instead_of_admitting() {
        let mut store = MemoryStore::default();
        store.interfere_times = usize::MAX;
        let got = try_acquire(&mut store, KEY, Window::MINUTE, 1_000_000, 1, 0);
        assert_eq!(
            got,
            Err(CounterError::CasExhausted {
                attempts: MAX_CAS_ATTEMPTS
            })
        );
    }

    #[test]
    fn store_failures_and_foreign_values_are_errors() {
        let mut store = MemoryStore::default();
        store.fail = true;
        assert!(matches!(
            try_acquire(&mut store, KEY, Window::MINUTE, 1, 1, 0),
            Err(CounterError::Store(_))
        ));
        let mut store = MemoryStore::default();
        store.raw_set(KEY, b"garbage");
        assert_eq!(
            try_acquire(&mut store, KEY, Window::MINUTE, 1, 1, 0),
            Err(CounterError::Corrupt { len: 7 })
        );
    }

    #[test]
    fn state_round_trips() {
        let s = CounterState {
            window_start: 1_795_342_500,
            count: 29,
        };
        assert_eq!(CounterState::decode(&s.encode()), Some(s));
        assert_eq!(CounterState::decode(&[0; 15]), None);
        assert_eq!(CounterState::decode(&[0; 17]), None);
    }
}
