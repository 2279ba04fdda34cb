//! Arm F of `bench/run.py`: the external-processing hop. Envoy's `ext_proc` filter sends each
//! request's headers, then its buffered body, here over gRPC; this answers "continue", or a 403
//! for a body calling `blocked_tool` (the decision arms D and E make). It prints
//! `listening on 127.0.0.1:PORT` once bound.

use std::io::Write;

use std::pin::Pin;

use envoy_grpc_ext_proc::envoy::r#type::v3::HttpStatus;
use envoy_grpc_ext_proc::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_grpc_ext_proc::envoy::service::ext_proc::v3::{
    processing_request, processing_response, BodyResponse, HeadersResponse, ImmediateResponse,
    ProcessingRequest, ProcessingResponse,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

const BLOCKED_TOOL: &str = "blocked_tool";
const FORBIDDEN: i32 = 403;

struct ToolGate;

/// The tool a `tools/call` body names, if it is one.
fn called_tool(body: &[u8]) -> Option<String> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    Some(message.get("params")?.get("name")?.as_str()?.to_owned())
}

fn answer(request: ProcessingRequest) -> Result<ProcessingResponse, Status> {
    let response = match request.request {
        Some(processing_request::Request::RequestBody(body))
            if called_tool(&body.body).as_deref() == Some(BLOCKED_TOOL) =>
        {
            processing_response::Response::ImmediateResponse(ImmediateResponse {
                status: Some(HttpStatus { code: FORBIDDEN }),
                body: br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"tool blocked_tool is not allowed"}}"#.to_vec(),
                details: "blocked_tool".to_owned(),
                ..Default::default()
            })
        }
        Some(processing_request::Request::RequestBody(_)) => {
            processing_response::Response::RequestBody(BodyResponse::default())
        }
        // The request's headers (and anything else sent) pass unchanged.
        Some(processing_request::Request::RequestHeaders(_)) => {
            processing_response::Response::RequestHeaders(HeadersResponse::default())
        }
        None => return Err(Status::invalid_argument("a ProcessingRequest without a request")),
        Some(processing_request::Request::ResponseHeaders(_)) => {
            processing_response::Response::ResponseHeaders(HeadersResponse::default())
        }
        Some(processing_request::Request::ResponseBody(_)) => {
            processing_response::Response::ResponseBody(BodyResponse::default())
        }
        Some(processing_request::Request::RequestTrailers(_)) => {
            processing_response::Response::RequestTrailers(Default::default())
        }
        Some(processing_request::Request::ResponseTrailers(_)) => {
            processing_response::Response::ResponseTrailers(Default::default())
        }
    };
    Ok(ProcessingResponse {
        response: Some(response),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl ExternalProcessor for ToolGate {
    type ProcessStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let answers = request.into_inner().map(|message| message.and_then(answer));
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("bench-ext-proc: cannot bind: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let announced = listener.local_addr().and_then(|addr| {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()
    });
    if let Err(error) = announced {
        eprintln!("bench-ext-proc: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .add_service(ExternalProcessorServer::new(ToolGate))
        .serve_with_incoming(incoming)
        .await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-ext-proc: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
