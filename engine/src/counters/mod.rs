//! Fixed-window counters over a compare-and-swap key/value store (Envoy shared data in the
//! filter, an in-memory map in tests). A key holds the window start and the counts together, so
//! a read-modify-write is a single CAS: no separate get/set race.
//!
//! Memory stays bounded however many sessions and identities come and go: Envoy's shared data
//! cannot delete a key, so one key per caller would grow without limit. Each counter has a
//! fixed number of buckets instead; a caller's count is an entry in the bucket its fingerprint
//! picks. A bucket counts one window and empties as a whole when the window passes. Once a
//! bucket holds `ENTRIES_PER_BUCKET` callers in a window, later callers share one overflow
//! entry until it ends: stricter, never looser.

#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod reservations;
pub mod window;

use std::fmt;
use std::sync::Arc;

use crate::counters::window::Window;

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

/// Where one caller's count of one counter lives: a bucket key (shared with other callers whose
/// fingerprints hash to it) and the caller's fingerprint inside that bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Shared with the policy for a `global` counter: no copy per call.
    pub key: Arc<str>,
    pub owner: u64,
}

/// Callers one bucket tracks per window before the rest share its overflow entry.
pub const ENTRIES_PER_BUCKET: usize = 8;

/// The owner of the entry shared by callers who found their bucket full. Real fingerprints are
/// never 0.
pub const OVERFLOW_OWNER: u64 = 0;

/// One bucket: the window it counts and each caller's count in it. Encoded as the window start
/// then (owner, count) pairs, little-endian u64s; entries are never removed within a window, so
/// a caller who had to share the overflow entry keeps sharing it until the window ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub window_start: u64,
    pub entries: Vec<(u64, u64)>,
}

impl Bucket {
    fn empty(window_start: u64) -> Bucket {
        Bucket {
            window_start,
            entries: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.entries.len());
        out.extend_from_slice(&self.window_start.to_le_bytes());
        for (owner, count) in &self.entries {
            out.extend_from_slice(&owner.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let word = |at: usize| -> Option<u64> {
            let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(raw))
        };
        let pairs = bytes.len().checked_sub(8)?;
        if pairs % 16 != 0 || pairs / 16 > ENTRIES_PER_BUCKET + 1 {
            return None;
        }
        let entries = (0..pairs / 16)
            .map(|i| Some((word(8 + 16 * i)?, word(16 + 16 * i)?)))
            .collect::<Option<Vec<_>>>()?;
        // Only what `add` can produce: unique owners, at most ENTRIES_PER_BUCKET callers, one
        // overflow entry.
        let bucket = Bucket {
            window_start: word(0)?,
            entries,
        };
        let unique = bucket
            .entries
            .iter()
            .enumerate()
            .all(|(i, (owner, _))| !bucket.entries.iter().skip(i + 1).any(|(o, _)| o == owner));
        (unique && bucket.callers() <= ENTRIES_PER_BUCKET).then_some(bucket)
    }

    fn callers(&self) -> usize {
        self.entries
            .iter()
            .filter(|(owner, _)| *owner != OVERFLOW_OWNER)
            .count()
    }

    /// Index of the entry counting `owner`: its own, or the overflow entry when the bucket was
    /// already full when it first came. `None` when it has no entry yet.
    fn entry_of(&self, owner: u64) -> Option<usize> {
        self.entries
            .iter()
            .position(|(o, _)| *o == owner)
            .or_else(|| {
                (self.callers() >= ENTRIES_PER_BUCKET)
                    .then(|| self.entries.iter().position(|(o, _)| *o == OVERFLOW_OWNER))
                    .flatten()
            })
    }

    /// The count `owner` is held to in this bucket.
    pub fn count_of(&self, owner: u64) -> u64 {
        self.entry_of(owner)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |(_, count)| *count)
    }

    /// Add `amount` to the entry `owner` counts in (its own, created while the bucket has room,
    /// else the shared overflow entry); the entry's new count.
    fn add(&mut self, owner: u64, amount: u64) -> u64 {
        if let Some(entry) = self.entry_of(owner).and_then(|i| self.entries.get_mut(i)) {
            entry.1 = entry.1.saturating_add(amount);
            return entry.1;
        }
        let entry_owner = if self.callers() < ENTRIES_PER_BUCKET {
            owner
        } else {
            OVERFLOW_OWNER
        };
        self.entries.push((entry_owner, amount));
        amount
    }

    fn subtract(&mut self, owner: u64, amount: u64) {
        if let Some(entry) = self.entry_of(owner).and_then(|i| self.entries.get_mut(i)) {
            entry.1 = entry.1.saturating_sub(amount);
        }
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
    /// A rate-limit service gave no usable answer.
    Service {
        service: String,
        problem: String,
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
                write!(f, "counter value of {len} bytes is not a counter bucket")
            }
            CounterError::Service { service, problem } => {
                write!(f, "rate-limit service \"{service}\": {problem}")
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
        window_start: u64,
        count: u64,
        retry_after_seconds: u64,
    },
}

fn read(store: &mut dyn CasStore, key: &str) -> Result<Option<(Bucket, u32)>, CounterError> {
    match store.get(key)? {
        None => Ok(None),
        Some((bytes, cas)) => match Bucket::decode(&bytes) {
            Some(bucket) => Ok(Some((bucket, cas))),
            None => Err(CounterError::Corrupt { len: bytes.len() }),
        },
    }
}

/// Whether a bucket stored with `stored_start` counts the window starting at `current_start`.
/// A start just ahead of ours means another worker's clock already crossed the boundary: that
/// newer window is the one to count in. Further ahead than one window is a clock that stepped
/// back: the stored counts are stale, not a lockout.
fn is_current(stored_start: u64, current_start: u64, window: Window) -> bool {
    stored_start >= current_start && stored_start <= current_start + window.seconds()
}

/// The count `slot` is held to in the window containing `now` (0 when absent or from another
/// window).
pub fn current(
    store: &mut dyn CasStore,
    slot: &Slot,
    window: Window,
    now: u64,
) -> Result<u64, CounterError> {
    let start = window.start_of(now);
    Ok(match read(store, &slot.key)? {
        Some((bucket, _)) if is_current(bucket.window_start, start, window) => {
            bucket.count_of(slot.owner)
        }
        _ => 0,
    })
}

/// Add `cost` to the count of `slot` if that keeps it within `max` for the window containing
/// `now`. A bucket left over from an earlier window counts as empty (automatic reset).
pub fn try_acquire(
    store: &mut dyn CasStore,
    slot: &Slot,
    window: Window,
    max: u64,
    cost: u64,
    now: u64,
) -> Result<Acquire, CounterError> {
    let current_start = window.start_of(now);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut bucket, cas) = match read(store, &slot.key)? {
            None => (Bucket::empty(current_start), CREATE_CAS),
            Some((bucket, cas)) if is_current(bucket.window_start, current_start, window) => {
                (bucket, cas)
            }
            Some((_, cas)) => (Bucket::empty(current_start), cas),
        };
        let count = bucket.count_of(slot.owner);
        if count.saturating_add(cost) > max {
            let retry_after_seconds = (bucket.window_start + window.seconds())
                .saturating_sub(now)
                .max(1);
            return Ok(Acquire::Exhausted {
                window_start: bucket.window_start,
                count,
                retry_after_seconds,
            });
        }
        let count = bucket.add(slot.owner, cost);
        if store.set(&slot.key, &bucket.encode(), cas)? == SetOutcome::Stored {
            return Ok(Acquire::Granted {
                window_start: bucket.window_start,
                count,
            });
        }
    }
    Err(CounterError::CasExhausted {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

/// Give back `cost` taken by `try_acquire` in the window starting at `window_start` (a batch
/// that was refused after some of its counters had been taken, or a call that failed upstream).
/// Nothing to do once that window has passed: the count has reset anyway.
pub fn release(
    store: &mut dyn CasStore,
    slot: &Slot,
    window_start: u64,
    cost: u64,
) -> Result<(), CounterError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((mut bucket, cas)) = read(store, &slot.key)? else {
            return Ok(());
        };
        if bucket.window_start != window_start {
            return Ok(());
        }
        bucket.subtract(slot.owner, cost);
        if store.set(&slot.key, &bucket.encode(), cas)? == SetOutcome::Stored {
            return Ok(());
        }
    }
    Err(CounterError::CasExhausted {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

/// Shared-data key of the salt every worker mixes into callers' fingerprints.
pub const SALT_KEY: &str = "mcp-policy/v2/salt";

/// The process-wide salt: the one already stored, or `candidate` if this worker stores it
/// first. Every worker must agree, or they would count one caller in different buckets.
pub fn shared_salt(store: &mut dyn CasStore, candidate: u64) -> Result<u64, CounterError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        if let Some((bytes, _)) = store.get(SALT_KEY)? {
            let raw: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| CounterError::Corrupt { len: bytes.len() })?;
            return Ok(u64::from_le_bytes(raw));
        }
        if store.set(SALT_KEY, &candidate.to_le_bytes(), CREATE_CAS)? == SetOutcome::Stored {
            return Ok(candidate);
        }
    }
    Err(CounterError::CasExhausted {
        attempts: MAX_CAS_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{test, MemoryStore};

    const KEY: &str = "k";

    fn slot() -> Slot {
        Slot {
            key: KEY.into(),
            owner: 7,
        }
    }

    #[test]
    fn counts_up_to_max_then_refuses_with_time_to_reset() {
        let mut store = MemoryStore::default();
        let now = 120 + 15;
        for expected in 1..=3 {
            let got = try_acquire(&mut store, &slot(), Window::MINUTE, 3, 1, now).unwrap();
            assert_eq!(
                got,
                Acquire::Granted {
                    window_start: 120,
                    count: expected
                }
            );
        }
        let refused = try_acquire(&mut store, &slot(), Window::MINUTE, 3, 1, now).unwrap();
        assert_eq!(
            refused,
            Acquire::Exhausted {
                window_start: 120,
                count: 3,
                retry_after_seconds: 45
            }
        );
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let mut store = MemoryStore::default();
        for _ in 0..2 {
            try_acquire(&mut store, &slot(), Window::MINUTE, 2, 1, 59).unwrap();
        }
        assert!(matches!(
            try_acquire(&mut store, &slot(), Window::MINUTE, 2, 1, 59).unwrap(),
            Acquire::Exhausted { .. }
        ));
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 2, 1, 60).unwrap();
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
        try_acquire(&mut store, &slot(), Window::MINUTE, 1, 1, later).unwrap();
        // The clock steps back an hour: the count kept for "later" must not block for an hour.
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 1, 1, later - 3600).unwrap();
        assert_eq!(
            got,
            Acquire::Granted {
                window_start: later - 3600,
                count: 1
            }
        );
        // One window ahead is a worker that already crossed the boundary: count in its window.
        try_acquire(&mut store, &slot(), Window::MINUTE, 2, 1, later + 60).unwrap();
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 2, 1, later + 59).unwrap();
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
        try_acquire(&mut store, &slot(), Window::MINUTE, 5, 4, 0).unwrap();
        let refused = try_acquire(&mut store, &slot(), Window::MINUTE, 5, 2, 0).unwrap();
        assert!(matches!(refused, Acquire::Exhausted { count: 4, .. }));
        assert_eq!(store.count(&slot()).unwrap(), 4);
    }

    #[test]
    fn release_gives_back_only_within_the_same_window() {
        let mut store = MemoryStore::default();
        try_acquire(&mut store, &slot(), Window::MINUTE, 5, 3, 10).unwrap();
        release(&mut store, &slot(), 0, 2).unwrap();
        assert_eq!(store.count(&slot()).unwrap(), 1);
        release(&mut store, &slot(), 60, 1).unwrap();
        assert_eq!(store.count(&slot()).unwrap(), 1);
    }

    #[test]
    fn a_lost_race_is_retried_against_the_winner() {
        let mut store = MemoryStore::default();
        try_acquire(&mut store, &slot(), Window::MINUTE, 10, 1, 0).unwrap();
        // Another worker increments between each of our reads and writes, twice.
        store.interfere_times = 2;
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 10, 1, 0).unwrap();
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
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 10, 1, 0).unwrap();
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
        let got = try_acquire(&mut store, &slot(), Window::MINUTE, 1_000_000, 1, 0);
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
            try_acquire(&mut store, &slot(), Window::MINUTE, 1, 1, 0),
            Err(CounterError::Store(_))
        ));
        let mut store = MemoryStore::default();
        store.raw_set(KEY, b"garbage");
        assert_eq!(
            try_acquire(&mut store, &slot(), Window::MINUTE, 1, 1, 0),
            Err(CounterError::Corrupt { len: 7 })
        );
    }

    #[test]
    fn buckets_round_trip_and_refuse_foreign_values() {
        let bucket = Bucket {
            window_start: 1_795_342_500,
            entries: vec![(7, 29), (OVERFLOW_OWNER, 3)],
        };
        assert_eq!(Bucket::decode(&bucket.encode()), Some(bucket));
        assert_eq!(Bucket::decode(&[0; 7]), None);
        assert_eq!(Bucket::decode(&[0; 15]), None);
        assert_eq!(
            Bucket::decode(&[0; 8 + 16 * (ENTRIES_PER_BUCKET + 2)]),
            None
        );
    }

    fn caller(owner: u64) -> Slot {
        Slot {
            key: KEY.into(),
            owner,
        }
    }

    #[test]
    fn callers_sharing_a_bucket_keep_separate_counts() {
        let mut store = MemoryStore::default();
        for owner in 1..=3 {
            for _ in 0..owner {
                try_acquire(&mut store, &caller(owner), Window::MINUTE, 5, 1, 0).unwrap();
            }
        }
        for owner in 1..=3 {
            assert_eq!(
                current(&mut store, &caller(owner), Window::MINUTE, 0),
                Ok(owner)
            );
        }
        assert_eq!(current(&mut store, &caller(4), Window::MINUTE, 0), Ok(0));
    }

    #[test]
    fn a_full_bucket_makes_newcomers_share_one_budget_never_a_fresh_one() {
        let mut store = MemoryStore::default();
        let owners = ENTRIES_PER_BUCKET as u64;
        for owner in 1..=owners {
            try_acquire(&mut store, &caller(owner), Window::MINUTE, 2, 1, 0).unwrap();
        }
        // Two newcomers arrive in a full bucket: together they get one caller's budget.
        let first = try_acquire(&mut store, &caller(100), Window::MINUTE, 2, 1, 0).unwrap();
        let second = try_acquire(&mut store, &caller(101), Window::MINUTE, 2, 1, 0).unwrap();
        assert!(matches!(first, Acquire::Granted { count: 1, .. }));
        assert!(matches!(second, Acquire::Granted { count: 2, .. }));
        assert!(matches!(
            try_acquire(&mut store, &caller(102), Window::MINUTE, 2, 1, 0).unwrap(),
            Acquire::Exhausted { count: 2, .. }
        ));
        // Established callers keep their own counts, and a refund finds the shared entry.
        assert!(matches!(
            try_acquire(&mut store, &caller(1), Window::MINUTE, 2, 1, 0).unwrap(),
            Acquire::Granted { count: 2, .. }
        ));
        release(&mut store, &caller(101), 0, 1).unwrap();
        assert_eq!(current(&mut store, &caller(100), Window::MINUTE, 0), Ok(1));
        assert_eq!(
            store.bucket(KEY).unwrap().entries.len(),
            ENTRIES_PER_BUCKET + 1
        );
        // The next window starts empty: the newcomers get entries of their own.
        let next = try_acquire(&mut store, &caller(100), Window::MINUTE, 2, 1, 60).unwrap();
        assert_eq!(
            next,
            Acquire::Granted {
                window_start: 60,
                count: 1
            }
        );
        assert_eq!(store.bucket(KEY).unwrap().entries, vec![(100, 1)]);
    }

    #[test]
    fn the_first_worker_picks_the_salt_and_the_others_adopt_it() {
        let mut store = MemoryStore::default();
        assert_eq!(shared_salt(&mut store, 42), Ok(42));
        assert_eq!(shared_salt(&mut store, 7), Ok(42));
        store.raw_set(SALT_KEY, b"short");
        assert!(shared_salt(&mut store, 7).is_err());
    }
}
