//! Medplum's project administration API under `/admin/projects/:projectId`. Every route
//! requires a caller who administers the project in the path; errors are OperationOutcomes.

mod members;
mod project;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/projects/{project_id}", get(project::read))
        .route("/admin/projects/{project_id}/invite", post(members::invite))
        .route(
            "/admin/projects/{project_id}/members/{membership_id}",
            get(members::read)
                .post(members::update)
                .delete(members::delete),
        )
        .route(
            "/admin/projects/{project_id}/client",
            post(project::create_client),
        )
        .route(
            "/admin/projects/{project_id}/settings",
            post(project::settings),
        )
        .route(
            "/admin/projects/{project_id}/secrets",
            post(project::secrets),
        )
        .route("/admin/projects/{project_id}/sites", post(project::sites))
}
