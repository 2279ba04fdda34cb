//! The counters' store for every filter instance and worker thread of one Envoy process: a map
//! behind locks, read and written in place, so a count is exact across workers without a call
//! into Envoy. It keeps Envoy shared data's compare-and-swap contract (the engine's `CasStore`),
//! so the engine counts here exactly as it does in the `.wasm`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use mcp_policy_engine::{CasStore, SetOutcome, StoreError};

/// Independent locks, so that workers counting different keys rarely wait for each other.
const SHARDS: usize = 16;

struct Entry {
    value: Vec<u8>,
    cas: u32,
}

type Shard = Mutex<HashMap<Box<str>, Entry>>;

fn shards() -> &'static [Shard] {
    static SHARDS_: OnceLock<Vec<Shard>> = OnceLock::new();
    SHARDS_.get_or_init(|| (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect())
}

/// Tokens from 1 upwards, as Envoy's shared data hands them out (0 means "unconditional").
fn next_cas() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let token = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if token != 0 {
            return token;
        }
    }
}

fn shard_of(key: &str) -> Result<MutexGuard<'static, HashMap<Box<str>, Entry>>, StoreError> {
    // FNV-1a: cheap, and keys are the filter's own (counter names and buckets), not a client's.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let index = usize::try_from(hash % SHARDS as u64).unwrap_or(0);
    let shard = shards()
        .get(index)
        .ok_or_else(|| StoreError(format!("no counter shard {index}")))?;
    // A worker that panicked while holding the lock left a whole entry (entries are replaced,
    // never edited in place): the map is still sound.
    Ok(shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// A handle on the process-wide store.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStore;

impl CasStore for ProcessStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        let shard = shard_of(key)?;
        Ok(shard.get(key).map(|e| (e.value.clone(), e.cas)))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        let mut shard = shard_of(key)?;
        match shard.get_mut(key) {
            Some(entry) if cas != 0 && entry.cas != cas => Ok(SetOutcome::CasMismatch),
            Some(entry) => {
                entry.value.clear();
                entry.value.extend_from_slice(value);
                entry.cas = next_cas();
                Ok(SetOutcome::Stored)
            }
            None => {
                let entry = Entry {
                    value: value.to_vec(),
                    cas: next_cas(),
                };
                shard.insert(key.into(), entry);
                Ok(SetOutcome::Stored)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_as_envoy_shared_data() {
        let mut store = ProcessStore;
        let key = "test/compare_and_swap";
        assert_eq!(store.get(key).unwrap(), None);
        // Any CAS creates an absent key.
        assert_eq!(store.set(key, b"1", u32::MAX).unwrap(), SetOutcome::Stored);
        let (value, cas) = store.get(key).unwrap().unwrap();
        assert_eq!(value, b"1");
        assert_eq!(
            store.set(key, b"2", cas.wrapping_add(1)).unwrap(),
            SetOutcome::CasMismatch
        );
        assert_eq!(store.set(key, b"2", cas).unwrap(), SetOutcome::Stored);
        assert_eq!(store.set(key, b"3", cas).unwrap(), SetOutcome::CasMismatch);
        assert_eq!(store.set(key, b"4", 0).unwrap(), SetOutcome::Stored);
        assert_eq!(store.get(key).unwrap().unwrap().0, b"4");
    }

    #[test]
    fn counts_are_exact_across_threads() {
        let key = "test/threads";
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut store = ProcessStore;
                    for _ in 0..1000 {
                        loop {
                            let (current, cas) = match store.get(key).unwrap() {
                                Some((v, cas)) => {
                                    (String::from_utf8(v).unwrap().parse::<u64>().unwrap(), cas)
                                }
                                None => (0, u32::MAX),
                            };
                            let next = (current + 1).to_string();
                            if store.set(key, next.as_bytes(), cas).unwrap() == SetOutcome::Stored {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ProcessStore.get(key).unwrap().unwrap().0, b"8000");
    }
}
