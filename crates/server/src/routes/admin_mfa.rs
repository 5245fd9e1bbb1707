//! `POST /admin/projects/:projectId/members/:membershipId/mfa/reset`: a project admin resets
//! one MFA factor of a member.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use medgate_fhir::OperationOutcome;
use medgate_service::mfa::MfaResetRequest;
use serde::Deserialize;

use crate::AppState;
use crate::error::{OutcomeError, fhir_json};
use crate::extract::{Authenticated, JsonBody};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/admin/projects/{project}/members/{membership}/mfa/reset",
        post(reset),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ResetBody {
    method: Option<String>,
}

async fn reset(
    State(state): State<AppState>,
    Authenticated(auth): Authenticated,
    Path((project_id, membership_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<Response, OutcomeError> {
    let request = MfaResetRequest {
        method: body.method,
    };
    state
        .services
        .reset_member_mfa(&auth, &project_id, &membership_id, &request)
        .await?;
    Ok(fhir_json(StatusCode::OK, &OperationOutcome::all_ok()))
}
