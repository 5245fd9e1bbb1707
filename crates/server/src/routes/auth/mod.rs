//! Medplum's authentication API under `/auth`. Bodies are JSON; errors are OperationOutcomes.

mod account;
mod login;
mod mfa;
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
        .route("/auth/mfa/status", get(mfa::status))
        .route("/auth/mfa/enroll", post(mfa::enroll))
        .route("/auth/mfa/disable", post(mfa::disable))
        .route(
            "/auth/mfa/send-email-challenge",
            post(mfa::send_email_challenge),
        )
        .route("/auth/mfa/verify", post(mfa::verify))
        .route("/auth/mfa/login-enroll", post(mfa::login_enroll))
        .route("/auth/mfa/send-email", post(mfa::send_email))
}
