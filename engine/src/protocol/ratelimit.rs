//! The two messages of Envoy's rate-limit protocol (`envoy.service.ratelimit.v3`) the filter
//! exchanges, in protobuf wire format. Written by hand: only a handful of fields are needed, and a
//! protobuf runtime would add more to the .wasm than everything here.

/// `RateLimitUnit` / `RateLimitResponse.RateLimit.Unit` (same numbers in both enums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Week = 7,
}

impl Unit {
    /// The unit a window of `seconds` is, if the protocol has one.
    pub fn for_window(seconds: u64) -> Option<Unit> {
        match seconds {
            1 => Some(Unit::Second),
            60 => Some(Unit::Minute),
            3600 => Some(Unit::Hour),
            86_400 => Some(Unit::Day),
            604_800 => Some(Unit::Week),
            _ => None,
        }
    }
}

/// One descriptor: key/value entries naming a counter, the limit to apply to it (the override
/// keeps `max` in the policy rather than in the service's configuration) and its hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<(String, String)>,
    pub requests_per_unit: u32,
    pub unit: Unit,
    pub hits: u64,
}

/// `ShouldRateLimit`'s request.
pub fn encode_request(domain: &str, descriptors: &[Descriptor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 96 * descriptors.len());
    put_bytes(&mut out, 1, domain.as_bytes());
    for descriptor in descriptors {
        let mut d = Vec::with_capacity(96);
        for (key, value) in &descriptor.entries {
            let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
            put_bytes(&mut entry, 1, key.as_bytes());
            put_bytes(&mut entry, 2, value.as_bytes());
            put_bytes(&mut d, 1, &entry);
        }
        let mut limit = Vec::with_capacity(8);
        put_varint_field(&mut limit, 1, u64::from(descriptor.requests_per_unit));
        put_varint_field(&mut limit, 2, descriptor.unit as u64);
        put_bytes(&mut d, 2, &limit);
        // google.protobuf.UInt64Value: present even for 1, so no service default applies.
        let mut hits = Vec::with_capacity(10);
        put_varint_field(&mut hits, 1, descriptor.hits);
        put_bytes(&mut d, 3, &hits);
        put_bytes(&mut out, 2, &d);
    }
    out
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_wire(value: u64) -> Code {
        match value {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    /// Whether the service said which limit it applied (`current_limit`). A service with no
    /// limit configured for a descriptor (envoyproxy/ratelimit without this domain, Limitador
    /// without a matching limit) answers OK without one, having counted nothing.
    pub limit_applied: bool,
    pub limit_remaining: u32,
    /// `duration_until_reset`, whole seconds (0 when the service does not say).
    pub seconds_until_reset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub overall_code: Code,
    pub statuses: Vec<DescriptorStatus>,
}

/// `ShouldRateLimit`'s response. Unknown fields are skipped, as protobuf readers must.
pub fn decode_response(bytes: &[u8]) -> Result<Response, String> {
    let mut response = Response {
        overall_code: Code::Unknown,
        statuses: Vec::new(),
    };
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(v)) => response.overall_code = Code::from_wire(v),
            (2, Value::Bytes(status)) => response.statuses.push(decode_status(status)?),
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, String> {
    let mut status = DescriptorStatus {
        code: Code::Unknown,
        limit_applied: false,
        limit_remaining: 0,
        seconds_until_reset: 0,
    };
    for field in Fields::new(bytes) {
        match field? {
            (1, Value::Varint(v)) => status.code = Code::from_wire(v),
            (2, Value::Bytes(_)) => status.limit_applied = true,
            (3, Value::Varint(v)) => status.limit_remaining = u32::try_from(v).unwrap_or(u32::MAX),
            (4, Value::Bytes(duration)) => {
                for part in Fields::new(duration) {
                    if let (1, Value::Varint(seconds)) = part? {
                        // int64 on the wire: a negative duration reads as huge; clamp it to 0.
                        status.seconds_until_reset =
                            i64::try_from(seconds).unwrap_or(0).max(0) as u64;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(status)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in order; an error ends the iteration.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or_else(|| "truncated varint".to_owned())?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err("truncated field".to_owned());
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), String> {
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire => return Err(format!("unsupported wire type {wire}")),
        };
        Ok((tag >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test;

    #[test]
    fn a_request_encodes_field_by_field() {
        let descriptor = Descriptor {
            entries: vec![("k".into(), "v".into())],
            requests_per_unit: 30,
            unit: Unit::Minute,
            hits: 1,
        };
        let bytes = encode_request("d", &[descriptor]);
        let expected: Vec<u8> = vec![
            0x0a, 1, b'd', // domain
            0x12, 18, // descriptor
            0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', // entry
            0x12, 4, 0x08, 30, 0x10, 2, // limit override
            0x1a, 2, 0x08, 1, // hits_addend
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn long_values_use_multi_byte_varints() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut fields = Fields::new(&[0x08, 0xac, 0x02]);
        assert!(matches!(fields.next(), Some(Ok((1, Value::Varint(300))))));
    }

    #[test]
    fn a_response_decodes_and_skips_unknown_fields() {
        let bytes: Vec<u8> = vec![
            0x08, 2, // overall_code OVER_LIMIT
            0x12, 13, // status
            0x08, 2, // code
            0x12, 4, 0x08, 30, 0x10, 2, // current_limit (skipped)
            0x18, 0, // limit_remaining 0
            0x22, 3, 0x08, 0x2a, 0x10, // duration: 42 s, then a truncated nanos... (below)
        ];
        // The status above is cut short on purpose: a broken message is an error.
        assert!(decode_response(&bytes).is_err());

        let good: Vec<u8> = vec![
            0x08, 1, 0x12, 14, 0x08, 1, 0x12, 4, 0x08, 30, 0x10, 2, 0x18, 7, 0x22, 2, 0x08, 0x2a,
            0x2a, 0, // request_headers_to_add etc.: unknown here, skipped
            0x39, 0, 0, 0, 0, 0, 0, 0, 0, // a fixed64 field, skipped
        ];
        let response = decode_response(&good).unwrap();
        assert_eq!(response.overall_code, Code::Ok);
        assert_eq!(
            response.statuses,
            vec![DescriptorStatus {
                code: Code::Ok,
                limit_applied: true,
                limit_remaining: 7,
                seconds_until_reset: 42,
            }]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_verdict() {
        assert!(decode_response(&[0x0f]).is_err());
        assert!(decode_response(&[0x12, 50, 1]).is_err());
        assert!(decode_response(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err());
        assert_eq!(decode_response(&[]).unwrap().overall_code, Code::Unknown);
    }

    #[test]
    fn windows_map_to_protocol_units() {
        assert_eq!(Unit::for_window(60), Some(Unit::Minute));
        assert_eq!(Unit::for_window(604_800), Some(Unit::Week));
        assert_eq!(Unit::for_window(90), None);
    }
}
