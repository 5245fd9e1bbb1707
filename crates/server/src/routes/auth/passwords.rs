//! `POST /auth/resetpassword`, `POST /auth/setpassword` and `POST /auth/verifyemail`: the
//! links sent by email.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medgate_fhir::OperationOutcome;
use medgate_service::Secret;
use medgate_service::password_reset::PasswordResetRequest;
use serde::Deserialize;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{ClientInfo, JsonBody};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordBody {
    email: Option<String>,
    project_id: Option<String>,
    redirect_uri: Option<String>,
    send_email: Option<bool>,
    recaptcha_token: Option<String>,
    recaptcha_site_key: Option<String>,
}

pub async fn reset_password(
    State(state): State<AppState>,
    client: ClientInfo,
    JsonBody(body): JsonBody<ResetPasswordBody>,
) -> Result<Response, OutcomeError> {
    let request = PasswordResetRequest {
        email: body.email.unwrap_or_default(),
        project_id: body.project_id,
        redirect_uri: body.redirect_uri,
        // Medplum sends the email unless the request sets `sendEmail: false`.
        send_email: body.send_email != Some(false),
        recaptcha_token: body.recaptcha_token,
        recaptcha_site_key: body.recaptcha_site_key,
        remote_address: client.address,
    };
    state.services.request_password_reset(request).await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

#[derive(Debug, Deserialize)]
pub struct SetPasswordBody {
    id: Option<String>,
    secret: Option<Secret<String>>,
    password: Option<Secret<String>>,
}

pub async fn set_password(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetPasswordBody>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .set_password_with_link(
            &body.id.unwrap_or_default(),
            &body.secret.unwrap_or_default(),
            &body.password.unwrap_or_default(),
        )
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

#[derive(Debug, Deserialize)]
pub struct VerifyEmailBody {
    id: Option<String>,
    secret: Option<Secret<String>>,
}

pub async fn verify_email(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<VerifyEmailBody>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .verify_email(
            &body.id.unwrap_or_default(),
            &body.secret.unwrap_or_default(),
        )
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}
