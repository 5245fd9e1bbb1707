//! Medplum's authentication API under `/auth`. Bodies are JSON; errors are OperationOutcomes.

mod login;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/auth/login/{login}", get(login::login_status))
        .route("/auth/profile", post(login::profile))
        .route("/auth/scope", post(login::scope))
}
