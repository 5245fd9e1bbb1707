//! Routers per API family.

mod admin;
mod auth;
mod fhir;
mod oauth2;
mod wellknown;

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(wellknown::routes())
        .merge(admin::routes())
        .merge(oauth2::routes())
        .merge(auth::routes())
        .merge(fhir::routes())
}
