//! `GET /auth/me`, `POST /auth/changepassword`, `POST /auth/revoke` and
//! `GET /auth/clientinfo/:id`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use medgate_fhir::OperationOutcome;
use medgate_service::Secret;
use medgate_service::account::{Me, SignInBranding};
use serde::Deserialize;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{Authenticated, JsonBody};

pub async fn me(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
) -> Result<Json<Me>, OutcomeError> {
    Ok(Json(state.services.me(&auth).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordBody {
    old_password: Option<Secret<String>>,
    new_password: Option<Secret<String>>,
}

pub async fn change_password(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> Result<Response, OutcomeError> {
    let old_password = body.old_password.unwrap_or_default();
    let new_password = body.new_password.unwrap_or_default();
    state
        .services
        .change_password(&auth, &old_password, &new_password)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeBody {
    login_id: Option<String>,
}

pub async fn revoke(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Response, OutcomeError> {
    let login_id = body.login_id.unwrap_or_default();
    state.services.revoke_own_login(&auth, &login_id).await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

pub async fn client_info(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
) -> Result<Json<SignInBranding>, OutcomeError> {
    Ok(Json(state.services.client_branding(&client_id).await?))
}
