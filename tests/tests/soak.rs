//! Soaks through the real Envoy: exact limits under sustained concurrent load across several
//! windows, and counter memory that stays bounded while sessions and identities churn.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::http::{tools_call, MCP_ACCEPT};
use e2e::{Deployment, DeploymentOptions};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client")
}

/// One POST on a kept-alive connection: whether the call was admitted (reached the server).
async fn call(client: &reqwest::Client, url: &str, id: u64, headers: &[(&str, String)]) -> bool {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", MCP_ACCEPT)
        .body(tools_call(id, "wechat_mass_send"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("POST");
    let body: Value = response.json().await.expect("JSON answer");
    if body.get("result").is_some() {
        return true;
    }
    assert_eq!(body["error"]["code"], -32029, "{body}");
    false
}

fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("Envoy's /proc status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    assert!(rss > 0, "Envoy's RSS read as 0: nothing would be measured");
    rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_window_admits_exactly_max_under_sustained_load() {
    // 2-second windows, so a few seconds of load cross several window boundaries.
    const MAX: u64 = 20;
    const WINDOW: u64 = 2;
    let policy = format!(
        r#"{{"version":"1","default":"deny","tools":{{"wechat_mass_send":{{"limits":[
        {{"counter":"sends","window":{WINDOW},"max":{MAX},"scope":"identity"}}]}}}}}}"#
    );
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy,
        concurrency: 2,
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let deadline = Instant::now() + Duration::from_secs(4 * WINDOW + 1);
    let mut clients = tokio::task::JoinSet::new();
    for client_id in 0..32u64 {
        let url = url.clone();
        clients.spawn(async move {
            let client = client();
            let (mut sent, mut admitted) = (0u64, 0u64);
            while Instant::now() < deadline {
                let agent = [("x-agent-id", "soak-agent".to_string())];
                admitted +=
                    u64::from(call(&client, &url, client_id * 1_000_000 + sent, &agent).await);
                sent += 1;
            }
            (sent, admitted)
        });
    }
    let (mut sent, mut admitted) = (0, 0);
    while let Some(result) = clients.join_next().await {
        let (s, a) = result.expect("client task");
        sent += s;
        admitted += a;
    }
    assert_eq!(
        d.upstream_tool_calls("wechat", "wechat_mass_send"),
        admitted,
        "the upstream saw exactly the admitted calls"
    );

    // Each forwarded call's audit record says which window it counted in and its place there.
    let records = d.audit_records(sent as usize);
    let mut per_window: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for record in &records {
        let audit = &record["mcp_policy"];
        if audit["outcome"] == "forwarded" {
            let counter = &audit["counters"][0];
            per_window
                .entry(counter["window_start"].as_u64().expect("window_start"))
                .or_default()
                .push(counter["value"].as_u64().expect("value"));
        }
    }
    assert_eq!(
        per_window.values().map(Vec::len).sum::<usize>() as u64,
        admitted
    );
    let windows: Vec<_> = per_window.keys().copied().collect();
    assert!(windows.len() >= 4, "load spanned windows {windows:?}");
    for (n, (start, values)) in per_window.iter_mut().enumerate() {
        values.sort_unstable();
        let interior = n > 0 && n + 1 < windows.len();
        // The first and last windows were only partly under load; every other one is full.
        if interior {
            assert_eq!(values.len() as u64, MAX, "window {start}: {values:?}");
        }
        let expected: Vec<u64> = (1..=values.len() as u64).collect();
        assert_eq!(
            *values, expected,
            "window {start}: each count handed out once"
        );
        assert!(values.len() as u64 <= MAX, "window {start}: {values:?}");
    }
    eprintln!(
        "soak: {sent} calls from 32 clients over {} windows, {admitted} admitted: {:?}",
        windows.len(),
        per_window.values().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(!d.envoy_log().contains("compare-and-swap gave up"));
}

/// Distinct sessions and identities per phase of the memory soak (`SOAK_CALLERS` overrides;
/// `make soak` runs 100,000 per phase).
fn soak_callers() -> u64 {
    std::env::var("SOAK_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counter_memory_stays_bounded_while_sessions_and_identities_churn() {
    // Two scoped counters, 4,096 callers tracked at once each (512 buckets per counter) over
    // 1-second windows: the callers of one second fit, and buckets are reused second after
    // second.
    let policy = r#"{"version":"1","default":"deny","counter_slots":4096,
        "tools":{"wechat_mass_send":{"limits":[
            {"counter":"per_session","window":1,"max":5,"scope":"session"},
            {"counter":"per_agent","window":1,"max":5,"scope":"identity"}]}}}"#;
    let d = Deployment::start(DeploymentOptions {
        wechat_policy: policy.into(),
        concurrency: 2,
        stateless: true,
        ..Default::default()
    });
    let url = d.url("wechat");
    let pid = d.envoy.guard.pid().expect("envoy pid");
    let callers = soak_callers();
    let phase = |first: u64, count: u64| {
        let url = url.clone();
        async move {
            let started = Instant::now();
            let mut clients = tokio::task::JoinSet::new();
            const CLIENTS: u64 = 16;
            for c in 0..CLIENTS {
                let url = url.clone();
                clients.spawn(async move {
                    let client = client();
                    let mut admitted = 0u64;
                    let mut i = first + c;
                    while i < first + count {
                        let headers = [
                            ("x-agent-id", format!("agent-{i}")),
                            ("mcp-session-id", format!("session-{i}")),
                        ];
                        admitted += u64::from(call(&client, &url, i, &headers).await);
                        i += CLIENTS;
                    }
                    admitted
                });
            }
            let mut admitted = 0;
            while let Some(result) = clients.join_next().await {
                admitted += result.expect("client task");
            }
            (admitted, started.elapsed())
        }
    };
    // Warm-up: every bucket of both counters exists afterwards (512 buckets, 6,000 callers).
    const WARM_UP: u64 = 6_000;
    let (warm, _) = phase(0, WARM_UP).await;
    let rss_warm = rss_kib(pid);
    let (first, first_time) = phase(1_000_000, callers).await;
    let rss_first = rss_kib(pid);
    let (second, second_time) = phase(10_000_000, callers).await;
    let rss_second = rss_kib(pid);
    eprintln!(
        "memory soak: RSS {rss_warm} KiB after {WARM_UP} callers, {rss_first} KiB after {} more \
         ({:.1} s), {rss_second} KiB after {} more ({:.1} s)",
        callers,
        first_time.as_secs_f64(),
        callers,
        second_time.as_secs_f64()
    );
    // Every newcomer has a budget: no caller is refused while buckets have room, and when one
    // is full the newcomer shares the overflow entry (max 5) with at most a few others.
    assert!(warm >= WARM_UP * 99 / 100, "{warm} admitted");
    assert!(
        first + second >= 2 * callers * 99 / 100,
        "{first} + {second} admitted"
    );
    assert_eq!(
        d.upstream_tool_calls("wechat", "wechat_mass_send"),
        warm + first + second
    );
    // Unbounded keys would cost a few hundred bytes per caller and counter: several MB per
    // 10,000 callers. The bound holds if the second phase (as many new callers again) adds next
    // to nothing over the first.
    let growth = rss_second.saturating_sub(rss_first);
    assert!(
        growth < 2 * 1024,
        "RSS grew {growth} KiB over {callers} new callers ({rss_first} -> {rss_second} KiB)"
    );
}
