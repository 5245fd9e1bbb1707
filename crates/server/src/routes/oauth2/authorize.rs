//! `GET|POST /oauth2/authorize` and medgate's sign-in page.
//!
//! The flow, one handler per step:
//!   authorize_get / authorize_post  → check the request, show the sign-in form
//!   sign_in (form post)             → check the password; one membership: redirect with a code,
//!                                     several: show the chooser, bound to this browser by a cookie
//!   choose_profile (form post)      → bind the chosen membership, redirect with a code
//!   authorize_mfa::verify (form post) → after the password, when the user has MFA: check the
//!                                     code (or enroll TOTP), then the chooser or the redirect
//! Every form repeats the authorization parameters in hidden fields. Every step checks them
//! again, so nothing the browser sends is trusted without a check.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use medgate_service::authorize::{
    AuthorizeError, AuthorizeRequest, ValidAuthorizeRequest, redirect_with,
};
use medgate_service::login::{LoginRequest, MembershipChoice};
use medgate_service::{Secret, ServiceError};
use serde::Deserialize;

use crate::AppState;
use crate::error::PageError;
use crate::extract::{ClientInfo, PageForm};
use crate::pages::{escape, hidden, layout};

/// Cookie that ties a half-finished sign-in to the browser that started it.
pub(super) const BROWSER_COOKIE: &str = "medgate-signin";

#[derive(Debug, Default, Deserialize)]
pub struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    aud: Option<String>,
    request: Option<String>,
    launch: Option<String>,
    login_hint: Option<String>,
}

impl AuthorizeParams {
    pub(super) fn into_request(self) -> AuthorizeRequest {
        AuthorizeRequest {
            response_type: self.response_type,
            client_id: self.client_id,
            redirect_uri: self.redirect_uri,
            scope: self.scope,
            state: self.state,
            nonce: self.nonce,
            code_challenge: self.code_challenge,
            code_challenge_method: self.code_challenge_method,
            prompt: self.prompt,
            aud: self.aud,
            request: self.request,
            launch: self.launch,
            login_hint: self.login_hint,
        }
    }
}

pub async fn authorize_get(
    State(state): State<AppState>,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    show_sign_in(&state, params.into_request()).await
}

/// SMART's `authorize-post` capability: the same parameters as a form body.
pub async fn authorize_post(
    State(state): State<AppState>,
    PageForm(params): PageForm<AuthorizeParams>,
) -> Response {
    show_sign_in(&state, params.into_request()).await
}

async fn show_sign_in(state: &AppState, request: AuthorizeRequest) -> Response {
    match state.services.validate_authorize(&request).await {
        Ok(valid) => sign_in_page(state, &valid, None, StatusCode::OK),
        Err(error) => authorize_error(error),
    }
}

pub(super) fn authorize_error(error: AuthorizeError) -> Response {
    match error {
        AuthorizeError::Page(message) => (
            StatusCode::BAD_REQUEST,
            crate::pages::error_page("Invalid sign-in request", &message),
        )
            .into_response(),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = state.as_deref() {
                params.push(("state", state));
            }
            Redirect::to(&redirect_with(&redirect_uri, &params)).into_response()
        }
    }
}

/// Renders the authorization parameters as hidden fields, so the next step can check them again.
pub(super) fn carried_fields(valid: &ValidAuthorizeRequest) -> String {
    let mut fields = vec![
        hidden("response_type", "code"),
        hidden("client_id", &valid.client.id),
        hidden("redirect_uri", &valid.redirect_uri),
        hidden("scope", &valid.scope),
    ];
    let optional = [
        ("state", &valid.state),
        ("nonce", &valid.nonce),
        ("code_challenge", &valid.code_challenge),
        ("code_challenge_method", &valid.code_challenge_method),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            fields.push(hidden(name, value));
        }
    }
    fields.concat()
}

fn sign_in_page(
    state: &AppState,
    valid: &ValidAuthorizeRequest,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let client_name = valid.client.name.as_deref().unwrap_or("an application");
    let welcome = valid
        .client
        .sign_in_form
        .as_ref()
        .and_then(|form| form.get("welcomeString"))
        .and_then(|text| text.as_str())
        .unwrap_or("Sign in");
    let error_html = error
        .map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<h1>{welcome}</h1><p>to continue to {client}</p>{error_html}\
<form method=\"post\" action=\"{action}\">{fields}\
<label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{hint}\">\
<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
        welcome = escape(welcome),
        client = escape(client_name),
        action = escape(&state.services.config.url("oauth2/authorize/login")),
        fields = carried_fields(valid),
        hint = escape(valid.login_hint.as_deref().unwrap_or_default()),
    );
    let mut response = (status, layout(welcome, &body)).into_response();
    no_store(&mut response);
    response
}

pub(super) fn chooser_page(
    state: &AppState,
    valid: &ValidAuthorizeRequest,
    login_id: &str,
    choices: &[MembershipChoice],
) -> Html<String> {
    let buttons: String = choices
        .iter()
        .map(|choice| {
            let project = choice.project.display.as_deref().unwrap_or(&choice.project.reference);
            let profile = choice.profile.display.as_deref().unwrap_or(&choice.profile.reference);
            format!(
                "<button class=\"choice\" type=\"submit\" name=\"membership\" value=\"{}\">{}<br><small>{}</small></button>",
                escape(&choice.id),
                escape(profile),
                escape(project),
            )
        })
        .collect();
    layout(
        "Choose a profile",
        &format!(
            "<h1>Choose a profile</h1><form method=\"post\" action=\"{action}\">{fields}{login}{buttons}</form>",
            action = escape(&state.services.config.url("oauth2/authorize/profile")),
            fields = carried_fields(valid),
            login = hidden("login", login_id),
        ),
    )
}

pub(super) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// 302 to the client with the code, as RFC 6749 §4.1.2 describes.
pub(super) fn redirect_with_code(valid: &ValidAuthorizeRequest, code: &Secret<String>) -> Response {
    let mut params = vec![("code", code.expose().as_str())];
    if let Some(state) = valid.state.as_deref() {
        params.push(("state", state));
    }
    let mut response = Redirect::to(&redirect_with(&valid.redirect_uri, &params)).into_response();
    no_store(&mut response);
    response
}

/// Redirects with the code of a sign-in that needed the browser cookie, and clears the
/// cookie, which is of no further use.
pub(super) fn finish_browser_sign_in(
    valid: &ValidAuthorizeRequest,
    code: &Secret<String>,
) -> Response {
    let mut response = redirect_with_code(valid, code);
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("medgate-signin=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: Secret<String>,
}

pub async fn sign_in(
    State(state): State<AppState>,
    client: ClientInfo,
    PageForm(form): PageForm<SignInForm>,
) -> Response {
    let valid = match state
        .services
        .validate_authorize(&form.params.into_request())
        .await
    {
        Ok(valid) => valid,
        Err(error) => return authorize_error(error),
    };
    let request = LoginRequest {
        email: form.email,
        password: form.password,
        scope: Some(valid.scope.clone()),
        nonce: valid.nonce.clone(),
        client_id: Some(valid.client.id.clone()),
        project_id: None,
        resource_type: None,
        code_challenge: valid.code_challenge.clone(),
        code_challenge_method: valid.code_challenge_method.clone(),
        redirect_uri: Some(valid.redirect_uri.clone()),
        remember: false,
        remote_address: client.address,
        user_agent: client.user_agent,
    };
    let response = match state.services.password_login(request).await {
        Ok(response) => response,
        Err(ServiceError::Invalid { message, .. }) => {
            return sign_in_page(&state, &valid, Some(&message), StatusCode::BAD_REQUEST);
        }
        Err(ServiceError::TooManyRequests { message, .. }) => {
            return sign_in_page(
                &state,
                &valid,
                Some(&message),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(error) => return PageError(error).into_response(),
    };
    if let Some(code) = &response.code {
        return redirect_with_code(&valid, code);
    }
    let secret = match state.services.bind_login_to_browser(&response.login).await {
        Ok(secret) => secret,
        Err(error) => return PageError(error).into_response(),
    };
    let mut page = match &response.mfa {
        Some(prompt) => {
            super::authorize_mfa::mfa_page(&state, &valid, &response.login, prompt, None)
        }
        None => {
            let choices = response.memberships.unwrap_or_default();
            chooser_page(&state, &valid, &response.login, &choices).into_response()
        }
    };
    let secure = if state.services.config.base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{BROWSER_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600{secure}",
        secret.expose()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        page.headers_mut().insert(header::SET_COOKIE, value);
    }
    no_store(&mut page);
    page
}

#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    #[serde(flatten)]
    params: AuthorizeParams,
    #[serde(default)]
    login: String,
    #[serde(default)]
    membership: String,
}

pub(super) fn browser_secret(headers: &HeaderMap) -> Option<Secret<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BROWSER_COOKIE)
        .map(|(_, value)| Secret::new(value.to_string()))
}

pub async fn choose_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<ProfileForm>,
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
    match state
        .services
        .choose_profile_in_browser(&valid, &form.login, &form.membership, secret.as_ref())
        .await
    {
        Ok(code) => finish_browser_sign_in(&valid, &code),
        Err(error) => PageError(error).into_response(),
    }
}
