//! `POST /auth/login`, `POST /auth/profile`, `POST /auth/scope` and `GET /auth/login/:login`.

use axum::Json;
use axum::extract::{Path, State};
use medgate_service::login::{LoginRequest, LoginResponse};
use medgate_service::{Secret, ServiceError};
use serde::Deserialize;

use crate::AppState;
use crate::error::OutcomeError;
use crate::extract::{ClientInfo, JsonBody};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: Secret<String>,
    scope: Option<String>,
    nonce: Option<String>,
    client_id: Option<String>,
    project_id: Option<String>,
    resource_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    #[serde(default)]
    remember: bool,
}

pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    let request = LoginRequest {
        email: body.email,
        password: body.password,
        scope: body.scope,
        nonce: body.nonce,
        client_id: body.client_id,
        project_id: body.project_id,
        resource_type: body.resource_type,
        code_challenge: body.code_challenge,
        code_challenge_method: body.code_challenge_method,
        redirect_uri: None,
        remember: body.remember,
        remote_address: client.address,
        user_agent: client.user_agent,
    };
    Ok(Json(state.services.password_login(request).await?))
}

#[derive(Debug, Deserialize)]
pub struct ProfileBody {
    #[serde(default)]
    login: String,
    #[serde(default)]
    profile: String,
}

pub async fn profile(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ProfileBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    if body.login.is_empty() {
        return Err(ServiceError::invalid_field("Missing login", "login").into());
    }
    if body.profile.is_empty() {
        return Err(ServiceError::invalid_field("Missing profile", "profile").into());
    }
    Ok(Json(
        state
            .services
            .choose_profile(&body.login, &body.profile)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ScopeBody {
    #[serde(default)]
    login: String,
    #[serde(default)]
    scope: String,
}

pub async fn scope(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ScopeBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    if body.login.is_empty() {
        return Err(ServiceError::invalid_field("Missing login", "login").into());
    }
    if body.scope.is_empty() {
        return Err(ServiceError::invalid_field("Missing scope", "scope").into());
    }
    Ok(Json(
        state
            .services
            .narrow_scope(&body.login, &body.scope)
            .await?,
    ))
}

pub async fn login_status(
    State(state): State<AppState>,
    Path(login_id): Path<String>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    Ok(Json(state.services.login_status(&login_id).await?))
}
