//! Envoy's rate-limit gRPC call (`RateLimitService/ShouldRateLimit`) carried over the ABI's HTTP
//! streams, which is all the ABI offers: the request framed as one gRPC message and sent at once,
//! the answer reassembled from the stream's headers, data and trailers.

use crate::envoy::EnvoyStream;

const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Start the call: Envoy's stream id.
pub fn start(
    envoy: EnvoyStream,
    cluster: &str,
    request: &[u8],
    timeout_ms: u64,
) -> Result<u64, String> {
    let timeout = format!("{timeout_ms}m");
    let headers = [
        (":method", "POST"),
        (":path", PATH),
        ("host", cluster),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", timeout.as_str()),
    ];
    envoy.start_stream(cluster, &headers, &frame(request), timeout_ms)
}

/// One length-prefixed gRPC message, uncompressed.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// What one call has received so far.
#[derive(Debug, Default)]
pub struct GrpcCall {
    http_status: Option<u16>,
    grpc_status: Option<u32>,
    grpc_message: String,
    body: Vec<u8>,
}

impl GrpcCall {
    /// Headers or trailers of the answer (a trailers-only answer has `grpc-status` in its
    /// headers).
    pub fn on_headers(&mut self, headers: &[(&[u8], &[u8])]) {
        for (name, value) in headers {
            let text = std::str::from_utf8(value).unwrap_or_default();
            match *name {
                b":status" => self.http_status = text.parse().ok(),
                b"grpc-status" => self.grpc_status = text.parse().ok(),
                b"grpc-message" => text.clone_into(&mut self.grpc_message),
                _ => {}
            }
        }
    }

    pub fn body(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// The serialized `RateLimitResponse`, or why there is none, in the words the `.wasm`
    /// uses (`gRPC status 14 …`).
    pub fn answer(self) -> Result<Vec<u8>, String> {
        match (self.http_status, self.grpc_status) {
            (Some(200), Some(0)) => unframe(&self.body),
            (_, Some(code)) => Err(format!("gRPC status {code} {}", self.grpc_message)
                .trim_end()
                .to_owned()),
            (Some(status), None) => Err(format!("HTTP status {status}, no gRPC status")),
            (None, None) => Err("no answer (unreachable or timed out)".to_owned()),
        }
    }
}

/// The message of one length-prefixed gRPC frame.
pub fn unframe(body: &[u8]) -> Result<Vec<u8>, String> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| format!("answer of {} bytes is not a gRPC message", body.len()))?;
    let (flag, length) = head
        .split_first()
        .ok_or_else(|| "empty answer".to_owned())?;
    if *flag != 0 {
        return Err("compressed gRPC answer".to_owned());
    }
    let length = <[u8; 4]>::try_from(length)
        .map(u32::from_be_bytes)
        .map_err(|_| "bad gRPC frame".to_owned())?;
    let length = usize::try_from(length).map_err(|e| e.to_string())?;
    rest.get(..length)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("gRPC message cut short ({} of {length} bytes)", rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        assert_eq!(unframe(&frame(b"abc")).unwrap(), b"abc");
        assert_eq!(unframe(&frame(b"")).unwrap(), b"");
        assert!(unframe(b"\0\0\0\0\x05ab").is_err());
        assert!(unframe(b"\x01\0\0\0\0").is_err());
        assert!(unframe(b"\0\0").is_err());
    }

    #[test]
    fn answers_in_the_wasm_words() {
        let mut ok = GrpcCall::default();
        ok.on_headers(&[(b":status", b"200")]);
        ok.body().extend_from_slice(&frame(b"\x08\x01"));
        ok.on_headers(&[(b"grpc-status", b"0")]);
        assert_eq!(ok.answer().unwrap(), b"\x08\x01");

        let mut down = GrpcCall::default();
        down.on_headers(&[
            (b":status", b"200"),
            (b"grpc-status", b"14"),
            (b"grpc-message", b"no healthy upstream"),
        ]);
        assert_eq!(
            down.answer().unwrap_err(),
            "gRPC status 14 no healthy upstream"
        );

        let mut local = GrpcCall::default();
        local.on_headers(&[(b":status", b"503")]);
        assert!(local.answer().unwrap_err().contains("503"));
        assert!(GrpcCall::default().answer().is_err());
    }
}
