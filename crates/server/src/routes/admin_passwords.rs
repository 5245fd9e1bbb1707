//! The admin password routes: `POST /admin/projects/:projectId/members/:membershipId/resetpassword`,
//! `POST /admin/projects/setpassword` and `POST /admin/super/setpassword`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use medgate_fhir::OperationOutcome;
use medgate_service::Secret;
use medgate_service::set_password::SuperAdminSetPassword;
use serde::Deserialize;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{Authenticated, JsonBody};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/projects/{project}/members/{membership}/resetpassword",
            post(reset_member_password),
        )
        .route("/admin/projects/setpassword", post(project_set_password))
        .route("/admin/super/setpassword", post(super_set_password))
}

async fn reset_member_password(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    Path((project_id, membership_id)): Path<(String, String)>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .admin_reset_password(&auth, &project_id, &membership_id)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPasswordBody {
    email: Option<String>,
    password: Option<Secret<String>>,
    project_id: Option<String>,
}

async fn project_set_password(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<SetPasswordBody>,
) -> Result<Response, OutcomeError> {
    state
        .services
        .admin_set_password(
            &auth,
            &body.email.unwrap_or_default(),
            &body.password.unwrap_or_default(),
        )
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}

async fn super_set_password(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    JsonBody(body): JsonBody<SetPasswordBody>,
) -> Result<Response, OutcomeError> {
    let request = SuperAdminSetPassword {
        email: body.email.unwrap_or_default(),
        password: body.password.unwrap_or_default(),
        project_id: body.project_id,
    };
    state
        .services
        .super_admin_set_password(&auth, &request)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}
