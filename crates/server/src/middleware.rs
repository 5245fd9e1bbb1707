//! Request logging and the last step of error handling.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use axum::middleware::Next;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::{MakeSpan, OnFailure, OnResponse};
use tracing::{Span, error, info, info_span};

use crate::error::{InternalError, internal_error_body};

const REQUEST_ID_HEADER: &str = "x-request-id";

fn request_id(request: &Request) -> &str {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
}

/// One span per request with the route template, never the raw URI: authorization codes
/// and other secrets travel in query strings.
#[derive(Clone)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or("unmatched");
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        info_span!("request", method = %request.method(), route, request_id)
    }
}

/// Logs one line per response with status and latency.
#[derive(Clone)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        info!(
            status = response.status().as_u16(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request finished"
        );
    }
}

/// Server errors are already logged by `finish_errors` with their cause.
#[derive(Clone)]
pub struct QuietFailure;

impl OnFailure<ServerErrorsFailureClass> for QuietFailure {
    fn on_failure(&mut self, _class: ServerErrorsFailureClass, _latency: Duration, _span: &Span) {}
}

/// Logs the cause of a 500 once, with the request id, and replaces the body by a generic
/// one in the route's format that carries the same id.
pub async fn finish_errors(request: Request, next: Next) -> Response<Body> {
    let request_id = request_id(&request).to_string();
    let response = next.run(request).await;
    match response.extensions().get::<InternalError>() {
        Some(internal) => {
            error!(request_id, error = %internal.message, "request failed");
            internal_error_body(internal.format, &request_id)
        }
        None => response,
    }
}
