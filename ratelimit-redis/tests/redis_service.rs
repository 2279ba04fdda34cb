//! The built service against a real `redis-server`, through a gRPC client as Envoy would call it.
//! Each test starts its own Redis (on a free port) and its own service, so tests run in parallel.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// Children are killed (by PID) when their guard drops, when a test ends or panics.
use mcp_policy_sample::deployment::{first_line_within, ChildGuard};
use ratelimit_redis::proto::{
    Code, Entry, RateLimitDescriptor, RateLimitOverride, RateLimitRequest, RateLimitResponse,
    UInt64Value, Unit,
};
use ratelimit_redis::service::SHOULD_RATE_LIMIT_PATH;
use tonic::codec::ProstCodec;
use tonic::transport::Channel;

fn free_port() -> u16 {
    mcp_policy_sample::deployment::free_port().unwrap()
}

fn start_redis(port: u16) -> ChildGuard {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): these tests need it on PATH \
                 (`make test` installs it; or `apt-get install redis-server`)"
            )
        });
    let mut guard = ChildGuard::new("redis-server", child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = guard.try_exit_status() {
            panic!("redis-server on port {port} exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

/// The service under test, and the address it printed.
fn start_service(redis_port: u16) -> (ChildGuard, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_ratelimit-redis"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--redis", &format!("redis://127.0.0.1:{redis_port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard::new("ratelimit-redis", child);
    let stdout = guard.take_stdout().unwrap();
    let line = first_line_within(stdout, Duration::from_secs(30)).unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (guard, addr)
}

struct Setup {
    channel: Channel,
    _service: ChildGuard,
    redis: Option<ChildGuard>,
    redis_port: u16,
}

async fn setup() -> Setup {
    let redis_port = free_port();
    let redis = start_redis(redis_port);
    let (service, addr) = start_service(redis_port);
    Setup {
        channel: connect(&addr).await,
        _service: service,
        redis: Some(redis),
        redis_port,
    }
}

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn call(
    channel: &Channel,
    request: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    call_path(channel, SHOULD_RATE_LIMIT_PATH, request).await
}

async fn call_path(
    channel: &Channel,
    path: &'static str,
    request: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(request),
        http::uri::PathAndQuery::from_static(path),
        ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A domain no other test (or earlier run against the same Redis) uses.
fn unique_domain(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn descriptor(value: &str, limit: Option<(u32, Unit)>, hits: Option<u64>) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![
            Entry {
                key: "tool".into(),
                value: value.into(),
            },
            Entry {
                key: "user".into(),
                value: "alice".into(),
            },
        ],
        limit: limit.map(|(requests_per_unit, unit)| RateLimitOverride {
            requests_per_unit,
            unit: unit as i32,
        }),
        hits_addend: hits.map(|value| UInt64Value { value }),
    }
}

fn request(
    domain: &str,
    descriptors: Vec<RateLimitDescriptor>,
    hits_addend: u32,
) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend,
    }
}

fn codes(response: &RateLimitResponse) -> (i32, Vec<i32>) {
    (
        response.overall_code,
        response.statuses.iter().map(|s| s.code).collect(),
    )
}

fn remaining(response: &RateLimitResponse) -> Vec<u32> {
    response
        .statuses
        .iter()
        .map(|s| s.limit_remaining)
        .collect()
}

fn reset(response: &RateLimitResponse, i: usize) -> i64 {
    response.statuses[i]
        .duration_until_reset
        .as_ref()
        .unwrap()
        .seconds
}

/// Waits out the last seconds of a window, so that a test's requests all land in one window.
async fn away_from_window_end(unit_seconds: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = unit_seconds - now % unit_seconds;
    if left < 5 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

const OK: i32 = Code::Ok as i32;
const OVER: i32 = Code::OverLimit as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_admit_exactly_the_limit() {
    let setup = setup().await;
    let domain = unique_domain("burst");
    away_from_window_end(3_600).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let channel = setup.channel.clone();
            let request = request(
                &domain,
                vec![descriptor("send", Some((30, Unit::Hour)), None)],
                0,
            );
            tokio::spawn(async move { call(&channel, request).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap().overall_code {
            OK => admitted += 1,
            OVER => refused += 1,
            other => panic!("unexpected code {other}"),
        }
    }
    assert_eq!((admitted, refused), (30, 70));
    let query = call(
        &setup.channel,
        request(
            &domain,
            vec![descriptor("send", Some((30, Unit::Hour)), Some(0))],
            0,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (codes(&query), remaining(&query)),
        ((OK, vec![OK]), vec![0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_increments_no_counter() {
    let setup = setup().await;
    let domain = unique_domain("all-or-nothing");
    away_from_window_end(3_600).await;
    let small = || descriptor("small", Some((1, Unit::Hour)), None);
    let large = |hits| descriptor("large", Some((10, Unit::Hour)), hits);

    let first = call(&setup.channel, request(&domain, vec![small()], 0))
        .await
        .unwrap();
    assert_eq!(
        (codes(&first), remaining(&first)),
        ((OK, vec![OK]), vec![0])
    );

    let refused = call(
        &setup.channel,
        request(&domain, vec![large(None), small()], 0),
    )
    .await
    .unwrap();
    assert_eq!(codes(&refused), (OVER, vec![OK, OVER]));
    // `large` was not counted: its remaining is its limit less its current (zero) count.
    assert_eq!(remaining(&refused), vec![10, 0]);

    let query = call(&setup.channel, request(&domain, vec![large(Some(0))], 0))
        .await
        .unwrap();
    assert_eq!(
        (codes(&query), remaining(&query)),
        ((OK, vec![OK]), vec![10])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_remaining_and_reset() {
    let setup = setup().await;
    let domain = unique_domain("hits");
    away_from_window_end(60).await;
    let limit = Some((12, Unit::Minute));

    // The request's hits apply to descriptors without their own.
    let r = call(
        &setup.channel,
        request(&domain, vec![descriptor("a", limit, None)], 5),
    )
    .await
    .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OK, vec![OK]), vec![7]));
    let current = r.statuses[0].current_limit.clone().unwrap();
    assert_eq!(
        (current.requests_per_unit, current.unit),
        (12, Unit::Minute as i32)
    );
    assert!((1..=60).contains(&reset(&r, 0)), "{}", reset(&r, 0));

    // A descriptor's own hits win over the request's.
    let r = call(
        &setup.channel,
        request(&domain, vec![descriptor("a", limit, Some(3))], 5),
    )
    .await
    .unwrap();
    assert_eq!(remaining(&r), vec![4]);

    // Too many hits: refused whole, nothing added.
    let r = call(
        &setup.channel,
        request(&domain, vec![descriptor("a", limit, Some(5))], 0),
    )
    .await
    .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OVER, vec![OVER]), vec![4]));
    let r = call(
        &setup.channel,
        request(&domain, vec![descriptor("a", limit, Some(4))], 0),
    )
    .await
    .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OK, vec![OK]), vec![0]));

    // A new limit for the same counter keeps its count (12 so far).
    let r = call(
        &setup.channel,
        request(
            &domain,
            vec![descriptor("a", Some((20, Unit::Minute)), None)],
            0,
        ),
    )
    .await
    .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OK, vec![OK]), vec![7]));

    // The same counter named twice in a request is checked with both descriptors' hits.
    let twice = vec![
        descriptor("b", limit, Some(7)),
        descriptor("b", limit, Some(7)),
    ];
    let r = call(&setup.channel, request(&domain, twice, 0))
        .await
        .unwrap();
    assert_eq!(
        (codes(&r), remaining(&r)),
        ((OVER, vec![OK, OVER]), vec![12, 12])
    );

    // Windows are aligned to the Unix epoch (Redis runs on this machine's clock).
    let r = call(
        &setup.channel,
        request(
            &domain,
            vec![descriptor("c", Some((5, Unit::Day)), None)],
            0,
        ),
    )
    .await
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expected = i64::try_from(86_400 - now % 86_400).unwrap();
    assert!(
        (reset(&r, 0) - expected).abs() <= 2,
        "{} vs {expected}",
        reset(&r, 0)
    );

    // A limit of 0 refuses everything.
    let r = call(
        &setup.channel,
        request(
            &domain,
            vec![descriptor("d", Some((0, Unit::Second)), None)],
            0,
        ),
    )
    .await
    .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OVER, vec![OVER]), vec![0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_without_a_countable_limit_are_ok() {
    let setup = setup().await;
    let domain = unique_domain("unlimited");
    let r = call(
        &setup.channel,
        request(
            &domain,
            vec![
                descriptor("a", None, None),
                descriptor("a", Some((1, Unit::Month)), None),
                descriptor("a", Some((0, Unit::Unknown)), None),
            ],
            0,
        ),
    )
    .await
    .unwrap();
    assert_eq!(codes(&r), (OK, vec![OK, OK, OK]));
    assert!(r.statuses.iter().all(|s| s.current_limit.is_none()));

    let mixed = vec![
        descriptor("a", None, None),
        descriptor("b", Some((2, Unit::Hour)), None),
    ];
    let r = call(&setup.channel, request(&domain, mixed, 0))
        .await
        .unwrap();
    assert_eq!((codes(&r), remaining(&r)), ((OK, vec![OK, OK]), vec![0, 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_and_unknown_methods() {
    let setup = setup().await;
    let one = || vec![descriptor("a", Some((1, Unit::Hour)), None)];
    let status = call(&setup.channel, request("", one(), 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = call(&setup.channel, request("d", vec![], 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = call_path(
        &setup.channel,
        "/envoy.service.ratelimit.v3.RateLimitService/Other",
        request("d", one(), 0),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_and_recovers() {
    let mut setup = setup().await;
    let domain = unique_domain("outage");
    let limited = || {
        request(
            &domain,
            vec![descriptor("a", Some((1_000, Unit::Hour)), None)],
            0,
        )
    };
    assert_eq!(
        call(&setup.channel, limited()).await.unwrap().overall_code,
        OK
    );

    drop(setup.redis.take());
    for _ in 0..3 {
        let status = call(&setup.channel, limited()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }

    setup.redis = Some(start_redis(setup.redis_port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call(&setup.channel, limited()).await {
            Ok(response) => {
                assert_eq!(response.overall_code, OK);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    Instant::now() < deadline,
                    "no recovery after Redis restarted: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_before_redis() {
    let redis_port = free_port();
    let (_service, addr) = start_service(redis_port);
    let channel = connect(&addr).await;
    let domain = unique_domain("late-redis");
    let limited = || {
        request(
            &domain,
            vec![descriptor("a", Some((5, Unit::Hour)), None)],
            0,
        )
    };
    let status = call(&channel, limited()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let _redis = start_redis(redis_port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call(&channel, limited()).await {
            Ok(response) => {
                assert_eq!(response.overall_code, OK);
                break;
            }
            Err(status) => {
                assert!(
                    Instant::now() < deadline,
                    "no connection to Redis: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
