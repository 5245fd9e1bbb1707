//! Discovery documents (OpenID Connect Discovery 1.0 §3, SMART App Launch 2.0 §2.1) and the
//! JWK Set. They list only what medgate implements.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(openid_configuration),
        )
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route(
            "/fhir/R4/.well-known/smart-configuration",
            get(smart_configuration),
        )
        .route("/.well-known/jwks.json", get(jwks))
}

const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];
const CLIENT_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

fn pkce_methods(state: &AppState) -> Vec<&'static str> {
    if state.services.config.require_pkce_s256 {
        vec!["S256"]
    } else {
        vec!["S256", "plain"]
    }
}

async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    let config = &state.services.config;
    Json(json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.url("oauth2/authorize"),
        "token_endpoint": config.url("oauth2/token"),
        "userinfo_endpoint": config.url("oauth2/userinfo"),
        "jwks_uri": config.url(".well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "code_challenge_methods_supported": pkce_methods(&state),
        "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access", "offline"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "login_id", "email"],
    }))
}

async fn smart_configuration(State(state): State<AppState>) -> Json<Value> {
    let config = &state.services.config;
    Json(json!({
        "issuer": config.issuer,
        "jwks_uri": config.url(".well-known/jwks.json"),
        "authorization_endpoint": config.url("oauth2/authorize"),
        "token_endpoint": config.url("oauth2/token"),
        "userinfo_endpoint": config.url("oauth2/userinfo"),
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "response_types_supported": ["code"],
        "scopes_supported": ["openid", "profile", "fhirUser", "offline_access", "online_access"],
        "code_challenge_methods_supported": pkce_methods(&state),
        "capabilities": [
            "client-public",
            "client-confidential-symmetric",
            "sso-openid-connect",
            "permission-offline",
        ],
    }))
}

async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.services.keys.jwks())
}
