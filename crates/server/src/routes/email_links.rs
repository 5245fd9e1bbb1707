//! The pages behind the links medgate sends by email: `/setpassword/{id}/{secret}` (invites
//! and password resets) and `/verifyemail/{id}/{secret}`. Medplum's web app serves these
//! pages. medgate renders them itself and calls the services behind `POST /auth/setpassword`
//! and `POST /auth/verifyemail`.
//!
//! GET only renders a form, because mail scanners prefetch links and must not use them up.
//! The forms have no `action` attribute, so the browser posts to the page's own URL (HTML
//! Living Standard, form submission) and the secret is never written into the page.
//! The request log records the route template, not the path with the secret.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use medgate_service::{Secret, ServiceError};
use serde::Deserialize;

use crate::AppState;
use crate::error::PageError;
use crate::extract::PageForm;
use crate::pages::{error_page, escape, layout};

const SET_PASSWORD_TITLE: &str = "Set your password";
const VERIFY_EMAIL_TITLE: &str = "Verify your email address";

/// Sends a page that must be neither cached nor leak its URL, which contains the link's
/// secret, in a `Referer` header.
fn private_page(status: StatusCode, page: Html<String>) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

/// Renders a failed link as an error page: the service's message for a rejected link
/// (`Expired`, `Already used`, `Incorrect secret`, …) with 400, an unknown request with 404,
/// and the shared page error mapping for everything else.
fn link_error(title: &str, error: ServiceError) -> Response {
    match error {
        ServiceError::Invalid { message, .. } => {
            private_page(StatusCode::BAD_REQUEST, error_page(title, &message))
        }
        ServiceError::NotFound | ServiceError::Gone => private_page(
            StatusCode::NOT_FOUND,
            error_page(title, "This link is not valid. Request a new one."),
        ),
        error => PageError(error).into_response(),
    }
}

fn set_password_form(error: Option<&str>) -> Html<String> {
    let error_html = error
        .map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1>{error_html}<form method=\"post\">\
<label for=\"password\">New password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"8\" maxlength=\"72\" required>\
<label for=\"confirmPassword\">Confirm password</label><input id=\"confirmPassword\" name=\"confirmPassword\" type=\"password\" autocomplete=\"new-password\" required>\
<button type=\"submit\">Set password</button></form>",
        title = escape(SET_PASSWORD_TITLE),
    );
    layout(SET_PASSWORD_TITLE, &body)
}

pub async fn set_password_page() -> Response {
    private_page(StatusCode::OK, set_password_form(None))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPasswordForm {
    #[serde(default)]
    password: Secret<String>,
    #[serde(default)]
    confirm_password: Secret<String>,
}

// TODO: count the form posts in the per-client `/auth` rate limit, which only matches paths
// under `/auth/` and `/oauth2/`. The limit slows down guessing a link's secret, and the
// secrets medgate issues are random 256-bit values, too many to guess either way.
pub async fn set_password(
    State(state): State<AppState>,
    Path((id, secret)): Path<(String, String)>,
    PageForm(form): PageForm<SetPasswordForm>,
) -> Response {
    let secret = Secret::new(secret);

    // confirmation: checked here because the API takes one password field.
    if form.password.expose() != form.confirm_password.expose() {
        return private_page(
            StatusCode::BAD_REQUEST,
            set_password_form(Some("Passwords do not match")),
        );
    }

    let result = state
        .services
        .set_password_with_link(&id, &secret, &form.password)
        .await;
    match result {
        Ok(()) => private_page(
            StatusCode::OK,
            layout(
                "Password set",
                "<h1>Password set</h1><p>Your password is set. Sign in with your email \
address and the new password.</p>",
            ),
        ),
        // A rejected password can be fixed on the same form; a rejected link cannot.
        Err(ServiceError::Invalid { message, field }) if field.as_deref() == Some("password") => {
            private_page(StatusCode::BAD_REQUEST, set_password_form(Some(&message)))
        }
        Err(error) => link_error(SET_PASSWORD_TITLE, error),
    }
}

pub async fn verify_email_page() -> Response {
    let body = format!(
        "<h1>{title}</h1><p>Confirm that this email address is yours.</p>\
<form method=\"post\"><button type=\"submit\">Verify email address</button></form>",
        title = escape(VERIFY_EMAIL_TITLE),
    );
    private_page(StatusCode::OK, layout(VERIFY_EMAIL_TITLE, &body))
}

pub async fn verify_email(
    State(state): State<AppState>,
    Path((id, secret)): Path<(String, String)>,
) -> Response {
    let secret = Secret::new(secret);
    match state.services.verify_email(&id, &secret).await {
        Ok(()) => private_page(
            StatusCode::OK,
            layout(
                "Email address verified",
                "<h1>Email address verified</h1><p>Your email address is verified. You can \
close this page.</p>",
            ),
        ),
        Err(error) => link_error(VERIFY_EMAIL_TITLE, error),
    }
}
