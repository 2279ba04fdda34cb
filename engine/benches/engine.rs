//! Micro-benchmarks of the engine's per-request decision path (`evaluate`), of what each byte
//! of a large call costs (`per_byte`) and of policy loading, natively: `make bench-engine`.
//!
//! Policies are generated: `tool_0` .. `tool_{n-1}` under `default: deny`, all without limits
//! except the last, which has a global per-minute counter that never trips. The `granted` shape
//! adds what a multi-team policy has: n/10 hidden tools and n/10 grants of ten tools each, every
//! grant held by one identity and by a `team-N/*` prefix, the caller matching one of the
//! shortest (the last a scan of the prefixes would reach). Counter keys are built for the
//! namespace first, as the filter does when it configures. Counters live in an in-memory CAS
//! store, the engine's `MemoryStore`.
//! A whole run stays well under two minutes (see `config`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mcp_policy_engine::load_policy;
use mcp_policy_engine::sha256_tag;
use mcp_policy_engine::testing::{has_grant, parse_body, scan, tool_count, MemoryStore};
use mcp_policy_engine::Identity;
use mcp_policy_engine::Verdict;
use mcp_policy_engine::{evaluate, RequestMeta};

/// Policy sizes benchmarked: number of listed tools.
const SIZES: [usize; 2] = [10, 1_000];
/// Fixed request time (42 s into a minute), so the counter window never rolls over mid-run.
const NOW: u64 = 1_795_342_542;

/// A policy listing `tools` tools: all plain allows but the last, which has a limit that never
/// trips (a billion per minute, global).
fn policy_text(tools: usize) -> String {
    let entries: Vec<String> = (0..tools)
        .map(|i| {
            if i + 1 == tools {
                format!(
                    r#""tool_{i}":{{"limits":[{{"counter":"c","window":"minute","max":1000000000,"scope":"global"}}]}}"#
                )
            } else {
                format!(r#""tool_{i}":{{}}"#)
            }
        })
        .collect();
    format!(
        r#"{{"version":"1","default":"deny","tools":{{{}}}}}"#,
        entries.join(",")
    )
}

/// `tool_0` .. `tool_{n-1}` and `tool_ungranted` under `default: deny`, `tools / 10` hidden
/// tools and `tools / 10` grants: grant `g` holds `agent-g` and `team-g/*`, and may call
/// `tool_{10g}` .. `tool_{10g+9}`, each under a per-grant limit that never trips.
fn granted_policy_text(tools: usize) -> String {
    let groups = tools / 10;
    let listed: Vec<String> = (0..tools)
        .map(|i| format!(r#""tool_{i}":{{}}"#))
        .chain([r#""tool_ungranted":{}"#.to_owned()])
        .collect();
    let hidden: Vec<String> = (0..groups).map(|i| format!(r#""hidden_{i}""#)).collect();
    let grants: Vec<String> = (0..groups)
        .map(|g| {
            let tools: Vec<String> = (10 * g..10 * g + 10)
                .map(|i| {
                    format!(
                        r#""tool_{i}":{{"limits":[{{"counter":"g{g}","window":"minute","max":1000000000,"scope":"grant"}}]}}"#
                    )
                })
                .collect();
            format!(
                r#""g{g}":{{"identities":["agent-{g}","team-{g}/*"],"tools":{{{}}}}}"#,
                tools.join(",")
            )
        })
        .collect();
    format!(
        r#"{{"version":"1","default":"deny","tools":{{{}}},"hide":[{}],"grants":{{{}}}}}"#,
        listed.join(","),
        hidden.join(","),
        grants.join(",")
    )
}

/// A `tools/call` of `tool`, its `arguments` padded with a string field to exactly `size` bytes
/// (or as small as it gets, if `size` is below that).
fn call_body(tool: &str, size: usize) -> Vec<u8> {
    let with_pad = |pad: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"to":"all_followers","pad":"{pad}"}}}}}}"#
        )
    };
    let bare = with_pad("").len();
    with_pad(&"x".repeat(size.saturating_sub(bare))).into_bytes()
}

const TOOLS_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn bench_evaluate(c: &mut Criterion) {
    let identity = Identity::new("bench-agent");
    let meta = RequestMeta {
        namespace: "bench",
        identity: Some(&identity),
        session: Some("bench-session"),
        now: NOW,
        ..Default::default()
    };
    let mut group = c.benchmark_group("evaluate");
    for tools in SIZES {
        // Bound as the filter binds it when it configures.
        let policy = load_policy(policy_text(tools).as_bytes())
            .expect("generated policy loads")
            .bind(meta.namespace, 0);
        let limited = format!("tool_{}", tools - 1);
        // (case, body, expected to be forwarded, expected counter readings)
        let cases: Vec<(&str, Vec<u8>, bool, usize)> = vec![
            ("allow", call_body("tool_0", 200), true, 0),
            ("allow_1KB", call_body("tool_0", 1024), true, 0),
            ("allow_10KB", call_body("tool_0", 10 * 1024), true, 0),
            ("allow_limited", call_body(&limited, 200), true, 1),
            ("deny", call_body("not_listed", 200), false, 0),
            ("tools_list", TOOLS_LIST.to_vec(), true, 0),
            ("notification", INITIALIZED.to_vec(), true, 0),
        ];
        for (case, body, forwarded, counters) in &cases {
            let mut store = MemoryStore::default();
            // Check that the case exercises the path it is named after before timing it.
            let outcome = evaluate(&policy, body, &meta, &mut store)
                .done()
                .expect("finished without waiting");
            assert_eq!(
                outcome.verdict == Verdict::Forward,
                *forwarded,
                "{tools} tools, {case}: unexpected verdict {:?}",
                outcome.verdict
            );
            assert_eq!(outcome.counters.len(), *counters, "{tools} tools, {case}");
            assert!(outcome.problem.is_none(), "{tools} tools, {case}");

            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("{tools}_tools/{case}"), |b| {
                b.iter(|| evaluate(&policy, black_box(body), black_box(&meta), &mut store));
            });
        }
    }
    // The granted shape: the caller holds a grant through a prefix, the one a scan of the
    // prefixes (longest first, in grant-name order among equals) would reach last: `team-9/`.
    for tools in SIZES {
        let policy = load_policy(granted_policy_text(tools).as_bytes())
            .expect("generated policy loads")
            .bind(meta.namespace, 0);
        let groups = tools / 10;
        let last_tried = groups.min(10) - 1;
        let identity = Identity::new(format!("team-{last_tried}/bot"));
        let meta = RequestMeta {
            identity: Some(&identity),
            ..meta
        };
        let granted_tool = format!("tool_{}", 10 * last_tried + 9);
        let cases: Vec<(&str, Vec<u8>, bool, usize)> = vec![
            (
                "granted_limited_1KB",
                call_body(&granted_tool, 1024),
                true,
                1,
            ),
            ("outside_grant", call_body("tool_ungranted", 200), false, 0),
            (
                "hidden",
                call_body(&format!("hidden_{}", groups - 1), 200),
                false,
                0,
            ),
        ];
        for (case, body, forwarded, counters) in &cases {
            let mut store = MemoryStore::default();
            let outcome = evaluate(&policy, body, &meta, &mut store)
                .done()
                .expect("finished without waiting");
            assert_eq!(
                outcome.verdict == Verdict::Forward,
                *forwarded,
                "granted {tools} tools, {case}: unexpected verdict {:?}",
                outcome.verdict
            );
            assert_eq!(
                outcome.counters.len(),
                *counters,
                "granted {tools} tools, {case}"
            );
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(format!("{tools}_tools_granted/{case}"), |b| {
                b.iter(|| evaluate(&policy, black_box(body), black_box(&meta), &mut store));
            });
        }
    }
    group.finish();
}

/// Finding the grant of an identity that only a prefix matches, among `tools / 10` grants.
fn bench_grant_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("grant_lookup");
    for tools in SIZES {
        let policy =
            load_policy(granted_policy_text(tools).as_bytes()).expect("generated policy loads");
        let last_tried = (tools / 10).min(10) - 1;
        let identity = format!("team-{last_tried}/bot");
        assert!(has_grant(&policy, &identity));
        group.bench_function(format!("{}_grants", tools / 10), |b| {
            b.iter(|| has_grant(&policy, black_box(&identity)));
        });
    }
    group.finish();
}

/// What each byte of a large call costs, piece by piece, on the bodies `evaluate` is timed on:
/// checking it is UTF-8, scanning it (`scan`: syntax, duplicate keys, the members noted),
/// reading it as JSON-RPC (`parse_body`: both, and the message classified) and the SHA-256 of
/// its text, which the audit record carries with `"hash_arguments": true`.
fn bench_per_byte(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_byte");
    for (size, name) in [(1024, "1KB"), (10 * 1024, "10KB")] {
        let body = call_body("tool_0", size);
        let text = std::str::from_utf8(&body).expect("UTF-8");
        assert!(scan::scan(text).is_ok() && parse_body(&body).is_ok());
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("utf8_{name}"), |b| {
            b.iter(|| std::str::from_utf8(black_box(&body)).is_ok());
        });
        group.bench_function(format!("scan_{name}"), |b| {
            b.iter(|| scan::scan(black_box(text)).is_ok());
        });
        group.bench_function(format!("parse_body_{name}"), |b| {
            b.iter(|| parse_body(black_box(&body)).is_ok());
        });
        group.bench_function(format!("sha256_{name}"), |b| {
            b.iter(|| sha256_tag(black_box(text)));
        });
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for tools in SIZES {
        let text = policy_text(tools);
        let policy = load_policy(text.as_bytes()).expect("generated policy loads");
        assert_eq!(tool_count(&policy), tools);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("{tools}_tools"), |b| {
            b.iter(|| load_policy(black_box(text.as_bytes())));
        });
        let granted = granted_policy_text(tools);
        group.throughput(Throughput::Bytes(granted.len() as u64));
        group.bench_function(format!("{tools}_tools_granted"), |b| {
            b.iter(|| load_policy(black_box(granted.as_bytes())));
        });
    }
    group.finish();
}

/// 34 benchmarks × (0.5 s warm-up + 2 s measurement + analysis): under two minutes in all.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_evaluate, bench_per_byte, bench_grant_lookup, bench_load
}
criterion_main!(benches);
