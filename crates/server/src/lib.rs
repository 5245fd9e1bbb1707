//! medgate's HTTP layer: axum routers per API family, request extractors, and the single
//! mapping from service errors to responses. Handlers extract and validate input, call one
//! service function and map its result; the flows themselves live in `medgate-service`.

pub mod error;
pub mod extract;
pub mod middleware;
pub mod pages;
pub mod rate_limit;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use medgate_fhir::OperationOutcome;
use medgate_service::Services;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{ErrorFormat, InternalError, fhir_json};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
}

/// Builds the complete application router.
pub fn app(state: AppState) -> Router {
    routes::routes()
        .fallback(|| async { fhir_json(StatusCode::NOT_FOUND, &OperationOutcome::not_found()) })
        .method_not_allowed_fallback(|| async {
            fhir_json(
                StatusCode::METHOD_NOT_ALLOWED,
                &OperationOutcome::bad_request("Method not allowed", None),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_auth_requests,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(middleware::finish_errors))
        .layer(CatchPanicLayer::custom(|_panic| {
            let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            response.extensions_mut().insert(InternalError {
                message: "handler panicked".to_string(),
                format: ErrorFormat::Outcome,
            });
            response
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::RequestSpan)
                .on_request(())
                .on_response(middleware::LogResponse)
                .on_failure(middleware::QuietFailure),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Serves the application and runs the outbox sender (unless the settings turn it off) until
/// `shutdown` completes, then lets
/// in-flight requests finish and stops the sender after the row it is delivering.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sender = state
        .services
        .config
        .email
        .run_sender
        .then(|| state.services.start_sender());
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(sender) = sender {
        sender.stop().await;
    }
    served
}
