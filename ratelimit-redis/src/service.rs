//! The gRPC service, routed by hand (what tonic's code generator would write, without needing
//! `protoc`): one method, every other path answers UNIMPLEMENTED.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codec::ProstCodec;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;

use crate::counting::RedisCounters;
use crate::decide::{limited, plan, respond};
use crate::proto::{RateLimitRequest, RateLimitResponse};

pub const SERVICE_NAME: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const SHOULD_RATE_LIMIT_PATH: &str =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `envoy.service.ratelimit.v3.RateLimitService`, counting in Redis.
#[derive(Clone)]
pub struct RateLimitService {
    counters: Arc<RedisCounters>,
}

impl RateLimitService {
    pub fn new(counters: RedisCounters) -> Self {
        Self {
            counters: Arc::new(counters),
        }
    }
}

impl NamedService for RateLimitService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tower_service::Service<http::Request<B>> for RateLimitService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SHOULD_RATE_LIMIT_PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = ShouldRateLimit(Arc::clone(&self.counters));
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<RateLimitResponse, RateLimitRequest>::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

struct ShouldRateLimit(Arc<RedisCounters>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Result<tonic::Response<RateLimitResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let counters = Arc::clone(&self.0);
        Box::pin(async move {
            should_rate_limit(&counters, &request.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

async fn should_rate_limit(
    counters: &RedisCounters,
    request: &RateLimitRequest,
) -> Result<RateLimitResponse, Status> {
    let plan = plan(request).map_err(Status::invalid_argument)?;
    let limited = limited(&plan);
    if limited.is_empty() {
        return Ok(respond(&plan, None));
    }
    match counters.count(&limited).await {
        Ok(verdict) => Ok(respond(&plan, Some(&verdict))),
        Err(error) => {
            // Never answer OK without having counted: the caller's failure policy decides what an
            // unreachable limit means.
            eprintln!("ratelimit-redis: redis: {error}");
            Err(Status::unavailable(format!(
                "rate limit store unavailable: {error}"
            )))
        }
    }
}
