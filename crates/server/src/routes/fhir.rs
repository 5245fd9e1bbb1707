//! FHIR R4 routes under `/fhir/R4`.

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
