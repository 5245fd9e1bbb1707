//! `GET /admin/projects/:projectId`, its `settings`, `secrets` and `sites` lists, and new
//! clients.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medgate_service::admin::ProjectList;
use medgate_service::admin::client::CreateClientRequest;
use serde_json::Value;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::JsonBody;
use crate::routes::fhir::{Caller, FhirPath, no_store, resource_response};

pub async fn read(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
) -> Result<Response, OutcomeError> {
    let summary = state
        .services
        .admin_project_summary(&caller.auth, &project_id)
        .await?;
    // The summary contains the project's secrets.
    Ok(no_store(fhir_json(StatusCode::OK, &summary)))
}

pub async fn create_client(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
    JsonBody(body): JsonBody<CreateClientRequest>,
) -> Result<Response, OutcomeError> {
    let client = state
        .services
        .admin_create_client(&caller, &project_id, body)
        .await?;
    Ok(no_store(resource_response(StatusCode::CREATED, &client)))
}

async fn replace_list(
    state: AppState,
    caller: medgate_service::fhir_rest::FhirCaller,
    project_id: String,
    list: ProjectList,
    body: Value,
) -> Result<Response, OutcomeError> {
    let project = state
        .services
        .replace_project_list(&caller, &project_id, list, body)
        .await?;
    Ok(no_store(resource_response(StatusCode::OK, &project)))
}

pub async fn settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    replace_list(state, caller, project_id, ProjectList::Setting, body).await
}

pub async fn secrets(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    replace_list(state, caller, project_id, ProjectList::Secret, body).await
}

pub async fn sites(
    State(state): State<AppState>,
    Caller(caller): Caller,
    FhirPath(project_id): FhirPath<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, OutcomeError> {
    replace_list(state, caller, project_id, ProjectList::Site, body).await
}
