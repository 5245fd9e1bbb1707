//! Routers per API family.

mod admin;
mod admin_mfa;
mod admin_passwords;
mod auth;
mod email_links;
mod fhir;
mod oauth2;
mod wellknown;

use axum::Router;
use axum::routing::get;

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
        .route(
            "/setpassword/{id}/{secret}",
            get(email_links::set_password_page).post(email_links::set_password),
        )
        .route(
            "/verifyemail/{id}/{secret}",
            get(email_links::verify_email_page).post(email_links::verify_email),
        )
}
