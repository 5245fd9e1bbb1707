//! The one place where service errors become responses, in the three formats medgate speaks:
//! OAuth 2.0 JSON on `/oauth2/token` (RFC 6749 §5.2), FHIR OperationOutcome on `/auth`,
//! `/admin` and `/fhir`, and HTML on pages.
//!
//! A failure that is not the caller's fault becomes a 500 whose body is generic. The cause
//! travels in a response extension to `middleware::finish_errors`, which logs it once with the
//! request id and writes that id into the body, so an operator can match the two.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medgate_fhir::OperationOutcome;
use medgate_service::{OAuthErrorCode, ServiceError};
use serde_json::json;

use crate::pages;

/// The wire format an error response must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    OAuth,
    Outcome,
    Html,
}

/// Marks a 500 response; `finish_errors` logs the message and fills in the body.
#[derive(Debug, Clone)]
pub struct InternalError {
    pub message: String,
    pub format: ErrorFormat,
}

/// Builds the generic body of a 500 response in the given format.
pub fn internal_error_body(format: ErrorFormat, request_id: &str) -> Response {
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    match format {
        ErrorFormat::OAuth => (
            status,
            Json(json!({"error": "server_error", "error_description": format!("Internal server error (request id {request_id})")})),
        )
            .into_response(),
        ErrorFormat::Outcome => fhir_json(status, &OperationOutcome::internal_error(request_id)),
        ErrorFormat::Html => (
            status,
            pages::error_page("Something went wrong", &format!("Internal server error (request id {request_id}).")),
        )
            .into_response(),
    }
}

fn internal(format: ErrorFormat, message: String) -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response
        .extensions_mut()
        .insert(InternalError { message, format });
    response
}

/// Builds a JSON response with the FHIR media type, as Medplum sends it.
pub fn fhir_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    response
}

/// An error on a `/auth`, `/admin` or `/fhir` route, returned as an OperationOutcome.
#[derive(Debug)]
pub struct OutcomeError(pub ServiceError);

impl From<ServiceError> for OutcomeError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl IntoResponse for OutcomeError {
    fn into_response(self) -> Response {
        if matches!(self.0, ServiceError::Unauthorized) {
            return unauthorized();
        }
        let mut response = match self.0.fhir_outcome() {
            Some((status, outcome)) => fhir_json(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &outcome,
            ),
            None => return internal(ErrorFormat::Outcome, self.0.to_string()),
        };
        if let ServiceError::TooManyRequests {
            retry_after_seconds,
            ..
        } = self.0
            && let Some(seconds) = retry_after_seconds
        {
            set_retry_after(&mut response, seconds);
        }
        response
    }
}

/// Sets `Retry-After` in seconds (RFC 9110 §10.2.3), which RFC 6585 §4 suggests for 429.
pub fn set_retry_after(response: &mut Response, seconds: u64) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

/// 401 with `WWW-Authenticate` (RFC 6750 §3) so clients know to send a bearer token.
pub fn unauthorized() -> Response {
    let mut response = fhir_json(StatusCode::UNAUTHORIZED, &OperationOutcome::unauthorized());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"medgate\""),
    );
    response
}

/// An error on the token endpoint, returned as RFC 6749 §5.2 JSON.
#[derive(Debug)]
pub struct OAuthError(pub ServiceError);

impl From<ServiceError> for OAuthError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (code, description) = match self.0 {
            ServiceError::OAuth { code, description } => (code, description),
            ServiceError::Invalid { message, .. } => (OAuthErrorCode::InvalidRequest, message),
            ServiceError::NotFound | ServiceError::Gone => {
                (OAuthErrorCode::InvalidGrant, "Not found".to_string())
            }
            ServiceError::Unauthorized | ServiceError::Forbidden => {
                (OAuthErrorCode::InvalidClient, "Invalid client".to_string())
            }
            ServiceError::Conflict(message) => (OAuthErrorCode::InvalidRequest, message),
            ServiceError::PreconditionFailed => {
                (OAuthErrorCode::InvalidGrant, "Invalid grant".to_string())
            }
            ServiceError::MultipleMatches => (
                OAuthErrorCode::InvalidRequest,
                "Multiple resources found matching condition".to_string(),
            ),
            ServiceError::TooManyRequests {
                message,
                retry_after_seconds,
            } => {
                let mut response = oauth_error(OAuthErrorCode::InvalidRequest, &message);
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                if let Some(seconds) = retry_after_seconds {
                    set_retry_after(&mut response, seconds);
                }
                return response;
            }
            ServiceError::InEntry { error, .. } => return OAuthError(*error).into_response(),
            ServiceError::Store(error) => return internal(ErrorFormat::OAuth, error.to_string()),
            ServiceError::Internal(message) => return internal(ErrorFormat::OAuth, message),
        };
        oauth_error(code, &description)
    }
}

/// RFC 6749 §5.2: 400, or 401 with `WWW-Authenticate` when client authentication failed.
pub fn oauth_error(code: OAuthErrorCode, description: &str) -> Response {
    let status = if code == OAuthErrorCode::InvalidClient {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response = (
        status,
        Json(json!({"error": code.as_str(), "error_description": description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"medgate\""),
        );
    }
    // RFC 6749 §5.1 applies the same no-store rule to error responses.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error on an HTML page.
#[derive(Debug)]
pub struct PageError(pub ServiceError);

impl From<ServiceError> for PageError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self.0 {
            ServiceError::Invalid { message, .. } => (StatusCode::BAD_REQUEST, message),
            ServiceError::OAuth { description, .. } => (StatusCode::BAD_REQUEST, description),
            ServiceError::NotFound | ServiceError::Gone => {
                (StatusCode::NOT_FOUND, "Not found".to_string())
            }
            ServiceError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized".to_string()),
            ServiceError::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".to_string()),
            ServiceError::Conflict(message) => (StatusCode::CONFLICT, message),
            ServiceError::PreconditionFailed => (
                StatusCode::CONFLICT,
                "The request was changed by another request; try again".to_string(),
            ),
            ServiceError::MultipleMatches => (
                StatusCode::PRECONDITION_FAILED,
                "Multiple resources found matching condition".to_string(),
            ),
            ServiceError::TooManyRequests { message, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, message)
            }
            ServiceError::InEntry { error, .. } => return PageError(*error).into_response(),
            ServiceError::Store(error) => return internal(ErrorFormat::Html, error.to_string()),
            ServiceError::Internal(message) => return internal(ErrorFormat::Html, message),
        };
        (status, pages::error_page("Sign-in failed", &message)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_client_is_401_with_challenge() {
        let response = oauth_error(OAuthErrorCode::InvalidClient, "Invalid secret");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn invalid_grant_is_400() {
        let response = oauth_error(OAuthErrorCode::InvalidGrant, "Invalid code");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn outcome_statuses() {
        let cases = [
            (ServiceError::invalid("x"), StatusCode::BAD_REQUEST),
            (ServiceError::NotFound, StatusCode::NOT_FOUND),
            (ServiceError::Gone, StatusCode::GONE),
            (ServiceError::Unauthorized, StatusCode::UNAUTHORIZED),
            (ServiceError::Forbidden, StatusCode::FORBIDDEN),
            (ServiceError::Conflict("c".into()), StatusCode::CONFLICT),
            (
                ServiceError::PreconditionFailed,
                StatusCode::PRECONDITION_FAILED,
            ),
            (
                ServiceError::MultipleMatches,
                StatusCode::PRECONDITION_FAILED,
            ),
            (
                ServiceError::TooManyRequests {
                    message: "m".into(),
                    retry_after_seconds: Some(5),
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                ServiceError::InEntry {
                    index: 2,
                    error: Box::new(ServiceError::NotFound),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                ServiceError::Internal("boom".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(OutcomeError(error).into_response().status(), status);
        }
    }

    #[test]
    fn internal_error_hides_message() {
        let response = OutcomeError(ServiceError::Internal(
            "database password is hunter2".into(),
        ))
        .into_response();
        let marker = response.extensions().get::<InternalError>().unwrap();
        assert_eq!(marker.message, "database password is hunter2");
        assert_eq!(marker.format, ErrorFormat::Outcome);
    }
}
