//! Medplum's authentication API under `/auth`. Bodies are JSON; errors are OperationOutcomes.

mod account;
mod login;
mod passwords;
mod register;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login::login))
        .route("/auth/login/{login}", get(login::login_status))
        .route("/auth/profile", post(login::profile))
        .route("/auth/scope", post(login::scope))
        .route("/auth/newuser", post(register::new_user))
        .route("/auth/newproject", post(register::new_project))
        .route("/auth/newpatient", post(register::new_patient))
        .route("/auth/resetpassword", post(passwords::reset_password))
        .route("/auth/setpassword", post(passwords::set_password))
        .route("/auth/verifyemail", post(passwords::verify_email))
        .route("/auth/me", get(account::me))
        .route("/auth/changepassword", post(account::change_password))
        .route("/auth/revoke", post(account::revoke))
        .route("/auth/clientinfo/{client}", get(account::client_info))
}
