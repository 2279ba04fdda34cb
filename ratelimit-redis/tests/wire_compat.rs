//! The filter writes `RateLimitRequest` and reads `RateLimitResponse` with its own small protobuf
//! code (a protobuf runtime would grow the .wasm). Here prost, generated from the same field
//! numbers as Envoy's protos, reads what the filter writes and writes what the filter reads.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use mcp_policy_engine::wire::ratelimit::{self as filter, Code, Descriptor, Unit};
use prost::Message;
use ratelimit_redis::proto;

#[test]
fn prost_reads_the_filters_request() {
    let descriptors = [
        Descriptor {
            entries: vec![
                ("mcp_server".into(), "wechat".into()),
                ("mcp_counter".into(), "sends".into()),
                ("mcp_grant".into(), "support \u{1F600}".into()),
            ],
            requests_per_unit: 30,
            unit: Unit::Minute,
            hits: 1,
        },
        Descriptor {
            entries: vec![("mcp_scope".into(), "global".into())],
            requests_per_unit: 4_000_000_000,
            unit: Unit::Week,
            hits: 300,
        },
    ];
    let bytes = filter::encode_request("mcp-policy", &descriptors);
    let decoded = proto::RateLimitRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.domain, "mcp-policy");
    assert_eq!(decoded.hits_addend, 0);
    assert_eq!(decoded.descriptors.len(), 2);
    let first = &decoded.descriptors[0];
    let entries: Vec<(&str, &str)> = first
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("mcp_server", "wechat"),
            ("mcp_counter", "sends"),
            ("mcp_grant", "support \u{1F600}")
        ]
    );
    let limit = first.limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (30, 2));
    assert_eq!(first.hits_addend.as_ref().map(|h| h.value), Some(1));
    let second = &decoded.descriptors[1];
    let limit = second.limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_unit, limit.unit), (4_000_000_000, 7));
    assert_eq!(second.hits_addend.as_ref().map(|h| h.value), Some(300));
}

#[test]
fn the_filter_reads_prosts_response() {
    let response = proto::RateLimitResponse {
        overall_code: 2,
        statuses: vec![
            proto::DescriptorStatus {
                code: 1,
                current_limit: Some(proto::RateLimit {
                    requests_per_unit: 30,
                    unit: 2,
                    name: "x".into(),
                }),
                limit_remaining: 29,
                duration_until_reset: Some(proto::Duration {
                    seconds: 17,
                    nanos: 5,
                }),
            },
            proto::DescriptorStatus {
                code: 2,
                current_limit: None,
                limit_remaining: 0,
                duration_until_reset: Some(proto::Duration {
                    seconds: 3_600,
                    nanos: 0,
                }),
            },
        ],
    };
    let decoded = filter::decode_response(&response.encode_to_vec()).unwrap();
    assert_eq!(decoded.overall_code, Code::OverLimit);
    assert_eq!(decoded.statuses.len(), 2);
    assert_eq!(
        (
            decoded.statuses[0].code,
            decoded.statuses[0].limit_remaining,
            decoded.statuses[0].seconds_until_reset
        ),
        (Code::Ok, 29, 17)
    );
    assert_eq!(
        (
            decoded.statuses[1].code,
            decoded.statuses[1].limit_remaining,
            decoded.statuses[1].seconds_until_reset
        ),
        (Code::OverLimit, 0, 3_600)
    );
}
