//! `POST /auth/newuser`, `POST /auth/newproject` and `POST /auth/newpatient`: self-service
//! registration.

use axum::Json;
use axum::extract::State;
use medgate_service::Secret;
use medgate_service::login::LoginResponse;
use medgate_service::registration::{NewUserRequest, NewUserResponse};
use serde::Deserialize;

use crate::AppState;
use crate::error::OutcomeError;
use crate::extract::{ClientInfo, JsonBody};

/// Medplum's registration body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUserBody {
    recaptcha_token: Option<String>,
    recaptcha_site_key: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    password: Option<Secret<String>>,
    project_id: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    nonce: Option<String>,
    resource_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    remember: Option<bool>,
}

pub async fn new_user(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<NewUserBody>,
) -> Result<Json<NewUserResponse>, OutcomeError> {
    let request = NewUserRequest {
        recaptcha_token: body.recaptcha_token,
        recaptcha_site_key: body.recaptcha_site_key,
        first_name: body.first_name.unwrap_or_default(),
        last_name: body.last_name.unwrap_or_default(),
        email: body.email.unwrap_or_default(),
        password: body.password.unwrap_or_default(),
        project_id: body.project_id,
        client_id: body.client_id,
        scope: body.scope,
        nonce: body.nonce,
        resource_type: body.resource_type,
        code_challenge: body.code_challenge,
        code_challenge_method: body.code_challenge_method,
        remember: body.remember.unwrap_or_default(),
        remote_address: client.address,
        user_agent: client.user_agent,
    };
    Ok(Json(state.services.register_user(request).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewProjectBody {
    login: Option<String>,
    project_name: Option<String>,
}

pub async fn new_project(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewProjectBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    let login = body.login.unwrap_or_default();
    let project_name = body.project_name.unwrap_or_default();
    Ok(Json(
        state
            .services
            .register_project(&login, &project_name)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPatientBody {
    login: Option<String>,
    project_id: Option<String>,
}

pub async fn new_patient(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<NewPatientBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    let login = body.login.unwrap_or_default();
    let project_id = body.project_id.unwrap_or_default();
    Ok(Json(
        state.services.register_patient(&login, &project_id).await?,
    ))
}
