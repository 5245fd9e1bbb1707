//! `GET|POST /oauth2/logout`: ends the session of the bearer token, if there is one.
//!
//! The response is always 200 All OK, with or without a valid token, because `@medplum/core`'s
//! `signOut()` keeps the session in its storage after any other status. The request body is
//! not read: the SDK sends `{}` as `application/fhir+json`, other clients send nothing.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use medgate_fhir::OperationOutcome;
use medgate_service::Secret;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OutcomeError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(Secret::from);
    state.services.logout(token.as_ref()).await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}
