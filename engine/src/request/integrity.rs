//! Tool integrity: how a tool stands against its pin. Listings (`tools/list` answers) are where
//! the filter sees definitions: each listed tool is hashed and compared with its pin, and what
//! was seen is kept in the counter store, shared by every worker, so that a call is refused
//! once any listing showed its tool changed. A call that comes before any listing showed a
//! change is decided by the pin alone.
//!
//! Kept per filter (namespace), under `mcp-policy/pins/v1/…`:
//! - `seen/<tool>`: the hash a listing last showed for a tool the policy pins;
//! - `<generation>/learned/<tool>`, `<generation>/seen/<tool>`, `<generation>/sealed`,
//!   `<generation>/count`: what a `first_seen` policy learned, per policy generation (a changed
//!   policy learns afresh).

use std::fmt::Write;

use super::access::ToolDecision;
use crate::counters::{CasStore, StoreError, CREATE_CAS};
use crate::json::path::key_path;
use crate::policy::pins::{Class, Hints, Pin, PinMode, Pins};
use crate::policy::Policy;

/// Most tools a `first_seen` policy learns: a server listing more cannot grow the store
/// without bound; the rest stay unpinned.
pub const MAX_LEARNED: u64 = 1024;

/// How a tool stands against its pin when it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The policy has no pins: nothing is checked, no class applies.
    Unchecked,
    /// Pinned, and no listing showed another definition since.
    Pinned(Hints),
    /// A listing showed a definition other than the pinned one.
    Drifted {
        pinned: String,
        seen: String,
        hints: Hints,
    },
    /// No pin: the policy names none and none was learned.
    Unpinned,
    /// The store could not say.
    Unknown(String),
}

impl Standing {
    /// The trusted hints: a pin's, never a listing's.
    pub fn hints(&self) -> Option<Hints> {
        match self {
            Standing::Pinned(hints) | Standing::Drifted { hints, .. } => Some(*hints),
            _ => None,
        }
    }

    /// Why a call to `tool` is refused (or, under `report`, would be); `None` if it is not.
    pub fn problem(&self, tool: &str, mode: PinMode) -> Option<String> {
        match self {
            Standing::Unchecked | Standing::Pinned(_) => None,
            Standing::Drifted { pinned, seen, .. } => Some(format!(
                "the definition of tool \"{tool}\" changed since it was pinned (pinned {pinned}, listed {seen}); calls to it are refused until the policy pins the new definition"
            )),
            Standing::Unpinned if mode == PinMode::FirstSeen => Some(format!(
                "tool \"{tool}\" has no pin: it was not in the first listing the filter learned pins from"
            )),
            Standing::Unpinned => Some(format!(
                "tool \"{tool}\" has no pin: its definition was never reviewed (add it to pins.tools)"
            )),
            Standing::Unknown(problem) => Some(format!(
                "the pin of tool \"{tool}\" could not be read: {problem}"
            )),
        }
    }
}

/// A call refused for its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRefusal {
    pub problem: String,
    /// The policy element that refuses: `pins.tools.<tool>` for a drifted pin, else `pins`.
    pub rule: String,
    /// The pin state could not be read: the filter cannot enforce, rather than a denial.
    pub unknown: bool,
}

/// A call to `tool` (of risk `class`) its access decided, against its pin's `standing`: a
/// drifted or unpinned tool is refused, or only reported under `pins.mode: report` and in
/// shadow mode (a "would deny" of the allowed call).
pub fn judge(
    policy: &Policy,
    tool: &str,
    class: Option<Class>,
    standing: &Standing,
    decision: ToolDecision,
) -> Result<ToolDecision, PinRefusal> {
    let (
        Some(pins),
        ToolDecision::Allow {
            charges,
            shadow_denials,
            approval,
        },
    ) = (&policy.pins, &decision)
    else {
        return Ok(decision);
    };
    let Some(problem) = standing.problem(tool, pins.mode) else {
        return Ok(decision);
    };
    let rule = match standing {
        Standing::Drifted { .. } if pins.tools.contains_key(tool) => key_path("pins.tools", tool),
        _ => "pins".to_owned(),
    };
    let unknown = matches!(standing, Standing::Unknown(_));
    if unknown && policy.fail_open {
        return Ok(decision);
    }
    if !pins.mode.refuses() || policy.in_shadow(policy.entry(tool, class)) {
        let mut shadow_denials = shadow_denials.clone();
        shadow_denials.push((problem, rule));
        return Ok(ToolDecision::Allow {
            charges: charges.clone(),
            shadow_denials,
            approval: approval.clone(),
        });
    }
    Err(PinRefusal {
        problem,
        rule,
        unknown,
    })
}

/// What a listing showed for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// As pinned (or just learned).
    Kept,
    /// Differs from its pin, or has none: `pinned` is `None` for a tool without a pin.
    Drift {
        pinned: Option<String>,
        seen: String,
    },
}

/// Keys of one filter's pin state.
struct Keys {
    base: String,
}

impl Keys {
    fn new(namespace: &str) -> Keys {
        let mut base = String::with_capacity(40 + namespace.len());
        // Writing into a String cannot fail.
        let _ = write!(base, "mcp-policy/pins/v1/{}:{namespace}/", namespace.len());
        Keys { base }
    }

    fn seen(&self, tool: &str) -> String {
        format!("{}seen/{}:{tool}", self.base, tool.len())
    }

    fn learned(&self, pins: &Pins, tool: &str) -> String {
        format!(
            "{}{}/learned/{}:{tool}",
            self.base,
            pins.generation,
            tool.len()
        )
    }

    fn learned_seen(&self, pins: &Pins, tool: &str) -> String {
        format!(
            "{}{}/seen/{}:{tool}",
            self.base,
            pins.generation,
            tool.len()
        )
    }

    fn sealed(&self, pins: &Pins) -> String {
        format!("{}{}/sealed", self.base, pins.generation)
    }

    fn count(&self, pins: &Pins) -> String {
        format!("{}{}/count", self.base, pins.generation)
    }
}

/// Where a tool's pin comes from.
enum Source {
    Policy(Pin),
    Learned(Pin),
}

/// How `tool` stands, for a call to it.
pub fn standing(
    policy: &Policy,
    store: &mut dyn CasStore,
    namespace: &str,
    tool: &str,
) -> Standing {
    let Some(pins) = &policy.pins else {
        return Standing::Unchecked;
    };
    let keys = Keys::new(namespace);
    let (pin, seen_key) = match pin_of(pins, &keys, store, tool) {
        Ok(Some(Source::Policy(pin))) => (pin, keys.seen(tool)),
        Ok(Some(Source::Learned(pin))) => (pin, keys.learned_seen(pins, tool)),
        Ok(None) => return Standing::Unpinned,
        Err(problem) => return Standing::Unknown(problem.to_string()),
    };
    match read_text(store, &seen_key) {
        Ok(Some(seen)) if seen != pin.sha256 => Standing::Drifted {
            pinned: pin.sha256,
            seen,
            hints: pin.hints,
        },
        Ok(_) => Standing::Pinned(pin.hints),
        Err(problem) => Standing::Unknown(problem.to_string()),
    }
}

fn pin_of(
    pins: &Pins,
    keys: &Keys,
    store: &mut dyn CasStore,
    tool: &str,
) -> Result<Option<Source>, StoreError> {
    if let Some(pin) = pins.tools.get(tool) {
        return Ok(Some(Source::Policy(pin.clone())));
    }
    if pins.mode != PinMode::FirstSeen {
        return Ok(None);
    }
    Ok(read_text(store, &keys.learned(pins, tool))?
        .and_then(|text| decode_pin(&text))
        .map(Source::Learned))
}

/// Compare a listed tool (its name, the hash of its definition, its annotations' hints) with
/// its pin, learning it first under `first_seen` while the first listing is not complete, and
/// keep what was seen for calls.
pub fn check_listed(
    policy: &Policy,
    store: &mut dyn CasStore,
    namespace: &str,
    tool: &str,
    seen: &str,
    hints: Hints,
) -> Result<Listed, StoreError> {
    let Some(pins) = &policy.pins else {
        return Ok(Listed::Kept);
    };
    let keys = Keys::new(namespace);
    let (pin, seen_key) = match pin_of(pins, &keys, store, tool)? {
        Some(Source::Policy(pin)) => (pin, keys.seen(tool)),
        Some(Source::Learned(pin)) => (pin, keys.learned_seen(pins, tool)),
        None if pins.mode == PinMode::FirstSeen
            && learn(pins, &keys, store, tool, seen, hints)? =>
        {
            return Ok(Listed::Kept)
        }
        None => {
            return Ok(Listed::Drift {
                pinned: None,
                seen: seen.to_owned(),
            })
        }
    };
    write_text(store, &seen_key, seen)?;
    if pin.sha256 == seen {
        Ok(Listed::Kept)
    } else {
        Ok(Listed::Drift {
            pinned: Some(pin.sha256),
            seen: seen.to_owned(),
        })
    }
}

/// The listing is complete (a page without `nextCursor`): a `first_seen` policy stops learning.
pub fn seal(policy: &Policy, store: &mut dyn CasStore, namespace: &str) -> Result<(), StoreError> {
    match &policy.pins {
        Some(pins) if pins.mode == PinMode::FirstSeen => {
            let keys = Keys::new(namespace);
            write_text(store, &keys.sealed(pins), "1")
        }
        _ => Ok(()),
    }
}

/// Learn `tool`'s pin, unless learning is over (sealed, or `MAX_LEARNED` reached). Whether the
/// tool is now pinned as `seen`.
fn learn(
    pins: &Pins,
    keys: &Keys,
    store: &mut dyn CasStore,
    tool: &str,
    seen: &str,
    hints: Hints,
) -> Result<bool, StoreError> {
    if read_text(store, &keys.sealed(pins))?.is_some() || !take_learning_slot(pins, keys, store)? {
        return Ok(false);
    }
    let key = keys.learned(pins, tool);
    let _ = store.set(&key, encode_pin(seen, hints).as_bytes(), CREATE_CAS)?;
    // Another worker may have learned it first: its pin is the one kept.
    Ok(read_text(store, &key)?
        .and_then(|text| decode_pin(&text))
        .is_some_and(|pin| pin.sha256 == seen))
}

fn take_learning_slot(
    pins: &Pins,
    keys: &Keys,
    store: &mut dyn CasStore,
) -> Result<bool, StoreError> {
    let key = keys.count(pins);
    for _ in 0..crate::counters::MAX_CAS_ATTEMPTS {
        let (count, cas) = match store.get(&key)? {
            Some((bytes, cas)) => (parse_u64(&bytes), cas),
            None => (0, CREATE_CAS),
        };
        if count >= MAX_LEARNED {
            return Ok(false);
        }
        let next = (count + 1).to_string();
        if store.set(&key, next.as_bytes(), cas)? == crate::counters::SetOutcome::Stored {
            return Ok(true);
        }
    }
    Err(StoreError("pin store contended".to_owned()))
}

fn parse_u64(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A learned pin as stored: the hash, then the four hints as `0`/`1`.
fn encode_pin(sha256: &str, hints: Hints) -> String {
    let bit = |b: bool| if b { '1' } else { '0' };
    let mut out = String::with_capacity(sha256.len() + 5);
    out.push_str(sha256);
    out.push(' ');
    for hint in [
        hints.read_only,
        hints.destructive,
        hints.idempotent,
        hints.open_world,
    ] {
        out.push(bit(hint));
    }
    out
}

fn decode_pin(text: &str) -> Option<Pin> {
    let (sha256, bits) = text.split_once(' ')?;
    let bits = bits.as_bytes();
    let hint = |at: usize| bits.get(at).map(|b| *b == b'1');
    Some(Pin {
        sha256: sha256.to_owned(),
        hints: Hints {
            read_only: hint(0)?,
            destructive: hint(1)?,
            idempotent: hint(2)?,
            open_world: hint(3)?,
        },
    })
}

fn read_text(store: &mut dyn CasStore, key: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .get(key)?
        .and_then(|(bytes, _)| String::from_utf8(bytes).ok())
        .filter(|text| !text.is_empty()))
}

/// Set `key` to `text` unless it holds it already. A concurrent writer wins: it saw a listing
/// as recent as ours.
fn write_text(store: &mut dyn CasStore, key: &str, text: &str) -> Result<(), StoreError> {
    let cas = match store.get(key)? {
        Some((bytes, _)) if bytes == text.as_bytes() => return Ok(()),
        Some((_, cas)) => cas,
        None => CREATE_CAS,
    };
    store.set(key, text.as_bytes(), cas)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy;
    use crate::test_support::{test, MemoryStore};

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn policy(mode: &str, pinned: bool) -> Policy {
        let tools = if pinned {
            format!(
                r#","tools":{{"send":{{"sha256":"{A}","annotations":{{"readOnlyHint":true}}}}}}"#
            )
        } else {
            String::new()
        };
        load_policy(
            format!(r#"{{"version":"1","default":"allow","pins":{{"mode":"{mode}"{tools}}}}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn read_only() -> Hints {
        Hints {
            read_only: true,
            ..Hints::default()
        }
    }

    #[test]
    fn a_listing_that_shows_another_definition_refuses_calls_until_it_shows_the_pinned_one() {
        let policy = policy("enforce", true);
        let mut store = MemoryStore::default();
        assert_eq!(
            standing(&policy, &mut store, "ns", "send"),
            Standing::Pinned(read_only())
        );
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "send", B, Hints::default()).unwrap(),
            Listed::Drift {
                pinned: Some(A.to_owned()),
                seen: B.to_owned()
            }
        );
        let drifted = standing(&policy, &mut store, "ns", "send");
        assert_eq!(
            drifted.hints(),
            Some(read_only()),
            "the pin's hints, not the listing's"
        );
        let problem = drifted.problem("send", PinMode::Enforce).unwrap();
        assert!(problem.contains(A) && problem.contains(B), "{problem}");
        // Another filter keeps its own state.
        assert_eq!(
            standing(&policy, &mut store, "other", "send"),
            Standing::Pinned(read_only())
        );
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "send", A, Hints::default()).unwrap(),
            Listed::Kept
        );
        assert_eq!(
            standing(&policy, &mut store, "ns", "send"),
            Standing::Pinned(read_only())
        );
    }

    #[test]
    fn unpinned_tools_are_drift_without_a_pin() {
        let policy = policy("enforce", true);
        let mut store = MemoryStore::default();
        assert_eq!(
            standing(&policy, &mut store, "ns", "renamed"),
            Standing::Unpinned
        );
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "renamed", A, Hints::default()).unwrap(),
            Listed::Drift {
                pinned: None,
                seen: A.to_owned()
            }
        );
    }

    #[test]
    fn first_seen_learns_until_the_first_listing_is_complete() {
        let policy = policy("first_seen", false);
        let mut store = MemoryStore::default();
        assert_eq!(
            standing(&policy, &mut store, "ns", "send"),
            Standing::Unpinned
        );
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "send", A, read_only()).unwrap(),
            Listed::Kept
        );
        assert_eq!(
            standing(&policy, &mut store, "ns", "send"),
            Standing::Pinned(read_only())
        );
        seal(&policy, &mut store, "ns").unwrap();
        // Learned: a change is drift; a tool first listed now is unpinned.
        assert!(matches!(
            check_listed(&policy, &mut store, "ns", "send", B, read_only()).unwrap(),
            Listed::Drift {
                pinned: Some(_),
                ..
            }
        ));
        assert!(matches!(
            standing(&policy, &mut store, "ns", "send"),
            Standing::Drifted { .. }
        ));
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "late", A, read_only()).unwrap(),
            Listed::Drift {
                pinned: None,
                seen: A.to_owned()
            }
        );
        // A changed policy learns afresh.
        let changed =
            load_policy(br#"{"version":"1","default":"deny","pins":{"mode":"first_seen"}}"#)
                .unwrap();
        assert_eq!(
            standing(&changed, &mut store, "ns", "send"),
            Standing::Unpinned
        );
        assert_eq!(
            check_listed(&changed, &mut store, "ns", "late", A, read_only()).unwrap(),
            Listed::Kept
        );
    }

    #[test]
    fn learning_stops_at_its_bound() {
        let policy = policy("first_seen", false);
        let mut store = MemoryStore::default();
        for n in 0..MAX_LEARNED {
            let listed = check_listed(&policy, &mut store, "ns", &format!("t{n}"), A, read_only());
            assert_eq!(listed.unwrap(), Listed::Kept);
        }
        assert!(matches!(
            check_listed(&policy, &mut store, "ns", "one_more", A, read_only()).unwrap(),
            Listed::Drift { pinned: None, .. }
        ));
    }

    #[test]
    fn no_pins_no_checks() {
        let policy = load_policy(br#"{"version":"1","default":"allow"}"#).unwrap();
        let mut store = MemoryStore::default();
        assert_eq!(
            standing(&policy, &mut store, "ns", "x"),
            Standing::Unchecked
        );
        assert_eq!(
            check_listed(&policy, &mut store, "ns", "x", A, Hints::default()).unwrap(),
            Listed::Kept
        );
    }
}
