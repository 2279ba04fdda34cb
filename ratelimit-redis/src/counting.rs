//! Counters in Redis: their keys, and the one Lua script that checks and increments all the
//! counters of a request at once.

use std::fmt::Write as _;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use crate::proto::Unit;

/// One limited counter of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The counter's key without its window index, which only the script knows (Redis's clock).
    pub key: String,
    pub unit: Unit,
    pub unit_seconds: u64,
    pub limit: u32,
    pub hits: u64,
}

/// What the script said about one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// This counter alone would go over its limit with this request's hits.
    pub over: bool,
    /// The count after this request if it was admitted, else the stored count (nothing was added).
    pub count: u64,
    /// Seconds until the counter's window ends (at least 1).
    pub reset_seconds: u64,
}

/// What the script said about a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub admitted: bool,
    /// One per counter, in the order given.
    pub outcomes: Vec<Outcome>,
}

/// The length of a fixed window, for the units this service counts in. Months and years have no
/// fixed length, so such descriptors are not limited (like an unmatched descriptor upstream).
pub fn unit_seconds(unit: Unit) -> Option<u64> {
    match unit {
        Unit::Second => Some(1),
        Unit::Minute => Some(60),
        Unit::Hour => Some(3_600),
        Unit::Day => Some(86_400),
        Unit::Week => Some(604_800),
        Unit::Unknown | Unit::Month | Unit::Year => None,
    }
}

/// The key of a counter, without its window index (the script appends it).
///
/// Every free-form part is written as `LENGTH:BYTES` and the number of entries precedes them, so
/// the key can be read back unambiguously: no choice of domain, keys and values makes two
/// different counters share a key. The limit is left out on purpose, so that changing a limit
/// keeps the count already made in the window; the unit is in, as a window of another length is
/// another counter.
pub fn counter_key<'a>(
    domain: &str,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    unit_seconds: u64,
) -> String {
    let mut key = String::with_capacity(32 + domain.len());
    key.push_str("rls:");
    push_part(&mut key, domain);
    let _ = write!(key, "|{}|", entries.len());
    for (name, value) in entries {
        push_part(&mut key, name);
        push_part(&mut key, value);
    }
    let _ = write!(key, "|{unit_seconds}|");
    key
}

fn push_part(key: &mut String, part: &str) {
    let _ = write!(key, "{}:{part}", part.len());
}

/// Checks every counter and increments all of them, or none: one script runs atomically in Redis,
/// so concurrent requests (from any number of replicas of this service) can never together pass a
/// limit, as a read in one round trip and an increment in another would.
///
/// `KEYS[i]` is a counter's key without its window; `ARGV[3i-2..3i]` are its unit in seconds, its
/// limit and its hits. The window comes from Redis's `TIME`, so replicas whose clocks differ still
/// share windows. Replies `{admitted, now, over_1, count_1, ...}`. A counter named twice in one
/// request is checked with the hits of both.
const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(redis.call('TIME')[1])
local keys, ends, stored, pending, over = {}, {}, {}, {}, {}
local admitted = 1
for i = 1, #KEYS do
  local unit = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  local hits = tonumber(ARGV[3 * i])
  local window = math.floor(now / unit)
  local key = KEYS[i] .. string.format('%d', window)
  keys[i] = key
  ends[i] = (window + 1) * unit
  if stored[key] == nil then
    stored[key] = tonumber(redis.call('GET', key) or '0')
    pending[key] = stored[key]
  end
  pending[key] = pending[key] + hits
  if limit == 0 or pending[key] > limit then
    over[i] = 1
    admitted = 0
  else
    over[i] = 0
  end
end
local reply = {admitted, now}
for i = 1, #KEYS do
  local hits = tonumber(ARGV[3 * i])
  if admitted == 1 and hits > 0 then
    redis.call('INCRBY', keys[i], hits)
    redis.call('EXPIREAT', keys[i], ends[i] + 1)
  end
  reply[2 * i + 1] = over[i]
  if admitted == 1 then reply[2 * i + 2] = pending[keys[i]] else reply[2 * i + 2] = stored[keys[i]] end
end
return reply
";

/// Hits above any possible limit all mean the same (over); capping them keeps every number the
/// script adds exact in Lua's doubles.
const MAX_HITS: u64 = u32::MAX as u64 + 1;

/// The Redis side: a connection that comes back by itself after Redis does, and the script.
#[derive(Clone)]
pub struct RedisCounters {
    connection: ConnectionManager,
    script: Script,
}

impl RedisCounters {
    /// Does not connect yet: the service starts (and answers UNAVAILABLE) while Redis is down.
    pub fn new(url: &str) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        // Short timeouts and one retry: a caller waiting on us is holding an MCP request, and a
        // quick UNAVAILABLE lets its failure policy decide, rather than a long stall.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            // EVALSHA, with a fallback to loading the script when Redis answers NOSCRIPT (as it
            // does after a restart).
            script: Script::new(SCRIPT),
        })
    }

    /// Runs the script over `counters` (not empty).
    pub async fn count(&self, counters: &[Counter]) -> Result<Verdict, RedisError> {
        let mut invocation = self.script.prepare_invoke();
        for counter in counters {
            invocation
                .key(&counter.key)
                .arg(counter.unit_seconds)
                .arg(counter.limit)
                .arg(counter.hits.min(MAX_HITS));
        }
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        parse_reply(&reply, counters).ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the rate-limit script",
            ))
        })
    }
}

fn parse_reply(reply: &[i64], counters: &[Counter]) -> Option<Verdict> {
    let (head, pairs) = reply.split_at_checked(2)?;
    let [admitted, now] = *head else { return None };
    let now = u64::try_from(now).ok()?;
    if pairs.len() != 2 * counters.len() {
        return None;
    }
    let outcomes = pairs
        .chunks_exact(2)
        .zip(counters)
        .map(|(pair, counter)| match *pair {
            [over, count] => Some(Outcome {
                over: over != 0,
                count: u64::try_from(count).ok()?,
                reset_seconds: reset_seconds(now, counter.unit_seconds),
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Verdict {
        admitted: admitted != 0,
        outcomes,
    })
}

/// Seconds from `now` to the end of its window: windows are aligned to the Unix epoch, as the
/// script's are.
pub fn reset_seconds(now: u64, unit_seconds: u64) -> u64 {
    let unit = unit_seconds.max(1);
    unit - now % unit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(domain: &str, entries: &[(&str, &str)]) -> String {
        counter_key(domain, entries.iter().copied(), 60)
    }

    #[test]
    fn key_parts_are_length_prefixed() {
        assert_eq!(
            key("mcp", &[("tool", "send"), ("user", "ab")]),
            "rls:3:mcp|2|4:tool4:send4:user2:ab|60|"
        );
        assert_eq!(key("", &[]), "rls:0:|0||60|");
    }

    #[test]
    fn keys_of_different_counters_never_collide() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("d", &[("ab", "c")]),
            ("d", &[("a", "bc")]),
            ("d", &[("a", "b"), ("c", "d")]),
            ("d", &[("a", "b2:cd")]),
            ("d", &[("a", "b|1|1:c")]),
            ("d|1|1:a", &[("b", "c")]),
            ("d", &[("a", "b"), ("", "")]),
            ("d", &[]),
            ("", &[("d", "")]),
            ("d", &[("", "")]),
            ("3:abc", &[]),
        ];
        let mut keys: Vec<String> = cases.iter().map(|(d, e)| key(d, e)).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "{keys:?}");
        assert_ne!(
            counter_key("d", [("a", "b")].into_iter(), 60),
            counter_key("d", [("a", "b")].into_iter(), 3_600)
        );
    }

    #[test]
    fn unit_lengths() {
        assert_eq!(unit_seconds(Unit::Second), Some(1));
        assert_eq!(unit_seconds(Unit::Minute), Some(60));
        assert_eq!(unit_seconds(Unit::Hour), Some(3_600));
        assert_eq!(unit_seconds(Unit::Day), Some(86_400));
        assert_eq!(unit_seconds(Unit::Week), Some(604_800));
        assert_eq!(unit_seconds(Unit::Month), None);
        assert_eq!(unit_seconds(Unit::Year), None);
        assert_eq!(unit_seconds(Unit::Unknown), None);
    }

    #[test]
    fn reset_is_the_rest_of_the_epoch_aligned_window() {
        assert_eq!(reset_seconds(120, 60), 60);
        assert_eq!(reset_seconds(179, 60), 1);
        assert_eq!(reset_seconds(7_201, 3_600), 3_599);
        assert_eq!(reset_seconds(5, 1), 1);
    }

    #[test]
    fn malformed_replies_are_rejected() {
        let counter = Counter {
            key: "k".into(),
            unit: Unit::Minute,
            unit_seconds: 60,
            limit: 3,
            hits: 1,
        };
        let counters = [counter];
        assert_eq!(parse_reply(&[1], &counters), None);
        assert_eq!(parse_reply(&[1, 120, 0], &counters), None);
        assert_eq!(parse_reply(&[1, -1, 0, 1], &counters), None);
        let verdict = parse_reply(&[0, 130, 1, 3], &counters).unwrap();
        assert_eq!(
            verdict,
            Verdict {
                admitted: false,
                outcomes: vec![Outcome {
                    over: true,
                    count: 3,
                    reset_seconds: 50
                }]
            }
        );
    }
}
