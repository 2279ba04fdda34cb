//! The messages of `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, written by hand
//! with prost's derive: only the fields this service reads or writes, with Envoy's tag numbers.
//! Hand-written so that building needs no `protoc` and no build script; unknown fields sent by a
//! newer Envoy are skipped by prost, as protobuf requires.

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.UInt64Value`: a wrapper, so that "absent" differs from 0 (0 = query only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// Both `RateLimitDescriptor.RateLimitOverride`'s `RateLimitUnit` and `RateLimitResponse.RateLimit.Unit`:
/// the two protocol enums share every number, so one Rust enum serves both fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
    Week = 7,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prost::Message;

    /// Bytes as Envoy's generated code writes them, so a wrong tag or wire type shows up here
    /// rather than as a silently empty field in production.
    #[test]
    fn request_wire_format_matches_envoy_tags() {
        let bytes: Vec<u8> = vec![
            0x0a, 0x03, b'm', b'c', b'p', // domain = "mcp"
            0x12, 0x12, // descriptors[0], 18 bytes
            0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // entries[0] = (k, v)
            0x12, 0x04, 0x08, 0x1e, 0x10, 0x02, // limit = 30 / MINUTE
            0x1a, 0x02, 0x08, 0x05, // hits_addend = 5
            0x18, 0x07, // request hits_addend = 7
        ];
        let request = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(request.domain, "mcp");
        assert_eq!(request.hits_addend, 7);
        let descriptor = request.descriptors.first().unwrap();
        assert_eq!(descriptor.entries.first().unwrap().key, "k");
        assert_eq!(descriptor.entries.first().unwrap().value, "v");
        let limit = descriptor.limit.clone().unwrap();
        assert_eq!((limit.requests_per_unit, limit.unit()), (30, Unit::Minute));
        assert_eq!(descriptor.hits_addend.clone().unwrap().value, 5);
    }
}
