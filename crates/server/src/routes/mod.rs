//! Routers per API family.

mod admin;
mod admin_mfa;
mod admin_passwords;
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
        .merge(admin_mfa::routes())
        .merge(admin_passwords::routes())
}
