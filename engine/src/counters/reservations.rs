//! Reserve, then commit or refund. An allowed call's counter increments are taken before it is
//! forwarded; when the upstream answers that call (matched by JSON-RPC id) with a JSON-RPC error
//! or answers the request with an HTTP error, they are given back, so a failed call does not use
//! up budget. Anything else commits: a result — including an MCP tool result with `isError:
//! true`, which is the tool's answer, not a protocol failure — and a stream that ends without an
//! answer we could match (refunds need evidence of failure).

use serde_json::Value;

use crate::counters::{release, CasStore, Slot};
use crate::protocol::jsonrpc::same_id;

/// One counter increment held for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub slot: Slot,
    pub window_start: u64,
    pub amount: u64,
}

/// What one forwarded request (a tools/call, a resource read, …), identified by its JSON-RPC id,
/// has taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: Value,
    pub holds: Vec<Hold>,
}

/// Settle the reservation `message` answers, if any: it is removed from `pending`, and returned
/// when it must be refunded (the answer is a JSON-RPC error).
pub fn settle(pending: &mut Vec<Reservation>, message: &Value) -> Option<Reservation> {
    let id = message.get("id")?;
    let index = pending.iter().position(|r| same_id(&r.id, id))?;
    let reservation = pending.swap_remove(index);
    message
        .get("error")
        .filter(|e| !e.is_null())
        .map(|_| reservation)
}

/// Envoy's response code details for an answer Envoy gave after it stopped waiting for the
/// server (a route, per-try or stream timeout; Envoy 1.40 says `response_timeout` for the
/// route's, older versions `upstream_response_timeout`). The server had the call and may still run it,
/// as when the client hangs up, so an HTTP error with one of these is no evidence of failure.
/// (A client can shorten the route's timeout with `x-envoy-upstream-rq-timeout-ms` where Envoy
/// honours it: refunding these would make every call free.)
const ENVOY_STOPPED_WAITING: [&str; 8] = [
    "response_timeout",
    "upstream_response_timeout",
    "upstream_per_try_timeout",
    "upstream_per_try_idle_timeout",
    "stream_idle_timeout",
    "request_overall_timeout",
    "max_duration_timeout",
    "upstream_max_stream_duration_reached",
];

/// Whether an HTTP error answer (`status` ≥ 400) with these `response.code_details` shows the
/// call failed: the server's own error (`via_upstream`), or Envoy's when the server never had the
/// call or dropped it (no connection, no healthy host, a reset) — not when Envoy only stopped
/// waiting, and not a timeout status (504, 408) passed on from a proxy between Envoy and the
/// server: either way the server may have the call.
pub fn http_error_refunds(status: u16, code_details: &str) -> bool {
    !matches!(status, 408 | 504)
        && !ENVOY_STOPPED_WAITING
            .iter()
            .any(|gave_up| code_details.starts_with(gave_up))
}

/// Give a reservation back. Failures only over-count (the safe direction); they are reported.
pub fn refund(store: &mut dyn CasStore, reservation: &Reservation) -> Result<(), String> {
    let failures: Vec<String> = reservation
        .holds
        .iter()
        .filter_map(|h| {
            release(store, &h.slot, h.window_start, h.amount)
                .err()
                .map(|e| format!("refund of {}: {e}", h.slot.key))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Bucket;
    use crate::test_support::{test, MemoryStore};
    use serde_json::json;

    fn slot() -> Slot {
        Slot {
            key: "k".into(),
            owner: 7,
        }
    }

    fn reservation(id: Value) -> Reservation {
        Reservation {
            id,
            holds: vec![Hold {
                slot: slot(),
                window_start: 60,
                amount: 3,
            }],
        }
    }

    #[test]
    fn an_error_answer_refunds_and_a_result_commits() {
        let mut pending = vec![reservation(json!(1)), reservation(json!("b"))];
        let refunded = settle(
            &mut pending,
            &json!({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom"}}),
        );
        assert_eq!(refunded, Some(reservation(json!(1))));
        assert_eq!(
            settle(
                &mut pending,
                &json!({"jsonrpc":"2.0","id":"b","result":{"isError":true,"content":[]}})
            ),
            None
        );
        assert!(pending.is_empty(), "both settled");
        // Notifications and unknown ids settle nothing.
        let mut pending = vec![reservation(json!(2))];
        assert_eq!(
            settle(
                &mut pending,
                &json!({"jsonrpc":"2.0","method":"notifications/progress"})
            ),
            None
        );
        assert_eq!(
            settle(&mut pending, &json!({"jsonrpc":"2.0","id":3,"error":{}})),
            None
        );
        assert_eq!(pending.len(), 1);
        // The id as the server echoes it: a number read as a number (`1.0` asked, `1` answered).
        let mut pending = vec![reservation(json!(1.0))];
        let error = json!({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom"}});
        assert_eq!(settle(&mut pending, &error), Some(reservation(json!(1.0))));
    }

    #[test]
    fn an_http_error_refunds_unless_envoy_only_stopped_waiting() {
        for refunds in [
            "via_upstream",
            "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
            "upstream_reset_before_response_started{connection_termination}",
            "no_healthy_upstream",
            "cluster_not_found",
        ] {
            assert!(http_error_refunds(503, refunds), "{refunds}");
        }
        assert!(http_error_refunds(500, "via_upstream"));
        assert!(http_error_refunds(404, "via_upstream"));
        for timeout in [504, 408] {
            assert!(!http_error_refunds(timeout, "via_upstream"), "{timeout}");
        }
        for stays in [
            "response_timeout",
            "upstream_response_timeout",
            "upstream_per_try_timeout",
            "stream_idle_timeout",
            "request_overall_timeout",
        ] {
            assert!(!http_error_refunds(504, stays), "{stays}");
            assert!(!http_error_refunds(503, stays), "{stays}");
        }
    }

    #[test]
    fn a_refund_gives_the_amount_back_within_its_window() {
        let mut store = MemoryStore::default();
        store.raw_set(
            "k",
            &Bucket {
                window_start: 60,
                entries: vec![(7, 5)],
            }
            .encode(),
        );
        refund(&mut store, &reservation(json!(1))).unwrap();
        assert_eq!(store.count(&slot()).unwrap(), 2);
        store.raw_set(
            "k",
            &Bucket {
                window_start: 120,
                entries: vec![(7, 5)],
            }
            .encode(),
        );
        refund(&mut store, &reservation(json!(1))).unwrap();
        assert_eq!(
            store.count(&slot()).unwrap(),
            5,
            "a new window is not touched"
        );
    }
}
