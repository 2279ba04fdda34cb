//! A `CasStore` in memory with Envoy shared-data semantics: the one store the engine's tests,
//! the fuzz targets and the benches count in.

use std::collections::HashMap;

use super::{Bucket, CasStore, SetOutcome, Slot, StoreError};

/// A `CasStore` with Envoy shared-data semantics (tokens from 1 upwards, 0 = unconditional,
/// any CAS accepted on an absent key), plus knobs to inject another worker's writes and
/// failures.
#[derive(Default)]
pub struct MemoryStore {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// For this many `set` calls, another worker writes the same key first (creating it with
    /// count 1, or adding 1), as if it ran between our `get` and `set`.
    pub interfere_times: usize,
    pub fail: bool,
    pub gets: usize,
    pub sets: usize,
}

impl MemoryStore {
    fn token(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }

    pub fn raw_set(&mut self, key: &str, value: &[u8]) {
        let cas = self.token();
        self.entries.insert(key.to_owned(), (value.to_vec(), cas));
    }

    pub fn bucket(&self, key: &str) -> Option<Bucket> {
        self.entries.get(key).and_then(|(v, _)| Bucket::decode(v))
    }

    /// The count `slot` is held to, if its bucket exists.
    pub fn count(&self, slot: &Slot) -> Option<u64> {
        self.bucket(&slot.key).map(|b| b.count_of(slot.owner))
    }

    /// Another worker adds 1 for the caller our write is about to add to (the entry whose count
    /// differs between what is stored and what we are writing).
    fn foreign_increment(&mut self, key: &str, ours: &[u8]) {
        let Some(ours) = Bucket::decode(ours) else {
            return;
        };
        let mut next = match self.bucket(key) {
            Some(stored) if stored.window_start == ours.window_start => stored,
            _ => Bucket {
                window_start: ours.window_start,
                entries: Vec::new(),
            },
        };
        for (owner, count) in &ours.entries {
            match next.entries.iter_mut().find(|(o, _)| o == owner) {
                Some(entry) if entry.1 != *count => entry.1 += 1,
                Some(_) => {}
                None => next.entries.push((*owner, 1)),
            }
        }
        self.raw_set(key, &next.encode());
    }
}

impl CasStore for MemoryStore {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.gets += 1;
        if self.fail {
            return Err(StoreError("injected failure".into()));
        }
        Ok(self.entries.get(key).cloned())
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, StoreError> {
        self.sets += 1;
        if self.fail {
            return Err(StoreError("injected failure".into()));
        }
        if self.interfere_times > 0 {
            self.interfere_times -= 1;
            self.foreign_increment(key, value);
        }
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Ok(SetOutcome::CasMismatch);
            }
        }
        self.raw_set(key, value);
        Ok(SetOutcome::Stored)
    }
}
