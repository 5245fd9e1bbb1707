//! Invites and `/admin/projects/:projectId/members/:membershipId`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medgate_fhir::OperationOutcome;
use medgate_service::admin::invite::InviteRequest;
use serde_json::Value;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::JsonBody;
use crate::routes::fhir::{Caller, FhirPath, resource_response};

/// `POST /admin/projects/:projectId/invite`: 200 with the membership, as in Medplum.
pub async fn invite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
    JsonBody(body): JsonBody<InviteRequest>,
) -> Result<Response, OutcomeError> {
    let result = state
        .services
        .admin_invite(&caller, &project_id, body)
        .await?;
    Ok(resource_response(StatusCode::OK, &result.membership))
}

pub async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((project_id, membership_id)): FhirPath<(String, String)>,
) -> Result<Response, OutcomeError> {
    let membership = state
        .services
        .admin_read_member(&caller, &project_id, &membership_id)
        .await?;
    Ok(resource_response(StatusCode::OK, &membership))
}

pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((project_id, membership_id)): FhirPath<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    let membership = state
        .services
        .admin_update_member(&caller, &project_id, &membership_id, body)
        .await?;
    Ok(resource_response(StatusCode::OK, &membership))
}

pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath((project_id, membership_id)): FhirPath<(String, String)>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .admin_delete_member(&caller, &project_id, &membership_id)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}
