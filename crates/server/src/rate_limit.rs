//! The per-client rate limit of `/auth/*` and `/oauth2/*`, with Medplum's `RateLimit` header on
//! every counted response and a 429 past the limit. In `RateLimit`, `r` is the remaining quota
//! and `t` the seconds until it resets, in the form Medplum sends and `@medplum/core` reads.
//! NOTE: `RateLimit-Policy` (`q` the quota, `w` the window in seconds) follows the IETF draft
//! "RateLimit header fields for HTTP" as recalled, not checked against a client.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use medgate_fhir::OperationOutcome;
use medgate_service::rate_limit::{RateLimitStatus, WINDOW_SECONDS, project_auth_rate_limit};
use medgate_service::session::RequestCredentials;
use serde_json::json;

use crate::AppState;
use crate::error::{fhir_json, set_retry_after};
use crate::extract::ClientInfo;

/// Checks whether a path is counted. Medplum counts every path under `/auth/` or `/oauth2/`
/// except `/auth/me`, which clients poll.
fn is_limited(path: &str) -> bool {
    (path.starts_with("/auth/") || path.starts_with("/oauth2/")) && path != "/auth/me"
}

/// Counts the request against its client's limit and returns 429 past the limit.
pub async fn limit_auth_requests(
    State(state): State<AppState>,
    client: ClientInfo,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.services.config.auth_rate_limit;
    let address = client
        .address
        .as_deref()
        .and_then(|address| address.parse::<IpAddr>().ok());
    let (Some(limit), Some(address)) = (limit, address) else {
        return next.run(request).await;
    };
    if !is_limited(request.uri().path()) {
        return next.run(request).await;
    }

    // The header is copied because the request body cannot be shared across the await.
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let limit = project_limit(&state, authorization.as_deref(), address)
        .await
        .unwrap_or(limit);
    let status = state
        .services
        .auth_rate_limiter
        .check(address, limit, state.services.now());
    let mut response = if status.allowed {
        next.run(request).await
    } else {
        tracing::warn!(client = %address, limit, "auth rate limit exceeded");
        too_many_requests(request.uri().path(), &status)
    };
    set_headers(&mut response, &status);
    response
}

/// The `authRateLimit` of the caller's project when the request carries a valid bearer
/// token, as Medplum applies it to authenticated requests.
/// The handler authenticates the token again, and the auth cache filled here usually serves
/// that second look-up without a store read.
async fn project_limit(
    state: &AppState,
    authorization: Option<&str>,
    address: IpAddr,
) -> Option<u32> {
    let authorization = authorization.filter(|value| value.starts_with("Bearer "))?;
    let credentials = RequestCredentials {
        authorization: Some(authorization),
        on_behalf_of: None,
        client_address: Some(address),
    };
    let context = state
        .services
        .authenticate_request(credentials)
        .await
        .ok()?;
    project_auth_rate_limit(&context.project)
}

/// Builds the 429 response in the route's format: OAuth JSON under `/oauth2/`, otherwise Medplum's
/// OperationOutcome whose diagnostics carry the limiter state.
fn too_many_requests(path: &str, status: &RateLimitStatus) -> Response {
    let mut response = if path.starts_with("/oauth2/") {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "invalid_request", "error_description": "Too Many Requests"})),
        )
            .into_response()
    } else {
        let mut outcome = OperationOutcome::too_many_requests();
        outcome.issue[0].diagnostics = Some(
            json!({
                "limit": status.limit,
                "remainingPoints": status.remaining,
                "consumedPoints": status.consumed,
                "msBeforeNext": status.reset_seconds * 1000,
            })
            .to_string(),
        );
        fhir_json(StatusCode::TOO_MANY_REQUESTS, &outcome)
    };
    set_retry_after(&mut response, status.reset_seconds);
    response
}

fn set_headers(response: &mut Response, status: &RateLimitStatus) {
    let current = format!(
        "\"requests\";r={};t={}",
        status.remaining, status.reset_seconds
    );
    let policy = format!("\"requests\";q={};w={WINDOW_SECONDS}", status.limit);
    for (name, value) in [("ratelimit", current), ("ratelimit-policy", policy)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_paths() {
        for path in [
            "/auth/login",
            "/auth/me/x",
            "/oauth2/token",
            "/oauth2/authorize",
        ] {
            assert!(is_limited(path), "{path}");
        }
        for path in [
            "/auth/me",
            "/fhir/R4/Patient",
            "/.well-known/jwks.json",
            "/auth",
        ] {
            assert!(!is_limited(path), "{path}");
        }
    }
}
