//! The MFA step of medgate's sign-in page. It comes after the password and before the
//! profile choice, for the login that the browser's `medgate-signin` cookie is bound to.
//! The user enters a code from the authenticator app or the email. A user who must enroll
//! first sees the QR code of a new TOTP secret and enters a code from it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use medgate_service::Secret;
use medgate_service::ServiceError;
use medgate_service::authorize::ValidAuthorizeRequest;
use medgate_service::mfa::MfaPrompt;
use serde::Deserialize;

use super::authorize::{
    AuthorizeParams, authorize_error, browser_secret, carried_fields, chooser_page,
    finish_browser_sign_in, no_store,
};
use crate::AppState;
use crate::error::PageError;
use crate::extract::PageForm;
use crate::pages::{escape, hidden, layout};

/// Renders the code form: verification, or TOTP enrollment with its QR code.
pub(super) fn mfa_page(
    state: &AppState,
    valid: &ValidAuthorizeRequest,
    login_id: &str,
    prompt: &MfaPrompt,
    error: Option<&str>,
) -> Response {
    let error_html = error
        .map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)))
        .unwrap_or_default();
    let enroll = prompt.mfa_enroll_required == Some(true);
    let (title, intro) = if enroll {
        let image = prompt
            .enroll_qr_code
            .as_deref()
            .map(|url| format!("<img src=\"{}\" alt=\"QR code of the authenticator secret\" width=\"200\" height=\"200\">", escape(url)))
            .unwrap_or_default();
        (
            "Set up two-step verification",
            format!(
                "<p>Scan this code with an authenticator app, then enter the 6-digit code it shows.</p>{image}"
            ),
        )
    } else if prompt.mfa_methods == ["email"] {
        (
            "Two-step verification",
            "<p>Enter the 6-digit code we sent to your email address.</p>".to_string(),
        )
    } else {
        (
            "Two-step verification",
            "<p>Enter the 6-digit code from your authenticator app.</p>".to_string(),
        )
    };
    let body = format!(
        "<h1>{title}</h1>{intro}{error_html}<form method=\"post\" action=\"{action}\">{fields}{login}{mode}\
<label for=\"token\">Code</label><input id=\"token\" name=\"token\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\" required autofocus>\
<button type=\"submit\">Verify</button></form>",
        title = escape(title),
        action = escape(&state.services.config.url("oauth2/authorize/mfa")),
        fields = carried_fields(valid),
        login = hidden("login", login_id),
        mode = if enroll {
            hidden("enroll", "totp")
        } else {
            String::new()
        },
    );
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, layout(title, &body)).into_response();
    no_store(&mut response);
    response
}

#[derive(Debug, Deserialize)]
pub struct MfaForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    #[serde(default)]
    login: String,
    #[serde(default)]
    token: Secret<String>,
    enroll: Option<String>,
}

pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<MfaForm>,
) -> Response {
    let valid = match state
        .services
        .validate_authorize(&form.params.into_request())
        .await
    {
        Ok(valid) => valid,
        Err(error) => return authorize_error(error),
    };
    let secret = browser_secret(&headers);
    let result = state
        .services
        .verify_mfa_in_browser(
            &valid,
            &form.login,
            form.token.expose(),
            form.enroll.is_some(),
            secret.as_ref(),
        )
        .await;
    let response = match result {
        Ok(response) => response,
        Err(ServiceError::Invalid { message, .. }) => {
            // A wrong code shows the same step again with the message.
            return match current_prompt(&state, &form.login).await {
                Some(prompt) => mfa_page(&state, &valid, &form.login, &prompt, Some(&message)),
                None => PageError(ServiceError::invalid(message)).into_response(),
            };
        }
        Err(error) => return PageError(error).into_response(),
    };

    if let Some(code) = &response.code {
        return finish_browser_sign_in(&valid, code);
    }
    if let Some(prompt) = &response.mfa {
        return mfa_page(&state, &valid, &response.login, prompt, None);
    }
    let choices = response.memberships.unwrap_or_default();
    let mut page = chooser_page(&state, &valid, &response.login, &choices).into_response();
    no_store(&mut page);
    page
}

/// Reads the MFA step a login is still at, if any, without minting a code.
async fn current_prompt(state: &AppState, login_id: &str) -> Option<MfaPrompt> {
    let login = state.services.read_login(login_id).await.ok()?;
    state.services.mfa_prompt(&login).await.ok().flatten()
}
