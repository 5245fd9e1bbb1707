//! Medplum's MFA routes under `/auth/mfa`. Sign-in steps are keyed by the login id; settings
//! need a bearer token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medgate_fhir::OperationOutcome;
use medgate_service::Secret;
use medgate_service::login::LoginResponse;
use medgate_service::mfa::MfaStatus;
use serde::Deserialize;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{Authenticated, JsonBody};

fn all_ok() -> Response {
    fhir_json(StatusCode::OK, &OperationOutcome::all_ok())
}

/// The body of every MFA route; each reads the fields it needs.
#[derive(Debug, Default, Deserialize)]
pub struct MfaBody {
    #[serde(default)]
    login: String,
    #[serde(default)]
    token: Secret<String>,
    method: Option<String>,
}

pub async fn status(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
) -> Result<Json<MfaStatus>, OutcomeError> {
    Ok(Json(state.services.mfa_status(&auth).await?))
}

pub async fn enroll(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<MfaBody>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .enroll_mfa(&auth, body.method.as_deref(), body.token.expose())
        .await?;
    Ok(all_ok())
}

pub async fn disable(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<MfaBody>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .disable_mfa(&auth, body.method.as_deref(), body.token.expose())
        .await?;
    Ok(all_ok())
}

pub async fn send_email_challenge(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
) -> Result<Response, OutcomeError> {
    state.services.send_mfa_email_challenge(&auth).await?;
    Ok(all_ok())
}

pub async fn verify(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<MfaBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    Ok(Json(
        state
            .services
            .verify_mfa(&body.login, body.token.expose())
            .await?,
    ))
}

pub async fn login_enroll(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<MfaBody>,
) -> Result<Json<LoginResponse>, OutcomeError> {
    let token = Some(body.token.expose().as_str()).filter(|token| !token.is_empty());
    Ok(Json(
        state
            .services
            .login_enroll(&body.login, body.method.as_deref(), token)
            .await?,
    ))
}

pub async fn send_email(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<MfaBody>,
) -> Result<Response, OutcomeError> {
    state.services.send_mfa_email(&body.login).await?;
    Ok(all_ok())
}
