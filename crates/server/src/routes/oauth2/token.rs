//! `POST /oauth2/token` (RFC 6749 §3.2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use medgate_service::Secret;
use medgate_service::grants::{TokenRequest, client_credentials_from};
use serde::Deserialize;

use crate::AppState;
use crate::error::OAuthError;
use crate::extract::{ClientInfo, TokenForm};

/// The form fields of every supported grant. Secrets are wrapped so that no `Debug` output
/// can contain them.
#[derive(Debug, Deserialize)]
pub struct TokenFields {
    #[serde(default)]
    grant_type: String,
    code: Option<Secret<String>>,
    code_verifier: Option<Secret<String>>,
    redirect_uri: Option<String>,
    refresh_token: Option<Secret<String>>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<Secret<String>>,
}

pub async fn token(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    TokenForm(form): TokenForm<TokenFields>,
) -> Result<Response, OAuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let credentials =
        client_credentials_from(authorization, form.client_id.as_deref(), form.client_secret)?;
    let request = TokenRequest {
        grant_type: form.grant_type,
        code: form.code,
        code_verifier: form.code_verifier,
        redirect_uri: form.redirect_uri,
        refresh_token: form.refresh_token,
        scope: form.scope,
        credentials,
        remote_address: client.address,
        user_agent: client.user_agent,
    };
    let tokens = state.services.exchange_token(request).await?;
    let mut response = Json(tokens).into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
